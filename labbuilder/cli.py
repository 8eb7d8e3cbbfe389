"""The command line: parses options, calls the library, prints. Nothing else lives here."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from . import __version__, image as image_mod, qemuimg
from .errors import LabError
from .progress import RichProgress
from .recipe import load_recipe

console = Console(stderr=True)
out = Console()


class LabGroup(click.Group):
    """Turns LabError into one or two lines and an exit code (traceback with --debug)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except LabError as e:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            for i, line in enumerate(e.lines()):
                console.print(("[red]error:[/red] " if i == 0 else "") + line, highlight=False,
                              markup=i == 0, soft_wrap=True)
            log = getattr(e, "log", None)
            if log and not any("full log" in l for l in e.lines()):
                console.print(f"full log: {log}", highlight=False)
            ctx.exit(e.exit_code)


@click.group(cls=LabGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="labbuilder")
@click.option("--debug", is_flag=True, help="Show the traceback of errors.")
@click.pass_context
def main(ctx, debug):
    """labbuilder builds the physical layer of hands-on training labs on libvirt hosts
    (networks, VMs, disks, addresses) and the guest images they run on."""
    ctx.obj = {"debug": debug}


cache_option = click.option(
    "--cache", type=click.Path(path_type=Path), default=None,
    help=f"Image cache directory (default: ${image_mod.CACHE_ENV} or ~/.cache/labbuilder/images).")


@main.group()
def image():
    """Build base images from recipes in images/, list and inspect them."""


@image.command("build")
@click.argument("recipe", type=click.Path(path_type=Path))
@cache_option
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
def image_build(recipe, cache, as_json):
    """Build RECIPE (e.g. images/debian-12.yaml) into the cache; instant if already built."""
    rec = load_recipe(recipe)
    cache = cache or image_mod.default_cache_dir()
    built = image_mod.build(rec, cache, RichProgress(console))
    _print_image(built, as_json)


@image.command("list")
@cache_option
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def image_list(cache, as_json):
    """List the images in the cache."""
    images = image_mod.list_images(cache or image_mod.default_cache_dir())
    if as_json:
        out.print_json(json.dumps([{"name": b.name, "path": str(b.image), **b.manifest["image"]}
                                   for b in images]))
        return
    table = Table("name", "recipe hash", "built", "virtual", "on disk", "path")
    for b in images:
        m = b.manifest
        table.add_row(b.name, m["recipe_hash"][:12], m["built_at"], _size(m["image"]["virtual_size"]),
                      _size(m["image"]["size"]), str(b.image))
    out.print(table)


@image.command("info")
@click.argument("name")
@cache_option
@click.option("--json", "as_json", is_flag=True, help="Print manifest and qemu-img info as JSON.")
def image_info(name, cache, as_json):
    """Show the manifest of image NAME and what qemu-img says about its file."""
    built = image_mod.find_image(cache or image_mod.default_cache_dir(), name)
    _print_image(built, as_json, qemu_info=qemuimg.info(built.image))


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def _print_image(built, as_json: bool, qemu_info: dict | None = None) -> None:
    data = {"path": str(built.image), "cached": built.cached, "manifest": built.manifest}
    if qemu_info is not None:
        data["qemu_img_info"] = qemu_info
    if as_json:
        out.print_json(json.dumps(data))
        return
    m = built.manifest
    table = Table(show_header=False, box=None)
    rows = [("name", m["name"]), ("path", str(built.image)), ("recipe hash", m["recipe_hash"]),
            ("built", m["built_at"]), ("format", m["image"]["format"]),
            ("virtual size", _size(m["image"]["virtual_size"])), ("on disk", _size(m["image"]["size"])),
            ("sha256", m["image"]["sha256"]), ("md5", m["image"]["md5"])]
    rows += [(f"glance {k}", str(v)) for k, v in m["glance"].items() if k not in ("checksum", "os_hash_value")]
    if qemu_info is not None:
        rows += [("qemu-img format", qemu_info["format"]),
                 ("qemu-img compat", str(qemu_info.get("format-specific", {}).get("data", {}).get("compat", ""))),
                 ("backing file", qemu_info.get("backing-filename", "none"))]
    for k, v in rows:
        table.add_row(f"[bold]{k}[/bold]", v)
    out.print(table)


if __name__ == "__main__":
    sys.exit(main())

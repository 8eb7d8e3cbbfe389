"""The image commands: build, list, info, capture, upload."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click

from labbuilder.cli import cache_option, main
from labbuilder.cli.lab import _open, lab_options, pipeline
from labbuilder.cli.output import RichProgress, console, new_table, out, size_text


@main.group()
def image():
    """Build base images from recipes in images/, list and inspect them."""


@image.command("build")
@click.argument("recipe", type=click.Path(path_type=Path))
@cache_option
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
def image_build(recipe, cache, as_json):
    """Build RECIPE (e.g. images/debian-12.yaml) into the cache; instant if already built."""
    from labbuilder.image import cache as image_cache  # per command: lab commands start without these
    from labbuilder.image.build import build
    from labbuilder.model.recipe import load_recipe

    built = build(load_recipe(recipe), cache or image_cache.default_cache_dir(), RichProgress(console.real))
    _print_image(built, as_json)


@image.command("list")
@cache_option
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def image_list(cache, as_json):
    """List the images in the cache."""
    from labbuilder.image import cache as image_cache

    images = image_cache.list_images(cache or image_cache.default_cache_dir())
    if as_json:
        out.print_json(json.dumps([{"name": b.name, "path": str(b.image), **b.manifest["image"]}
                                   for b in images]))
        return
    table = new_table("name", "recipe hash", "built", "virtual", "on disk", "path")
    for b in images:
        m = b.manifest
        table.add_row(b.name, (m["recipe_hash"] or "captured")[:12], m["built_at"], size_text(m["image"]["virtual_size"]),
                      size_text(m["image"]["size"]), str(b.image))
    out.print(table)


@image.command("info")
@click.argument("name")
@cache_option
@click.option("--json", "as_json", is_flag=True, help="Print manifest and qemu-img info as JSON.")
def image_info(name, cache, as_json):
    """Show the manifest of image NAME and what qemu-img says about its file."""
    from labbuilder.image import cache as image_cache
    from labbuilder.system import qemuimg

    built = image_cache.find_image(cache or image_cache.default_cache_dir(), name)
    _print_image(built, as_json, qemu_info=qemuimg.info(built.image))


def _print_image(built, as_json: bool, qemu_info: dict | None = None) -> None:
    data = {"path": str(built.image), "cached": built.cached, "manifest": built.manifest}
    if qemu_info is not None:
        data["qemu_img_info"] = qemu_info
    if as_json:
        out.print_json(json.dumps(data))
        return
    m = built.manifest
    table = new_table(show_header=False, box=None)
    made = [("recipe hash", m["recipe_hash"])] if m["recipe_hash"] else [("captured from", m["description"])]
    rows = [("name", m["name"]), ("path", str(built.image)), *made,
            ("built", m["built_at"]), ("format", m["image"]["format"]),
            ("virtual size", size_text(m["image"]["virtual_size"])), ("on disk", size_text(m["image"]["size"])),
            ("sha256", m["image"]["sha256"]), ("md5", m["image"]["md5"])]
    rows += [(f"glance {k}", str(v)) for k, v in m["glance"].items() if k not in ("checksum", "os_hash_value")]
    if qemu_info is not None:
        rows += [("qemu-img format", qemu_info["format"]),
                 ("qemu-img compat", str(qemu_info.get("format-specific", {}).get("data", {}).get("compat", ""))),
                 ("backing file", qemu_info.get("backing-filename", "none"))]
    for k, v in rows:
        table.add_row(f"[bold]{k}[/bold]", v)
    out.print(table)


# ---- labs ----



@image.command("capture")
@lab_options
@click.argument("node_name", metavar="NODE")
@click.option("--name", "image_name", required=True, metavar="NAME", help="The new image's name.")
@click.option("--checkpoint", metavar="CHECKPOINT", help="Capture the node as this checkpoint has it (it may run "
              "meanwhile); without it the node must be shut off.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
def image_capture(node_name, image_name, checkpoint, as_json, **kwargs):
    """Capture NODE of the lab TOPOLOGY (team --team) as image NAME: its disk flattened
    onto its base image, sysprep'd and compressed into the cache with a manifest (Glance
    fields of its base image) — for `image upload`, or a topology's `image: NAME`."""
    from labbuilder.image import cache as image_cache
    from labbuilder.image.capture import capture, check_name

    cache = kwargs["cache"] or image_cache.default_cache_dir()
    check_name(image_name, cache)
    lab = _open(kwargs, start_private=False, check=False)
    try:
        disk = pipeline.node_disk(lab, node_name, checkpoint)
    finally:
        lab.close()
    _print_image(capture(disk, image_name, cache, RichProgress(console.real)), as_json)


@image.command("upload")
@click.argument("name")
@lambda f: lab_options(f, topology_required=False)
@click.option("--os-cloud", metavar="CLOUD", help="Upload to this cloud of clouds.yaml (openstacksdk) instead "
              "of a lab's Glance; no TOPOLOGY then.")
@click.option("--as", "as_name", metavar="GLANCE_NAME", help="The image's name in Glance (default: NAME).")
@click.option("--node", metavar="NODE", help="Upload through NODE (default: the first node of role image).")
@click.option("--json", "as_json", is_flag=True, help="Print the uploaded image as JSON.")
def image_upload(name, os_cloud, as_name, node, as_json, **kwargs):
    """Upload the built image NAME into the Glance of the lab TOPOLOGY (team --team), or
    of any cloud with --os-cloud, with its manifest's disk/container format, min_disk,
    min_ram and os_* properties; Glance's checksum and SHA-256 must match the manifest,
    else it is deleted again."""
    from labbuilder.image import cache as image_cache

    if (os_cloud is None) == (kwargs["topology"] is None):
        raise click.UsageError("give a lab's TOPOLOGY or --os-cloud CLOUD (one of them)")
    built = image_cache.find_image(kwargs["cache"] or image_cache.default_cache_dir(), name)
    if os_cloud is not None:
        from labbuilder.system import cloud  # openstacksdk: only when a cloud is named

        done = cloud.upload(os_cloud, built, as_name or name, RichProgress(console.real))
    else:
        lab = _open(kwargs, start_private=False, check=False)
        try:
            done = pipeline.upload_image(lab, built, as_name or name, node, RichProgress(console.real))
        finally:
            lab.close()
    if as_json:
        out.print_json(json.dumps(asdict(done)))
        return
    out.print(f"image {done.name} ({done.id}) in Glance through {done.node}: checksum {done.checksum}, "
              f"{done.os_hash_algo} {done.os_hash_value} match the manifest", highlight=False)

"""The command line: parses options, calls the library, prints. Nothing else lives here.
The group and its error edge are here; the commands in cli/lab.py and cli/image.py."""

from __future__ import annotations

import importlib
from pathlib import Path

import click

from labbuilder import __version__
from labbuilder.cli.output import console, escape
from labbuilder.model.errors import LabError


class LabGroup(click.Group):
    """Turns LabError into one or two lines and an exit code (traceback with --debug).
    The commands of a module in LAZY are added when one of them is asked for (or listed):
    a lab command such as `down` starts without the image commands' module."""

    LAZY = {"image": "labbuilder.cli.image"}  # command name → the module that adds it to main

    def list_commands(self, ctx):
        return sorted({*self.commands, *self.LAZY})

    def get_command(self, ctx, name):
        if name not in self.commands and name in self.LAZY:
            importlib.import_module(self.LAZY[name])
        return super().get_command(ctx, name)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except LabError as e:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            for i, line in enumerate(e.lines()):
                # Escaped: user text such as "[a-z0-9-]" in a message is not rich markup.
                text = "[red]error:[/red] " + escape(line) if i == 0 else line
                console.print(text, highlight=False, markup=i == 0, soft_wrap=True)
            log = e.log
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
    help="Image cache directory (default: $LABBUILDER_IMAGE_CACHE or ~/.cache/labbuilder/images).")




def _register_commands() -> None:
    from labbuilder.cli import lab  # noqa: F401  (its decorators add the lab commands to main)


_register_commands()

"""The one module that runs qemu-img."""

from __future__ import annotations

import json
from pathlib import Path

from labbuilder.system.run import run


def info(path: Path | str, prefix: tuple[str, ...] = ()) -> dict:
    """`qemu-img info --output=json` of one image, parsed (--force-share: it may be in use);
    `prefix` runs it elsewhere (e.g. in a private libvirtd's mount namespace)."""
    return json.loads(run([*prefix, "qemu-img", "info", "--force-share", "--output=json", str(path)]).stdout)


def convert(src: Path, dst: Path, *, fmt: str = "qcow2", compress: bool = False, src_fmt: str | None = None,
            snapshot: str | None = None, force_share: bool = False, prefix: tuple[str, ...] = (),
            log: Path | None = None) -> None:
    """Convert `src` (in `src_fmt`, else as qemu-img detects it; at its internal `snapshot`)
    to `dst` in `fmt`, its backing chain flattened; zero clusters are skipped, so this also
    compacts. `force_share`: `src` may be in use (read a snapshot of a running guest's
    disk); `prefix` runs it elsewhere (as `info`)."""
    argv = [*prefix, "qemu-img", "convert", *(["-f", src_fmt] if src_fmt else []), "-O", fmt]
    if snapshot is not None:
        argv += ["-l", f"snapshot.name={snapshot}"]
    if force_share:
        argv.append("-U")
    if compress:
        argv.append("-c")
    if fmt == "qcow2":
        argv += ["-o", "compat=1.1"]
    run(argv + [str(src), str(dst)], log=log)


def create_overlay(base: Path, dst: Path, *, log: Path | None = None) -> None:
    """Create a qcow2 overlay of `base` (O(1), nothing copied)."""
    run(["qemu-img", "create", "-f", "qcow2", "-F", "qcow2", "-b", str(base), str(dst)], log=log)

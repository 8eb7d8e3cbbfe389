"""The one module that runs virt-sysprep: what a boot gives a guest, taken out of an
image's disk (built images once; captured nodes each time)."""

from __future__ import annotations

from pathlib import Path

from labbuilder.system.run import DIES_WITH_US, run


def sysprep(disk: Path, operations: str, log: Path, accel, delete: tuple[str, ...] = ()) -> None:
    """virt-sysprep the raw `disk` (clones get identity from their NoCloud seed);
    `delete`: paths removed too (the customize operation does it)."""
    env = {"LIBGUESTFS_BACKEND": "direct", **accel.guestfs_env()}
    deletes = [arg for path in delete for arg in ("--delete", path)]
    run(DIES_WITH_US + ["virt-sysprep", "--format", "raw", "-a", str(disk), "--operations", operations, *deletes],
        log=log, env=env)

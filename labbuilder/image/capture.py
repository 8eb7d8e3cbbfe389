"""Capturing a lab node as an image: its root disk (shut off, or as a checkpoint has it)
flattened onto its base image → virt-sysprep → the compressed qcow2 and a manifest with
the Glance fields of its base image's, into the cache, as a build leaves one (the RDO
course's node4 → Glance step)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from labbuilder.image import outputs
from labbuilder.image.cache import BuiltImage, find_image, list_images, work_entry
from labbuilder.model.errors import ImageError
from labbuilder.model.yamlread import IMAGE_NAME_RE
from labbuilder.reporting import Progress
from labbuilder.system import accel as accel_mod
from labbuilder.system import locks, qemuimg
from labbuilder.system.pause import pause_point
from labbuilder.system.sysprep import sysprep

if TYPE_CHECKING:
    from labbuilder.lab.pipeline import NodeDisk

# virt-sysprep's defaults undo what a boot gave the node (machine-id, SSH host keys and
# authorized keys, logs, DHCP leases, …); cloud-init's record of its instance goes too, so
# a clone of the image takes its identity from its own seed as a built image's clones do.
SYSPREP_OPERATIONS = "defaults"  # customize among them: it does the --delete
SYSPREP_DELETE = ("/var/lib/cloud",)


def check_name(name: str, cache: Path) -> None:
    """A capture's image name: an image name, not that of an image built from a recipe."""
    if not IMAGE_NAME_RE.fullmatch(name):
        raise ImageError(f"--name {name!r} must match [a-z0-9-] (at most 63 characters)")
    built = [b for b in list_images(cache) if b.name == name and b.manifest.get("recipe_hash")]
    if built:
        raise ImageError(f"--name {name!r} is an image built from {built[0].manifest.get('recipe') or 'a recipe'}: "
                         "name the capture otherwise")


def capture(disk: NodeDisk, name: str, cache: Path, progress: Progress,
            accel: accel_mod.Accelerator | None = None) -> BuiltImage:
    """`disk` into the cache as image `name` (entry `name-<sha256 of the image>`); work in
    a temporary directory, renamed into place only when complete. One capture of a name at
    a time; what one cut short (killed) left goes first."""
    check_name(name, cache)
    base = find_image(cache, disk.base_image).manifest
    accel = accel or accel_mod.detect()
    lock = cache / f".lock-capture-{name}"
    with locks.exclusive(lock, lambda: progress.info(f"another capture as {name} runs; waiting for it (lock {lock})")):
        for leftover in cache.glob(f".capture-{name}-*"):  # of a capture cut short
            shutil.rmtree(leftover, ignore_errors=True)
        with work_entry(cache, f".capture-{name}-{os.getpid()}", f"capture-{name}") as (work, log):
            raw = work / "disk.raw"
            with progress.stage("flatten the node's disk"):
                qemuimg.convert(Path(disk.path), raw, fmt="raw", src_fmt="qcow2", snapshot=disk.checkpoint,
                                force_share=disk.running, prefix=disk.prefix, log=log)
            pause_point("capture-flat")
            with progress.stage("sysprep"):
                sysprep(raw, SYSPREP_OPERATIONS, log, accel, delete=SYSPREP_DELETE)
            with progress.stage("convert"):
                image = work / f"{name}.qcow2"
                qemuimg.convert(raw, image, compress=True, src_fmt="raw", log=log)
                raw.unlink()
            manifest = outputs.captured_manifest(name, image, base, disk.source, accel, progress.timings)
            outputs.write_manifest(work, manifest)
            final = cache / f"{name}-{manifest['image']['sha256'][:12]}"
            shutil.rmtree(final, ignore_errors=True)
            work.rename(final)
        for older in list_images(cache):  # an earlier capture of the same name: replaced
            if older.name == name and older.dir != final and not older.manifest.get("recipe_hash"):
                shutil.rmtree(older.dir, ignore_errors=True)
    return BuiltImage(name, final, manifest)

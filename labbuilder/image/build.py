"""Building an image: recipe → root directory (mmdebstrap) → bootable disk (mke2fs, libguestfs) →
sysprep → the outputs and manifest (image/outputs), into the cache (image/cache), once
per recipe hash."""

from __future__ import annotations

import io
import os
import shlex
import shutil
import tarfile
import time
from pathlib import Path

from labbuilder.image import outputs
from labbuilder.image.cache import BuiltImage, cached, entry_dir, work_entry
from labbuilder.model.errors import ToolError
from labbuilder.model.recipe import Recipe
from labbuilder.reporting import Progress
from labbuilder.system import accel as accel_mod
from labbuilder.system import guestfs, locks
from labbuilder.system.pause import pause_point
from labbuilder.system.run import DIES_WITH_US, once_more_on, run
from labbuilder.system.sysprep import sysprep


def build(recipe: Recipe, cache: Path, progress: Progress, accel: accel_mod.Accelerator | None = None) -> BuiltImage:
    """Build `recipe` into the cache unless an entry for its hash exists; return it.

    Work happens in a temporary directory renamed into place only on success, so a failed
    or interrupted build leaves no cache entry; the log stays under cache/logs. One build
    of a recipe at a time (a lock per recipe hash): a second waits, then finds the first's
    entry; a build cut short (killed) leaves its work directory, which the next removes.
    """
    hit = cached(cache, recipe)
    if hit:
        progress.info(f"{recipe.name}: cached ({hit.dir})")
        return hit
    final = entry_dir(cache, recipe)
    lock = cache / f".lock-{final.name}"
    with locks.exclusive(lock, lambda: progress.info(f"{recipe.name}: another build of it runs; "
                                                     f"waiting for it (lock {lock})")):
        hit = cached(cache, recipe)
        if hit:
            progress.info(f"{recipe.name}: built by another run meanwhile ({hit.dir})")
            return hit
        # No build of it runs (we hold its lock): what is there was left by one cut short,
        # or is an entry whose image is gone or incomplete.
        for leftover in [*cache.glob(f".build-{final.name}-*"), *([final] if final.exists() else [])]:
            shutil.rmtree(leftover, ignore_errors=True)
        return _build(recipe, cache, final, progress, accel or accel_mod.detect())


def _build(recipe: Recipe, cache: Path, final: Path, progress: Progress, accel: accel_mod.Accelerator) -> BuiltImage:
    progress.info(f"accelerator: {'KVM' if accel.kvm else 'TCG (software emulation)'} — {accel.reason}")
    with work_entry(cache, f".build-{final.name}-{os.getpid()}", final.name) as (work, log):
        pause_point("build-work")
        manifest = _build_in(recipe, work, log, progress, accel)
        outputs.write_manifest(work, manifest)
        work.rename(final)
    return BuiltImage(recipe.name, final, manifest)


def _build_in(recipe: Recipe, work: Path, log: Path, progress: Progress, accel) -> dict:
    rootfs, raw = work / "rootfs", work / "disk.raw"
    with progress.stage("mmdebstrap"):
        bootstrap_retrying(recipe, rootfs, log, progress)
    with progress.stage("disk"):
        guestfs.make_bootable_disk(rootfs, raw, recipe.size_bytes, force_tcg=not accel.kvm, step=progress.step,
                                   log=log)
        shutil.rmtree(rootfs)
    with progress.stage("sysprep"):
        sysprep(raw, recipe.sysprep_operations, log, accel)
    with progress.stage("convert"):
        image, extra = outputs.write_outputs(recipe, raw, work, log)
        raw.unlink()
    with progress.stage("manifest"):
        return outputs.make_manifest(recipe, image, extra, accel, progress.timings)


# dpkg's summary when a package's maintainer script failed. Debian 12's openstack-dashboard
# postinst (`manage.py compress`) failed so in one cold build of gridka-openstack in two
# (a thread race in pyScss, which the recipe now heads off: docs/design.md, Images) and
# passed on the next try: such a failure is tried once more; a package apt cannot find,
# or the same script failing twice, is the recipe's error.
_DPKG_FAILED = "Errors were encountered while processing:"


def bootstrap_retrying(recipe: Recipe, rootfs: Path, log: Path, progress: Progress) -> None:
    """bootstrap, once more when a package's maintainer script failed (_DPKG_FAILED)."""
    once_more_on(_DPKG_FAILED, lambda: bootstrap(recipe, rootfs, log),
                 lambda e: progress.info(f"{recipe.name}: a package's maintainer script failed ({_failed_packages(e)}); "
                                         f"bootstrapping once more (the first try's output is in {log})"))


def _failed_packages(e: ToolError) -> str:
    after = e.output.split(_DPKG_FAILED, 1)[1].splitlines()
    names = []
    for line in after[1:]:
        if not line.startswith(" "):
            break
        names.append(line.strip())
    return ", ".join(names) or "see the log"


def _files_tar(files: list, tar: Path) -> Path:
    """The recipe's files (recipe.FileSpec) as a tar archive to unpack at / of the root:
    owned by root, with their modes; directories it lacks are made as tar makes them."""
    with tarfile.open(tar, "w") as t:
        for f in files:
            data = f.content.encode()
            info = tarfile.TarInfo(f.path.lstrip("/"))
            info.size, info.mode, info.mtime = len(data), f.mode, int(time.time())
            t.addfile(info, io.BytesIO(data))
    return tar


def _hooks(recipe: Recipe, work: Path) -> list[str]:
    """mmdebstrap's hooks that finish the root on the host (mmdebstrap(1), HOOKS: each runs
    with the root directory as $1, its /proc, /sys and /dev mounted): the files before the
    packages (essential hook); after them /etc/fstab, GRUB's defaults, every file (a
    recipe's own fstab wins), then the units enabled, masked and disabled (customize
    hooks). Each command runs chrooted in the root: no symlink there (/var/run -> /run)
    leads out of it, and the root's own systemctl does the units."""
    def unpack(files: list, name: str) -> str:
        return f'chroot "$1" tar -x -f - -C / < {shlex.quote(str(_files_tar(files, work / name)))}'

    hooks = []
    early = [f for f in recipe.files if f.before_packages]
    if early:
        hooks.append("--essential-hook=" + unpack(early, "before-packages.tar"))
    hooks.append("--customize-hook=" + unpack([*guestfs.boot_files(recipe.kernel_cmdline), *recipe.files],
                                              "files.tar"))
    for verb in ("enable", "mask", "disable"):
        if getattr(recipe, verb):
            hooks.append(f'--customize-hook=chroot "$1" systemctl {verb} -- {shlex.join(getattr(recipe, verb))}')
    return hooks


# mmdebstrap's chroot mounts (/proc, /sys, /dev/pts, /dev/shm) in a mount namespace of
# its own, as PID 1 of a PID namespace of its own: when it dies, by any signal, every
# process it started dies with it and the namespace takes its mounts along. Outside it,
# no mount of its is ever seen.
_CONTAINED = [*DIES_WITH_US, "unshare", "--mount", "--propagation", "private", "--pid", "--kill-child",
              "--mount-proc", "--"]


def bootstrap(recipe: Recipe, rootfs: Path, log: Path) -> None:
    """mmdebstrap the recipe's suite and packages into the new directory `rootfs` (what a
    try before left there goes first), in namespaces of its own (see _CONTAINED); its
    temporary directories go beside it."""
    argv = ["mmdebstrap", f"--variant={recipe.variant}", "--mode=root",
            "--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-exclude=/usr/share/man/*",
            "--dpkgopt=path-exclude=/usr/share/locale/*", "--dpkgopt=path-include=/usr/share/locale/locale.alias"]
    if recipe.packages:
        argv.append("--include=" + ",".join(recipe.packages))
    shutil.rmtree(rootfs, ignore_errors=True)
    tmp = rootfs.parent / "tmp"
    tmp.mkdir(exist_ok=True)
    argv += _hooks(recipe, rootfs.parent)
    # `--`: the suite, target and mirror after it are never read as options (mmdebstrap --help).
    run(_CONTAINED + argv + ["--", recipe.suite, str(rootfs), recipe.mirror], log=log, input=b"",
        env={"TMPDIR": str(tmp)})

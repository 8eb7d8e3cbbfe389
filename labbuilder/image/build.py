"""The image pipeline: recipe → rootfs (mmdebstrap) → bootable disk (libguestfs) →
sysprep → compressed qcow2 + manifest, cached by recipe hash."""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from labbuilder import __version__
from labbuilder.model.errors import ImageError, LabError
from labbuilder.model.recipe import Recipe
from labbuilder.progress import Progress
from labbuilder.system import accel as accel_mod
from labbuilder.system import guestfs, locks, qemuimg
from labbuilder.system.pause import pause_point
from labbuilder.system.run import run

CACHE_ENV = "LABBUILDER_IMAGE_CACHE"


def default_cache_dir() -> Path:
    """$LABBUILDER_IMAGE_CACHE, else ~/.cache/labbuilder/images."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "labbuilder" / "images"


@dataclass(frozen=True)
class BuiltImage:
    name: str
    dir: Path
    manifest: dict
    cached: bool = False

    @property
    def image(self) -> Path:
        return self.dir / self.manifest["image"]["file"]


def entry_dir(cache: Path, recipe: Recipe) -> Path:
    return cache / f"{recipe.name}-{recipe.hash()[:12]}"


def cached(cache: Path, recipe: Recipe) -> BuiltImage | None:
    return _entry(entry_dir(cache, recipe))


def _entry(d: Path) -> BuiltImage | None:
    """The cache entry in `d`: an image only if its manifest reads and its file is there
    with the size the manifest gives."""
    try:
        manifest = json.loads((d / "manifest.json").read_text())
        built = BuiltImage(manifest["name"], d, manifest, cached=True)
        complete = built.image.stat().st_size == manifest["image"]["size"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return built if complete else None


def build(recipe: Recipe, cache: Path, progress: Progress, accel: accel_mod.Accel | None = None) -> BuiltImage:
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


def _build(recipe: Recipe, cache: Path, final: Path, progress: Progress, accel: accel_mod.Accel) -> BuiltImage:
    progress.info(f"accelerator: {'KVM' if accel.kvm else 'TCG (software emulation)'} — {accel.reason}")
    work = cache / f".build-{final.name}-{os.getpid()}"
    log = cache / "logs" / f"{final.name}-{datetime.datetime.now():%Y%m%d-%H%M%S}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    pause_point("build-work")
    try:
        manifest = _build_in(recipe, work, log, progress, accel)
        (work / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        work.rename(final)
    except LabError as e:
        if e.log is None:
            e.log = str(log)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return BuiltImage(recipe.name, final, manifest)


def _build_in(recipe: Recipe, work: Path, log: Path, progress: Progress, accel) -> dict:
    tarball, raw, out = work / "rootfs.tar", work / "disk.qcow2", work / f"{recipe.name}.qcow2"
    with progress.stage("mmdebstrap"):
        bootstrap(recipe, tarball, log)
    with progress.stage("disk"):
        spec = guestfs.DiskSpec(recipe.size_bytes, recipe.kernel_cmdline, recipe.files,
                               recipe.enable, recipe.mask, recipe.disable)
        guestfs.make_bootable_disk(tarball, raw, spec, force_tcg=not accel.kvm, step=progress.step)
        tarball.unlink()
    with progress.stage("sysprep"):
        sysprep(raw, recipe.sysprep_operations, log, accel)
    with progress.stage("convert"):
        qemuimg.convert(raw, out, compress=True, log=log)
        extra = _extra_outputs(recipe, raw, work, log)
        raw.unlink()
    with progress.stage("manifest"):
        return make_manifest(recipe, out, extra, accel, progress.timings)


# A child that dies with labbuilder (even by SIGKILL): it must not write into a work
# directory the next build removes, nor hold the mounts it made.
_DIES_WITH_US = ["setpriv", "--pdeathsig", "KILL", "--"]
# mmdebstrap's chroot mounts (/proc, /sys, /dev/pts, /dev/shm) in a mount namespace of
# its own, as PID 1 of a PID namespace of its own: when it dies, by any signal, every
# process it started dies with it and the namespace takes its mounts along. Outside it,
# no mount of its is ever seen.
_CONTAINED = [*_DIES_WITH_US, "unshare", "--mount", "--propagation", "private", "--pid", "--kill-child",
              "--mount-proc", "--"]


def bootstrap(recipe: Recipe, tarball: Path, log: Path) -> None:
    """mmdebstrap the recipe's suite and packages into a rootfs tarball, in namespaces of
    its own (see _CONTAINED); its temporary directories go beside the tarball."""
    argv = ["mmdebstrap", f"--variant={recipe.variant}", "--mode=root",
            "--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-exclude=/usr/share/man/*",
            "--dpkgopt=path-exclude=/usr/share/locale/*", "--dpkgopt=path-include=/usr/share/locale/locale.alias"]
    if recipe.packages:
        argv.append("--include=" + ",".join(recipe.packages))
    tmp = tarball.parent / "tmp"
    tmp.mkdir(exist_ok=True)
    # `--`: the suite, target and mirror after it are never read as options (mmdebstrap --help).
    run(_CONTAINED + argv + ["--", recipe.suite, str(tarball), recipe.mirror], log=log, input=b"",
        env={"TMPDIR": str(tmp)})


def sysprep(disk: Path, operations: str, log: Path, accel) -> None:
    """virt-sysprep once per base image (clones get identity from their NoCloud seed)."""
    env = {"LIBGUESTFS_BACKEND": "direct", **accel.guestfs_env()}
    run(_DIES_WITH_US + ["virt-sysprep", "--format", "qcow2", "-a", str(disk), "--operations", operations],
        log=log, env=env)


def _extra_outputs(recipe: Recipe, raw: Path, work: Path, log: Path) -> list[Path]:
    extra = []
    if "raw" in recipe.outputs:
        extra.append(work / f"{recipe.name}.raw")
        qemuimg.convert(raw, extra[-1], fmt="raw", log=log)
    if "vagrant" in recipe.outputs:
        extra.append(vagrant_box(work / f"{recipe.name}.qcow2", work / f"{recipe.name}.box"))
    return extra


# The box's own Vagrantfile: what vagrant-libvirt needs to boot this image; a user's
# Vagrantfile overrides any of it.
_BOX_VAGRANTFILE = """\
Vagrant.configure("2") do |config|
  config.vm.synced_folder ".", "/vagrant", disabled: true
  config.vm.provider :libvirt do |libvirt|
    libvirt.disk_bus = "virtio"
    libvirt.nic_model_type = "virtio"
    libvirt.video_type = "vga"  # the image's GRUB hangs without a video device
  end
end
"""


def vagrant_box(qcow2: Path, box: Path) -> Path:
    """A vagrant-libvirt box (tar.gz: box.img, metadata.json, Vagrantfile) of `qcow2`."""
    import io
    import tarfile

    virtual_gib = math.ceil(qemuimg.info(qcow2)["virtual-size"] / 1024 ** 3)
    members = {"metadata.json": json.dumps({"provider": "libvirt", "format": "qcow2",
                                            "virtual_size": virtual_gib}).encode(),
               "Vagrantfile": _BOX_VAGRANTFILE.encode()}
    with tarfile.open(box, "w:gz", compresslevel=1) as tar:  # the qcow2 is compressed already
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
        tar.add(qcow2, arcname="box.img")
    return box


def file_digests(path: Path) -> dict[str, str]:
    sha, md5 = hashlib.sha256(), hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            sha.update(chunk)
            md5.update(chunk)
    return {"sha256": sha.hexdigest(), "md5": md5.hexdigest()}


def _file_entry(path: Path) -> dict:
    if path.suffix == ".box":
        return {"file": path.name, "format": "vagrant-libvirt box", "size": path.stat().st_size,
                **file_digests(path)}
    info = qemuimg.info(path)
    return {"file": path.name, "format": info["format"], "virtual_size": info["virtual-size"],
            "size": path.stat().st_size, **file_digests(path)}


def make_manifest(recipe: Recipe, image: Path, extra: list[Path], accel, timings: dict) -> dict:
    entry = _file_entry(image)
    return {
        "name": recipe.name,
        "description": recipe.description,
        "recipe": recipe.path,
        "recipe_hash": recipe.hash(),
        "extends": recipe.extends or None,
        "built_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "labbuilder_version": __version__,
        "accelerator": accel.domain_type,
        "image": entry,
        "outputs": [entry] + [_file_entry(p) for p in extra],
        "glance": {
            "disk_format": entry["format"],
            "container_format": "bare",
            "min_disk": math.ceil(entry["virtual_size"] / 1024 ** 3),
            "min_ram": recipe.min_ram_mb,
            "os_distro": recipe.distro,
            "os_version": recipe.os_version,
            "checksum": entry["md5"],
            "os_hash_algo": "sha256",
            "os_hash_value": entry["sha256"],
        },
        "stage_seconds": dict(timings),
    }


def list_images(cache: Path) -> list[BuiltImage]:
    """Every cache entry, newest first; never a build's work directory (.build-*), which
    holds a manifest in the moment before it is renamed into place."""
    found = []
    for manifest in cache.glob("*/manifest.json"):
        if manifest.parent.name.startswith("."):
            continue
        try:
            data = json.loads(manifest.read_text())
        except (OSError, ValueError):
            continue
        found.append(BuiltImage(data["name"], manifest.parent, data, cached=True))
    return sorted(found, key=lambda b: b.manifest.get("built_at", ""), reverse=True)


def find_image(cache: Path, name: str) -> BuiltImage:
    """The newest entry whose recipe name or directory name is `name`."""
    for built in list_images(cache):
        if name in (built.name, built.dir.name):
            return built
    known = ", ".join(sorted({b.name for b in list_images(cache)})) or "none"
    raise ImageError(f"no built image named {name!r} in {cache} (built: {known}); "
                     f"build it with: labbuilder image build images/{name}.yaml")

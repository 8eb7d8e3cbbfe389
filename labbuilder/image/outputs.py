"""What a build leaves in its cache entry: the compressed qcow2, the extra outputs a
recipe asks for (raw, a vagrant-libvirt box), and manifest.json with sizes, checksums
and the fields a Glance upload needs."""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import math
import tarfile
from pathlib import Path

from labbuilder import __version__
from labbuilder.model.recipe import Recipe
from labbuilder.system import qemuimg
from labbuilder.system.accel import Accelerator


def write_outputs(recipe: Recipe, raw: Path, work: Path, log: Path) -> tuple[Path, list[Path]]:
    """The compressed qcow2 of the disk `raw`, and the recipe's other outputs, in `work`."""
    image = work / f"{recipe.name}.qcow2"
    qemuimg.convert(raw, image, compress=True, src_fmt="raw", log=log)
    extra = []
    if "raw" in recipe.outputs:
        extra.append(work / f"{recipe.name}.raw")
        qemuimg.convert(raw, extra[-1], fmt="raw", src_fmt="raw", log=log)
    if "vagrant" in recipe.outputs:
        extra.append(vagrant_box(image, work / f"{recipe.name}.box"))
    return image, extra


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


def file_entry(path: Path) -> dict:
    """An output's manifest entry: file, format, sizes, checksums."""
    if path.suffix == ".box":
        return {"file": path.name, "format": "vagrant-libvirt box", "size": path.stat().st_size,
                **file_digests(path)}
    info = qemuimg.info(path)
    return {"file": path.name, "format": info["format"], "virtual_size": info["virtual-size"],
            "size": path.stat().st_size, **file_digests(path)}


def make_manifest(recipe: Recipe, image: Path, extra: list[Path], accel: Accelerator, timings: dict) -> dict:
    entry = file_entry(image)
    return {
        "name": recipe.name,
        "description": recipe.description,
        "recipe": recipe.path,
        "recipe_hash": recipe.hash(),
        "extends": recipe.extends or None,
        **_made(entry, [entry] + [file_entry(p) for p in extra], accel, timings),
        "glance": _glance(entry, recipe.min_ram_mb, recipe.distro, recipe.os_version),
    }


def captured_manifest(name: str, image: Path, base: dict, source: dict, accel: Accelerator, timings: dict) -> dict:
    """The manifest of a node captured as image `name`: a built image's, with `captured`
    (where from) instead of a recipe, and the Glance fields of its base image's manifest
    `base` (min_ram, os_*) for the new file."""
    entry = file_entry(image)
    glance = base.get("glance", {})
    where = f"{source['lab']} team {source['team']} node {source['node']}"
    return {
        "name": name,
        "description": f"{where}" + (f" at checkpoint {source['checkpoint']}" if source.get("checkpoint") else "")
                       + f", captured from {base['name']}",
        "recipe": None,
        "recipe_hash": None,
        "extends": base["name"],
        "captured": source,
        **_made(entry, [entry], accel, timings),
        "glance": _glance(entry, glance.get("min_ram", 0), glance.get("os_distro"), glance.get("os_version")),
    }


def _made(entry: dict, files: list[dict], accel: Accelerator, timings: dict) -> dict:
    return {
        "built_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "labbuilder_version": __version__,
        "accelerator": accel.domain_type,
        "image": entry,
        "outputs": files,
        "stage_seconds": dict(timings),
    }


def _glance(entry: dict, min_ram: int, distro, os_version) -> dict:
    """What a Glance upload of the image `entry` is given: formats, minimums, checksums."""
    return {
        "disk_format": entry["format"],
        "container_format": "bare",
        "min_disk": math.ceil(entry["virtual_size"] / 1024 ** 3),
        "min_ram": min_ram,
        "os_distro": distro,
        "os_version": os_version,
        "checksum": entry["md5"],
        "os_hash_algo": "sha256",
        "os_hash_value": entry["sha256"],
    }


def write_manifest(work: Path, manifest: dict) -> None:
    (work / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")

"""What `image upload` asks Glance for, and how it judges what Glance stored (no cloud:
the real upload is in tests/test_cloud_vm.py)."""

import json
from pathlib import Path

import pytest

from labbuilder.image.cache import BuiltImage
from labbuilder.lab import glance
from labbuilder.model.errors import ToolError
from labbuilder.reporting import Progress

MANIFEST = {"image": {"file": "x.qcow2", "md5": "m" * 32, "sha256": "s" * 64},
            "glance": {"disk_format": "qcow2", "container_format": "bare", "min_disk": 3, "min_ram": 512,
                       "os_distro": "debian", "os_version": "12"}}
BUILT = BuiltImage("debian-12", Path("/cache/debian-12-abc"), MANIFEST)


def test_create_passes_the_manifests_glance_fields():
    assert glance.create_args(BUILT, "deb", "/var/tmp/u.qcow2") == [
        "openstack", "image", "create", "-f", "json", "--file", "/var/tmp/u.qcow2", "--disk-format", "qcow2",
        "--container-format", "bare", "--min-disk", "3", "--min-ram", "512",
        "--property", "os_distro=debian", "--property", "os_version=12", "deb"]


def test_matching_digests_pass_and_a_different_one_is_named():
    good = {"checksum": "m" * 32, "os_hash_algo": "sha256", "os_hash_value": "s" * 64}
    assert glance.verify(BUILT, good) == []
    bad = {**good, "os_hash_value": "t" * 64}
    assert glance.verify(BUILT, bad) == [f"os_hash_value {'t' * 64} is not the manifest's SHA-256 {'s' * 64}"]
    assert glance.verify(BUILT, {**good, "checksum": "x"})[0].startswith("checksum x is not")


def test_an_image_created_but_not_verified_is_deleted_again(tmp_path, monkeypatch):
    """`image show` after the create fails (it timed out on a busy TCG node): the image
    Glance holds is deleted before the error goes up, and the copied file is removed."""
    (tmp_path / "x.qcow2").write_bytes(b"qcow")
    built = BuiltImage("debian-12", tmp_path, MANIFEST)
    ran = []

    class Done:
        stdout = json.dumps({"id": "img-1"})

    def ssh_run(target, command, check=True, timeout=120):
        ran.append(command[4:7] if command[0] == "bash" else command)
        if command[4:7] == ["openstack", "image", "show"]:
            raise ToolError(command, -1, "timed out after 900s")
        return Done()

    monkeypatch.setattr(glance.ssh, "copy_to", lambda target, path, remote: None)
    monkeypatch.setattr(glance.ssh, "ssh_run", ssh_run)
    with pytest.raises(ToolError):
        glance.upload(None, "image-node", built, "deb", Progress())
    assert ran == [["openstack", "image", "create"], ["openstack", "image", "show"],
                   ["openstack", "image", "delete"], ["rm", "-f", "/var/tmp/labbuilder-upload-deb.qcow2"]]

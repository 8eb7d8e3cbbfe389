"""What `image upload` asks Glance for, and how it judges what Glance stored (no cloud:
the real upload is in tests/test_cloud_vm.py)."""

from pathlib import Path

from labbuilder.image.cache import BuiltImage
from labbuilder.lab import glance

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

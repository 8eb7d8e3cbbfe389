"""The image commands as a user runs them, on the real image built by the pipeline."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest
from click.testing import CliRunner
from conftest import REPO

from labbuilder.cli import main
from labbuilder.system import accel

pytestmark = pytest.mark.image


def _sha256(path):
    return subprocess.run(["sha256sum", str(path)], capture_output=True, text=True, check=True).stdout.split()[0]


def _entry_files(built):
    """Every path in the cache that belongs to `built`'s entry (its directory, a work
    directory, a build log), with its modification time."""
    cache, name = built.dir.parent, built.dir.name
    return {p: p.stat().st_mtime_ns for p in cache.rglob("*") if name in str(p.relative_to(cache))}


def test_second_build_is_a_cache_hit_that_touches_nothing(base_image):
    """A hit reads the manifest and stops: no accelerator probe, no log, no work directory,
    nothing rewritten. (How fast that is: bench/image_build.py, "cached".)"""
    cache = base_image.dir.parent
    before = _entry_files(base_image)
    proc = subprocess.run([sys.executable, "-m", "labbuilder.cli", "image", "build",
                           str(REPO / "images" / "debian-12.yaml"), "--cache", str(cache)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert f"debian-12: cached ({base_image.dir})" in proc.stderr
    assert "accelerator" not in proc.stderr
    assert _entry_files(base_image) == before


def test_info_sha256_agrees_with_sha256sum(base_image):
    result = CliRunner().invoke(main, ["image", "info", "debian-12", "--json",
                                       "--cache", str(base_image.dir.parent)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["manifest"]["image"]["sha256"] == _sha256(base_image.image)
    assert data["qemu_img_info"]["format"] == "qcow2"
    glance = data["manifest"]["glance"]
    assert glance["disk_format"] == "qcow2" and glance["container_format"] == "bare"
    assert glance["min_disk"] == 3 and glance["os_distro"] == "debian"
    assert glance["checksum"] == hashlib.md5(base_image.image.read_bytes()).hexdigest()


def test_list_shows_the_image(base_image):
    result = CliRunner().invoke(main, ["image", "list", "--json", "--cache", str(base_image.dir.parent)])
    assert result.exit_code == 0
    assert any(i["name"] == "debian-12" and i["path"] == str(base_image.image) for i in json.loads(result.output))


def test_info_of_unknown_image_is_one_clear_line(tmp_path):
    result = CliRunner().invoke(main, ["image", "info", "nosuch", "--cache", str(tmp_path)])
    assert result.exit_code == 1
    assert "no built image named 'nosuch'" in result.output
    assert "Traceback" not in result.output


def test_debug_shows_traceback(tmp_path):
    result = CliRunner().invoke(main, ["--debug", "image", "info", "nosuch", "--cache", str(tmp_path)])
    assert result.exit_code != 0 and result.exception is not None


def test_version():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and "labbuilder" in result.output


def test_accelerator_detection_matches_a_real_guest_run():
    found = accel.detect()
    assert found.domain_type in ("kvm", "qemu") and found.reason
    # The cached answer is the probe's answer.
    assert accel._probe(6.0).domain_type == found.domain_type

"""The image commands as a user runs them: on the real image built by the pipeline (marked
`image`), and their errors and options without one."""

from __future__ import annotations

import hashlib
import importlib
import json
import subprocess
import sys
import traceback

import pytest
from click.testing import CliRunner
from conftest import REPO

from labbuilder.cli import main
from labbuilder.model.errors import LabError
from labbuilder.system import accel


def _sha256(path):
    return subprocess.run(["sha256sum", str(path)], capture_output=True, text=True, check=True).stdout.split()[0]


def _entry_files(built):
    """Every path in the cache that belongs to `built`'s entry (its directory, a work
    directory, a build log), with its modification time."""
    cache, name = built.dir.parent, built.dir.name
    return {p: p.stat().st_mtime_ns for p in cache.rglob("*") if name in str(p.relative_to(cache))}


@pytest.mark.image
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


@pytest.mark.image
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


@pytest.mark.image
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
    """Without --debug the error ends in one line and exit status 1; with it the error itself
    leaves the command, so Python prints its traceback."""
    args = ["image", "info", "nosuch", "--cache", str(tmp_path)]
    plain = CliRunner().invoke(main, args)
    assert plain.exit_code == 1 and isinstance(plain.exception, SystemExit)
    debug = CliRunner().invoke(main, ["--debug", *args])
    assert isinstance(debug.exception, LabError) and "no built image named 'nosuch'" in str(debug.exception)
    assert "Traceback (most recent call last)" in "".join(traceback.format_exception(*debug.exc_info))


def test_the_image_commands_are_listed_and_load_when_asked_for():
    """`labbuilder --help` lists the commands cli/__init__.LabGroup.LAZY loads on use, and
    each of those modules adds the command it is listed for."""
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0 and all(f"  {name} " in result.output for name in main.LAZY)
    for name, module in main.LAZY.items():
        importlib.import_module(module)
        assert name in main.commands


def test_version():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and "labbuilder" in result.output


@pytest.mark.vm  # the probe boots the host's kernel in QEMU (where /dev/kvm is usable)
def test_accelerator_detection_matches_a_real_guest_run():
    found = accel.detect()
    assert found.domain_type in ("kvm", "qemu") and found.reason
    # The cached answer is the probe's answer.
    assert accel._probe(6.0).domain_type == found.domain_type


@pytest.mark.subprocess(sys.executable)
@pytest.mark.parametrize("name, said", [
    ("Node 4", "error: --name 'Node 4' must match [a-z0-9-] (at most 63 characters)"),
    ("../up", "error: --name '../up' must match [a-z0-9-] (at most 63 characters)"),
    ("debian-12", "error: --name 'debian-12' is an image built from images/debian-12.yaml: name the capture otherwise"),
])
def test_capture_refuses_a_bad_name_or_a_built_images_in_one_line_before_reading_a_host(tmp_path, name, said):
    import os

    from conftest import fake_image_entry

    entry = fake_image_entry(tmp_path / "cache", "debian-12")
    manifest = json.loads((entry / "manifest.json").read_text())
    (entry / "manifest.json").write_text(json.dumps({**manifest, "recipe": "images/debian-12.yaml",
                                                     "recipe_hash": "cd" * 32}))
    proc = subprocess.run([sys.executable, "-m", "labbuilder.cli", "image", "capture", "topologies/demo.yaml", "alpha",
                           "--name", name, "--cache", str(tmp_path / "cache")], cwd=REPO, capture_output=True,
                          text=True, env={**os.environ, "LABBUILDER_STATE": str(tmp_path / "state")}, timeout=60)
    assert (proc.returncode, proc.stdout, proc.stderr) == (1, "", said + "\n")
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [entry.name]
    assert not (tmp_path / "state").exists()

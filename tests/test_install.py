"""The project installed as a user installs it: `pip install .` (not editable) into a fresh
venv, then run from another working directory, so the templates must come from the
installed package, not from the checkout."""

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.image  # plan needs the built debian-12 image (cached)


def test_a_non_editable_install_plans_the_demo_lab_from_another_directory(tmp_path, base_image, test_host):
    venv = tmp_path / "venv"
    # --system-site-packages: libvirt's Python binding comes from Debian, as in the README.
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(REPO)], check=True, cwd=tmp_path, timeout=900)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"),
           "LABBUILDER_STATE": str(tmp_path / "state"), "LABBUILDER_IMAGE_CACHE": str(base_image.dir.parent)}
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import labbuilder; print(labbuilder.__file__)"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(venv)), where
    subprocess.run([str(venv / "bin" / "python"), "-c", "from labbuilder.lab import seed; seed.BASE_USER_DATA.read_text()"],
                   cwd=elsewhere, env=env, check=True)  # the NoCloud template, used by up
    proc = subprocess.run([str(venv / "bin" / "labbuilder"), "plan", str(REPO / "topologies" / "demo.yaml"),
                           "--connect", test_host, "--json"],
                          cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    actions = {(a["verb"], a["kind"], a["name"]) for a in json.loads(proc.stdout)["actions"]}
    assert {("create", "domain", "demo-t1-alpha"), ("create", "network", "demo-t1-lan")} <= actions

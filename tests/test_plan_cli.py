"""`labbuilder plan` changes nothing: where no libvirtd runs it plans against the private
one `up` would start, without starting it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO

# plan needs the built image; accelerator detection (a local host) may boot the host kernel in QEMU
pytestmark = [pytest.mark.image, pytest.mark.vm]


def test_plan_without_a_running_libvirtd_starts_nothing(tmp_path, base_image):
    state = tmp_path / "state"
    env = {**os.environ, "LABBUILDER_STATE": str(state)}
    proc = subprocess.run([sys.executable, "-m", "labbuilder.cli", "plan", "topologies/demo.yaml", "--private",
                           "--json"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    actions = {(a["verb"], a["kind"], a["name"]) for a in json.loads(proc.stdout)["actions"]}
    assert ("create", "domain", "demo-t1-alpha") in actions and ("create", "pool", "demo-t1-pool") in actions
    assert "not started yet" in proc.stderr
    assert not state.exists(), "plan created labbuilder state (a private libvirtd?)"

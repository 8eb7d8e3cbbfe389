"""`labbuilder check` and `configure --check` on a real guest: a one-node copy of the demo
lab, its role `common` and that role's checks (topologies/roles/demo/common/checks/)."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml
from conftest import REPO, lb

from labbuilder.system import virt

pytestmark = [pytest.mark.vm, pytest.mark.image]



@pytest.fixture(scope="module")
def topo(tmp_path_factory, private_libvirtd, base_image):
    """The demo lab cut to node alpha (team 31), with its own copy of the roles; up, then down."""
    root = tmp_path_factory.mktemp("checks")
    shutil.copytree(REPO / "topologies" / "roles" / "demo", root / "roles" / "demo")
    data = yaml.safe_load((REPO / "topologies" / "demo.yaml").read_text())
    data["nodes"] = {"alpha": data["nodes"]["alpha"]}
    path = root / "demo.yaml"
    path.write_text(yaml.safe_dump(data))
    conn = virt.connect(private_libvirtd.uri)  # a network labbuilder does not own keeps the daemon
    virt.define_network(conn, "<network><name>keep-checks</name><bridge name='keepck0'/></network>")
    lb("up", path, "--team", "31", "--check")
    yield path
    lb("down", path, "--team", "31", check=False)
    virt.remove_network(conn, "keep-checks")
    conn.close()


def test_check_passes_on_a_configured_lab(topo):
    proc = lb("check", topo, "--team", "31", "--json")
    results = json.loads(proc.stdout)
    assert [(r["role"], r["node"], r["check"], r["passed"]) for r in results] == [
        ("common", "alpha", "10-names.sh", True)]
    assert "all 1 lab nodes resolve; motd names alpha" in results[0]["tail"]


def test_a_failing_check_names_role_node_check_and_output(topo):
    broken = topo.parent / "roles" / "demo" / "common" / "checks" / "20-broken.sh"
    broken.write_text("echo 'looked for /etc/nothing on {{ node.name }}'\ntest -e /etc/nothing\n")
    try:
        proc = lb("check", topo, "--team", "31", check=False)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "1 passed, 1 failed" in proc.stdout
        assert "common / alpha / 20-broken.sh" in proc.stdout
        assert "| looked for /etc/nothing on alpha" in proc.stdout
        again = lb("configure", topo, "--team", "31", "--only", "common", "--check", check=False)
        assert again.returncode == 1
        assert "check 20-broken.sh of role common failed on alpha (exit status 1)" in again.stderr
    finally:
        broken.unlink()

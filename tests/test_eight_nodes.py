"""Eight nodes at once on libvirtd's stock request limits (docs/design.md: connections
per thread): an `up` of 8 once hung sharing one connection, as libvirtd serves at most
`max_client_requests` (5 by default) calls of one connection at once."""

from __future__ import annotations

import json
import time

import pytest
import yaml
from conftest import kept_daemon, lb
from pause_runs import cmdlines

from labbuilder.system import virt

pytestmark = pytest.mark.vm

TEAM = "42"
NODES = [f"n{i}" for i in range(8)]
# What sets libvirtd's limits on requests, workers and clients: none of it may be in the
# private daemon's libvirtd.conf, so it runs on libvirtd's compiled-in defaults, as a lab host does.
LIMITS = ("max_client_requests", "max_requests", "max_workers", "min_workers", "prio_workers", "max_clients",
          "max_queued_clients", "max_anonymous_clients", "keepalive_required")


@pytest.fixture
def conn(private_libvirtd, base_image):
    with kept_daemon(private_libvirtd, "keep-eight") as c:
        yield c


def test_eight_nodes_come_up_at_once_on_libvirtds_stock_request_limit(conn, private_libvirtd, tmp_path):
    """`up --no-wait` defines and starts 8 domains from 8 threads against the private
    libvirtd, whose configuration leaves every request limit at libvirtd's default;
    it ends (no hang: the subprocess timeout fails the test), and all 8 run. Then
    `status` probes the 8 at once, and `down` removes all of it.

    The guests are not waited for on SSH: booting 8 TCG guests to SSH would cost CI
    several minutes, while what ran into the limit was the orchestration, the burst of
    libvirt calls from 8 threads (define, volumes, upload, start), which this runs in
    full. (`make acceptance` and bench/lifecycle.py take 8 nodes to SSH.)"""
    conf = (private_libvirtd.state_dir / "etc" / "libvirtd.conf").read_text()
    assert "auth_unix_rw" in conf  # the daemon's own file, as labbuilder wrote it
    set_keys = {line.split("=")[0].strip() for line in conf.splitlines() if "=" in line and not line.startswith("#")}
    assert set_keys.isdisjoint(LIMITS), set_keys & set(LIMITS)

    topo = tmp_path / "eight.yaml"
    topo.write_text(yaml.safe_dump({
        "lab": "eight", "image": "debian-12", "packages": "none",
        "networks": {"lan": {"mode": "nat", "subnet": "192.168.171.0/24", "per_team": False,
                             "dhcp": ["192.168.171.100", "192.168.171.200"]}},
        "nodes": {n: {"memory": 256, "nics": [{"network": "lan", "ip": f"192.168.171.{10 + i}"}]}
                  for i, n in enumerate(NODES)}}))
    try:
        lb("up", topo, "--team", TEAM, "--no-wait", "--no-config", timeout=900)
        assert {n: virt.domain_state(conn, f"eight-t{TEAM}-{n}") for n in NODES} == {n: "running" for n in NODES}
        status = json.loads(lb("status", topo, "--team", TEAM, "--json", timeout=600).stdout)
        assert [(n["node"], n["state"]) for n in status["nodes"]] == [(n, "running") for n in NODES]
    finally:
        lb("down", topo, "--team", TEAM, timeout=600)
    assert virt.owned_objects(conn, "eight") == []
    assert f"eight-t{TEAM}-pool" not in virt.pool_names(conn)
    deadline = time.monotonic() + 15  # libvirt ends them as it removes their domains
    while cmdlines("qemu-system", f"guest=eight-t{TEAM}-") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert cmdlines("qemu-system", f"guest=eight-t{TEAM}-") == []

"""The guests' package source on a real guest: a one-node copy of the demo lab with the
default `packages: cache` installs a Debian package through the lab host's apt-cacher-ng,
reached at its NAT gateway across the private libvirtd's network namespace."""

from __future__ import annotations

import ipaddress
import json

import pytest
import yaml
from conftest import REPO, install_through_cache, lb

from labbuilder.system import virt

pytestmark = [pytest.mark.vm, pytest.mark.image]
TEAM = "32"



@pytest.fixture(scope="module")
def topo(tmp_path_factory, private_libvirtd, base_image):
    root = tmp_path_factory.mktemp("packages")
    data = yaml.safe_load((REPO / "topologies" / "demo.yaml").read_text())
    data["nodes"] = {"alpha": data["nodes"]["alpha"]}
    data["roles"] = []
    data["nodes"]["alpha"]["roles"] = []
    path = root / "demo.yaml"
    path.write_text(yaml.safe_dump(data))
    conn = virt.connect(private_libvirtd.uri)  # a network labbuilder does not own keeps the daemon
    virt.define_network(conn, "<network><name>keep-packages</name><bridge name='keeppk0'/></network>")
    up = lb("up", path, "--team", TEAM)
    yield path, up
    lb("down", path, "--team", TEAM, check=False)
    virt.remove_network(conn, "keep-packages")
    conn.close()


def _proxy(path) -> str:
    """The proxy `plan --json` gives alpha, checked against its lan network's gateway."""
    plan = json.loads(lb("plan", path, "--team", TEAM, "--json").stdout)
    lan = next(n for n in plan["networks"] if n["network"] == "lan")
    gateway = ipaddress.ip_network(lan["subnet"]).network_address + 1
    assert plan["packages"]["proxies"]["alpha"] == f"http://{gateway}:3142"
    return plan["packages"]["proxies"]["alpha"]


def test_plan_names_the_proxy_each_node_gets(topo):
    path, _ = topo
    _proxy(path)
    assert "packages: cache — labbuilder's apt-cacher-ng on this machine" in lb("plan", path, "--team", TEAM).stdout


def test_a_guest_installs_a_package_through_the_hosts_cache(topo, lab_state):
    path, up = topo
    assert "package cache: apt-cacher-ng on 127.0.0.1:3142" in up.stderr + up.stdout
    conf = lb("ssh", path, "alpha", "--team", TEAM, "--", "cat", "/etc/apt/apt.conf.d/90labbuilder-proxy").stdout
    assert conf.strip() == f'Acquire::http::Proxy "{_proxy(path)}";'
    install_through_cache(lambda *argv: lb("ssh", path, "alpha", "--team", TEAM, "--", *argv), lab_state, "hello")
    said = lb("ssh", path, "alpha", "--team", TEAM, "--", "hello").stdout
    assert said.strip() == "Hello, world!"

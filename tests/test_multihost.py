"""A two-host team on one machine: two private libvirtds (host-a: the one `--private`
uses, host-b: an inventory's `private:` one), each network namespace with a bridge
lbjoin0, the two bridges linked by a veth pair as a cable or VLAN links two lab hosts.
The inventory joins the isolated network `internal` to lbjoin0 on both hosts: a1 on
host-a reaches b1 on host-b over it, and `down` removes the lab's libvirt objects on
both daemons but leaves the host bridges alone. Driven as a user drives it: the
`labbuilder` command in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import lb

from labbuilder.system import privatelibvirtd, virt
from labbuilder.system.run import run

pytestmark = [pytest.mark.vm, pytest.mark.image]

BRIDGE = "lbjoin0"
TOPOLOGY = """\
lab: multihost
description: one node on each of two hosts, an isolated network joined between them
image: debian-12
hosts:
  host-a: {}
  host-b: {}
networks:
  nat:
    mode: nat
    subnet: 192.168.150.0/24
    dhcp: [192.168.150.100, 192.168.150.200]
  internal:
    mode: isolated
    subnet: 10.0.0.0/24
    per_team: false
nodes:
  a1:
    host: host-a
    memory: 256
    nics:
      - network: nat
      - network: internal
        ip: 10.0.0.3
  b1:
    host: host-b
    memory: 256
    nics:
      - network: nat
      - network: internal
        ip: 10.0.0.20
"""
# host-a lands where it would without the inventory (the private libvirtd of --private);
# host-b on a private libvirtd of its own, under hostb/ next to this file.
INVENTORY = f"""\
hosts:
  host-a:
    bridges: {{internal: {BRIDGE}}}
  host-b:
    private: hostb
    bridges: {{internal: {BRIDGE}}}
"""


@dataclass(frozen=True)
class TwoHosts:
    state: Path  # $LABBUILDER_STATE of every labbuilder run here
    a: privatelibvirtd.PrivateDaemon
    b: privatelibvirtd.PrivateDaemon

    @property
    def topology(self) -> str:
        return str(self.state / "multihost.yaml")

    def lb(self, *args, check=True, timeout=1800) -> subprocess.CompletedProcess:
        return lb(args[0], "--hosts", self.state / "hosts.yaml", *args[1:], check=check, timeout=timeout,
                  env={"LABBUILDER_STATE": str(self.state)})

    def on(self, node: str, command: str, check=True) -> subprocess.CompletedProcess:
        return self.lb("ssh", self.topology, node, "--", command, check=check)


def _link_with_a_bridge_each(a: privatelibvirtd.PrivateDaemon, b: privatelibvirtd.PrivateDaemon) -> None:
    """lbjoin0 in each daemon's network namespace; a veth pair between them, one end
    enslaved to each bridge: the hosts' "cable"."""
    for daemon in (a, b):
        run([*daemon.nsenter_argv(), "ip", "link", "add", BRIDGE, "type", "bridge"])
        run([*daemon.nsenter_argv(), "ip", "link", "set", BRIDGE, "up"])
    run([*a.nsenter_argv(), "ip", "link", "add", "lbva", "type", "veth", "peer", "name", "lbvb", "netns", str(b.pid)])
    for daemon, end in ((a, "lbva"), (b, "lbvb")):
        run([*daemon.nsenter_argv(), "ip", "link", "set", end, "master", BRIDGE])
        run([*daemon.nsenter_argv(), "ip", "link", "set", end, "up"])


def _processes_in(netns: set[str]) -> list[str]:
    """'pid name' of every process still in one of the network namespaces `netns`."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and os.readlink(entry / "ns" / "net") in netns:
                found.append(f"{entry.name} {(entry / 'comm').read_text().strip()}")
        except OSError:
            continue  # gone meanwhile
    return found


@pytest.fixture(scope="module")
def hosts(base_image):
    """Both daemons started and linked; afterwards every domain and network removed, both
    daemons stopped, and nothing (qemu, dnsmasq, libvirtd) left in their namespaces."""
    if os.geteuid() != 0:
        pytest.skip("a private libvirtd needs root (unshare, mounts, bridges)")
    if shutil.which("libvirtd") is None:
        pytest.skip("libvirtd is not installed")
    state = Path(tempfile.mkdtemp(prefix="lbmulti-"))
    daemons, netns = [], set()
    try:
        for where in (state / "libvirtd", state / "hostb"):
            daemons.append(privatelibvirtd.ensure(where))
            netns.add(os.readlink(daemons[-1].netns))
        _link_with_a_bridge_each(*daemons)
        (state / "multihost.yaml").write_text(TOPOLOGY)
        (state / "hosts.yaml").write_text(INVENTORY)
        yield TwoHosts(state, *daemons)
    finally:
        for daemon in daemons:
            privatelibvirtd.stop(daemon)
        left = _processes_in(netns)
        shutil.rmtree(state, ignore_errors=True)
        assert not left, f"left running in the private libvirtds' namespaces: {left}"


@pytest.fixture(scope="module")
def conns(hosts):
    a, b = virt.connect(hosts.a.uri), virt.connect(hosts.b.uri)
    yield {"host-a": a, "host-b": b}
    a.close()
    b.close()


@pytest.fixture(scope="module")
def lab(hosts, conns):
    return hosts.lb("up", hosts.topology)


def test_up_runs_each_node_on_its_own_host_and_both_answer(hosts, conns, lab):
    assert virt.domain_state(conns["host-a"], "multihost-t1-a1") == "running"
    assert virt.domain_state(conns["host-b"], "multihost-t1-b1") == "running"
    assert virt.lookup_domain(conns["host-a"], "multihost-t1-b1") is None
    assert virt.lookup_domain(conns["host-b"], "multihost-t1-a1") is None
    data = json.loads(hosts.lb("status", hosts.topology, "--json").stdout)
    assert [(n["node"], n["state"], n["ssh"]) for n in data["nodes"]] == [("a1", "running", True),
                                                                          ("b1", "running", True)]
    internal = [n for n in data["networks"] if n["network"] == "internal"]
    assert len(internal) == 2 and all(n["active"] and n["bridge"] == BRIDGE for n in internal)


def test_plan_shows_internal_as_a_bridge_network_on_each_host(hosts, lab):
    data = json.loads(hosts.lb("plan", hosts.topology, "--json").stdout)
    assert data["actions"] == []
    internal = [(n["host"], n["mode"], n["bridge"]) for n in data["networks"] if n["network"] == "internal"]
    assert sorted(internal) == sorted([(hosts.a.uri, "bridge", BRIDGE), (hosts.b.uri, "bridge", BRIDGE)])


def test_the_nodes_set_their_internal_addresses_themselves(hosts, lab):
    assert "inet 10.0.0.3/24" in hosts.on("a1", "ip -4 -o addr show eth1").stdout
    assert "inet 10.0.0.20/24" in hosts.on("b1", "ip -4 -o addr show eth1").stdout


def test_a1_reaches_b1_over_the_joined_segments(hosts, lab):
    """The user's check that the segments are joined. debian-12 has no ping (mmdebstrap
    variant apt, and the recipe does not add iputils-ping): a TCP handshake with b1's
    sshd over eth1 instead, both ways, and a1 learns b1's eth1 MAC on that link."""
    for node, peer in (("a1", "10.0.0.20"), ("b1", "10.0.0.3")):
        reach = hosts.on(node, f"timeout 10 bash -c 'echo > /dev/tcp/{peer}/22'", check=False)
        assert reach.returncode == 0, f"{node} → {peer}:22: {reach.stderr}"
    inventory = yaml.safe_load((hosts.state / "multihost-t1" / "inventory.yaml").read_text())
    b1_eth1 = inventory["all"]["hosts"]["b1"]["interfaces"][1]["mac"]
    neighbour = hosts.on("a1", "ip neigh show 10.0.0.20").stdout
    assert "dev eth1" in neighbour and f"lladdr {b1_eth1}" in neighbour, neighbour


def test_down_removes_the_lab_on_both_hosts_and_keeps_the_host_bridges(hosts, conns, lab):
    out = hosts.lb("down", hosts.topology).stdout
    assert "network multihost-t1-internal" in out and "private libvirtd" not in out
    for name, conn in conns.items():
        assert virt.owned_objects(conn, "multihost") == [], name
        assert virt.network_info(conn, "multihost-t1-internal") is None, name
        assert "multihost-t1-pool" not in virt.pool_names(conn), name
    for daemon, end in ((hosts.a, "lbva"), (hosts.b, "lbvb")):
        ports = run([*daemon.nsenter_argv(), "ip", "-o", "link", "show", "master", BRIDGE]).stdout
        assert f"{end}@" in ports, ports  # the bridge is there, with the link to the other host

"""Host inventories (lab/hosts.py) without a hypervisor: slots on libvirt URIs or private libvirtds,
networks joined to existing host bridges, every problem in an inventory (or in how the
topology's networks span its hosts) reported as FILE:LINE: key.path: message, and the
plan of a two-host gridka team whose internal network is joined on both hosts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, fake_image_entry

from labbuilder.lab import apply, diff, seed
from labbuilder.lab.hosts import resolve_hosts
from labbuilder.lab.plan import BaseImage, plan_lab
from labbuilder.model.errors import TopologyError
from labbuilder.model.topology import load_topology

DATA = Path("tests/data")
INVENTORIES = sorted(p.stem for p in (REPO / DATA / "inventories").glob("*.yaml"))
ON_GRIDKA = {"split-network"}  # the others go with tests/data/two-hosts.yaml
IMAGE = BaseImage("gridka-openstack", "/cache/gridka-openstack.qcow2", "ab" * 32, 256 << 20, 4 << 30)
JOINED = """hosts:
  host-a:
    uri: qemu+ssh://root@host-a.example/system
    bridges: {internal: br-internal}
  host-b:
    uri: qemu+ssh://root@host-b.example/system
    bridges: {internal: br-internal}
"""


def _hosts(topology, inventory: Path, start=None, root=Path("/nonexistent")):
    """Host per slot as `up` finds them before starting anything, checked like open_lab does."""
    from labbuilder.lab.plan import check_host_networks

    hosts = resolve_hosts(topology, None, inventory, root, private=True, start=start)
    check_host_networks(topology, hosts)
    return hosts


@pytest.mark.parametrize("name", INVENTORIES)
def test_bad_inventory_message_is_exact(name, golden, monkeypatch):
    monkeypatch.chdir(REPO)
    topo = load_topology("topologies/gridka.yaml" if name in ON_GRIDKA else DATA / "two-hosts.yaml")
    with pytest.raises(TopologyError) as e:
        _hosts(topo, DATA / "inventories" / f"{name}.yaml")
    golden(f"inventory-{name}.txt", "\n".join(e.value.lines()).replace(str(REPO), "<repo>") + "\n")


def test_an_isolated_network_on_two_hosts_names_its_line_hosts_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    (tmp_path / "hosts.yaml").write_text("hosts: {host-a: 'qemu+ssh://a/system', host-b: 'qemu+ssh://b/system'}\n")
    with pytest.raises(TopologyError) as e:
        _hosts(load_topology("topologies/gridka.yaml"), tmp_path / "hosts.yaml")
    assert e.value.lines() == [
        f"topologies/gridka.yaml:{_internal_line()}: networks.internal: its nodes run on 2 libvirt hosts "
        "(host-a: qemu+ssh://a/system, host-b: qemu+ssh://b/system); an isolated network does not reach "
        "from one host to another (hint: join it to a bridge linked between the hosts in the host "
        "inventory: hosts.host-a.bridges.internal: BRIDGE, hosts.host-b.bridges.internal: BRIDGE)"]


def _internal_line() -> int:
    """The line of gridka's `internal:` network."""
    return next(i for i, l in enumerate((REPO / "topologies/gridka.yaml").read_text().splitlines(), 1)
                if l == "  internal:")


def test_slots_on_one_libvirt_host_share_it_and_its_bridges(tmp_path):
    """Hosts that are the same URI count once: an isolated network is not split there."""
    (tmp_path / "hosts.yaml").write_text(
        "hosts:\n  host-a: qemu+ssh://lab/system\n  host-b: {uri: 'qemu+ssh://lab/system', bridges: {public: br0}}\n")
    topo = load_topology(REPO / "topologies/gridka.yaml")
    hosts = _hosts(topo, tmp_path / "hosts.yaml")
    assert hosts["host-a"] == hosts["host-b"] and hosts["host-a"].bridges == (("public", "br0"),)


def test_a_slot_left_out_shares_the_host_of_a_listed_slot_on_its_uri(tmp_path):
    (tmp_path / "hosts.yaml").write_text("hosts: {host-b: {uri: 'qemu:///system', bridges: {internal: br1}}}\n")
    topo = load_topology(REPO / "topologies/gridka.yaml")
    hosts = resolve_hosts(topo, "qemu:///system", tmp_path / "hosts.yaml", tmp_path, start=None)
    assert hosts["host-a"] is hosts["host-b"]


def test_a_slot_with_bridges_only_lands_where_it_would_without_the_inventory(tmp_path):
    """Here: the private libvirtd of the state directory (`--private`), not started by plan."""
    (tmp_path / "hosts.yaml").write_text("hosts:\n  host-a:\n    bridges: {internal: lbjoin0}\n"
                                         "  host-b: {private: hostb, bridges: {internal: lbjoin0}}\n")
    hosts = _hosts(load_topology(REPO / "topologies/gridka.yaml"), tmp_path / "hosts.yaml", root=tmp_path / "state")
    assert hosts["host-a"].uri == f"qemu+unix:///system?socket={tmp_path}/state/libvirtd/run/libvirt-sock"
    assert hosts["host-a"].name == "private libvirtd (not started yet)"
    assert hosts["host-a"].bridges == hosts["host-b"].bridges == (("internal", "lbjoin0"),)
    assert not (tmp_path / "state").exists() and not (tmp_path / "hostb").exists()


def test_a_private_slot_not_running_is_a_stand_in_for_plan_and_an_error_otherwise(tmp_path):
    topo = load_topology(REPO / "topologies/gridka.yaml")
    (tmp_path / "hosts.yaml").write_text(
        "hosts:\n  host-a: {uri: 'qemu+ssh://a/system', bridges: {internal: br1}}\n"
        "  host-b:\n    private: hostb\n    bridges: {internal: br1}\n")
    stand_in = _hosts(topo, tmp_path / "hosts.yaml")["host-b"]
    assert not stand_in.runtime.running and stand_in.uri == f"qemu+unix:///system?socket={tmp_path}/hostb/run/libvirt-sock"
    assert stand_in.name == f"private libvirtd {tmp_path}/hostb (not started yet)"
    with pytest.raises(TopologyError) as e:
        resolve_hosts(topo, None, tmp_path / "hosts.yaml", tmp_path, start=False)
    assert e.value.lines() == [f"{tmp_path}/hosts.yaml:4: hosts.host-b.private: no private libvirtd runs in "
                               f"{tmp_path}/hostb (hint: `labbuilder up` starts it)"]
    assert not (tmp_path / "hostb").exists()


def _joined_gridka(tmp_path, team=1):
    (tmp_path / "hosts.yaml").write_text(JOINED)
    topo = load_topology(REPO / "topologies/gridka.yaml")
    return plan_lab(topo, team, _hosts(topo, tmp_path / "hosts.yaml"), {"gridka-openstack": IMAGE})


def test_gridka_joined_on_both_hosts_plans_bridge_networks_and_static_addresses(tmp_path):
    plan = _joined_gridka(tmp_path, team=3)
    a, b = "qemu+ssh://root@host-a.example/system", "qemu+ssh://root@host-b.example/system"
    assert [(n.name, n.host.uri, n.mode, n.bridge if n.mode == "bridge" else "lb…", str(n.subnet))
            for n in plan.networks] == [
        ("nat", a, "nat", "lb…", "192.168.132.0/24"), ("nat", b, "nat", "lb…", "192.168.132.0/24"),
        ("internal", a, "bridge", "br-internal", "10.0.0.0/24"),
        ("internal", b, "bridge", "br-internal", "10.0.0.0/24"),
        ("public", a, "isolated", "lb…", "172.16.0.0/24")]
    joined = [n for n in plan.networks if n.name == "internal"]
    assert all(n.dhcp is None and n.gateway is None and not n.static_hosts for n in joined)
    compute = plan.node("compute-1")
    assert [(x.guest_name, x.dhcp, x.joined, str(x.ip)) for x in compute.nics] == \
        [("eth0", True, False, "None"), ("eth1", False, True, "10.0.0.20")]
    assert compute.ssh_ip is None  # the lab host has no address on the joined bridge: eth0's lease
    assert plan.node("network-node").ssh_ip == "172.16.0.7" and plan.node("network-node").lab_ip == "10.0.0.7"


def test_the_seed_of_a_node_on_a_joined_network_sets_its_address_itself(tmp_path):
    plan = _joined_gridka(tmp_path)
    node = plan.node("compute-1")
    config = seed.network_config(apply.node_seed(plan, node, "ssh-ed25519 AAAA test"))
    assert config["ethernets"]["eth0"]["dhcp4"] is True
    assert config["ethernets"]["eth1"] == {"match": {"macaddress": node.nics[1].mac}, "set-name": "eth1",
                                           "addresses": ["10.0.0.20/24"]}
    hosts = seed.hosts_file(apply.node_seed(plan, node, "k"))
    assert "10.0.0.3 db-node" in hosts and "10.0.0.21 compute-2" in hosts


def _joined_xml(tmp_path):
    want = diff.render_plan(_joined_gridka(tmp_path), "kvm", now=0)
    return {(r.plan.host.uri, r.libvirt_name): r.xml for r in want.networks.values()}


def test_a_joined_network_renders_as_a_bridge_network_owned_by_the_lab(tmp_path, golden):
    xml = _joined_xml(tmp_path)
    internal = xml[("qemu+ssh://root@host-b.example/system", "gridka-t1-internal")]
    assert "<forward mode=\"bridge\"/>" in internal and "<bridge name=\"br-internal\"/>" in internal
    assert "<ip" not in internal and 'lab="gridka" team="1" network="internal"' in internal
    golden("xml/gridka-t1-internal-joined.xml", internal)


@pytest.mark.skipif(shutil.which("virt-xml-validate") is None, reason="virt-xml-validate missing")
@pytest.mark.subprocess("virt-xml-validate")
def test_joined_network_xml_passes_libvirt_schemas(tmp_path):
    for (uri, name), xml in _joined_xml(tmp_path).items():
        path = tmp_path / f"{name}-{len(uri)}.xml"
        path.write_text(xml)
        proc = subprocess.run(["virt-xml-validate", str(path), "network"], capture_output=True, text=True)
        assert proc.returncode == 0, f"{name} on {uri}: {proc.stderr or proc.stdout}"


def _fake_cache(path: Path) -> Path:
    """An image cache with a gridka-openstack entry (plan reads only its manifest)."""
    fake_image_entry(path, "gridka-openstack")
    return path


def _plan_cli(tmp_path, test_host, *args):
    """`labbuilder plan gridka` with host-a on libvirt's test driver (in-process: no daemon)
    and host-b on a private libvirtd that is not running (plan must not start it)."""
    (tmp_path / "hosts.yaml").write_text(
        f"hosts:\n  host-a:\n    uri: {test_host}\n    bridges: {{internal: lbjoin0}}\n"
        "  host-b:\n    private: hostb\n    bridges: {internal: lbjoin0}\n")
    env = {**os.environ, "LABBUILDER_STATE": str(tmp_path / "state"), "COLUMNS": "250"}
    proc = subprocess.run([sys.executable, "-m", "labbuilder.cli", "plan", "topologies/gridka.yaml",
                           "--hosts", str(tmp_path / "hosts.yaml"), "--cache", str(_fake_cache(tmp_path / "cache")),
                           *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "state").exists() and not (tmp_path / "hostb").exists()
    return proc.stdout.replace(str(tmp_path), "<tmp>")


@pytest.mark.subprocess(sys.executable)
def test_plan_json_shows_the_joined_network_as_a_bridge_network_on_each_host(tmp_path, test_host, golden):
    out = _plan_cli(tmp_path, test_host, "--json")
    golden("plan-gridka-joined.json", out)
    hostb = "qemu+unix:///system?socket=<tmp>/hostb/run/libvirt-sock"
    networks = {(n["network"], n["host"]): (n["mode"], n["bridge"]) for n in json.loads(out)["networks"]}
    hosta = "test://<tmp>/test-host.xml"
    assert networks[("internal", hosta)] == networks[("internal", hostb)] == ("bridge", "lbjoin0")
    assert networks[("nat", hostb)][0] == "nat"


@pytest.mark.subprocess(sys.executable)
def test_plan_text_lists_the_networks_per_host_with_their_bridges(tmp_path, test_host):
    rows = [line.split("│")[1:-1] for line in _plan_cli(tmp_path, test_host).splitlines()
            if "│ gridka-t1-internal " in line]
    assert [[cell.strip() for cell in row] for row in rows] == [
        ["internal", "gridka-t1-internal", "test://<tmp>/test-host.xml", "bridge", "lbjoin0", "10.0.0.0/24"],
        ["internal", "gridka-t1-internal", "private libvirtd <tmp>/hostb (not started yet)", "bridge", "lbjoin0",
         "10.0.0.0/24"]]


def test_a_bridge_missing_on_a_host_is_reported_before_any_change(tmp_path, monkeypatch):
    """Checked on local hosts (`ip` in their network namespace); libvirt itself would start
    the network and fail only at the first guest."""
    from labbuilder.lab import pipeline as lab_mod
    from labbuilder.system import hostnet
    from labbuilder.system.connections import ConnectionPool

    plan = _joined_gridka(tmp_path)
    asked = []
    monkeypatch.setattr(hostnet, "bridges", lambda prefix=(): asked.append(prefix) or {"br-internal"})
    lab = lab_mod.Lab(load_topology(REPO / "topologies/gridka.yaml"), plan, ConnectionPool(), tmp_path, "kvm", "")
    host_a, host_b = plan.hosts[0], plan.hosts[1]
    assert lab_mod._missing_bridges(lab, host_a) == [] and asked == [()]
    monkeypatch.setattr(hostnet, "bridges", lambda prefix=(): {"virbr0"})
    lab.host_networks = hostnet.HostNetworks()  # as in another command: the bridges read above are kept per command
    assert [str(p) for p in lab_mod._missing_bridges(lab, host_b)] == [
        f"{REPO}/topologies/gridka.yaml:{_internal_line()}: networks.internal: host bridge 'br-internal' does not exist on "
        "qemu+ssh://root@host-b.example/system (hint: create it (linked between the hosts, for a joined network), "
        "or name another)"]


def test_a_split_network_is_reported_before_a_private_libvirtd_starts(tmp_path, monkeypatch):
    """resolve_hosts hands where each slot lands to `check` before it starts anything."""
    from labbuilder.lab.plan import check_host_networks
    from labbuilder.system import privatelibvirtd

    started = []
    monkeypatch.setattr(privatelibvirtd, "ensure", lambda d: started.append(d))
    topo = load_topology(REPO / "topologies/gridka.yaml")
    (tmp_path / "hosts.yaml").write_text("hosts:\n  host-b:\n    private: hostb\n")
    with pytest.raises(TopologyError, match="networks.internal: its nodes run on 2 libvirt hosts"):
        resolve_hosts(topo, "qemu+ssh://a/system", tmp_path / "hosts.yaml", tmp_path, start=True,
                      check=lambda where: check_host_networks(topo, where))
    assert started == []


def test_the_host_networks_are_read_once_per_command(tmp_path, monkeypatch):
    """`up --teams 1-3` checks each team's subnets and bridges against the local host's
    routes and bridges: `ip` reads each once for the command, not once per team or host.
    So is the topology the teams share loaded, the inventory asked for a pool, and what
    the host holds read."""
    import types

    from labbuilder.lab import pipeline
    from labbuilder.model.request import LabRequest
    from labbuilder.system import accel, hostnet, virt

    read = []
    for name in ("load_topology", "pool_hosts"):
        real = getattr(pipeline, name)
        monkeypatch.setattr(pipeline, name, lambda *a, real=real, name=name, **k: read.append(name) or real(*a, **k))
    monkeypatch.setattr(hostnet, "routes", lambda prefix=(): read.append(("routes", prefix)) or [])
    monkeypatch.setattr(hostnet, "bridges", lambda prefix=(): read.append(("bridges", prefix)) or {"br0"})
    monkeypatch.setattr(virt, "connect", lambda uri: types.SimpleNamespace(close=lambda: None))
    monkeypatch.setattr(virt, "observe", lambda conn: read.append("observe") or [])
    monkeypatch.setattr(virt, "node_memory", lambda conn: 64 << 30)
    monkeypatch.setattr(virt, "first_pool_free", lambda conn, names: None)
    monkeypatch.setattr(accel, "detect", lambda: accel.Accelerator("qemu", "a unit test"))
    cache = fake_image_entry(tmp_path / "cache", "debian-12")
    reqs = [LabRequest(REPO / "tests/data/two-hosts.yaml", team, "qemu:///system", None, None, 1.0, cache.parent)
            for team in (1, 2, 3)]
    labs = pipeline.open_labs(reqs)
    assert [lab.plan.team for lab in labs] == [1, 2, 3] and all(lab.observed == {"qemu:///system": []} for lab in labs)
    assert read == ["load_topology", "pool_hosts", "observe", ("routes", ()), ("bridges", ())]
    assert len({id(lab.topology) for lab in labs}) == 1

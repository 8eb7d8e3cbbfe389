"""Joining a network that exists on the host (`existing:`, libvirt's stock `default`), without
a hypervisor: the addressing comes from the host's network, `plan` shows the host entries
it adds (and defines no network), the domains' metadata records them, and a missing
network, an address outside it, someone else's entry for a node's MAC, address or hostname,
or a class of teams on it are refused before any change, naming file, line and key.
libvirt's test driver is the host (a file of the test's own, with a stock `default`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, TEST_HOST, fake_image_entry

from labbuilder.lab import diff, existing, pipeline, render
from labbuilder.lab.hosts import Host
from labbuilder.lab.observe import HostState
from labbuilder.lab.plan import BaseImage, HostEntry, plan_lab
from labbuilder.model.errors import TopologyError
from labbuilder.model.request import LabRequest
from labbuilder.model.topology import load_topology
from labbuilder.system import virt

RDO = REPO / "topologies" / "rdo-course.yaml"
IMAGE = {"gridka-openstack": BaseImage("gridka-openstack", "/cache/gridka-openstack.qcow2", "ab" * 32, 1 << 28, 8 << 30)}
FOREIGN = "<host mac='52:54:00:aa:bb:cc' name='web' ip='192.168.122.50'/>"
# libvirt's /usr/share/libvirt/networks/default.xml as a host runs it, with an entry of someone else's.
STOCK_DEFAULT = """  <network>
    <name>default</name>
    <bridge name='virbr0'/>
    <forward/>
    <ip address='192.168.122.1' netmask='255.255.255.0'>
      <dhcp>
        <range start='192.168.122.2' end='192.168.122.254'/>
        {dhcp_host}
      </dhcp>
    </ip>
    {dns}
  </network>
</node>
"""
ENTRIES = [(f"52:54:00:00:00:0{i}", f"192.168.122.10{i}", f"node{i}") for i in range(1, 5)]


def _host_file(tmp_path: Path, dhcp_host: str = FOREIGN, dns: str = "") -> str:
    path = tmp_path / "stock-host.xml"
    path.write_text(TEST_HOST.replace("</node>\n", STOCK_DEFAULT.format(dhcp_host=dhcp_host, dns=dns)))
    return f"test://{path}"


def _topology(tmp_path: Path, old: str = "", new: str = "") -> Path:
    path = tmp_path / "rdo-course.yaml"
    path.write_text(RDO.read_text().replace(old, new))
    return path


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    cache = tmp_path / "cache"
    if not cache.exists():
        fake_image_entry(cache, "gridka-openstack")
    env = {**os.environ, "LABBUILDER_STATE": str(tmp_path / "state"), "COLUMNS": "300"}
    return subprocess.run([sys.executable, "-m", "labbuilder.cli", *args, "--cache", str(cache)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=120)


def _open(tmp_path: Path, uri: str, topology: Path = RDO, team: int = 1) -> pipeline.Lab:
    cache = tmp_path / "cache"
    if not cache.exists():
        fake_image_entry(cache, "gridka-openstack")
    return pipeline.open_lab(LabRequest(topology, team, uri, image_cache=cache))


def _errors(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("error:")]


def _line(path: Path, text: str, after: str = "") -> int:
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if after in line) if after else 0
    return next(i for i, line in enumerate(lines[start:], start + 1) if text in line)


def test_rdo_course_joins_libvirts_default_network():
    topo = load_topology(RDO)
    net = topo.network("default")
    assert (net.existing, net.mode, net.subnet, net.dhcp, net.per_team) == ("default", "existing", None, None, False)
    assert [(n.nics[0].mac, str(n.nics[0].ip), n.name) for n in topo.nodes] == ENTRIES


@pytest.mark.subprocess(sys.executable)
def test_plan_takes_the_hosts_addressing_and_shows_the_entries_it_adds(tmp_path):
    uri = _host_file(tmp_path)
    proc = _cli(tmp_path, "plan", str(RDO), "--connect", uri, "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["networks"] == [{"network": "default", "name": "default", "host": uri, "mode": "nat",
                                 "bridge": "virbr0", "subnet": "192.168.122.0/24",
                                 "static_hosts": [list(e) for e in ENTRIES], "existing": True}]
    entries = [(a["verb"], a["name"], a["detail"]) for a in data["actions"] if a["kind"] == "host entry"]
    assert entries == [("add", " ".join(e), "network default") for e in ENTRIES]
    assert not [a for a in data["actions"] if a["kind"] == "network"]  # the host's own: never defined
    eth0 = {name: node["interfaces"][0] for name, node in data["nodes"].items()}
    assert {name: (nic["ip"], nic["prefix"]) for name, nic in eth0.items()} == {
        name: (ip, 24) for _, ip, name in ENTRIES}
    text = _cli(tmp_path, "plan", str(RDO), "--connect", uri)
    assert "+ add host entry 52:54:00:00:00:01 192.168.122.101 node1 on " in text.stdout
    assert "│ default │ default │" in text.stdout and "existing (nat)" in text.stdout
    assert "Plan: 5 to create, 1 to upload, 4 to add" in text.stdout


def test_the_domains_metadata_records_the_entries_and_reads_back(tmp_path):
    """What `down` reads back from a domain is what `up` defined it with."""
    lab = _open(tmp_path, _host_file(tmp_path))
    try:
        node = lab.plan.node("node2")
        assert node.entries == (HostEntry("default", "52:54:00:00:00:02", "192.168.122.102", "node2"),)
        assert node.nics[0].libvirt_network == "default" and node.nics[0].dhcp and node.nics[0].prefix == 24
        xml, _ = render.domain_xml(lab.plan.lab, 1, node, lab.plan.pool, "qemu", 0)
        conn = lab.conns(node.host)
        virt.define_domain(conn, xml)
        (found,) = [o for o in virt.observe(conn) if o.name == "rdo-course-t1-node2"]
        assert found.entries == (("default", "52:54:00:00:00:02", "192.168.122.102", "node2"),)
        assert found.owner["node"] == "node2"
    finally:
        lab.close()


def test_plan_reads_the_joined_network_once(tmp_path, monkeypatch):
    """`plan` diffs against what the plan was made from, as against check_hosts' objects."""
    reads = []
    read = virt.read_network
    monkeypatch.setattr(virt, "read_network", lambda conn, name: reads.append(name) or read(conn, name))
    lab = _open(tmp_path, _host_file(tmp_path))
    try:
        actions = pipeline.changes(lab)
    finally:
        lab.close()
    assert reads == ["default"]
    assert [a.name for a in actions if a.kind == diff.ObjectKind.HOST_ENTRY] == [" ".join(e) for e in ENTRIES]


@pytest.mark.parametrize("dhcp_host,dns,key,what", [
    ("<host mac='52:54:00:aa:bb:cc' name='web' ip='192.168.122.102'/>", "", "nodes.node2.nics.0.ip",
     "address 192.168.122.102 is taken by the entry <host mac='52:54:00:aa:bb:cc' name='web' ip='192.168.122.102'/>"),
    ("<host mac='52:54:00:00:00:03' name='web' ip='192.168.122.50'/>", "", "nodes.node3.nics.0.mac",
     "MAC 52:54:00:00:00:03 is taken by the entry <host mac='52:54:00:00:00:03' name='web' ip='192.168.122.50'/>"),
    ("<host mac='52:54:00:00:00:04' name='node4' ip='192.168.122.104'/>", "", "nodes.node4.nics.0.mac",
     "MAC 52:54:00:00:00:04 is taken by the entry <host mac='52:54:00:00:00:04' name='node4' ip='192.168.122.104'/>"),
    (FOREIGN, "<dns><host ip='192.168.122.60'><hostname>node1</hostname></host></dns>", "nodes.node1",
     "hostname node1 is taken by the entry <host ip='192.168.122.60'><hostname>node1</hostname></host>"),
])
@pytest.mark.subprocess(sys.executable)
def test_someone_elses_entry_is_a_clash_refused_in_one_line(tmp_path, dhcp_host, dns, key, what):
    """Even an entry equal to the node's own is not labbuilder's to take over or remove."""
    uri = _host_file(tmp_path, dhcp_host, dns)
    node = key.split(".")[1]
    line = _line(RDO, "mac:" if key.endswith("mac") else "ip:" if key.endswith("ip") else f"{node}:", f"{node}:")
    for command in (["plan"], ["up", "--no-wait"]):  # the test driver's domains boot nothing, up or not
        proc = _cli(tmp_path, command[0], str(RDO), "--connect", uri, *command[1:])
        assert proc.returncode == 2, proc.stderr
        assert _errors(proc) == [f"error: {RDO}:{line}: {key}: {what} in network 'default' on {uri} "
                                 f"(labbuilder did not make it) (hint: {_hint(key)}, or remove that entry if nothing "
                                 f"needs it: virsh -c {uri} net-update default delete {_section(dns)} "
                                 f"\"{_shown(dhcp_host, dns)}\" --live --config)"]


def _hint(key: str) -> str:
    return {"ip": "use another ip", "mac": "use another mac"}.get(key.rsplit(".", 1)[1], "rename the node")


def _section(dns: str) -> str:
    return "dns-host" if dns else "ip-dhcp-host"


def _shown(dhcp_host: str, dns: str) -> str:
    return dns.removeprefix("<dns>").removesuffix("</dns>") if dns else dhcp_host


@pytest.mark.subprocess(sys.executable)
def test_a_host_without_the_network_is_told_how_to_create_it(tmp_path, test_host):
    proc = _cli(tmp_path, "plan", str(RDO), "--connect", test_host)
    assert proc.returncode == 2
    assert _errors(proc) == [
        f"error: {RDO}:{_line(RDO, 'existing: default')}: networks.default.existing: network 'default' does not "
        f"exist on {test_host} (hint: create libvirt's stock one: virsh -c {test_host} net-define "
        f"/usr/share/libvirt/networks/default.xml && virsh -c {test_host} net-start default)"]


def test_the_joined_network_is_no_clash_with_itself_but_with_a_topology_subnet_in_it(tmp_path):
    uri = _host_file(tmp_path)
    _open(tmp_path, uri).close()  # 192.168.122.0/24 is the joined network's own subnet
    topo = _topology(tmp_path, "    existing: default\n",
                     "    existing: default\n  lan:\n    mode: isolated\n    subnet: 192.168.122.128/25\n")
    with pytest.raises(TopologyError) as e:
        _open(tmp_path, uri, topo)
    assert [str(p) for p in e.value.problems] == [
        f"{topo}:{_line(topo, 'subnet:')}: networks.lan.subnet: 192.168.122.128/25 clashes with network "
        f"'default' (192.168.122.0/24) on {uri} (hint: choose another subnet or team, or bring that network down)"]


def test_an_address_outside_the_hosts_subnet_is_refused_inside_its_dhcp_range_is_not(tmp_path):
    uri = _host_file(tmp_path)
    topo = _topology(tmp_path, "192.168.122.103", "192.168.123.103")
    topo.write_text(topo.read_text().replace("192.168.122.104", "192.168.122.1").replace("192.168.122.102",
                                                                                          "192.168.122.255"))
    with pytest.raises(TopologyError) as e:
        _open(tmp_path, uri, topo)
    assert [(p.key, p.message) for p in e.value.problems] == [
        ("nodes.node2.nics.0.ip", "192.168.122.255 is the broadcast address of 192.168.122.0/24"),
        ("nodes.node3.nics.0.ip", f"192.168.123.103 is outside 192.168.122.0/24, the subnet of network 'default' on {uri}"),
        ("nodes.node4.nics.0.ip", f"192.168.122.1 is the host's own address on network 'default' on {uri}")]
    # node1's .101 lies in the stock DHCP range .2–.254: a static entry there is what libvirt allows
    assert lab_ips(_open(tmp_path, uri)) == {name: ip for _, ip, name in ENTRIES}


def lab_ips(lab: pipeline.Lab) -> dict[str, str]:
    lab.close()
    return {n.name: str(n.nics[0].ip) for n in lab.plan.nodes}


def _facts(**changes) -> virt.NetworkFacts:
    values = dict(name="default", active=True, mode="nat", bridge="virbr0", address="192.168.122.1", prefix=24,
                  dhcp=("192.168.122.2", "192.168.122.254"))
    return virt.NetworkFacts(**{**values, **changes})


@pytest.mark.parametrize("facts,message,hint", [
    (_facts(active=False), "network 'default' on qemu:///system is not active", "start it: virsh net-start default"),
    (_facts(dhcp=None), "network 'default' on qemu:///system has no IPv4 DHCP of libvirt's, where labbuilder adds "
     "the nodes' static host entries", "join a network whose <ip> has a <dhcp> range (nat, route or isolated), "
     "as libvirt's default"),
])
def test_an_inactive_network_or_one_without_dhcp_is_refused(facts, message, hint):
    topo = load_topology(RDO)
    host = Host("qemu:///system")
    plan = plan_lab(topo, 1, {"default": host}, IMAGE, existing={(host.uri, "default"): facts})
    problems = existing.problems(topo, plan, {(host.uri, "default"): facts}, {host.uri: []})
    assert [(p.key, p.message, p.hint) for p in problems] == [("networks.default.existing", message, hint)]


def test_a_class_of_teams_on_the_hosts_network_is_refused(tmp_path):
    """Every team on a host shares its `default`: the course's addresses fit one team."""
    uri = _host_file(tmp_path)
    topo = _topology(tmp_path)
    topo.write_text("".join(line for line in topo.read_text().splitlines(True) if "mac:" not in line))
    lab = _open(tmp_path, uri, topo)
    lab.close()
    pipeline.check_class([lab])
    with pytest.raises(TopologyError) as e:
        pipeline.check_class([lab, lab])
    assert [str(p) for p in e.value.problems] == [
        f"{topo}:{_line(topo, 'ip:')}: nodes.node1.nics.0.ip: network 'default' is the host's own, shared by every "
        "team: its fixed addresses allow one team, and 2 teams would share them (hint: run one team per lab host "
        "(an inventory per team), or leave the ips out)"]


def _state(plan, recorded: dict[str, tuple], facts: virt.NetworkFacts, team: int = 1) -> dict[str, HostState]:
    owned = tuple(virt.HostObject("domain", f"rdo-course-t{team}-{node}", {"lab": "rdo-course", "team": str(team)},
                                  True, entries=entries) for node, entries in recorded.items())
    return {plan.hosts[0].uri: HostState(owned, networks={"default": facts})}


def _entry_actions(plan, states) -> list[tuple[str, str]]:
    want = diff.render_plan(plan, "qemu", now=0)
    return [(a.verb, a.name) for a in diff.diff(plan, want, states) if a.kind == diff.ObjectKind.HOST_ENTRY]


def test_each_joined_network_lists_only_its_own_static_hosts(tmp_path):
    """Two networks the host has: node1 on both, each lists node1's entry there and no other's."""
    topo = _topology(tmp_path, "    existing: default\n", "    existing: default\n  mgmt:\n    existing: mgmt\n")
    topo.write_text(topo.read_text().replace("        ip: 192.168.122.101\n", "        ip: 192.168.122.101\n"
                                             "      - network: mgmt\n        ip: 192.168.100.11\n"))
    host = Host("qemu:///system")
    mgmt = _facts(name="mgmt", address="192.168.100.1", dhcp=("192.168.100.2", "192.168.100.254"))
    plan = plan_lab(load_topology(topo), 1, {"default": host}, IMAGE,
                    existing={(host.uri, "default"): _facts(), (host.uri, "mgmt"): mgmt})
    node1 = plan.node("node1")
    assert {n.libvirt_name: n.static_hosts for n in plan.networks} == {
        "default": tuple(ENTRIES), "mgmt": ((node1.nics[1].mac, "192.168.100.11", "node1"),)}
    assert [e.network for e in node1.entries] == ["default", "mgmt"]


def test_entries_are_added_where_missing_and_removed_when_only_recorded():
    topo = load_topology(RDO)
    host = Host("qemu:///system")
    plan = plan_lab(topo, 1, {"default": host}, IMAGE, existing={(host.uri, "default"): _facts()})
    made = {f"node{i}": (("default", *ENTRIES[i - 1]),) for i in range(1, 5)}
    everything = _facts(dhcp_hosts=tuple(ENTRIES), dns_hosts=tuple((ip, (name,)) for _, ip, name in ENTRIES))
    assert _entry_actions(plan, _state(plan, made, everything)) == []  # up twice: nothing the second time
    # cut short after node4's DHCP entry, before its DNS one: that one is added, nothing else
    half = _facts(dhcp_hosts=tuple(ENTRIES), dns_hosts=everything.dns_hosts[:3])
    assert _entry_actions(plan, _state(plan, made, half)) == [("add", "52:54:00:00:00:04 192.168.122.104 node4")]
    # node5 was in the topology when its domain recorded it; it is not any more
    gone = ("52:54:00:00:00:05", "192.168.122.105", "node5")
    stale = _facts(dhcp_hosts=(*ENTRIES, gone), dns_hosts=everything.dns_hosts)
    assert _entry_actions(plan, _state(plan, {**made, "node5": (("default", *gone),)}, stale)) == [
        ("remove", "52:54:00:00:00:05 192.168.122.105 node5")]


def test_another_teams_entries_are_a_clash_named_by_its_domain():
    topo = load_topology(RDO)
    host = Host("qemu:///system")
    taken = _facts(dhcp_hosts=tuple(ENTRIES))
    plan = plan_lab(topo, 2, {"default": host}, IMAGE, existing={(host.uri, "default"): taken})
    theirs = _state(plan, {f"node{i}": (("default", *ENTRIES[i - 1]),) for i in range(1, 5)}, taken)
    observed = {host.uri: list(theirs[host.uri].owned)}
    problems = existing.problems(topo, plan, {(host.uri, "default"): taken}, observed)
    assert [(p.key, p.message.split(" (")[1]) for p in problems] == [
        (f"nodes.node{i}.nics.0.mac", f"labbuilder made it for domain rdo-course-t1-node{i})") for i in range(1, 5)]
    assert problems[0].hint == "use another mac, or bring down the lab of rdo-course-t1-node1 first"
    # the same entries recorded by team 1's own domains are no clash for team 1
    mine = plan_lab(topo, 1, {"default": host}, IMAGE, existing={(host.uri, "default"): taken})
    assert existing.problems(topo, mine, {(host.uri, "default"): taken}, observed) == []


def test_an_inventory_cannot_join_the_hosts_network_to_a_bridge(tmp_path):
    from labbuilder.lab.hosts import resolve_hosts

    (tmp_path / "hosts.yaml").write_text("hosts:\n  default: {uri: 'qemu:///system', bridges: {default: br0}}\n")
    with pytest.raises(TopologyError) as e:
        resolve_hosts(load_topology(RDO), None, tmp_path / "hosts.yaml", tmp_path, start=False)
    assert [(p.key, p.message) for p in e.value.problems] == [
        ("hosts.default.bridges.default", "network 'default' is the host's own libvirt network 'default' (existing)")]


def test_a_private_libvirtd_not_started_yet_is_told_to_start_then_the_network():
    """A private libvirtd starts with the host's network definitions, none of them started."""
    from labbuilder.lab.hosts import HostRuntime

    topo = load_topology(RDO)
    host = Host("qemu+unix:///system?socket=/x/libvirt-sock", "private libvirtd (not started yet)",
                runtime=HostRuntime(running=False))
    plan = plan_lab(topo, 1, {"default": host}, IMAGE, existing={(host.uri, "default"): None})
    assert plan.networks[0].subnet is None and plan.node("node1").nics[0].prefix is None  # unknown until read
    (problem,) = existing.problems(topo, plan, {(host.uri, "default"): None}, {host.uri: []})
    assert (problem.key, problem.message, problem.hint) == (
        "networks.default.existing", "network 'default' does not exist on private libvirtd (not started yet)",
        "`labbuilder up` starts it (and stops here, changing nothing else); then start the network there: "
        "virsh -c qemu+unix:///system?socket=/x/libvirt-sock net-start default")

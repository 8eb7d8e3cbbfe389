"""rdo-course on a private libvirtd that has libvirt's stock `default` network with someone
else's host entries in it, without booting a guest: the lab's domains are defined and
their host entries added as `up` does it (defined first, then the entries; the start is
left out), and `down` removes exactly the lab's entries, the network and the foreign
entries staying. A clashing topology is refused by `plan` and `up` with nothing changed.
(Planning on this machine's libvirtd runs the accelerator probe if this boot has no
answer cached yet: QEMU for a few seconds, no lab guest.)"""

from __future__ import annotations

import json

import libvirt
import pytest
from conftest import REPO, fake_image_entry, stock_host

from labbuilder.lab import apply, diff, observe, pipeline
from labbuilder.lab.apply import ApplyContext
from labbuilder.lab.diff import ObjectKind
from labbuilder.model.request import LabRequest
from labbuilder.reporting import Progress
from labbuilder.system import virt

pytestmark = pytest.mark.libvirtd

RDO = REPO / "topologies" / "rdo-course.yaml"
OURS = [{"mac": f"52:54:00:00:00:0{i}", "name": f"node{i}", "ip": f"192.168.122.10{i}"} for i in range(1, 5)]


@pytest.fixture(scope="module")
def host():
    with stock_host("lbstock-") as made:
        yield made


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return fake_image_entry(tmp_path_factory.mktemp("cache"), "gridka-openstack").parent


def _objects(host) -> tuple:
    conn = virt.connect(host.daemon.uri)
    try:
        return sorted(o.name for o in virt.observe(conn)), sorted(virt.pool_names(conn))
    finally:
        conn.close()


def test_a_clashing_topology_is_refused_by_plan_and_up_with_nothing_changed(host, cache, tmp_path):
    before, objects = host.default_hosts(), _objects(host)
    clash = tmp_path / "rdo-course.yaml"
    clash.write_text(RDO.read_text().replace("192.168.122.103", "192.168.122.50"))
    line = next(i for i, text in enumerate(clash.read_text().splitlines(), 1) if "192.168.122.50" in text)
    expected = (f"error: {clash}:{line}: nodes.node3.nics.0.ip: address 192.168.122.50 is taken by the entry "
                f"{host.dhcp_host} in network 'default' on private libvirtd (labbuilder did not make it)")
    plan = host.lb("plan", clash, "--cache", cache, check=False)
    assert plan.returncode == 2 and [line.split(" (hint")[0] for line in plan.stderr.splitlines()
                                     if line.startswith("error:")] == [expected], plan.stderr
    up = host.lb("up", clash, "--no-wait", "--cache", cache, check=False)  # refused where plan is: boots nothing
    assert up.returncode == 2 and expected in up.stderr, up.stderr
    assert host.default_hosts() == before and _objects(host) == objects


def _define(lab: pipeline.Lab, nodes) -> None:
    """As apply does for each node, without volumes or a start (no guest): its domain
    defined (its metadata recording its host entries), then its entries added."""
    want = diff.render_plan(lab.plan, lab.domain_type)
    for node in nodes:
        conn = lab.conns(node.host)
        virt.define_domain(conn, want.domains[node.domain].xml)
        apply.add_entries(conn, node)


def test_the_lab_adds_its_entries_live_and_down_removes_exactly_them(host, cache, monkeypatch):
    foreign_dhcp, foreign_dns = before = host.default_hosts()
    assert foreign_dhcp == [{"mac": "52:54:00:aa:bb:cc", "name": "web", "ip": "192.168.122.50"}]
    plan = json.loads(host.lb("plan", RDO, "--json", "--cache", cache).stdout)
    assert [a["name"] for a in plan["actions"] if a["kind"] == "host entry" and a["verb"] == "add"] == \
        [f"{e['mac']} {e['ip']} {e['name']}" for e in OURS]
    assert not [a for a in plan["actions"] if a["kind"] == "network"]

    monkeypatch.setenv("LABBUILDER_STATE", str(host.state))
    lab = pipeline.open_lab(LabRequest(RDO, private=True, image_cache=cache))
    updates = []
    update = libvirt.virNetwork.update
    monkeypatch.setattr(libvirt.virNetwork, "update", lambda net, *a: updates.append(a[-1]) or update(net, *a))
    try:
        _define(lab, lab.plan.nodes)
        # one update per node and section (DHCP host, DNS host), live and in the definition at once
        assert updates == [libvirt.VIR_NETWORK_UPDATE_AFFECT_LIVE | libvirt.VIR_NETWORK_UPDATE_AFFECT_CONFIG] * 8
        _define(lab, lab.plan.nodes)  # twice: nothing more
        assert len(updates) == 8
        ours_dns = [(e["ip"], (e["name"],)) for e in OURS]
        assert host.default_hosts() == (sorted(foreign_dhcp + OURS, key=lambda h: sorted(h.items())),
                                        sorted(foreign_dns + ours_dns))  # live and defined

        again = json.loads(host.lb("plan", RDO, "--json", "--cache", cache).stdout)
        assert not [a for a in again["actions"] if a["kind"] == "host entry"]  # there, and the domains record them
        assert {(a["verb"], a["detail"].split(":")[0]) for a in again["actions"] if a["kind"] == "domain"} == \
            {("change", "volumes missing")}  # this test made none
        team2 = host.lb("plan", RDO, "--team", "2", "--cache", cache, check=False)
        assert team2.returncode == 2
        assert "labbuilder made it for domain rdo-course-t1-node1" in team2.stderr, team2.stderr
    finally:
        lab.close()
        down = host.lb("down", RDO)
    assert "host entry 52:54:00:00:00:01 192.168.122.101 node1 in network default" in down.stdout
    assert host.default_hosts() == before  # exactly the foreign entries, live and defined
    conn = virt.connect(host.daemon.uri)
    try:
        assert virt.network_info(conn, "default") == (True, "virbr0")  # the host's network stays, running
        assert not virt.owned_objects(conn, "rdo-course")
    finally:
        conn.close()
    assert "Nothing to remove." in host.lb("down", RDO).stdout


def test_an_entry_cut_short_is_completed_and_a_moved_address_replaced(host, cache, monkeypatch, tmp_path):
    """A run cut short between node2's DHCP and DNS entries, and node4 given another address
    in the topology since: the next run adds the missing half, removes node4's old entry
    before its domain records the new one, and `down` still leaves the foreign entries alone."""
    before = host.default_hosts()
    monkeypatch.setenv("LABBUILDER_STATE", str(host.state))
    lab = pipeline.open_lab(LabRequest(RDO, private=True, image_cache=cache))
    moved = tmp_path / "rdo-course.yaml"
    moved.write_text(RDO.read_text().replace("192.168.122.104", "192.168.122.114"))
    try:
        _define(lab, lab.plan.nodes)
        host.virsh("net-update", "default", "delete", "dns-host",
                   "<host ip='192.168.122.102'><hostname>node2</hostname></host>", "--live", "--config")
        lab.close()
        lab = pipeline.open_lab(LabRequest(moved, private=True, image_cache=cache))
        want = diff.render_plan(lab.plan, lab.domain_type)
        entries = [a for a in diff.diff(lab.plan, want, observe.observe_hosts(lab.plan, lab.conns))
                   if a.kind == ObjectKind.HOST_ENTRY]
        assert [(a.verb, a.name) for a in entries] == [("remove", "52:54:00:00:00:04 192.168.122.104 node4"),
                                                       ("add", "52:54:00:00:00:02 192.168.122.102 node2"),
                                                       ("add", "52:54:00:00:00:04 192.168.122.114 node4")]
        # as up: removals first; node2's domain is unchanged, so its entry is added at once;
        # node4's new one after its domain is defined anew (which _define does here)
        apply.apply(ApplyContext(lab.plan, want, lab.conns, "", Progress(), host.state / "locks"), entries[:2])
        _define(lab, [lab.plan.node("node4")])
        dhcp, dns = host.default_hosts()
        assert sorted(h["ip"] for h in dhcp) == ["192.168.122.101", "192.168.122.102", "192.168.122.103",
                                                 "192.168.122.114", "192.168.122.50"]
        assert sorted(ip for ip, _ in dns) == ["192.168.122.101", "192.168.122.102", "192.168.122.103",
                                               "192.168.122.114", "192.168.122.60"]
    finally:
        lab.close()
        host.lb("down", moved)
    assert host.default_hosts() == before

"""A Xen domU (`domain_type: xen`, topologies/xcp-domu.yaml): the domain labbuilder renders
for libvirt's xen (libxl) driver, and a lab that needs Xen stopping in one line where the
host has none. No domU runs here: these machines cannot boot the Xen hypervisor
(docs/design.md, "A Xen domU")."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import REPO, fake_image_entry
from lxml import etree

from labbuilder.lab import diff, pipeline
from labbuilder.lab.hosts import Host
from labbuilder.lab.plan import BaseImage, plan_lab
from labbuilder.model.errors import TopologyError
from labbuilder.model.topology import load_topology
from labbuilder.system.connections import ConnectionPool

IMAGE = BaseImage("debian-12", "/cache/debian-12.qcow2", "ab" * 32, 171245568, 3 << 30)
POOL_DIR = "/var/lib/libvirt/images/labbuilder/{lab}-t1-pool"

# A domU with two extra disks and a NIC on a libvirt NAT network beside the host bridge.
TWO_DISKS = """\
lab: xenx
image: debian-12
domain_type: xen
networks:
  lan:
    mode: bridge
    bridge: xenbr0
  nat:
    mode: nat
    subnet: 192.168.151.0/24
    dhcp: [192.168.151.100, 192.168.151.200]
nodes:
  alpha:
    memory: 512
    nics:
      - network: lan
      - network: nat
        ip: 192.168.151.10
    disks:
      - size: 1G
      - size: 2G
"""


def _plan(path, uri="xen:///system"):
    topo = load_topology(path)
    return topo, plan_lab(topo, 1, {h.name: Host(uri) for h in topo.hosts}, {"debian-12": IMAGE})


def _domain(path):
    _, plan = _plan(path)
    (rendered,) = diff.render_plan(plan, "xen", now=0).domains.values()
    return rendered.xml, etree.fromstring(rendered.xml.encode())


def test_the_xcp_domu_is_a_pv_guest_with_only_what_xen_gives_it():
    """Xen's own devices: the qcow2 overlay through the qdisk backend (libxl reads no storage
    pool, so by path), the seed as a read-only disk (a PV guest has no cdrom drive), the NIC
    on the host's bridge, the PV console; none of QEMU's."""
    _, dom = _domain(REPO / "topologies" / "xcp-domu.yaml")
    pool = POOL_DIR.format(lab="xcp-domu")
    assert dom.get("type") == "xen" and dom.findtext("name") == "xcp-domu-t1-domu"
    assert (dom.findtext("bootloader"), dom.find("os/type").get("machine"), dom.findtext("os/type")) == \
        ("pygrub", "xenpv", "linux")
    disks = [(d.get("type"), d.find("driver").get("name"), d.find("driver").get("type"), d.find("source").get("file"),
              d.find("target").get("dev"), d.find("target").get("bus"), d.find("readonly") is not None)
             for d in dom.iterfind("devices/disk")]
    assert disks == [("file", "qemu", "qcow2", f"{pool}/domu-vda.qcow2", "xvda", "xen", False),
                     ("file", "qemu", "raw", f"{pool}/domu-seed.iso", "xvdb", "xen", True)]
    (nic,) = dom.iterfind("devices/interface")
    assert (nic.get("type"), nic.find("source").get("bridge"), nic.find("model")) == ("bridge", "xenbr0", None)
    assert [c.find("target").get("type") for c in dom.iterfind("devices/console")] == ["xen"]
    qemu_only = ["rng", "channel", "memballoon", "video", "controller", "serial"]
    assert [tag for tag in qemu_only if dom.find(f"devices/{tag}") is not None] == []
    assert dom.find("features") is None and dom.find("cpu") is None


@pytest.mark.skipif(shutil.which("virt-xml-validate") is None, reason="virt-xml-validate missing")
@pytest.mark.subprocess("virt-xml-validate")
def test_a_domus_extra_disks_are_xvd_in_the_guest_and_its_roles_and_the_seed_comes_after_them(tmp_path):
    path = tmp_path / "xenx.yaml"
    path.write_text(TWO_DISKS)
    _, plan = _plan(path)
    assert [d.target for d in plan.node("alpha").disks] == ["xvdb", "xvdc"]
    assert [d["device"] for d in pipeline.inventory(plan, {})["all"]["hosts"]["alpha"]["disks"]] == \
        ["/dev/xvdb", "/dev/xvdc"]
    xml, dom = _domain(path)
    pool = POOL_DIR.format(lab="xenx")
    assert [(d.find("target").get("dev"), d.find("source").get("file")) for d in dom.iterfind("devices/disk")] == \
        [("xvda", f"{pool}/alpha-vda.qcow2"), ("xvdb", f"{pool}/alpha-vdb.qcow2"),
         ("xvdc", f"{pool}/alpha-vdc.qcow2"), ("xvdd", f"{pool}/alpha-seed.iso")]
    # A NIC on a network of libvirt's stays on it: libxl asks libvirt for that network's bridge.
    assert [(n.get("type"), dict(n.find("source").attrib)) for n in dom.iterfind("devices/interface")] == \
        [("bridge", {"bridge": "xenbr0"}), ("network", {"network": "xenx-t1-nat"})]
    (tmp_path / "domain.xml").write_text(xml)
    proc = subprocess.run(["virt-xml-validate", str(tmp_path / "domain.xml"), "domain"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr or proc.stdout


def test_a_domu_with_more_disks_than_xen_names_is_refused_at_its_line(tmp_path):
    path = tmp_path / "xenx.yaml"
    path.write_text(TWO_DISKS.replace("      - size: 2G\n", "      - size: 2G\n" * 24))
    disk_lines = [i for i, line in enumerate(path.read_text().splitlines(), 1) if line.startswith("      - size:")]
    with pytest.raises(TopologyError) as e:
        load_topology(path)
    assert [str(p) for p in e.value.problems] == [
        f"{path}:{disk_lines[24]}: nodes.alpha.disks.24: at most 24 extra disks with domain_type xen: xvdb–xvdy, "
        "and the seed takes the next"]


def _lb(*args, cwd=REPO, env=None):
    return subprocess.run([sys.executable, "-m", "labbuilder.cli", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.subprocess(sys.executable)
def test_plan_shows_the_xcp_domu_on_libvirts_test_driver(tmp_path, test_host):
    """The test driver takes any domain type: `plan` there shows what `up` would make on a
    dom0, and builds or starts nothing."""
    env = {**os.environ, "LABBUILDER_STATE": str(tmp_path / "state"), "COLUMNS": "200"}
    proc = _lb("plan", "topologies/xcp-domu.yaml", "--connect", test_host, "--cache", tmp_path / "cache", "--json",
               env=env)
    assert proc.returncode == 0, proc.stderr
    assert f"xcp-domu team 1 on {test_host}; domain type xen" in proc.stderr
    plan = json.loads(proc.stdout)
    assert {(a["verb"], a["kind"], a["name"]) for a in plan["actions"]} >= {
        ("create", "network", "xcp-domu-t1-lan"), ("create", "pool", "xcp-domu-t1-pool"),
        ("create", "domain", "xcp-domu-t1-domu")}
    assert [(n["network"], n["mode"], n["bridge"]) for n in plan["networks"]] == [("lan", "bridge", "xenbr0")]
    assert not (tmp_path / "state").exists() and not (tmp_path / "cache").exists()


@pytest.mark.subprocess(sys.executable)
@pytest.mark.parametrize("command", ["plan", "up"])
@pytest.mark.parametrize("where", [("--connect", "qemu:///system"), ("--private",)], ids=["qemu", "private"])
def test_a_xen_lab_on_qemus_driver_stops_in_one_line_and_changes_nothing(command, where, tmp_path, golden):
    """Refused from where the slot lands, before anything connects or starts (a private
    libvirtd is QEMU's too), and before `up` builds the image it lacks."""
    state = tmp_path / "state"
    env = {**os.environ, "LABBUILDER_STATE": str(state), "COLUMNS": "300"}
    proc = _lb(command, "topologies/xcp-domu.yaml", *where, "--cache", tmp_path / "cache", env=env)
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1
    golden(f"xen-on-{where[-1].strip('-').split(':')[0]}.txt", proc.stderr.replace(str(state), "<state>"))
    assert not state.exists() and not (tmp_path / "cache").exists()



def test_a_xen_lab_on_a_pool_is_checked_on_every_pool_host_before_up_builds_its_image(tmp_path, test_host,
                                                                                       monkeypatch):
    """A team may land on any host of the pool: each is checked for libvirt's xen driver
    before `up` builds the image the lab lacks (libvirt's test driver takes any domain type),
    and before a placement connects to any."""
    from labbuilder.model.request import LabRequest
    from labbuilder.system import virt

    monkeypatch.setenv("LABBUILDER_STATE", str(tmp_path / "state"))
    inventory = tmp_path / "pool.yaml"
    # Room for the domU on the test host (its own `test` domain holds most of the memory):
    # up plans the team before the build, and a team that does not fit is refused there.
    inventory.write_text(f"pool:\n  lab1: {{uri: '{test_host}', overcommit: 8}}\n")
    req = LabRequest(REPO / "topologies/xcp-domu.yaml", 1, None, inventory, None, 1.0, tmp_path / "cache")
    assert list(pipeline.images_to_build(req).values()) == ["debian-12"]
    inventory.write_text(f"pool:\n  lab1: {{uri: '{test_host}', overcommit: 8}}\n  lab2: qemu:///system\n")
    with pytest.raises(TopologyError) as e:
        pipeline.images_to_build(req)
    assert [p.message for p in e.value.problems] == [
        "pool host lab2 lands on qemu:///system, libvirt's qemu driver: a domain_type xen lab runs only on a Xen "
        "dom0, "
        "through libvirt's xen driver"]
    assert not (tmp_path / "state").exists() and not (tmp_path / "cache").exists()
    connected = []
    monkeypatch.setattr(virt, "connect", lambda uri, *_: connected.append(uri))
    with pytest.raises(TopologyError) as placed:
        pipeline.open_labs([req], start_private=None)
    assert [p.message for p in placed.value.problems] == [p.message for p in e.value.problems] and connected == []


@pytest.mark.subprocess(sys.executable)
@pytest.mark.parametrize("built", [False, True], ids=["image-missing", "image-built"])
@pytest.mark.parametrize("command", ["plan", "up"])
@pytest.mark.parametrize("member", ["qemu:///system", "{private: PRIVATE}"], ids=["qemu", "private"])
def test_a_xen_lab_on_a_pool_of_qemu_hosts_stops_in_one_line_and_starts_nothing(member, command, built, tmp_path,
                                                                                  golden):
    """A pool host is checked as a slot is: from where it lands, before its private libvirtd
    is started, its capacity read or an image built."""
    state, cache, private = tmp_path / "state", tmp_path / "cache", tmp_path / "private"
    if built:
        fake_image_entry(cache, "debian-12")
    (tmp_path / "hosts.yaml").write_text(f"pool:\n  dom0: {member.replace('PRIVATE', str(private))}\n")
    env = {**os.environ, "LABBUILDER_STATE": str(state), "COLUMNS": "300"}
    proc = _lb(command, "topologies/xcp-domu.yaml", "--hosts", tmp_path / "hosts.yaml", "--cache", cache, env=env)
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1
    golden(f"xen-on-pool-{member.split(':')[0].strip('{')}.txt", proc.stderr.replace(str(private), "<private>"))
    assert not state.exists() and not private.exists() and cache.exists() == built


@pytest.mark.subprocess(sys.executable)
@pytest.mark.parametrize("command", ["plan", "up"])
def test_a_pool_host_without_xen_is_named_at_the_domain_type_before_its_capacity_is_read(command, tmp_path):
    """Where no dom0 answers on a xen URI (no libvirtd, or one whose xen driver never
    loads), the pool host is refused in one line, as a slot would be."""
    (tmp_path / "hosts.yaml").write_text("pool:\n  dom0: xen:///system\n")
    env = {**os.environ, "LABBUILDER_STATE": str(tmp_path / "state"), "COLUMNS": "300"}
    proc = _lb(command, "topologies/xcp-domu.yaml", "--hosts", tmp_path / "hosts.yaml", "--cache", tmp_path / "cache",
               env=env)
    assert proc.returncode == 2 and proc.stdout == ""
    (line,) = proc.stderr.splitlines()
    assert line.startswith("error: topologies/xcp-domu.yaml:13: domain_type: host dom0 has no Xen hypervisor "
                           "(libvirt's xen driver: "), line
    assert not (tmp_path / "state").exists() and not (tmp_path / "cache").exists()


@pytest.mark.subprocess(sys.executable)
def test_a_xen_lab_joining_a_hosts_network_is_refused_at_its_domain_type_not_at_reading_the_network(tmp_path):
    """The host is asked whether it runs Xen before anything else is read from it (here no
    dom0 answers on xen:///system, as on the pool host above)."""
    path = tmp_path / "xenx.yaml"
    path.write_text("lab: xenx\nimage: debian-12\ndomain_type: xen\nnetworks:\n  lan:\n    existing: default\n"
                    "nodes:\n  alpha:\n    memory: 512\n    nics:\n      - network: lan\n        ip: 192.168.122.50\n")
    fake_image_entry(tmp_path / "cache", "debian-12")
    env = {**os.environ, "LABBUILDER_STATE": str(tmp_path / "state"), "COLUMNS": "300"}
    proc = _lb("plan", path, "--connect", "xen:///system", "--cache", tmp_path / "cache", env=env)
    assert proc.returncode == 2 and proc.stdout == ""
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"error: {path}:3: domain_type: host xen:///system has no Xen hypervisor "
                           "(libvirt's xen driver: "), line


@pytest.mark.libvirtd
def test_a_libvirtd_whose_xen_driver_finds_no_hypervisor_is_named_in_one_line(private_libvirtd, tmp_path):
    """What libvirt's own xen driver says on a host not booted into Xen (here: the driver is
    installed but never loads), as a user of a domain_type xen lab reads it."""
    topo, plan = _plan(REPO / "topologies" / "xcp-domu.yaml", private_libvirtd.uri.replace("qemu+unix", "xen+unix", 1))
    conns = ConnectionPool()
    try:
        with pytest.raises(TopologyError) as e:
            pipeline.check_xen_hosts(topo, plan.hosts, conns)
    finally:
        conns.close()
    (line,) = e.value.lines()
    where = f"{topo.path}:{topo.marks[('domain_type',)]}: domain_type: host {plan.hosts[0].uri} "
    assert line.startswith(where + "has no Xen hypervisor (libvirt's xen driver: internal error: libxenlight state "
                           "driver is not active): a domain_type xen lab runs only on a Xen dom0 (hint: "), line


@pytest.mark.subprocess(sys.executable)
@pytest.mark.parametrize("command", [["checkpoint", "--name", "x"], ["reset", "--to", "x"]],
                         ids=["checkpoint", "reset-to"])
def test_checkpoints_of_a_xen_lab_are_refused_at_its_domain_type_before_anything_changes(command, tmp_path, test_host):
    """Checkpoints are QEMU's internal snapshots with memory: a xen lab has none."""
    env = {**os.environ, "LABBUILDER_STATE": str(tmp_path / "state"), "COLUMNS": "300"}
    proc = _lb(command[0], "topologies/xcp-domu.yaml", "--connect", test_host, *command[1:], env=env)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines()[-1] == (
        "error: topologies/xcp-domu.yaml:13: domain_type: checkpoints (checkpoint, up --checkpoints, reset --to) "
        "need QEMU's snapshots: a domain_type xen lab has none (hint: reset the team cold (labbuilder reset) instead)")
    assert not (tmp_path / "state").exists()

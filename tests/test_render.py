"""Plan and render without a hypervisor: the gridka lab's concrete addresses, and every
rendered network and domain checked against libvirt's own schemas and golden files."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from conftest import REPO

from labbuilder.lab import diff
from labbuilder.lab.hosts import Host
from labbuilder.lab.plan import BaseImage, plan_lab
from labbuilder.model.names import bridge_name
from labbuilder.model.topology import load_topology

IMAGE = BaseImage("debian-12", "/cache/debian-12.qcow2", "ab" * 32, 171245568, 3 << 30)
COURSE = {"db-node": "10.0.0.3", "auth-node": "10.0.0.4", "image-node": "10.0.0.5",
          "api-node": "10.0.0.6", "network-node": "10.0.0.7", "volume-node": "10.0.0.8",
          "compute-1": "10.0.0.20", "compute-2": "10.0.0.21"}


def _plan(name, team=1):
    topo = load_topology(REPO / "topologies" / f"{name}.yaml")
    hosts = {h.name: Host("qemu:///system") for h in topo.hosts}
    return plan_lab(topo, team, hosts, {"debian-12": IMAGE, "gridka-base": IMAGE, "gridka-openstack": IMAGE})


def test_gridka_plan_has_the_course_addresses():
    plan = _plan("gridka", team=3)
    internal = {n.name: str(next(x.ip for x in n.nics if x.network == "internal")) for n in plan.nodes}
    assert internal == COURSE
    net = plan.node("network-node")
    assert [(x.guest_name, x.network, x.configure) for x in net.nics][2:] == \
        [("eth2", "public", True), ("eth3", "public", False)]
    assert [(d.target, d.size_bytes) for d in plan.node("volume-node").disks] == [("vdb", 2 << 30)]
    assert all(n.domain == f"gridka-t3-{n.name}" for n in plan.nodes)


def test_names_macs_and_bridges_differ_between_teams():
    one, two = _plan("demo", 1), _plan("demo", 2)
    assert {n.libvirt_name for n in one.networks}.isdisjoint(n.libvirt_name for n in two.networks)
    assert {n.bridge for n in one.networks}.isdisjoint(n.bridge for n in two.networks)
    macs = lambda p: {x.mac for n in p.nodes for x in n.nics}
    assert macs(one).isdisjoint(macs(two)) and len(macs(one)) == 4
    assert all(len(b) <= 15 for b in (bridge_name("a" * 20, 99, "b" * 60),))


def test_rdo_course_keeps_its_fixed_macs_and_leases():
    plan = _plan("rdo-course")
    net = plan.networks[0]
    assert sorted(net.static_hosts) == [(f"52:54:00:00:00:0{i}", f"192.168.122.10{i}", f"node{i}")
                                        for i in range(1, 5)]


def _rendered(name, team=1):
    plan = _plan(name, team)
    xen = load_topology(REPO / "topologies" / f"{name}.yaml").domain_type == "xen"
    want = diff.render_plan(plan, "xen" if xen else "qemu", now=0)
    return ({r.libvirt_name: r.xml for r in want.networks.values()},
            {r.libvirt_name: r.xml for r in want.domains.values()})


@pytest.mark.skipif(shutil.which("virt-xml-validate") is None, reason="virt-xml-validate missing")
@pytest.mark.subprocess("virt-xml-validate")
@pytest.mark.parametrize("lab", ["gridka", "rdo-course", "diablo-aio", "demo", "xcp-domu"])
def test_rendered_xml_passes_libvirt_schemas(lab, tmp_path):
    networks, domains = _rendered(lab)
    for kind, docs in (("network", networks), ("domain", domains)):
        for name, xml in docs.items():
            path = tmp_path / f"{name}.xml"
            path.write_text(xml)
            proc = subprocess.run(["virt-xml-validate", str(path), kind], capture_output=True, text=True)
            assert proc.returncode == 0, f"{name}: {proc.stderr or proc.stdout}"


@pytest.mark.parametrize("lab", ["gridka", "xcp-domu"])
def test_rendered_xml_matches_golden_files(lab, golden):
    networks, domains = _rendered(lab)
    for name, xml in {**networks, **domains}.items():
        golden(f"xml/{name}.xml", xml)


def test_plan_hash_is_stable_and_follows_the_definition():
    a = diff.render_plan(_plan("demo"), "qemu", now=1)
    b = diff.render_plan(_plan("demo"), "qemu", now=1)
    assert [r.digest for r in a.domains.values()] == [r.digest for r in b.domains.values()]
    c = diff.render_plan(_plan("demo"), "kvm", now=2)
    assert [r.digest for r in a.domains.values()] != [r.digest for r in c.domains.values()]


def test_missing_base_image_names_file_line_and_key(tmp_path, golden, monkeypatch):
    from labbuilder.lab.pipeline import find_images
    from labbuilder.model.errors import TopologyError

    monkeypatch.chdir(REPO)
    topo = load_topology("topologies/demo.yaml")
    with pytest.raises(TopologyError) as e:
        find_images(topo, tmp_path)
    golden("topology-missing-image.txt", "\n".join(e.value.lines()).replace(str(tmp_path), "<cache>") + "\n")


def _defining_virt(docs: list):
    """A stand-in for system/virt that keeps what would be defined (kind, XML) in `docs`."""
    from types import SimpleNamespace

    return SimpleNamespace(
        connect=lambda uri: SimpleNamespace(storagePoolLookupByName=lambda name: None),
        define_network=lambda conn, xml: docs.append(("network", xml)),
        define_domain=lambda conn, xml: docs.append(("domain", xml)),
        ensure_pool=lambda *a: None, create_volume=lambda *a: None,
        upload_volume=lambda *a: None, start_domain=lambda *a: None)


def _assert_valid(docs: list, tmp_path, who: str) -> None:
    """Each (kind, XML) of `docs` passes libvirt's schema for its kind."""
    for i, (kind, xml) in enumerate(docs):
        path = tmp_path / f"{i}.xml"
        path.write_text(xml)
        proc = subprocess.run(["virt-xml-validate", str(path), kind], capture_output=True, text=True)
        assert proc.returncode == 0, f"{who} {kind}: {proc.stderr or proc.stdout}"


@pytest.mark.skipif(shutil.which("virt-xml-validate") is None, reason="virt-xml-validate missing")
@pytest.mark.subprocess("virt-xml-validate")
@pytest.mark.parametrize("module, build", [("test_boot", "_create_lab"), ("test_gridka_image", "_create_node")])
def test_vm_tests_hand_libvirt_valid_xml(module, build, tmp_path, monkeypatch):
    """The boot tests render their small labs by hand; what they would define must render
    against today's templates and pass libvirt's schemas (checked here, without booting)."""
    import importlib
    from types import SimpleNamespace

    mod = importlib.import_module(module)
    docs = []
    monkeypatch.setattr(mod, "virt", _defining_virt(docs))
    monkeypatch.setattr(mod.seed, "seed_iso", lambda identity: b"seed")
    base = SimpleNamespace(manifest={"image": {"virtual_size": 1 << 30}}, dir=tmp_path, image=tmp_path / "base.qcow2")
    getattr(mod, build)(None, base, tmp_path, "ssh-ed25519 AAAA test")
    assert {kind for kind, _ in docs} == {"network", "domain"}
    _assert_valid(docs, tmp_path, module)


@pytest.mark.skipif(shutil.which("virt-xml-validate") is None, reason="virt-xml-validate missing")
@pytest.mark.subprocess("virt-xml-validate")
def test_the_benchmark_floor_defines_libvirt_valid_xml(tmp_path, monkeypatch):
    """bench/floor.py (bench/lifecycle.py's plain libvirt-python floor) renders its network
    and domains by hand from the same templates; they must render and pass libvirt's
    schemas, or the lifecycle benchmark fails at its first up (checked here, no libvirtd)."""
    import importlib.util
    from types import SimpleNamespace

    spec = importlib.util.spec_from_file_location("bench_floor", REPO / "bench" / "floor.py")
    floor = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(floor)
    docs = []
    monkeypatch.setattr(floor, "virt", _defining_virt(docs))
    monkeypatch.setattr(floor.ssh, "ensure_keypair", lambda path: "ssh-ed25519 AAAA test")
    monkeypatch.setattr(floor.accel, "detect", lambda: SimpleNamespace(domain_type="qemu"))
    monkeypatch.setattr(floor.seed, "seed_iso", lambda identity: b"seed")
    floor.up(None, SimpleNamespace(n=2, state=tmp_path, uri="test:///unused", virtual_size=1 << 30,
                                   base=str(tmp_path / "base.qcow2")))
    assert sorted(kind for kind, _ in docs) == ["domain", "domain", "network"]
    _assert_valid(docs, tmp_path, "floor")

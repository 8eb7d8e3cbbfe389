"""Topology loading: the shipped labs load as the courses describe them, per-team address
shifts, and every problem in a bad file reported as FILE:LINE: key.path: message."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from labbuilder.model.errors import TeamError, TopologyError
from labbuilder.model.topology import Topology, load_topology, shift_ip
from labbuilder.model.yamlread import load_with_marks

REPO = Path(__file__).resolve().parent.parent
DATA = Path("tests/data/topologies")
SHIPPED = sorted(p.stem for p in (REPO / "topologies").glob("*.yaml"))
BAD = sorted(p.stem for p in (REPO / DATA).glob("*.yaml"))


def shipped(name: str) -> Topology:
    return load_topology(REPO / "topologies" / f"{name}.yaml")


def test_the_four_labs_are_shipped():
    assert {"gridka", "rdo-course", "diablo-aio", "demo"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_topology_loads(name):
    topo = shipped(name)
    assert topo.lab == name
    assert topo.nodes and topo.networks
    assert all((REPO / "images" / f"{node.image}.yaml").exists() for node in topo.nodes)


def test_gridka_nodes_and_course_addresses():
    topo = shipped("gridka")
    internal = {n.name: str(nic.ip) for n in topo.nodes for nic in n.nics if nic.network == "internal"}
    assert internal == {"db-node": "10.0.0.3", "auth-node": "10.0.0.4", "image-node": "10.0.0.5",
                        "api-node": "10.0.0.6", "network-node": "10.0.0.7", "volume-node": "10.0.0.8",
                        "compute-1": "10.0.0.20", "compute-2": "10.0.0.21"}
    assert [h.name for h in topo.hosts] == ["host-a", "host-b"]
    assert {n.name for n in topo.nodes if n.host == "host-b"} == {"compute-1", "compute-2"}
    assert topo.roles == ("common", "db", "auth", "image", "api", "network", "volume", "compute")
    assert topo.node("db-node").roles == ("common", "db")


def test_gridka_network_node_has_four_nics_and_eth3_is_unconfigured():
    nics = shipped("gridka").node("network-node").nics
    assert [n.guest_name for n in nics] == ["eth0", "eth1", "eth2", "eth3"]
    assert [n.network for n in nics] == ["nat", "internal", "public", "public"]
    assert nics[3].configure is False and nics[3].ip is None
    assert all(n.configure for n in nics[:3])


def test_gridka_volume_node_has_vdb_of_2_gib():
    disks = shipped("gridka").node("volume-node").disks
    assert [(d.target, d.size_bytes, d.bus) for d in disks] == [("vdb", 2 << 30, "virtio")]


def test_rdo_course_fixed_macs_and_static_leases():
    topo = shipped("rdo-course")
    assert [(n.name, n.nics[0].mac, str(n.nics[0].ip)) for n in topo.nodes] == [
        (f"node{i}", f"52:54:00:00:00:0{i}", f"192.168.122.10{i}") for i in range(1, 5)]
    # The course's 1000 MB does not hold Zed's controller: node1 has 4096, the others 1024.
    assert {n.name: n.memory_mib for n in topo.nodes} == {"node1": 4096, "node2": 1024, "node3": 1024, "node4": 1024}
    assert topo.network("default").existing == "default"  # libvirt's own, as the course has it


def test_diablo_aio_is_one_vm_at_100():
    topo = shipped("diablo-aio")
    (node,) = topo.nodes
    # eth0 NAT (the package cache), eth1 the host-only network, as under Vagrant
    assert [n.network for n in node.nics] == ["nat", "hostonly"]
    assert node.hostname == "aio" and str(node.nics[1].ip) == "192.168.86.100"
    assert topo.network("hostonly").mode == "isolated"


def test_defaults_demo():
    topo = shipped("demo")
    alpha = topo.node("alpha")
    assert [h.name for h in topo.hosts] == ["default"] and alpha.host == "default"
    assert alpha.vcpus == 1 and alpha.memory_mib == 512
    assert [(d.target, d.size_bytes) for d in alpha.disks] == [("vdb", 1 << 30)]
    lan = topo.network("lan")
    assert lan.gateway == IPv4Address("192.168.140.1") and lan.per_team
    assert topo.network("backend").dhcp is None


def test_model_is_frozen_and_uses_tuples():
    topo = shipped("gridka")
    with pytest.raises(dataclasses.FrozenInstanceError):
        topo.lab = "other"  # type: ignore[misc]
    assert isinstance(topo.nodes, tuple) and isinstance(topo.nodes[0].nics, tuple)
    assert isinstance(topo.nodes[0].roles, tuple)


def test_team_shift_per_team_network():
    topo = shipped("demo")
    lan = topo.network("lan")
    team3 = lan.for_team(3)
    assert team3.subnet == IPv4Network("192.168.142.0/24")
    assert team3.gateway == IPv4Address("192.168.142.1")
    assert team3.dhcp == (IPv4Address("192.168.142.100"), IPv4Address("192.168.142.200"))
    assert shift_ip(lan, topo.node("alpha").nics[0].ip, 3) == IPv4Address("192.168.142.10")
    assert lan.for_team(1) == lan
    assert topo.network("backend").for_team(99).subnet == IPv4Network("10.10.98.0/24")


def test_team_shift_shared_network_stays():
    internal = shipped("gridka").network("internal")
    assert internal.for_team(3).subnet == IPv4Network("10.0.0.0/24")
    assert shift_ip(internal, IPv4Address("10.0.0.3"), 3) == IPv4Address("10.0.0.3")


@pytest.mark.parametrize("team", [0, 100])
def test_team_out_of_range(team):
    with pytest.raises(TeamError, match="is not in 1..99"):
        shipped("demo").network("lan").for_team(team)


def test_topology_problem_points_at_the_line():
    topo = shipped("gridka")
    p = topo.problem(("nodes", "db-node", "image"), "image 'debian-12' is not built", "run image build")
    assert str(p).startswith(f"{REPO}/topologies/gridka.yaml:")
    assert p.line == _line_of(REPO / "topologies" / "gridka.yaml", "  db-node:")
    assert p.key == "nodes.db-node"
    assert topo.problem(("networks", "nat", "subnet"), "clashes").key == "networks.nat.subnet"


def test_image_uses_point_at_the_key_that_names_the_image(tmp_path):
    text = (REPO / "topologies" / "demo.yaml").read_text()
    (tmp_path / "t.yaml").write_text(text.replace("  beta:\n", "  beta:\n    image: ubuntu-24\n"))
    topo = load_topology(tmp_path / "t.yaml")
    assert topo.image_uses() == (("debian-12", ("image",)), ("ubuntu-24", ("nodes", "beta", "image")))
    assert topo.problem(("nodes", "beta", "image"), "x").line == _line_of(tmp_path / "t.yaml", "    image:")


def _line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if line.startswith(text))


@pytest.mark.parametrize("name", BAD)
def test_bad_topology_message_is_exact(name, golden, monkeypatch):
    monkeypatch.chdir(REPO)
    with pytest.raises(TopologyError) as e:
        load_topology(DATA / f"{name}.yaml")
    golden(f"topology-{name}.txt", "\n".join(e.value.lines()) + "\n")


def test_every_problem_is_collected(monkeypatch):
    monkeypatch.chdir(REPO)
    with pytest.raises(TopologyError) as e:
        load_topology(DATA / "many-problems.yaml")
    problems = e.value.problems
    assert len(problems) >= 6
    assert all(p.path == str(DATA / "many-problems.yaml") and p.line for p in problems)
    assert [p.line for p in problems] == sorted(p.line for p in problems)


def test_missing_file_is_a_topology_error(tmp_path):
    with pytest.raises(TopologyError, match="cannot read file"):
        load_topology(tmp_path / "nope.yaml")


def test_duplicate_keys_are_recorded_and_the_last_one_wins(tmp_path):
    (tmp_path / "d.yaml").write_text("a:\n  x: 1\n  y: 2\na:\n  x: 3\n")
    data, marks = load_with_marks(tmp_path / "d.yaml")
    assert data == {"a": {"x": 3}}  # what PyYAML itself would give
    assert marks[("a", "x")] == 5 and ("a", "y") not in marks
    assert marks.duplicates == [((), "a", 4, 1)]


YAML_FILES = sorted(str(p.relative_to(REPO)) for d in ("topologies", "images", "tests/data")
                    for p in (REPO / d).rglob("*.yaml"))
EDGE_CASES = {
    "anchors and merge keys": "a: &x {b: 1, c: [1, 2]}\nd: *x\ne:\n  <<: *x\n  b: 2\n",
    "block scalars": "a: |\n  one\n  two\nb: >-\n  folded\n  text\n",
    "quoting and escapes": "a: 'it''s'\nb: \"tab\\there \\u00e9\"\nc: ~\nd: yes\ne: 0o17\nf: 1_000\n",
    "flow in block": "nodes: {a: {nics: [{network: lan, ip: 10.0.0.3}]}, b: {}}\n",
    "comments and blank lines": "# head\n\na: 1  # trailing\n\n# between\nb:\n  - 1\n  # inside\n  - 2\n",
    "unicode and a BOM": "\ufeffname: caf\u00e9\nnote: \u65e5\u672c\n",
    "tab in indentation": "a:\n\tb: 1\n",
    "unclosed flow": "a: [1, 2\nb: 3\n",
    "two documents": "a: 1\n---\nb: 2\n",
    "bad indentation": "a:\n  b: 1\n c: 2\n",
}


def _events(text: str, loader):
    """The parse events of `text` as plain data (type, anchor, tag, value, implicit, line), or
    "error": flat, so a 1000-deep file or an alias bomb is read here as fast as anywhere."""
    import yaml

    out = []
    try:
        parser = loader(text)
        while parser.check_event():
            e = parser.get_event()
            out.append((type(e).__name__, getattr(e, "anchor", None), getattr(e, "tag", None),
                        getattr(e, "value", None), getattr(e, "implicit", None), e.start_mark.line))
    except yaml.YAMLError:
        return "error"
    return out


def _text(source) -> str | None:
    """A file's text, or None if it is not UTF-8 (then no parser ever sees it)."""
    if not isinstance(source, Path):
        return source
    try:
        return source.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        return None


@pytest.mark.parametrize("text", [*(REPO / p for p in YAML_FILES), *EDGE_CASES.values()],
                         ids=[*YAML_FILES, *EDGE_CASES])
def test_libyaml_parses_what_pyyamls_parser_does(text):
    """Files are parsed by libyaml (yamlnodes composes its events), and only a file it
    rejects goes through PyYAML's own parser for the wording of the error: so both must read
    every file alike, including which files are errors."""
    import yaml

    assert hasattr(yaml, "CSafeLoader"), "PyYAML without libyaml: Debian's python3-yaml has it"
    text = _text(text)
    if text is None:
        pytest.skip("not UTF-8: refused before any parser")
    assert _events(text, yaml.CSafeLoader) == _events(text, yaml.SafeLoader)


def test_rdo_course_nodes_have_the_course_disk_size():
    """`disk: 30G`: the root disk (and, at first boot, its file system) as the course sizes it."""
    topo = shipped("rdo-course")
    assert {n.name: n.root_bytes for n in topo.nodes} == {f"node{i}": 30 << 30 for i in range(1, 5)}


@pytest.mark.parametrize("value", ["0", "30Q", "65T", "-1G"])
def test_a_root_disk_size_out_of_bounds_is_refused_with_its_line(tmp_path, value):
    text = (Path(__file__).parent.parent / "topologies" / "demo.yaml").read_text()
    text = text.replace("  alpha:\n", f"  alpha:\n    disk: {value!r}\n", 1)
    path = tmp_path / "t.yaml"
    path.write_text(text)
    with pytest.raises(TopologyError) as e:
        load_topology(path)
    assert any(p.key == "nodes.alpha.disk" and "is not a disk size" in p.message for p in e.value.problems)


def test_the_root_disk_grows_the_overlay_and_is_never_smaller_than_the_image(tmp_path, test_host):
    from labbuilder.lab import hosts, render
    from labbuilder.lab.plan import BaseImage, plan_lab

    text = (Path(__file__).parent.parent / "topologies" / "demo.yaml").read_text()
    grown = tmp_path / "grown.yaml"
    grown.write_text(text.replace("  alpha:\n", "  alpha:\n    disk: 30G\n", 1))
    topo = load_topology(grown)
    slots = hosts.resolve_hosts(topo, test_host, None, tmp_path, start=False)
    image = {"debian-12": BaseImage("debian-12", "/x.qcow2", "ab" * 32, 1 << 28, 3 << 30)}
    plan = plan_lab(topo, 1, slots, image)
    assert {n.name: n.vda_bytes for n in plan.nodes} == {"alpha": 30 << 30, "beta": 3 << 30}
    assert "<capacity unit=\"bytes\">32212254720</capacity>" in render.volume_xml("alpha-vda.qcow2", 30 << 30, "qcow2")
    small = tmp_path / "small.yaml"
    small.write_text(text.replace("  alpha:\n", "  alpha:\n    disk: 2G\n", 1))
    with pytest.raises(TopologyError) as e:
        plan_lab(load_topology(small), 1, slots, image)
    assert "cannot be smaller than image 'debian-12' (3.0 GiB)" in str(e.value.problems[0])

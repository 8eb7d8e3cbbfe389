"""Teams placed on an inventory's pool of hosts by capacity (lab/placement.py), with what
was read from each host passed in: the table `plan --teams` shows and the one-line
refusal (golden files), the rule (spread, sticky, split only where bridges join), the
limits; then `plan --teams` as a user runs it on libvirt's test driver."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, fake_image_entry
from rich.console import Console

from labbuilder.cli.output import print_placement
from labbuilder.lab import placement
from labbuilder.lab.placement import GiB, HostCapacity, HostRoom, MiB
from labbuilder.model.errors import PlacementError
from labbuilder.model.inventory import PoolHost, SlotEntry
from labbuilder.model.topology import load_topology

PLACED = "tests/data/placement-gridka.yaml"  # gridka's slots at fixed sizes
GRIDKA = load_topology(REPO / PLACED)  # slot host-a 7 GiB, host-b 2 GiB; both on `internal`
DEMO = load_topology(REPO / "topologies/demo.yaml")  # one slot, 1 GiB


def _room(name, memory_gib, promised_gib=0, disk_gib=None, joins=()):
    return HostRoom(name, memory_gib * GiB, promised_gib * GiB, None if disk_gib is None else disk_gib * GiB,
                    frozenset(joins))


# Three lab hosts: lab1 and lab2 join gridka's `internal` to a bridge linked between them, lab3 joins
# nothing and has no pool to ask yet. 9 GiB are promised on lab1 (a team there), 4 on lab2.
POOL = (_room("lab1", 32, 9, 200, ["internal"]), _room("lab2", 48, 4, 120, ["internal"]), _room("lab3", 16))


def _text(p, title="gridka: teams 1–6 on the pool of hosts.yaml") -> str:
    console = Console(file=io.StringIO(), width=200, color_system=None)
    print_placement(p, title, to=console)
    return console.file.getvalue()


def test_the_placement_table_shows_each_teams_hosts_and_each_host_after_them(golden):
    p = placement.place([1, 2, 3, 4, 5, 6], placement.slot_needs(GRIDKA), POOL, {2: {"host-a": "lab1", "host-b": "lab1"}})
    golden("placement-gridka.txt", _text(p))
    assert p.teams[2] == {"host-a": "lab1", "host-b": "lab1"} and p.running == {2}
    assert p.refusal() is None


def test_a_class_that_does_not_fit_is_refused_in_one_line_naming_what_each_host_lacks(golden):
    p = placement.place(list(range(1, 13)), placement.slot_needs(GRIDKA), POOL, {})
    golden("placement-refusal.txt", p.refusal() + "\n")
    # A gridka team: 9 GiB, 27 GiB of pool space. After seven, no host holds one whole, and
    # no split does either: lab3 would take host-a, but host-b could join it nowhere. The
    # five left over go where the rule would put them were the hosts larger: what each
    # host lacks is then what these teams take beyond its room.
    assert p.unfit == (8, 9, 10, 11, 12)
    assert [(h.name, h.teams) for h in p.hosts] == [("lab1", (4, 7, 10)), ("lab2", (1, 2, 3, 5, 8, 11)),
                                                    ("lab3", (6, 9, 12))]


def test_a_new_team_goes_whole_to_the_host_with_the_most_memory_left_ties_in_pool_order():
    rooms = (_room("a", 4), _room("b", 4), _room("c", 3))
    p = placement.place([1, 2, 3, 4, 5], placement.slot_needs(DEMO), rooms, {})
    # a and b have 4 GiB, c 3: a, b, then a again (3 GiB left on each, a first), b, c.
    assert {t: s["default"] for t, s in p.teams.items()} == {1: "a", 2: "b", 3: "a", 4: "b", 5: "c"}
    assert [(h.name, h.teams, h.memory_left) for h in p.hosts] == [("a", (1, 3), 2 * GiB), ("b", (2, 4), 2 * GiB),
                                                                   ("c", (5,), 2 * GiB)]


def test_same_input_same_assignment_and_a_class_placed_in_parts_lands_as_placed_at_once():
    needs = placement.slot_needs(GRIDKA)
    whole = placement.place(list(range(1, 9)), needs, POOL, {})
    assert placement.place(list(range(1, 9)), needs, POOL, {}) == whole
    first = placement.place([1, 2, 3, 4], needs, POOL, {})
    # The first part now runs: its memory is promised on its hosts, and it is found there.
    promised = {h.name: h.promised for h in first.hosts}
    after = tuple(HostRoom(r.name, r.memory, promised[r.name],
                           r.disk and r.disk - sum(n.disk for t, s in first.teams.items()
                                                   for n in needs if s[n.slot] == r.name), r.joins) for r in POOL)
    second = placement.place(list(range(1, 9)), needs, after, first.teams)
    assert second.teams == whole.teams and second.running == {1, 2, 3, 4}


def test_a_running_team_stays_where_it_runs_and_is_not_counted_twice():
    rooms = (_room("a", 8, promised_gib=1), _room("b", 8))  # team 1 (1 GiB) runs on a
    p = placement.place([1, 2], placement.slot_needs(DEMO), rooms, {1: {"default": "a"}})
    assert p.teams == {1: {"default": "a"}, 2: {"default": "b"}} and p.running == {1}
    assert [(h.name, h.promised) for h in p.hosts] == [("a", 1 * GiB), ("b", 1 * GiB)]
    # Even a host now over its limit keeps its running team: placements are never moved.
    full = placement.place([1], placement.slot_needs(DEMO), (_room("a", 1, 6), _room("b", 8)), {1: {"default": "a"}})
    assert full.teams == {1: {"default": "a"}} and full.refusal() is None


def test_a_team_some_of_whose_slots_run_goes_first_to_their_host():
    rooms = (_room("lab1", 32, 7, None, ["internal"]), _room("lab2", 64, 0, None, ["internal"]))
    p = placement.place([1], placement.slot_needs(GRIDKA), rooms, {1: {"host-a": "lab1"}})
    assert p.teams == {1: {"host-a": "lab1", "host-b": "lab1"}} and p.running == set()


def test_a_team_is_split_only_when_no_host_holds_it_and_only_where_bridges_join_its_network():
    """gridka needs 9 GiB (host-a 7, host-b 2): no host holds it whole. Its slots share the
    isolated `internal`: lab3 (the most room, no bridge) would take host-a, but then host-b
    could join it nowhere; so host-a goes to lab1, host-b to lab2, both joined."""
    rooms = (_room("lab1", 8, 0, None, ["internal"]), _room("lab2", 3, 0, None, ["internal"]),
             HostRoom("lab3", int(8.5 * GiB), 0, None))
    p = placement.place([1], placement.slot_needs(GRIDKA), rooms, {})
    assert p.teams == {1: {"host-a": "lab1", "host-b": "lab2"}}
    assert [h.teams for h in p.hosts] == [(1,), (1,), ()]
    # Without the bridge on lab2 the team does not fit: no split keeps `internal` one network.
    unjoined = (rooms[0], _room("lab2", 3), rooms[2])
    assert placement.place([1], placement.slot_needs(GRIDKA), unjoined, {}).unfit == (1,)


def test_memory_is_the_limit_times_overcommit_and_pool_space_the_smaller_of_free_and_the_disk_limit():
    where = SlotEntry("lab1", "qemu+ssh://lab1/system", bridges=(("internal", "br0"),))
    seen = HostCapacity(memory=64 * GiB, promised=10 * GiB, pool_free=300 * GiB, lab_volumes=50 * GiB)
    assert placement.host_room(PoolHost(where), seen) == HostRoom("lab1", 64 * GiB, 10 * GiB, 300 * GiB,
                                                                  frozenset({"internal"}))
    room = placement.host_room(PoolHost(where, memory=32 * GiB, disk=200 * GiB, overcommit=1.5), seen)
    assert (room.memory, room.disk) == (48 * GiB, 150 * GiB)  # 200 GiB less the 50 labbuilder's volumes take
    assert placement.host_room(PoolHost(where, disk=500 * GiB), seen).disk == 300 * GiB  # no more than is free
    assert placement.host_room(PoolHost(where), HostCapacity(8 * GiB)).disk is None  # no pool to ask: not checked


def test_pool_space_refuses_too_when_memory_would_do():
    p = placement.place([1, 2], placement.slot_needs(DEMO), (_room("a", 64, 0, 10),), {})
    assert p.refusal() == "team 2 does not fit: host a needs 2 GiB more pool space"


def test_a_teams_pool_space_is_its_extra_disks_an_allowance_per_overlay_and_its_memory():
    """demo: alpha 512 MiB with a 1 GiB vdb, beta 512 MiB; each overlay 2 GiB plus its
    memory (a checkpoint's memory state), --memory-scale scaling the memory."""
    assert placement.slot_needs(DEMO) == (placement.SlotNeed("default", 1024 * MiB, 1 * GiB + 2 * (2 * GiB + 512 * MiB),
                                                             frozenset({"backend"})),)
    scaled = placement.slot_needs(DEMO, memory_scale=0.5)[0]
    assert (scaled.memory, scaled.disk) == (512 * MiB, 1 * GiB + 2 * (2 * GiB + 256 * MiB))


def test_a_slot_found_on_two_hosts_is_an_error_naming_the_team():
    with pytest.raises(PlacementError) as e:
        placement.running_placement(DEMO, {"lab1": [(3, "alpha")], "lab2": [(3, "beta"), (4, "alpha")]})
    assert str(e.value) == ("team 3's slot default runs on lab1 and lab2: a placed team is not moved; bring it "
                            "down (labbuilder down --team 3) to place it again")
    assert placement.running_placement(GRIDKA, {"lab1": [(3, "db-node"), (3, "gone-node")], "lab2": [(3, "compute-1")]}) \
        == {3: {"host-a": "lab1", "host-b": "lab2"}}


@pytest.mark.parametrize("teams, text", [([3], "team 3"), ([17, 18, 19, 20], "teams 17–20"),
                                         ([7, 3, 5, 6], "teams 3, 5–7")])
def test_team_lists(teams, text):
    assert placement.team_list(teams) == text


@pytest.mark.parametrize("n, text", [(300 * MiB, "300 MiB"), (6 * GiB, "6 GiB"), (int(5.41 * GiB), "5.5 GiB"),
                                     (-2 * GiB, "-2 GiB")])
def test_amounts_round_up(n, text):
    assert placement.amount(n) == text


# ---- `plan --teams` as a user runs it: two lab hosts on libvirt's test driver ----

def _test_host(path: Path, memory_gib: int, other_gib: int) -> str:
    """A test-driver host of `memory_gib` with a running domain of `other_gib` (not labbuilder's)."""
    path.write_text(f"""<node>
  <cpu><mhz>2000</mhz><nodes>1</nodes><sockets>1</sockets><cores>2</cores><threads>1</threads><active>2</active></cpu>
  <memory>{memory_gib << 20}</memory>
  <domain type="test"><name>other</name><memory>{other_gib << 20}</memory><vcpu>1</vcpu><os><type>hvm</type></os></domain>
</node>
""")
    return f"test://{path}"


def _plan(tmp_path, *args):
    lab1, lab2 = _test_host(tmp_path / "lab1.xml", 4, 1), _test_host(tmp_path / "lab2.xml", 4, 1)
    (tmp_path / "hosts.yaml").write_text(f"pool:\n  lab1: {lab1}\n  lab2:\n    uri: {lab2}\n    overcommit: 1.5\n")
    cache = tmp_path / "cache"
    if not cache.exists():
        fake_image_entry(cache, "debian-12")
    env = {**os.environ, "LABBUILDER_STATE": str(tmp_path / "state"), "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-m", "labbuilder.cli", "plan", "topologies/demo.yaml", "--hosts",
                           str(tmp_path / "hosts.yaml"), "--cache", str(cache), *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert not (tmp_path / "state").exists()
    return proc.returncode, proc.stdout.replace(str(tmp_path), "<tmp>"), proc.stderr.replace(str(tmp_path), "<tmp>")


@pytest.mark.subprocess(sys.executable)
def test_plan_teams_places_them_on_the_pool_and_shows_the_hosts_after_them(tmp_path, golden):
    """lab1: 4 GiB, 1 promised to another domain; lab2: the same, overcommit 1.5. A demo
    team needs 1 GiB: the teams spread, the most memory left first."""
    rc, out, err = _plan(tmp_path, "--teams", "1-5")
    assert rc == 0, err
    golden("plan-teams-pool.txt", out)
    rc, out, err = _plan(tmp_path, "--teams", "1-5", "--json")
    data = json.loads(out)
    assert {t["team"]: t["slots"]["default"] for t in data["teams"]} == {1: "lab2", 2: "lab2", 3: "lab1", 4: "lab2",
                                                                         5: "lab1"}
    assert [(h["host"], h["teams"], h["promised"] >> 30) for h in data["hosts"]] == [("lab1", [3, 5], 3),
                                                                                      ("lab2", [1, 2, 4], 4)]


@pytest.mark.subprocess(sys.executable)
def test_plan_teams_refuses_a_class_that_does_not_fit_in_one_line(tmp_path, golden):
    rc, out, err = _plan(tmp_path, "--teams", "1-10")
    assert (rc, out) == (2, "")
    golden("plan-teams-pool-refused.txt", err)
    assert err == "error: teams 9–10 do not fit: host lab1 needs 1 GiB more memory, host lab2 needs 1 GiB more memory\n"
    rc, out, err = _plan(tmp_path, "--team", "9")  # one team alone fits
    assert rc == 0 and "demo-t9-alpha" in out and "on lab2" in err, err



def test_a_class_reads_each_pool_host_once(tmp_path, monkeypatch):
    """`up --teams 1-5` places the teams from what each pool host holds, then checks each
    team's hosts for clashes against the same reading: one per host for the command."""
    from labbuilder.lab import pipeline
    from labbuilder.model.request import LabRequest
    from labbuilder.system import accel, hostnet, virt

    lab1, lab2 = _test_host(tmp_path / "lab1.xml", 4, 1), _test_host(tmp_path / "lab2.xml", 4, 1)
    (tmp_path / "hosts.yaml").write_text(f"pool:\n  lab1: {lab1}\n  lab2: {lab2}\n")
    cache = fake_image_entry(tmp_path / "cache", "debian-12").parent
    read = []
    real = virt.observe
    monkeypatch.setattr(virt, "observe", lambda conn: read.append(conn.getURI()) or real(conn))
    monkeypatch.setattr(hostnet, "routes", lambda prefix=(): [])
    monkeypatch.setattr(accel, "detect", lambda: accel.Accelerator("qemu", "a unit test"))
    monkeypatch.setenv("LABBUILDER_STATE", str(tmp_path / "state"))
    labs = pipeline.open_labs([LabRequest(REPO / "topologies/demo.yaml", team, None, tmp_path / "hosts.yaml",
                                          None, 1.0, cache) for team in range(1, 6)])
    for lab in labs:
        lab.close()
    assert {lab.plan.team: lab.plan.hosts[0].name for lab in labs} == {1: "lab1", 2: "lab2", 3: "lab1", 4: "lab2",
                                                                        5: "lab1"}
    assert sorted(read) == sorted([lab1, lab2])


# ---- what a placement leaves on the hosts, and what it must not do ----

def test_a_placed_team_records_its_pool_host_in_its_objects_ownership():
    """The ownership metadata says which pool host a domain or network was placed on (a
    lab with fixed slots carries no such attribute: its golden XML files are unchanged)."""
    from labbuilder.lab import diff
    from labbuilder.lab.hosts import Host
    from labbuilder.lab.plan import BaseImage, plan_lab

    image = BaseImage("gridka-openstack", "/cache/gridka-openstack.qcow2", "ab" * 32, 256 << 20, 4 << 30)
    joined = (("internal", "br-internal"),)
    hosts = {"host-a": Host("qemu+ssh://lab1/system", "lab1", joined, pool_name="lab1"),
             "host-b": Host("qemu+ssh://lab2/system", "lab2", joined, pool_name="lab2")}
    want = diff.render_plan(plan_lab(GRIDKA, 3, hosts, {"gridka-openstack": image}), "kvm", now=0)
    assert 'team="3" node="db-node" host="lab1" plan="' in want.domains["gridka-t3-db-node"].xml
    assert 'team="3" node="compute-1" host="lab2" plan="' in want.domains["gridka-t3-compute-1"].xml
    internal = want.networks[("qemu+ssh://lab2/system", "gridka-t3-internal")].xml
    assert 'team="3" network="internal" host="lab2" plan="' in internal


def test_fixed_macs_refuse_two_teams_on_one_pool_host_and_allow_them_on_two(tmp_path):
    from labbuilder.lab import pipeline
    from labbuilder.lab.hosts import Host
    from labbuilder.lab.plan import BaseImage, plan_lab
    from labbuilder.model.errors import TopologyError
    from labbuilder.system.connections import ConnectionPool

    topo = load_topology(REPO / "topologies/rdo-course.yaml")
    image = {"gridka-openstack": BaseImage("gridka-openstack", "/cache/gridka-openstack.qcow2", "ab" * 32, 256 << 20, 8 << 30)}
    lab1, lab2 = (Host(f"qemu+ssh://{n}/system", n, pool_name=n) for n in ("lab1", "lab2"))

    def labs(*hosts):
        return [pipeline.Lab(topo, plan_lab(topo, team, {"default": host}, image), ConnectionPool(), tmp_path, "kvm", "")
                for team, host in enumerate(hosts, 1)]

    pipeline.check_class(labs(lab1, lab2))
    with pytest.raises(TopologyError, match="fixed MACs allow one team per host, and 2 teams would share it"):
        pipeline.check_class(labs(lab1, lab2, lab1))



def test_fixed_macs_count_a_team_once_on_a_host_both_its_slots_are_on(tmp_path):
    """check_class counts teams per host, not slots: one team whose two slots land on one
    pool host is one team there, and two such teams on two hosts pass."""
    from labbuilder.lab import pipeline
    from labbuilder.lab.hosts import Host
    from labbuilder.lab.plan import BaseImage, plan_lab
    from labbuilder.model.errors import TopologyError
    from labbuilder.system.connections import ConnectionPool

    (tmp_path / "fixed.yaml").write_text("""lab: fixed
image: debian-12
hosts: {host-a: {}, host-b: {}}
networks:
  net-a: {mode: nat, subnet: 10.61.0.0/24}
  net-b: {mode: nat, subnet: 10.62.0.0/24}
nodes:
  a1: {host: host-a, memory: 256, nics: [{network: net-a, ip: 10.61.0.10, mac: "52:54:00:00:10:01"}]}
  b1: {host: host-b, memory: 256, nics: [{network: net-b, ip: 10.62.0.10}]}
""")
    topo = load_topology(tmp_path / "fixed.yaml")
    image = {"debian-12": BaseImage("debian-12", "/cache/debian-12.qcow2", "ab" * 32, 256 << 20, 4 << 30)}
    lab1, lab2 = (Host(f"qemu+ssh://{n}/system", n, pool_name=n) for n in ("lab1", "lab2"))

    def labs(*hosts):
        return [pipeline.Lab(topo, plan_lab(topo, team, {"host-a": a, "host-b": b}, image), ConnectionPool(),
                             tmp_path, "kvm", "") for team, (a, b) in enumerate(hosts, 1)]

    pipeline.check_class(labs((lab1, lab1)))
    pipeline.check_class(labs((lab1, lab1), (lab2, lab2)))
    with pytest.raises(TopologyError, match="fixed MACs allow one team per host, and 2 teams would share it"):
        pipeline.check_class(labs((lab1, lab1), (lab1, lab2)))
    # Only where the fixed-MAC node lands counts: a1 of each team on a host of its own.
    pipeline.check_class(labs((lab1, lab2), (lab2, lab1)))
    # A host bridge joins its hosts into one segment: a1 on it clashes whichever host it is on.
    bridged1, bridged2 = (Host(f"qemu+ssh://{n}/system", n, bridges=(("net-a", "br0"),), pool_name=n)
                          for n in ("lab1", "lab2"))
    with pytest.raises(TopologyError, match="fixed MACs allow one team per host, and 2 teams would share it"):
        pipeline.check_class(labs((bridged1, lab2), (bridged2, lab1)))


@pytest.mark.subprocess(sys.executable)
def test_plan_teams_without_a_pool_lists_the_hosts_the_slots_are_fixed_on(tmp_path, test_host):
    cache = fake_image_entry(tmp_path / "cache", "gridka-openstack").parent
    proc = subprocess.run([sys.executable, "-m", "labbuilder.cli", "plan", "topologies/gridka.yaml", "--connect",
                           test_host, "--cache", str(cache), "--teams", "2,4"], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "LABBUILDER_STATE": str(tmp_path / "state"), "COLUMNS": "200"}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == ("gridka: teams 2, 4, where their slots land (an inventory's pool of hosts "
                                           "would place them by capacity)")
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in proc.stdout.splitlines() if line.startswith("│ ")]
    assert rows == [["2", test_host, test_host], ["4", test_host, test_host]]


# ---- hosts the command does not choose (the local host, an inventory's fixed slots) ----

def _asked(*teams_gib):
    """team → {host: [what its new nodes need]} from (team, host, memory GiB) triples."""
    asked = {}
    for team, host, gib in teams_gib:
        asked.setdefault(team, {}).setdefault(host, []).append(placement.SlotNeed("n", gib * GiB, 0))
    return asked


def test_fixed_hosts_take_teams_in_order_and_refuse_those_beyond_their_memory():
    rooms = (_room("local", 24, promised_gib=4),)
    asked = _asked(*[(t, "local", 9) for t in (1, 2, 3)])
    assert placement.fixed_refusal(asked, rooms) == "team 3 does not fit: host local needs 7 GiB more memory"
    assert placement.fixed_refusal({t: asked[t] for t in (1, 2)}, rooms) is None


def test_a_team_that_asks_nothing_new_fits_on_a_host_others_filled():
    """Re-running `up` for a team whose domains are all defined asks for nothing, even on a
    host whose other domains are promised more than it has; a new node there is refused."""
    full = (_room("local", 4, promised_gib=8),)
    assert placement.fixed_refusal({1: {"local": []}}, full) is None
    assert placement.fixed_refusal(_asked((1, "local", 1)), full) == "team 1 does not fit: host local needs 5 GiB more memory"


def test_only_the_hosts_an_unfit_team_asks_on_are_named():
    rooms = (_room("a", 2), _room("b", 1, promised_gib=3))
    asked = {**_asked((1, "a", 1), (2, "a", 2)), 1: {"a": [placement.SlotNeed("n", GiB, 0)], "b": []}}
    assert placement.fixed_refusal(asked, rooms) == "team 2 does not fit: host a needs 1 GiB more memory"


@pytest.mark.subprocess(sys.executable)
def test_a_class_beyond_a_fixed_hosts_memory_is_refused_in_one_line_before_any_change(tmp_path, golden):
    """gridka needs 9 GiB a team; the host has 24 GiB, 4 of them promised to another domain:
    two teams fit, the third is refused by `plan` and `up` alike, and one team alone is not."""
    host = _test_host(tmp_path / "local.xml", 24, 4)
    cache = fake_image_entry(tmp_path / "cache", "gridka-openstack").parent
    env = {**os.environ, "LABBUILDER_STATE": str(tmp_path / "state"), "COLUMNS": "200"}

    def run(*args):
        return subprocess.run([sys.executable, "-m", "labbuilder.cli", *args, PLACED, "--connect",
                               host, "--cache", str(cache)], cwd=REPO, capture_output=True, text=True, env=env,
                              timeout=120)

    for command in (["plan", "--teams", "1-3"], ["up", "--no-wait", "--teams", "1-3"]):
        proc = run(*command)
        assert (proc.returncode, proc.stdout) == (2, ""), proc.stderr
        golden("fixed-host-refused.txt", proc.stderr.replace(host, "<host>"))
    assert not (tmp_path / "state").exists()
    assert run("plan", "--teams", "1-2").returncode == 0
    proc = run("plan", "--team", "3")
    assert proc.returncode == 0, proc.stderr


def test_a_run_that_creates_teams_holds_the_pools_placement_until_its_teams_are_placed(tmp_path, monkeypatch):
    """`up --teams 1-2` holds the pool's placement locks from before it reads the hosts
    until both teams' domains are defined: an `up` of team 3 meanwhile waits (and says so)
    rather than count the same room; `plan` never waits."""
    import threading

    from labbuilder.lab import pipeline
    from labbuilder.model.request import LabRequest
    from labbuilder.system import accel, hostnet

    lab1, lab2 = _test_host(tmp_path / "lab1.xml", 4, 1), _test_host(tmp_path / "lab2.xml", 4, 1)
    (tmp_path / "hosts.yaml").write_text(f"pool:\n  lab1: {lab1}\n  lab2: {lab2}\n")
    cache = fake_image_entry(tmp_path / "cache", "debian-12").parent
    monkeypatch.setattr(hostnet, "routes", lambda prefix=(): [])
    monkeypatch.setattr(accel, "detect", lambda: accel.Accelerator("qemu", "a unit test"))
    monkeypatch.setenv("LABBUILDER_STATE", str(tmp_path / "state"))

    def req(team):
        return LabRequest(REPO / "topologies/demo.yaml", team, None, tmp_path / "hosts.yaml", None, 1.0, cache)

    first = pipeline.open_labs([req(1), req(2)])
    pipeline.open_labs([req(3)], start_private=None)[0].close()  # plan: no wait
    said, opened = [], []
    second = threading.Thread(target=lambda: opened.extend(pipeline.open_labs([req(3)], waiting=said.append)))
    second.start()
    second.join(2)
    assert second.is_alive()
    assert said and said[0].startswith("another labbuilder run is placing teams on this pool: waiting for it (lock ")
    first[0].placed()
    second.join(0.5)
    assert second.is_alive()  # team 2 has not said it is placed
    first[1].close()
    second.join(30)
    assert not second.is_alive() and [lab.plan.team for lab in opened] == [3]
    first[0].close()
    opened[0].close()

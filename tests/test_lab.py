"""The demo lab on real guests through the private libvirtd, driven as a user drives it:
the `labbuilder` command in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from conftest import REPO, lb

from labbuilder.system import virt
from labbuilder.system.run import run

pytestmark = pytest.mark.vm

DEMO = "topologies/demo.yaml"
ADDR = {1: {"alpha": ("192.168.140.10", "10.10.0.10"), "beta": ("192.168.140.11", "10.10.0.11")},
        2: {"alpha": ("192.168.141.10", "10.10.1.10"), "beta": ("192.168.141.11", "10.10.1.11")}}



def on(node, *command, team=1, check=True):
    proc = lb("ssh", DEMO, node, "--team", str(team), "--", *command, check=check)
    return proc.stdout.strip()


@pytest.fixture(scope="module")
def conn(private_libvirtd, base_image):
    c = virt.connect(private_libvirtd.uri)
    yield c
    c.close()


OTHER_LAB = """<domain type="qemu"><name>demo-t1-omega</name><memory unit="MiB">32</memory>
    <metadata><lb:owner xmlns:lb="{ns}" lab="other" team="1" node="omega" plan="0"/></metadata>
    <os><type arch="x86_64" machine="q35">hvm</type></os></domain>"""


@pytest.fixture(scope="module")
def foreign(conn, lab_state):
    """Objects labbuilder does not own, planted before any lab exists, removed at the end.
    Some only look like ours: a running domain, a network and pools named like the demo
    lab's, one pool even at labbuilder's own path, and a domain carrying labbuilder's
    owner element for another lab. `down` must tell them by ownership, not by name."""
    from labbuilder.model.names import OWNER_NS, pool_dir

    virt.define_network(conn, """<network><name>foreign-net</name><bridge name="foreign0"/>
        <ip address="192.168.147.1" prefix="24"/></network>""")
    virt.define_network(conn, "<network><name>demo-t1-lan2</name></network>")
    pools = {"foreign-pool": str(lab_state / "foreign"), "demo-t1-pool2": str(lab_state / "foreign2"),
             "demo-t3-pool": pool_dir("demo-t3-pool")}  # named as team 3's, at its path, without the mark
    for name, path in pools.items():
        pool = virt.ensure_pool(conn, name, f"""<pool type="dir"><name>{name}</name>
            <target><path>{path}</path></target></pool>""")
        virt.create_volume(pool, """<volume><name>keep.qcow2</name><capacity>1048576</capacity>
            <target><format type="qcow2"/></target></volume>""")
    virt.define_domain(conn, """<domain type="qemu"><name>foreign-vm</name><memory unit="MiB">64</memory>
        <os><type arch="x86_64" machine="q35">hvm</type></os></domain>""")
    # No disk: it runs in its firmware for good, at about 1 % of a CPU.
    virt.start_domain(virt.define_domain(conn, """<domain type="qemu"><name>demo-t1-alpha2</name>
        <memory unit="MiB">32</memory><os><type arch="x86_64" machine="q35">hvm</type></os></domain>"""))
    virt.define_domain(conn, OTHER_LAB.format(ns=OWNER_NS))
    planted = {"networks": ["foreign-net", "demo-t1-lan2"], "pools": list(pools),
               "domains": ["foreign-vm", "demo-t1-alpha2", "demo-t1-omega"]}
    yield planted
    for name in planted["domains"]:
        virt.remove_domain(conn, name)
    for name in planted["networks"]:
        virt.remove_network(conn, name)
    for name in planted["pools"]:
        virt.remove_pool(conn, name)


def assert_untouched(conn, foreign):
    """Every planted object is there as it was planted (the look-alike domain still runs)."""
    for name in foreign["networks"]:
        assert virt.network_info(conn, name) is not None, name
    for name in foreign["pools"]:
        assert "keep.qcow2" in virt.volume_names(virt.lookup_pool(conn, name)), name
    for name in foreign["domains"]:
        assert virt.lookup_domain(conn, name) is not None, name
    assert virt.domain_state(conn, "demo-t1-alpha2") == "running"


def demo_pools(conn, foreign):
    return [p for p in virt.pool_names(conn) if p.startswith("demo-") and p not in foreign["pools"]]


@pytest.fixture(scope="module")
def demo(conn, foreign):
    proc = lb("up", DEMO)
    yield proc
    lb("down", DEMO, "--all-teams", check=False)


def test_teams_racing_for_the_base_image_upload_it_once(private_libvirtd, base_image, tmp_path_factory):
    """Two teams' `up` on a host without the image both find it missing; the host's upload
    lock lets one upload it and the other skip it. In a private libvirtd of its own (its
    base pool is empty) beside the session's; first in this file: no lab boots beside it."""
    import fcntl

    from labbuilder.system import locks, privatelibvirtd

    state = Path(tempfile.mkdtemp(prefix="lbrace-"))
    daemon = privatelibvirtd.start(state / "libvirtd")
    env = {**os.environ, "LABBUILDER_STATE": str(state), "COLUMNS": "300"}
    logs = {team: tmp_path_factory.mktemp("race") / f"up-t{team}.log" for team in (1, 2)}
    lock = locks.host_lock_path(state / "locks", daemon.uri)
    lock.parent.mkdir()
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)  # held until both runs wait for it: the race, every time
    procs = {}
    try:
        for team, log in logs.items():
            procs[team] = subprocess.Popen(
                [sys.executable, "-m", "labbuilder.cli", "up", DEMO, "--team", str(team), "--private",
                 "--no-wait"], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=log.open("w"))
        deadline = time.monotonic() + 300
        while not all("another labbuilder run is uploading" in log.read_text() for log in logs.values()):
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs.values()), \
                {t: log.read_text() for t, log in logs.items()}
            time.sleep(0.2)
        os.close(fd)
        fd = None
        for team, proc in procs.items():
            assert proc.wait(timeout=600) == 0, logs[team].read_text()
        out = {team: log.read_text() for team, log in logs.items()}
        assert sum("✓ upload debian-12-" in o for o in out.values()) == 1, out
        assert sum("uploaded by another run meanwhile" in o for o in out.values()) == 1, out
        conn = virt.connect(daemon.uri)
        try:
            assert {virt.domain_state(conn, f"demo-t{t}-{n}") for t in (1, 2) for n in ("alpha", "beta")} \
                == {"running"}
        finally:
            conn.close()
    finally:
        if fd is not None:
            os.close(fd)
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for team in (1, 2):
            subprocess.run([sys.executable, "-m", "labbuilder.cli", "down", DEMO, "--team", str(team),
                            "--private"], cwd=REPO, env=env, capture_output=True, timeout=300)
        privatelibvirtd.stop(daemon)
        shutil.rmtree(state, ignore_errors=True)


def _assert_node(node, team=1):
    lan, backend = ADDR[team][node]
    assert on(node, "hostname", team=team) == node
    assert f"inet {lan}/24" in on(node, "ip", "-4", "-o", "addr", "show", "eth0", team=team)
    assert f"inet {backend}/24" in on(node, "ip", "-4", "-o", "addr", "show", "eth1", team=team)


def test_up_gives_every_node_its_addresses_and_disks(demo, conn):
    leases = virt.network_leases(conn, "demo-t1-lan")
    assert sorted(leases.values()) == ["192.168.140.10", "192.168.140.11"]
    for node in ("alpha", "beta"):
        _assert_node(node)
    assert on("alpha", "lsblk", "-bno", "SIZE", "/dev/vdb") == str(1 << 30)
    assert "vdb" not in on("beta", "lsblk", "-no", "NAME")
    # the nodes know each other by name and reach each other over the backend network too
    assert on("alpha", "getent", "hosts", "beta").split()[0] == "192.168.140.11"
    reach = lb("ssh", DEMO, "alpha", "--", "timeout 10 bash -c 'echo > /dev/tcp/10.10.0.11/22'", check=False)
    assert reach.returncode == 0, reach.stderr


def test_status_json_reports_running_and_ssh(demo):
    data = json.loads(lb("status", DEMO, "--json").stdout)
    assert [(n["node"], n["state"], n["ssh"]) for n in data["nodes"]] == \
        [("alpha", "running", True), ("beta", "running", True)]
    assert all(n["active"] and n["bridge"].startswith("lb") for n in data["networks"])
    assert all(0 <= n["age_seconds"] < 3600 for n in data["nodes"])


def test_console_log_shows_the_guest_booting(demo):
    text = lb("console", DEMO, "alpha", "--log").stdout
    assert "Linux version" in text and "alpha login:" in text, text[-2000:]


def test_handoff_files_reach_the_lab(demo, lab_state):
    """The ssh_config works from outside the private namespace; the inventory has groups."""
    import yaml

    state = lab_state / "demo-t1"
    proc = subprocess.run(["ssh", "-F", str(state / "ssh_config"), "beta", "hostname"],
                          capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "beta", proc.stderr
    inv = yaml.safe_load((state / "inventory.yaml").read_text())
    assert set(inv["all"]["children"]["common"]["hosts"]) == {"alpha", "beta"}
    alpha = inv["all"]["hosts"]["alpha"]
    assert [i["name"] for i in alpha["interfaces"]] == ["eth0", "eth1"]
    assert alpha["disks"] == [{"device": "/dev/vdb", "size_bytes": 1 << 30}]
    assert "192.168.140.11 beta" in (state / "hosts").read_text()
    assert oct(state.stat().st_mode & 0o777) == "0o700"
    for name in ("id_ed25519", "vars.yaml", "inventory.yaml", "ssh_config", "known_hosts"):
        assert oct((state / name).stat().st_mode & 0o777) == "0o600", name


def test_nodes_have_the_host_keys_labbuilder_gave_them(demo, lab_state):
    """Host keys are checked strictly against the team's known_hosts, which holds the key
    the node's seed gave it; a node answering with another key is refused, by name."""
    state = lab_state / "demo-t1"
    config = (state / "ssh_config").read_text()
    assert "StrictHostKeyChecking accept-new" in config and "UserKnownHostsFile /dev/null" not in config
    known = dict(line.split(" ", 1) for line in (state / "known_hosts").read_text().splitlines())
    assert set(known) == {"demo-t1-alpha", "demo-t1-beta"}
    guest_key = on("alpha", "cat", "/etc/ssh/ssh_host_ed25519_key.pub").split()[:2]
    assert " ".join(guest_key) == known["demo-t1-alpha"]
    assert on("alpha", "ls /etc/ssh/ | grep -c '^ssh_host_.*_key$'") == "1"  # no other host key

    saved = (state / "known_hosts").read_text()
    other = (state / "host-keys" / "beta.pub").read_text().split()[:2]
    (state / "known_hosts").write_text(saved.replace(known["demo-t1-alpha"], " ".join(other)))
    try:
        proc = lb("ssh", DEMO, "alpha", "--", "true", check=False)
        assert proc.returncode != 0 and "Host key verification failed" in proc.stderr
        status = json.loads(lb("status", DEMO, "--json").stdout)
        assert {n["node"]: n["ssh"] for n in status["nodes"]} == {"alpha": False, "beta": True}
    finally:
        (state / "known_hosts").write_text(saved)
    assert on("alpha", "hostname") == "alpha"


def test_up_again_changes_nothing(demo, conn):
    before = {o.name: o.owner for o in virt.owned_objects(conn, "demo", 1)}
    proc = lb("up", DEMO)
    assert "Nothing to do" in proc.stderr
    assert {o.name: o.owner for o in virt.owned_objects(conn, "demo", 1)} == before  # nothing redefined
    assert "No changes" in lb("plan", DEMO).stdout


def _as_student(handout_dir, node, command, private_libvirtd):
    """ssh as the students do, with their handout's ssh_config (from inside the private
    libvirtd's network namespace, where the guests are routable)."""
    return subprocess.run([*private_libvirtd.nsenter_argv(), "ssh", "-F", "ssh_config", "-o", "BatchMode=yes",
                           node, command], cwd=handout_dir, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def demo_handout(demo, tmp_path_factory):
    """Team 1's handout, as an instructor makes it for the students."""
    out = tmp_path_factory.mktemp("handouts")
    lb("handout", DEMO, "--out", str(out))
    return out / "demo-t1"


def test_a_handout_lets_the_students_in_with_their_own_key(demo_handout, private_libvirtd, lab_state):
    d = demo_handout
    assert (d.parent / "demo-t1.zip").is_file()
    assert (d / "id_ed25519.pub").read_text() != (lab_state / "demo-t1" / "id_ed25519.pub").read_text()
    for node in ("alpha", "beta"):
        proc = _as_student(d, node, "id -un; sudo -n id -u", private_libvirtd)
        assert proc.stdout.split() == ["student", "0"], proc.stderr
    assert "beta" in (d / "nodes.txt").read_text()


def test_reset_node_returns_pristine_disk(demo, private_libvirtd, demo_handout):
    on("beta", "echo dirty > /root/marker && sync")  # `labbuilder ssh` runs it as ssh does: shell syntax
    assert on("beta", "cat", "/root/marker") == "dirty"
    lb("reset", DEMO, "--node", "beta")
    assert on("beta", "test", "-e", "/root/marker", check=False) == ""
    assert lb("ssh", DEMO, "beta", "--", "test", "-e", "/root/marker", check=False).returncode == 1
    _assert_node("beta")
    # The handout made before the reset still lets the students in: the new seed has their key.
    proc = _as_student(demo_handout, "beta", "id -un", private_libvirtd)
    assert proc.stdout.strip() == "student", proc.stderr


def test_second_team_runs_beside_the_first_and_down_keeps_it(demo, conn, foreign):
    lb("up", DEMO, "--teams", "1-2")  # team 1 is up already: converges team 2, waits for both
    for node in ("alpha", "beta"):
        _assert_node(node, team=2)
        _assert_node(node, team=1)
    _class_commands_over_both_teams()
    lb("down", DEMO, "--team", "1")
    names = {o.name for o in virt.owned_objects(conn, "demo")}
    assert names == {"demo-t2-alpha", "demo-t2-beta", "demo-t2-lan", "demo-t2-backend"}
    assert "demo-t1-pool" not in virt.pool_names(conn)
    _assert_node("alpha", team=2)
    lb("down", DEMO, "--team", "2")
    assert virt.owned_objects(conn, "demo") == []
    assert demo_pools(conn, foreign) == []
    assert_untouched(conn, foreign)  # what labbuilder does not own, even named like ours


def _class_commands_over_both_teams():
    """Teams 1 and 2 are up: the class commands act on both, in parallel, and a team
    that fails (team 5 has no checkpoint) is named while the others are done."""
    status = json.loads(lb("status", DEMO, "--all-teams", "--json").stdout)
    assert [(t["team"], t["ok"], t["result"]["running"], t["result"]["ssh"]) for t in status] == \
        [(1, True, 2, 2), (2, True, 2, 2)]
    lb("checkpoint", DEMO, "--teams", "1-2", "--name", "class")
    for team in (1, 2):
        on("alpha", "echo changed > /root/after-class && sync", team=team)
    proc = lb("reset", DEMO, "--teams", "1,2,5", "--to", "class", check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "team 5 failed" in proc.stderr
    rows = {line.split("│")[1].strip(): line for line in proc.stdout.splitlines() if line.startswith("│")}
    assert "ok" in rows["1"] and "ok" in rows["2"] and "FAILED" in rows["5"], proc.stdout
    for team in (1, 2):  # both went back to the checkpoint: the file written after it is gone
        assert lb("ssh", DEMO, "alpha", "--team", str(team), "--", "test", "-e", "/root/after-class",
                  check=False).returncode == 1
    status = json.loads(lb("status", DEMO, "--teams", "1-2", "--json").stdout)
    assert [t["result"]["last_checkpoint"] for t in status] == ["class", "class"]


def test_up_refuses_a_pool_named_like_the_teams_without_its_mark(conn, foreign):
    """Team 3's pool name is taken by a pool labbuilder did not make: `up` leaves it alone
    and fails naming it; `down` removes what that `up` made, and keeps the pool."""
    proc = lb("up", DEMO, "--team", "3", "--no-wait", check=False)
    assert proc.returncode == 1
    assert "a storage pool named demo-t3-pool exists on private libvirtd and labbuilder does not own it" \
        in " ".join(proc.stderr.split()), proc.stderr
    assert {virt.domain_state(conn, f"demo-t3-{n}") for n in ("alpha", "beta")} == {"absent"}
    lb("down", DEMO, "--team", "3")
    assert virt.owned_objects(conn, "demo", 3) == []
    assert virt.volume_names(virt.lookup_pool(conn, "demo-t3-pool")) == {"keep.qcow2"}
    assert_untouched(conn, foreign)


def _qemu_of(domain):
    """The pid of the QEMU process running `domain`, or None."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(a == f"guest={domain}".encode() or a.startswith(f"guest={domain},".encode()) for a in cmdline):
            return int(pid)
    return None


def _start_left_under_way(conn, team, name):
    """Run `up`, stop `name`'s QEMU while libvirt starts it (libvirt then waits on its
    monitor: the start cannot end), SIGKILL `up`. Returns QEMU's pid. Tries again (after
    `down`) if QEMU was stopped only once its start had ended."""
    for _ in range(3):
        first = subprocess.Popen([sys.executable, "-m", "labbuilder.cli", "up", DEMO, "--team", str(team),
                                  "--private", "--no-wait"], cwd=REPO, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        qemu = None
        try:
            deadline = time.monotonic() + 300
            while qemu is None and first.poll() is None and time.monotonic() < deadline:
                qemu = _qemu_of(name)
            assert qemu is not None, f"{name}'s QEMU never appeared (up exited {first.poll()})"
            os.kill(qemu, signal.SIGSTOP)
        finally:
            first.kill()
            first.wait()
        if virt.domain_state(conn, name) == "starting":
            return qemu
        os.kill(qemu, signal.SIGCONT)
        lb("down", DEMO, "--team", str(team))
    pytest.fail(f"{name}'s start ended before its QEMU was stopped, 3 times")


def test_up_after_one_killed_mid_start_waits_for_that_start(conn, foreign, private_libvirtd):
    """`up` killed while libvirt starts a domain (kept paused, "starting up", by stopping
    its QEMU): `status` and `plan` say so, and the next `up` returns only once it runs."""
    team, name = 9, "demo-t9-alpha"  # not 8: its lan would be the foreign 192.168.147.0/24
    qemu = _start_left_under_way(conn, team, name)
    second = watchdog = None
    try:
        status = json.loads(lb("status", DEMO, "--team", str(team), "--json").stdout)
        assert {n["node"]: n["state"] for n in status["nodes"]}["alpha"] == "starting"
        plan = " ".join(lb("plan", DEMO, "--team", str(team)).stdout.split())
        assert f"start domain {name} on private libvirtd (its start, begun by an earlier run, is under way)" in plan
        second = subprocess.Popen([sys.executable, "-m", "labbuilder.cli", "up", DEMO, "--team", str(team),
                                   "--private", "--no-wait"], cwd=REPO, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, env={**os.environ, "COLUMNS": "300"})
        watchdog = threading.Timer(300, second.kill)  # a hang fails the test, not the session
        watchdog.start()
        seen = []
        for line in second.stdout:  # until it says it waits, or ends
            seen.append(line)
            if "under way; waiting for it to end" in line:
                break
        assert second.poll() is None, f"up ended while {name} was still starting:\n{''.join(seen)}"
        os.kill(qemu, signal.SIGCONT)
        qemu = None
        rest, _ = second.communicate(timeout=600)
        assert second.returncode == 0, "".join(seen) + rest
        assert virt.domain_state(conn, name) == "running"
    finally:
        if watchdog is not None:
            watchdog.cancel()
        if qemu is not None:
            os.kill(qemu, signal.SIGCONT)
        if second is not None and second.poll() is None:
            second.kill()
            second.wait()
    lb("down", DEMO, "--team", str(team))
    assert virt.owned_objects(conn, "demo", team) == []


def test_down_all_teams_removes_every_team_and_nothing_else(conn, foreign, private_libvirtd):
    lb("up", DEMO, "--teams", "10-11", "--no-wait")
    assert {o.owner["team"] for o in virt.owned_objects(conn, "demo")} >= {"10", "11"}
    proc = lb("down", DEMO, "--all-teams")
    assert proc.stderr.startswith("demo every team on private libvirtd"), proc.stderr
    removed = {line[2:] for line in proc.stdout.splitlines() if line.startswith("- ")}
    assert {f"domain demo-t{t}-{n}" for t in (10, 11) for n in ("alpha", "beta")} <= removed, proc.stdout
    assert virt.owned_objects(conn, "demo") == []
    assert demo_pools(conn, foreign) == []
    assert_untouched(conn, foreign)


def test_subnet_clash_with_a_foreign_network_is_reported_before_any_change(conn, foreign, lab_state):
    clash = lab_state / "clash.yaml"
    # lan kept to one subnet for every team, so that backend's per-team subnets (192.168.147
    # and up) pass the topology's own overlap check and only the foreign network clashes
    text = (REPO / DEMO).read_text().replace("10.10.0", "192.168.147").replace("lab: demo", "lab: clash")
    clash.write_text(text.replace("    subnet: 192.168.140.0/24\n", "    subnet: 192.168.140.0/24\n    per_team: false\n"))
    before = {o.name for o in virt.owned_objects(conn)}, virt.pool_names(conn)
    proc = lb("up", str(clash), check=False)
    assert proc.returncode == 2, proc.stderr
    line = next(i for i, l in enumerate(clash.read_text().splitlines(), 1) if "192.168.147.0/24" in l)
    assert f"{clash}:{line}: networks.backend.subnet: 192.168.147.0/24 clashes" in proc.stderr
    assert "clashes with network 'foreign-net' (192.168.147.0/24)" in proc.stderr
    assert ({o.name for o in virt.owned_objects(conn)}, virt.pool_names(conn)) == before


def test_fixed_mac_used_by_a_foreign_domain_is_reported(conn, foreign):
    virt.define_domain(conn, """<domain type="qemu"><name>foreign-mac</name><memory unit="MiB">64</memory>
        <os><type arch="x86_64" machine="q35">hvm</type></os><devices><interface type="network">
        <source network="foreign-net"/><mac address="52:54:00:00:00:01"/></interface></devices></domain>""")
    try:
        proc = lb("plan", "topologies/rdo-course.yaml", check=False)
    finally:
        virt.remove_domain(conn, "foreign-mac")
    assert proc.returncode == 2
    line = next(i for i, l in enumerate((REPO / "topologies/rdo-course.yaml").read_text().splitlines(), 1)
                if "52:54:00:00:00:01" in l)
    assert (f"topologies/rdo-course.yaml:{line}: nodes.node1.nics.0.mac: MAC 52:54:00:00:00:01 is already "
            "used by domain 'foreign-mac'") in proc.stderr
    assert virt.owned_objects(conn, "rdo-course") == []


def test_subnet_clash_with_a_host_route_is_reported_before_any_change(conn, foreign, lab_state, private_libvirtd):
    """A subnet the host already routes to another way (here a bridge of no libvirt network in the private
    daemon's network namespace, as a VPN or a docker bridge would be on a lab host)."""
    ns = private_libvirtd.nsenter_argv()
    run([*ns, "ip", "link", "add", "lbroute0", "type", "bridge"])
    try:
        run([*ns, "ip", "addr", "add", "10.10.77.1/24", "dev", "lbroute0"])
        run([*ns, "ip", "link", "set", "lbroute0", "up"])
        clash = lab_state / "route-clash.yaml"
        clash.write_text((REPO / DEMO).read_text().replace("10.10.0", "10.10.77").replace("lab: demo", "lab: rclash"))
        before = {o.name for o in virt.owned_objects(conn)}, virt.pool_names(conn)
        proc = lb("up", str(clash), check=False)
    finally:
        run([*ns, "ip", "link", "del", "lbroute0"])
    assert proc.returncode == 2, proc.stderr
    line = next(i for i, l in enumerate(clash.read_text().splitlines(), 1) if "10.10.77.0/24" in l)
    assert f"{clash}:{line}: networks.backend.subnet: 10.10.77.0/24 clashes with route 10.10.77.0/24 dev lbroute0 on " \
           in proc.stderr
    assert ({o.name for o in virt.owned_objects(conn)}, virt.pool_names(conn)) == before

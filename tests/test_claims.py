"""What the README claims about a running lab, on one booted two-node team:
`--memory-scale` reaches libvirt and the guests, a checkpoint is one point across the
nodes, the Ansible driver runs a real playbook, and a team whose local state directory
was deleted converges again and leaves nothing behind. The last test takes the lab down.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time

import pytest
from conftest import REPO, kept_daemon, lab_argv, lb
from pause_runs import cmdlines

from labbuilder.system import virt
from labbuilder.system.pause import AT_ENV, FILE_ENV

pytestmark = pytest.mark.vm

TEAM = "41"
SCALE = ("--memory-scale", "0.5")
NODES = ("alpha", "beta")
TOPOLOGY = """\
lab: claims
image: debian-12
packages: none
networks:
  lan: {mode: nat, subnet: 192.168.170.0/24, dhcp: [192.168.170.100, 192.168.170.200], per_team: false}
nodes:
  alpha:
    roles: [marker]
    memory: 1024
    disk: 5G
    nics: [{network: lan, ip: 192.168.170.10}]
  beta:
    roles: [marker]
    memory: 1024
    nics: [{network: lan, ip: 192.168.170.11}]
roles: [marker]
"""
# the built-in runner's step (run by `up`) and the Ansible driver's playbook for the same role
STEP = "set -eu\necho builtin > /etc/lab-builtin\n"
PLAYBOOK = """\
- hosts: marker
  gather_facts: false
  tasks:
    - name: a file that names the node, as Ansible knows it
      ansible.builtin.copy:
        dest: /etc/lab-ansible
        content: "set by ansible on {{ inventory_hostname }} of group {{ group_names | join(',') }}\\n"
"""


@pytest.fixture(scope="module")
def conn(private_libvirtd, base_image):
    """The session's libvirtd (tests/conftest.py: kept_daemon)."""
    with kept_daemon(private_libvirtd, "keep-claims") as c:
        yield c


@pytest.fixture(scope="module")
def topo(conn, tmp_path_factory):
    """The claims lab (team TEAM, memory scaled by 0.5), up and configured by the built-in runner."""
    root = tmp_path_factory.mktemp("claims")
    (root / "roles" / "claims" / "marker").mkdir(parents=True)
    (root / "roles" / "claims" / "marker" / "10-mark.sh").write_text(STEP)
    (root / "roles" / "claims" / "marker.yml").write_text(PLAYBOOK)
    path = root / "claims.yaml"
    path.write_text(TOPOLOGY)
    lb("up", path, "--team", TEAM, *SCALE)
    yield path
    lb("down", path, "--team", TEAM, check=False)


def on(topo, node, command, check=True) -> str:
    return lb("ssh", topo, node, "--team", TEAM, *SCALE, "--", command, check=check).stdout.strip()


def test_memory_scale_reaches_libvirt_and_the_guests(topo, conn):
    """Nodes of 1024 MiB with `--memory-scale 0.5`: libvirt gives each domain 512 MiB, and
    the guest's `free -m` sees that (less what its kernel keeps), not 1024."""
    for node in NODES:
        dom = virt.lookup_domain(conn, f"claims-t{TEAM}-{node}")
        assert dom.maxMemory() == 512 * 1024, node  # KiB
        total = int(on(topo, node, "free -m | awk '/^Mem:/ {print $2}'"))
        assert 384 < total <= 512, (node, total)
    # without the flag the same topology plans its full memory: the scale is what made the difference
    plan = json.loads(lb("plan", topo, "--team", TEAM, "--json").stdout)
    assert sorted(a["name"] for a in plan["actions"] if a["verb"] == "change") == \
        [f"claims-t{TEAM}-{n}" for n in NODES], plan["actions"]


def test_a_root_disk_size_grows_the_disk_and_its_file_system(topo):
    """alpha's `disk: 5G` (the image is 3 GiB): the guest's vda and its root file system
    have grown to it at first boot; beta keeps the image's size."""
    sizes = {n: on(topo, n, "lsblk -bdno SIZE /dev/vda; df -B1 --output=size / | tail -1").split() for n in NODES}
    assert int(sizes["alpha"][0]) == 5 << 30 and int(sizes["beta"][0]) == 3 << 30, sizes
    assert int(sizes["alpha"][1]) > 4 << 30 > int(sizes["beta"][1]), sizes  # the file system grew with it


def _session(topo, node) -> subprocess.Popen:
    """`labbuilder ssh` to `node` holding a shell that, once it reads a line, writes it to
    /root/between; returned once the shell runs (it said `ready`)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "labbuilder.cli",
         *lab_argv("ssh", str(topo), node, "--team", TEAM, *SCALE, "--",
                   'echo ready; read -r line && echo "$line" > /root/between && sync && echo written')],
        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert _line(proc) == "ready", proc.stderr.read() if proc.poll() is not None else ""
    return proc


def _line(proc: subprocess.Popen, timeout: float = 600) -> str:
    """The next line `proc` prints; a hang fails the test (the process is killed)."""
    watchdog = threading.Timer(timeout, proc.kill)
    watchdog.start()
    try:
        return proc.stdout.readline().strip()
    finally:
        watchdog.cancel()


def test_checkpoint_is_one_point_across_the_nodes(topo, conn, tmp_path):
    """A file written on both nodes between the pause and the snapshot is on both after
    `reset --to`, or on neither. `checkpoint` is held (LABBUILDER_PAUSE_AT) after pausing
    every node and before saving any: there every node must be paused, and the test sends
    both nodes the command that writes the file. Then the checkpoint goes on. The write
    lands once the nodes are resumed, after every snapshot: after the reset it is on
    neither (a node left running while another was saved would have it in its own
    snapshot), while a file written before the checkpoint is on both."""
    for node in NODES:
        on(topo, node, "echo before > /root/before && rm -f /root/between && sync")
    sessions = {node: _session(topo, node) for node in NODES}
    pause_file = tmp_path / "paused"
    checkpoint = subprocess.Popen(
        [sys.executable, "-m", "labbuilder.cli", *lab_argv("checkpoint", str(topo), "--team", TEAM, *SCALE,
                                                           "--name", "mid")],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, AT_ENV: "checkpoint-paused", FILE_ENV: str(pause_file)})
    try:
        deadline = time.monotonic() + 900
        while not pause_file.exists():
            assert checkpoint.poll() is None, checkpoint.stdout.read()
            assert time.monotonic() < deadline, "checkpoint never reached checkpoint-paused"
            time.sleep(0.2)
        assert {n: virt.domain_state(conn, f"claims-t{TEAM}-{n}") for n in NODES} == \
            {"alpha": "paused", "beta": "paused"}
        for proc in sessions.values():
            proc.stdin.write("between\n")
            proc.stdin.flush()
        time.sleep(3)  # a node that ran now would write the file before its snapshot
        pause_file.unlink()  # the checkpoint goes on
        out, _ = checkpoint.communicate(timeout=1800)
        assert checkpoint.returncode == 0, out
        for node, proc in sessions.items():  # the writes did happen: once the nodes ran again
            assert _line(proc) == "written", (node, proc.stderr.read())
    finally:
        for proc in (checkpoint, *sessions.values()):
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    listed = json.loads(lb("checkpoints", topo, "--team", TEAM, "--json").stdout)
    assert [(c["name"], c["nodes"]) for c in listed] == [("mid", list(NODES))]
    lb("reset", topo, "--team", TEAM, *SCALE, "--to", "mid")
    files = {node: on(topo, node, "cat /root/before; test -e /root/between && echo between || true").split()
             for node in NODES}
    assert files == {"alpha": ["before"], "beta": ["before"]}


def test_ansible_driver_runs_the_roles_playbook_on_the_nodes(topo):
    """`configure --driver ansible` runs <role_dir>/marker.yml with ansible-playbook (from
    ansible-core, installed beside labbuilder) against the inventory labbuilder wrote."""
    assert on(topo, "alpha", "test -e /etc/lab-ansible && echo there || echo absent") == "absent"
    proc = lb("configure", topo, "--team", TEAM, *SCALE, "--driver", "ansible")
    for node in NODES:
        found = on(topo, node, "cat /etc/lab-ansible 2>&1 || true")
        assert found == f"set by ansible on {node} of group marker", proc.stdout + proc.stderr
        assert on(topo, node, "cat /etc/lab-builtin") == "builtin"  # what `up`'s built-in runner did stays


def test_up_after_the_team_state_dir_is_deleted_converges_and_down_leaves_nothing(topo, conn, lab_state):
    """The team's state directory (its SSH key, ssh_config, inventory, logs, lock) deleted
    while the lab runs: `status` still finds every node; `up` makes a new key and gives it
    to the running nodes through their guest agents (no node is recreated), so every node
    answers on SSH again; `down` then removes all of the team and leaves nothing."""
    state = lab_state / f"claims-t{TEAM}"
    assert (state / "id_ed25519").exists()
    shutil.rmtree(state)
    status = json.loads(lb("status", topo, "--team", TEAM, *SCALE, "--json").stdout)
    assert [(n["node"], n["state"]) for n in status["nodes"]] == [(n, "running") for n in NODES]
    assert not any(n["ssh"] for n in status["nodes"])  # the key they know went with the directory
    before = {o.name: o.owner for o in virt.owned_objects(conn, "claims", int(TEAM))}

    lb("up", topo, "--team", TEAM, *SCALE)
    assert {o.name: o.owner for o in virt.owned_objects(conn, "claims", int(TEAM))} == before  # nothing remade
    assert json.loads(lb("plan", topo, "--team", TEAM, *SCALE, "--json").stdout)["actions"] == []
    status = json.loads(lb("status", topo, "--team", TEAM, *SCALE, "--json").stdout)
    assert [(n["node"], n["state"], n["ssh"]) for n in status["nodes"]] == [(n, "running", True) for n in NODES]
    assert on(topo, "beta", "cat /etc/lab-builtin") == "builtin"  # the same guests, not new ones
    proc = subprocess.run(["ssh", "-F", str(state / "ssh_config"), "alpha", "hostname"],
                          capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "alpha", proc.stderr

    lb("down", topo, "--team", TEAM)
    assert virt.owned_objects(conn, "claims") == []
    assert f"claims-t{TEAM}-pool" not in virt.pool_names(conn)
    deadline = time.monotonic() + 15  # libvirt ends them as it removes their domain or network
    while (left := cmdlines("qemu-system", f"guest=claims-t{TEAM}-") + cmdlines("dnsmasq", f"/claims-t{TEAM}-")) \
            and time.monotonic() < deadline:
        time.sleep(0.5)
    assert left == []

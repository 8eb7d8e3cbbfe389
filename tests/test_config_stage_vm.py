"""The config stage and checkpoints on real guests: the GridKa course's infrastructure
roles on four nodes (topologies/gridka-mini.yaml on the gridka-openstack image), a step that
fails and a resume, then checkpoints and resets. Driven through the `labbuilder` command."""

from __future__ import annotations

import json
import shutil
import time

import pytest
from conftest import REPO, lb

from labbuilder.system import virt

pytestmark = [pytest.mark.vm, pytest.mark.image]

NODES = ("db-node", "network-node", "volume-node", "compute-1")


@pytest.fixture(scope="module")
def topo(tmp_path_factory):
    """gridka-mini with its own copy of the roles, so a test can break and mend a step."""
    root = tmp_path_factory.mktemp("gridka-mini")
    shutil.copytree(REPO / "topologies" / "roles", root / "roles")
    (root / "gridka-mini.yaml").write_text((REPO / "topologies" / "gridka-mini.yaml").read_text())
    return root / "gridka-mini.yaml"



@pytest.fixture(scope="module")
def keep_daemon(private_libvirtd):
    """A network labbuilder does not own, so `down` keeps the session's private libvirtd."""
    conn = virt.connect(private_libvirtd.uri)
    virt.define_network(conn, "<network><name>keep-config-stage</name><bridge name='keepcs0'/></network>")
    yield
    virt.remove_network(conn, "keep-config-stage")
    conn.close()


@pytest.fixture(scope="module")
def failed_up(keep_daemon, gridka_image, topo):
    """`up --checkpoints` with a step injected into the network role that exits 1."""
    broken = topo.parent / "roles" / "gridka" / "network" / "15-injected.sh"
    broken.write_text("echo 'about to fail on {{ node.name }}'\nexit 1\n")
    proc = lb("up", topo, "--checkpoints", check=False)
    broken.unlink()
    yield proc
    lb("down", topo, check=False)


def on(topo, node, *command, check=True):
    proc = lb("ssh", topo, node, "--", *command, check=check)
    return proc


def _status(topo):
    return {n["node"]: n for n in json.loads(lb("status", topo, "--json").stdout)["nodes"]}


def test_a_failing_step_stops_the_stage_with_node_role_step_and_log_tail(failed_up, topo):
    assert failed_up.returncode == 1, failed_up.stderr
    err = failed_up.stderr
    assert "role network, step 15-injected.sh failed on network-node (exit status 1)" in err
    assert "| about to fail on network-node" in err
    assert "resumes at role network" in err
    done = {n: s["roles_done"] for n, s in _status(topo).items()}
    assert done["db-node"] == ["common", "db"]
    assert done["network-node"] == ["common"]
    assert done["compute-1"] == ["common"]


def test_configure_resumes_at_the_failed_role(failed_up, topo):
    proc = lb("configure", topo)
    assert "Resuming at role network" in proc.stderr
    assert "Config stage: ran network, volume, compute." in proc.stderr
    assert all(s["roles_done"] == ["common", s["roles"][1]] for s in _status(topo).values())
    again = lb("configure", topo)
    assert "every role already done" in again.stderr
    # ansible-core comes with the test extra; the GridKa roles are step scripts, with no playbook
    proc = lb("configure", topo, "--driver", "ansible", check=False)
    assert proc.returncode == 1 and "no playbook" in proc.stderr and "common.yml" in proc.stderr, proc.stderr


def test_db_node_serves_the_course_databases_over_eth1(failed_up, topo):
    """With passwords full of shell and SQL syntax (gridka-mini's vars): each is the
    password itself, for MariaDB over eth1 and for RabbitMQ; a wrong one is refused."""
    import shlex

    import yaml

    var = yaml.safe_load(topo.read_text())["vars"]
    password = var["databases"]["keystone"]["password"]
    assert all(c in password for c in "'\"$;`\\ ")  # the topology still tries them all

    def login(pw):  # `labbuilder ssh NODE -- CMD` joins CMD for the remote shell, as ssh does
        return on(topo, "compute-1", f"mysql -h 10.0.0.3 -u keystoneUser -p{shlex.quote(pw)} keystone "
                  "-N -e 'select 1'", check=False)

    assert login(password).stdout.strip() == "1"
    assert login(password[:-1]).returncode != 0
    rabbit = var["rabbit_password"]  # (each rabbitmqctl reaches the running broker or fails)
    assert on(topo, "db-node", f"rabbitmqctl -q authenticate_user guest {shlex.quote(rabbit)}",
              check=False).returncode == 0
    assert on(topo, "db-node", "rabbitmqctl -q authenticate_user guest gridka", check=False).returncode != 0


def test_volume_node_has_cinder_volumes_on_vdb(failed_up, topo):
    out = on(topo, "volume-node", "pvs", "--noheadings", "-o", "pv_name,vg_name").stdout.split()
    assert out == ["/dev/vdb", "cinder-volumes"]
    assert on(topo, "volume-node", "vgs", "cinder-volumes").returncode == 0


def test_br100_on_network_and_compute_nodes(failed_up, topo):
    assert on(topo, "network-node", "cat", "/proc/sys/net/ipv4/ip_forward").stdout.strip() == "1"
    assert on(topo, "network-node", "ls", "/sys/class/net/br100/brif").stdout.split() == ["eth3"]
    assert on(topo, "network-node", "ip", "-4", "-o", "addr", "show", "br100").stdout.strip() == ""
    assert " UP " in on(topo, "network-node", "ip", "-br", "link", "show", "eth2").stdout
    assert on(topo, "compute-1", "ls", "/sys/class/net/br100/brif").stdout.split() == ["eth1"]
    assert "inet 10.0.0.20/24" in on(topo, "compute-1", "ip", "-4", "-o", "addr", "show", "br100").stdout


def test_reset_to_a_checkpoint_brings_back_disk_and_memory_without_a_boot(failed_up, topo, private_libvirtd):
    listed = json.loads(lb("checkpoints", topo, "--json").stdout)
    assert [c["name"] for c in listed][:2] == ["after-common", "after-db"]
    # Every node's memory is saved: each guest has well over 64 MiB in use (kernel, systemd, mariadb).
    assert all(c["nodes"] == list(NODES) and c["memory_bytes"] > len(NODES) * 64 * 2**20 for c in listed)
    boots = {n: on(topo, n, "cat", "/proc/sys/kernel/random/boot_id").stdout for n in NODES}
    on(topo, "db-node", "mysql -e 'DROP DATABASE keystone'")
    on(topo, "compute-1", "touch", "/root/written-after-checkpoint")
    lb("reset", topo, "--to", "after-db")  # how long it takes: bench/checkpoint.py
    assert on(topo, "db-node", "mysql -N -e \"SHOW DATABASES LIKE 'keystone'\"").stdout.strip() == "keystone"
    assert on(topo, "compute-1", "test", "-e", "/root/written-after-checkpoint", check=False).returncode == 1
    for n in NODES:  # the same boot: memory state restored, no boot
        assert on(topo, n, "cat", "/proc/sys/kernel/random/boot_id").stdout == boots[n]
        # The checkpoint waited for the boot to finish: a reset does not land mid-startup.
        assert on(topo, n, "systemctl", "is-system-running", check=False).stdout.strip() in ("running", "degraded")
    before = time.time()
    clock = float(on(topo, "volume-node", "date", "+%s.%N").stdout)
    assert before - 1 < clock < time.time() + 1, "the guest clock was not set after the restore"
    # The record of finished roles is the checkpoint's: the next configure resumes after db.
    assert _status(topo)["compute-1"]["roles_done"] == ["common"]


def test_cold_reset_to_a_checkpoint_boots_from_its_disks(failed_up, topo):
    boot = on(topo, "compute-1", "cat", "/proc/sys/kernel/random/boot_id").stdout
    on(topo, "compute-1", "touch", "/root/written-after-checkpoint")
    lb("reset", topo, "--to", "after-db", "--cold", "--node", "compute-1")
    assert on(topo, "compute-1", "cat", "/proc/sys/kernel/random/boot_id").stdout != boot  # it booted
    assert on(topo, "compute-1", "test", "-e", "/root/written-after-checkpoint", check=False).returncode == 1
    # The common role's block in /etc/hosts was flushed to disk before the checkpoint.
    assert on(topo, "compute-1", "grep -c '^# BEGIN labbuilder gridka-mini nodes$' /etc/hosts").stdout.strip() == "1"


def test_reset_without_to_returns_a_node_to_the_blank_base(failed_up, topo):
    lb("reset", topo, "--node", "volume-node")
    assert on(topo, "volume-node", "vgs", "cinder-volumes", check=False).returncode != 0
    assert _status(topo)["volume-node"]["roles_done"] == []
    listed = json.loads(lb("checkpoints", topo, "--json").stdout)
    assert all(c["missing"] == ["volume-node"] for c in listed)
    proc = lb("reset", topo, "--to", "after-db", "--node", "volume-node", check=False)
    assert proc.returncode == 1 and "does not cover volume-node" in proc.stderr


def test_down_removes_the_checkpoints_with_the_lab(failed_up, topo, private_libvirtd):
    lb("down", topo)
    conn = virt.connect(private_libvirtd.uri)
    try:
        assert not [d for d in conn.listAllDomains() if d.name().startswith("gridka-mini-")]
        assert not [p for p in virt.pool_names(conn) if p.startswith("gridka-mini-")]
    finally:
        conn.close()
    assert json.loads(lb("checkpoints", topo, "--json").stdout) == []

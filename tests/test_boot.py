"""Real boot: the pipeline's image, cloned twice as qcow2 overlays through the storage API,
booted under the private libvirtd with NoCloud seeds, reached over SSH."""

from __future__ import annotations

import time

import pytest

from labbuilder.lab import render, seed
from labbuilder.system import ssh, virt

pytestmark = [pytest.mark.vm, pytest.mark.image]

NET, BRIDGE, SUBNET = "lbboot-net", "lbboot0", "192.168.160"
NODES = {"alpha": ("52:54:00:be:00:0a", f"{SUBNET}.10"), "beta": ("52:54:00:be:00:0b", f"{SUBNET}.11")}
OWNER = {"lab": "boot", "team": "1", "host": None, "plan": "test", "created": 0}


def _create_lab(conn, base, workdir, pubkey):
    virt.define_network(conn, render.render_xml(
        "network.xml.j2", name=NET, owner={**OWNER, "network": "nat"}, mode="nat", bridge=BRIDGE,
        domain="", gateway=f"{SUBNET}.1", prefix=24, dhcp_start=f"{SUBNET}.100",
        dhcp_end=f"{SUBNET}.200",
        hosts=[{"mac": mac, "name": n, "ip": ip} for n, (mac, ip) in NODES.items()]))
    virt.ensure_pool(conn, "lbboot-base", render.render_xml("pool.xml.j2", name="lbboot-base", path=str(base.dir)))
    pool = virt.ensure_pool(conn, "lbboot", render.render_xml("pool.xml.j2", name="lbboot", path=str(workdir)))
    size = base.manifest["image"]["virtual_size"]
    for name, (mac, ip) in NODES.items():
        virt.create_volume(pool, render.render_xml("volume.xml.j2", name=f"{name}-vda.qcow2",
                                                   capacity=size, format="qcow2", backing=str(base.image)))
        virt.create_volume(pool, render.render_xml("volume.xml.j2", name=f"{name}-vdb.qcow2",
                                                   capacity=1 << 30, format="qcow2", backing=""))
        iso = seed.seed_iso(seed.NodeIdentity(
            instance_id=f"boot-{name}", hostname=name, fqdn=f"{name}.lab", authorized_keys=(pubkey,),
            nics=(seed.SeedNic("eth0", mac, dhcp=True),), hosts=tuple((i, n) for n, (_, i) in NODES.items())))
        vol = virt.create_volume(pool, render.render_xml("volume.xml.j2", name=f"{name}-seed.iso",
                                                         capacity=len(iso), format="raw", backing=""))
        virt.upload_volume(conn, vol, iso)
        dom = virt.define_domain(conn, render.render_xml(
            "domain.xml.j2", domain_type="qemu", entries=[], name=f"lbboot-{name}", owner={**OWNER, "node": name},
            memory_mib=512, vcpus=1, serial_log=f"/var/log/libvirt/qemu/lbboot-{name}-serial.log",
            disks=[{"pool": "lbboot", "volume": f"{name}-vda.qcow2", "target": "vda", "format": "qcow2", "bus": "virtio"},
                   {"pool": "lbboot", "volume": f"{name}-vdb.qcow2", "target": "vdb", "format": "qcow2", "bus": "virtio"}],
            seed={"pool": "lbboot", "volume": f"{name}-seed.iso"},
            nics=[{"network": NET, "mac": mac}]))
        virt.start_domain(dom)


def _wait_leases(conn, timeout=600):
    start = time.monotonic()
    want = {mac: ip for mac, ip in NODES.values()}
    while time.monotonic() - start < timeout:
        leases = virt.network_leases(conn, NET)
        if all(leases.get(mac) == ip for mac, ip in want.items()):
            return leases
        time.sleep(2)
    pytest.fail(f"leases not all fixed after {timeout}s: {virt.network_leases(conn, NET)}")


@pytest.fixture(scope="module")
def booted(private_libvirtd, base_image, lab_state):
    workdir = lab_state / "bootpool"
    workdir.mkdir()
    key = workdir.parent / "boot-key"
    pubkey = ssh.ensure_keypair(key)
    conn = virt.connect(private_libvirtd.uri)
    _create_lab(conn, base_image, workdir, pubkey)
    yield conn, {n: ssh.SshTarget(ip, key, prefix=tuple(private_libvirtd.nsenter_argv()))
                 for n, (_, ip) in NODES.items()}, workdir
    virt.destroy_all(conn)
    conn.close()


def test_boot_is_seen_through_guest_agent_events(booted):
    """Runs first, while the guests boot: the watch starts before any agent is up, so
    it is the agent-lifecycle event that wakes it, not the domain XML read at start."""
    conn, _, _ = booted
    for i, name in enumerate(NODES):
        with virt.GuestWatch(conn, f"lbboot-{name}") as watch:
            if i == 0:  # started a moment ago: its agent cannot be up yet
                assert not watch.agent
            watch.wait(600, agent=True)
            assert watch.agent, f"{name}: the guest agent did not connect within 600 s"


def test_fixed_leases_appear(booted):
    conn, _, _ = booted
    leases = _wait_leases(conn)
    for mac, ip in NODES.values():
        assert leases[mac] == ip


def test_ssh_hostname_address_and_extra_disk(booted):
    conn, targets, _ = booted
    _wait_leases(conn)
    for name, target in targets.items():
        ssh.wait_for_ssh(target, timeout=600)
        assert ssh.ssh_run(target, ["hostname"]).stdout.strip() == name
        eth0 = ssh.ssh_run(target, ["ip", "-4", "-o", "addr", "show", "dev", "eth0"]).stdout
        assert f"inet {NODES[name][1]}/24" in eth0
        assert ssh.ssh_run(target, ["test", "-b", "/dev/vdb"], check=False).returncode == 0
        other = next(n for n in NODES if n != name)
        hosts = ssh.ssh_run(target, ["getent", "hosts", other]).stdout
        assert hosts.split()[0] == NODES[other][1]


def test_clones_have_distinct_machine_ids(booted):
    conn, targets, _ = booted
    _wait_leases(conn)
    ids = set()
    for target in targets.values():
        ssh.wait_for_ssh(target, timeout=600)
        mid = ssh.ssh_run(target, ["cat", "/etc/machine-id"]).stdout.strip()
        assert len(mid) == 32 and mid != "uninitialized"
        ids.add(mid)
    assert len(ids) == len(targets)


def test_overlay_is_a_clone_not_a_copy(booted, base_image):
    _, _, workdir = booted
    from labbuilder.system import qemuimg

    info = qemuimg.info(workdir / "alpha-vda.qcow2")
    assert info["backing-filename"] == str(base_image.image)


def test_a_lab_node_boots_to_running_without_cloud_inits_late_stages(booted):
    """The seed marks a lab node (seed.LAB_NODE_MARK), and the image then skips
    cloud-init's config stage and leaves only the final stage's record
    (images/debian-12.yaml): the boot still ends with every unit started and cloud-init
    done, as `cloud-init status --wait` and waits on boot-finished see it."""
    conn, targets, _ = booted
    for target in targets.values():
        ssh.wait_for_ssh(target, timeout=600)
        state = ssh.ssh_run(target, ["systemctl", "is-system-running", "--wait"], check=False, timeout=600)
        assert state.stdout.strip() == "running", state.stdout + state.stderr
        skipped = ssh.ssh_run(target, ["systemctl", "show", "-p", "ConditionResult", "--value",
                                       "cloud-config.service"]).stdout.split()
        assert skipped == ["no"]
        log = ssh.ssh_run(target, ["journalctl", "-b", "-o", "cat", "-u", "cloud-config.service",
                                   "-u", "cloud-final.service"]).stdout
        assert "Cloud-init v." not in log, log  # neither stage started cloud-init's Python
        assert ssh.ssh_run(target, ["test", "-f", seed.LAB_NODE_MARK], check=False).returncode == 0
        status = ssh.ssh_run(target, ["cloud-init", "status", "--wait"], check=False, timeout=120)
        assert (status.returncode, status.stdout.split()) == (0, ["status:", "done"]), status.stdout + status.stderr
        assert ssh.ssh_run(target, ["test", "-s", "/var/lib/cloud/instance/boot-finished"],
                           check=False).returncode == 0

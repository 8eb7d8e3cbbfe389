"""The GridKa course image for real (gridka-openstack, which extends gridka-base, which
extends debian-12): one overlay clone boots under the private libvirtd with MariaDB,
RabbitMQ, chrony and the OpenStack services installed but not started, and once a role
starts them they work (no internet in the guest)."""

from __future__ import annotations

import pytest
from conftest import REPO

from labbuilder.lab import render, seed
from labbuilder.model import recipe
from labbuilder.system import ssh, virt

pytestmark = pytest.mark.image

NET, BRIDGE, SUBNET = "lbgridka-net", "lbgridka0", "192.168.161"
NAME, MAC, IP = "db-node", "52:54:00:be:01:03", f"{SUBNET}.3"
OWNER = {"lab": "gridka-image", "team": "1", "host": None, "plan": "test", "created": 0}
DISABLED = recipe.load_recipe(REPO / "images" / "gridka-openstack.yaml").disable


def _create_node(conn, base, workdir, pubkey):
    virt.define_network(conn, render.render_xml(
        "network.xml.j2", name=NET, owner={**OWNER, "network": "nat"}, mode="nat", bridge=BRIDGE,
        domain="", gateway=f"{SUBNET}.1", prefix=24, dhcp_start=f"{SUBNET}.100",
        dhcp_end=f"{SUBNET}.200", hosts=[{"mac": MAC, "name": NAME, "ip": IP}]))
    virt.ensure_pool(conn, "lbgridka-base", render.render_xml("pool.xml.j2", name="lbgridka-base",
                                                              path=str(base.dir)))
    pool = virt.ensure_pool(conn, "lbgridka", render.render_xml("pool.xml.j2", name="lbgridka", path=str(workdir)))
    virt.create_volume(pool, render.render_xml("volume.xml.j2", name="vda.qcow2", format="qcow2",
                                               capacity=base.manifest["image"]["virtual_size"],
                                               backing=str(base.image)))
    iso = seed.seed_iso(seed.NodeIdentity(instance_id=f"gridka-{NAME}", hostname=NAME, fqdn=f"{NAME}.lab",
                                  authorized_keys=(pubkey,), nics=(seed.SeedNic("eth0", MAC, dhcp=True),)))
    vol = virt.create_volume(pool, render.render_xml("volume.xml.j2", name="seed.iso", capacity=len(iso),
                                                     format="raw", backing=""))
    virt.upload_volume(conn, vol, iso)
    virt.start_domain(virt.define_domain(conn, render.render_xml(
        "domain.xml.j2", domain_type="qemu", entries=[], name=f"lbgridka-{NAME}", owner={**OWNER, "node": NAME},
        memory_mib=1024, vcpus=1, serial_log=f"/var/log/libvirt/qemu/lbgridka-{NAME}-serial.log",
        disks=[{"pool": "lbgridka", "volume": "vda.qcow2", "target": "vda", "format": "qcow2", "bus": "virtio"}],
        seed={"pool": "lbgridka", "volume": "seed.iso"}, nics=[{"network": NET, "mac": MAC}])))


@pytest.fixture(scope="module")
def db_node(private_libvirtd, gridka_image, lab_state):
    """One booted clone of the course image, reachable over SSH once its boot has finished."""
    workdir = lab_state / "gridkapool"
    workdir.mkdir()
    key = lab_state / "gridka-key"
    conn = virt.connect(private_libvirtd.uri)
    _create_node(conn, gridka_image, workdir, ssh.ensure_keypair(key))
    target = ssh.SshTarget(IP, key, prefix=tuple(private_libvirtd.nsenter_argv()))
    ssh.wait_for_ssh(target, timeout=600)
    # Services of multi-user.target start in parallel with sshd: wait until boot is over.
    ssh.ssh_run(target, ["systemctl", "is-system-running", "--wait"], check=False, timeout=600)
    yield target
    virt.destroy_all(conn)
    conn.close()


def test_image_records_its_parent(gridka_image):
    assert gridka_image.manifest["extends"] == "gridka-base"


@pytest.mark.vm
def test_heavy_services_are_installed_but_not_started_at_boot(db_node):
    assert {"mariadb.service", "rabbitmq-server.service", "chrony.service"} <= set(DISABLED)
    for unit in DISABLED:
        assert ssh.ssh_run(db_node, ["systemctl", "is-enabled", unit], check=False).stdout.strip() == "disabled"
        assert ssh.ssh_run(db_node, ["systemctl", "is-active", unit], check=False).stdout.strip() == "inactive"
    failed = ssh.ssh_run(db_node, ["systemctl", "--failed", "--plain", "--no-legend"]).stdout
    assert failed.strip() == "", failed


@pytest.mark.vm
def test_a_role_can_start_mariadb_rabbitmq_and_iscsid(db_node):
    ssh.ssh_run(db_node, ["systemctl", "start", "mariadb", "rabbitmq-server", "iscsid"], timeout=600)
    assert ssh.ssh_run(db_node, ["mysql", "-N", "-e", "select 1"]).stdout.strip() == "1"
    # The Erlang VM under TCG is slow to answer, not broken: give rabbitmqctl its time.
    status = ssh.ssh_run(db_node, ["rabbitmqctl", "status"], timeout=300)
    assert "Status of node rabbit@db-node" in status.stdout + status.stderr


@pytest.mark.vm
def test_clone_made_its_own_erlang_cookie_and_iscsi_name(db_node):
    """Both were made once by a postinst in the image build; a clone must not share them."""
    ssh.ssh_run(db_node, ["systemctl", "start", "rabbitmq-server", "iscsid"], timeout=600)
    machine_id = ssh.ssh_run(db_node, ["cat", "/etc/machine-id"]).stdout
    stamp = ssh.ssh_run(db_node, ["cat", "/var/lib/rabbitmq/.erlang.cookie.machine-id"]).stdout
    assert stamp == machine_id
    name = ssh.ssh_run(db_node, ["cat", "/etc/iscsi/initiatorname.iscsi"]).stdout
    assert "GenerateName" not in name and "\nInitiatorName=iqn.1993-08.org.debian:01:" in name

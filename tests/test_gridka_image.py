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


# Sends AMQP 0-9-1's protocol header to the broker on the node; prints what the first frame is.
AMQP_HELLO = """
import socket
s = socket.create_connection(("127.0.0.1", 5672), timeout=60)
s.sendall(b"AMQP\\x00\\x00\\x09\\x01")
frame = s.recv(11)
# a method frame (type 1) on channel 0 whose class/method is 10/10: Connection.Start
print("Connection.Start" if frame[0] == 1 and frame[7:11] == bytes([0, 10, 0, 10]) else frame)
"""


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
    """One booted clone of the course image once its boot has finished: its SSH target, and
    what systemctl said of the DISABLED units and of failed ones then."""
    workdir = lab_state / "gridkapool"
    workdir.mkdir()
    key = lab_state / "gridka-key"
    conn = virt.connect(private_libvirtd.uri)
    _create_node(conn, gridka_image, workdir, ssh.ensure_keypair(key))
    target = ssh.SshTarget(IP, key, prefix=tuple(private_libvirtd.nsenter_argv()))
    ssh.wait_for_ssh(target, timeout=600)
    # Services of multi-user.target start in parallel with sshd: wait until boot is over.
    ssh.ssh_run(target, ["systemctl", "is-system-running", "--wait"], check=False, timeout=600)
    # What the boot left, before any test starts a service. systemctl answers a line per
    # unit, in the order asked (one login each: a login takes seconds under TCG).
    at_boot = {query: ssh.ssh_run(target, ["systemctl", query, *DISABLED], check=False).stdout.split()
               for query in ("is-enabled", "is-active")}
    at_boot["failed"] = ssh.ssh_run(target, ["systemctl", "--failed", "--plain", "--no-legend"]).stdout
    yield target, at_boot
    virt.destroy_all(conn)
    conn.close()


def test_image_records_its_parent(gridka_image):
    assert gridka_image.manifest["extends"] == "gridka-base"


@pytest.mark.vm
def test_heavy_services_are_installed_but_not_started_at_boot(db_node):
    _, at_boot = db_node
    assert {"mariadb.service", "rabbitmq-server.service", "chrony.service"} <= set(DISABLED)
    for query, state in (("is-enabled", "disabled"), ("is-active", "inactive")):
        assert len(at_boot[query]) == len(DISABLED)
        assert dict(zip(DISABLED, at_boot[query])) == dict.fromkeys(DISABLED, state)
    assert at_boot["failed"].strip() == "", at_boot["failed"]


@pytest.mark.vm
def test_a_role_can_start_mariadb_rabbitmq_and_iscsid(db_node):
    target, _ = db_node
    ssh.ssh_run(target, ["systemctl", "start", "mariadb", "rabbitmq-server", "iscsid"], timeout=600)
    assert ssh.ssh_run(target, ["mysql", "-N", "-e", "select 1"]).stdout.strip() == "1"
    # rabbitmq-server.service is Type=notify: started means the broker runs; it takes AMQP
    # connections (a client's protocol header gets the broker's Connection.Start back).
    answer = ssh.ssh_run(target, ["python3", "-c", AMQP_HELLO], timeout=120)
    assert answer.stdout.strip() == "Connection.Start", answer.stdout + answer.stderr


@pytest.mark.vm
def test_clone_made_its_own_erlang_cookie_and_iscsi_name(db_node):
    """Both were made once by a postinst in the image build; a clone must not share them."""
    target, _ = db_node
    ssh.ssh_run(target, ["systemctl", "start", "rabbitmq-server", "iscsid"], timeout=600)
    machine_id = ssh.ssh_run(target, ["cat", "/etc/machine-id"]).stdout
    stamp = ssh.ssh_run(target, ["cat", "/var/lib/rabbitmq/.erlang.cookie.machine-id"]).stdout
    assert stamp == machine_id
    name = ssh.ssh_run(target, ["cat", "/etc/iscsi/initiatorname.iscsi"]).stdout
    assert "GenerateName" not in name and "\nInitiatorName=iqn.1993-08.org.debian:01:" in name

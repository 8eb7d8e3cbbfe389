"""rdo-course for real, as the course has it: node1–4 on libvirt's stock `default` network
of a private libvirtd (defined from /usr/share/libvirt/networks/default.xml, with someone
else's host entries in it), each getting 192.168.122.10N from its static DHCP host entry;
`down` leaves `default` with exactly the entries it had before. One booted lab (4 nodes on
the gridka-openstack image, its config stage left out) serves every test here; its end
checks `down`."""

from __future__ import annotations

import json
import shlex

import pytest
from conftest import install_through_cache, stock_host

from labbuilder.system import virt

pytestmark = [pytest.mark.vm, pytest.mark.image]

RDO = "topologies/rdo-course.yaml"


@pytest.fixture(scope="module")
def lab(gridka_openstack_image):
    """The stock host with rdo-course up without its config stage (this test is about the
    network, not the OpenStack the roles install), and its `default` network's entries from
    before. At the end, `down` must leave `default` with exactly those (checked here, after
    every test, in whatever order they ran)."""
    with stock_host("lbrdo-") as host:
        before = host.default_hosts()
        host.lb("up", RDO, "--no-config")
        yield host, before
        down = host.lb("down", RDO)
        assert "- host entry 52:54:00:00:00:01 192.168.122.101 node1 in network default" in down.stdout
        assert host.default_hosts() == before, "down left other entries in default than it found"


def test_each_node_gets_its_course_address_from_the_default_network(lab):
    host, _ = lab
    for i in range(1, 5):
        eth0 = host.lb("ssh", RDO, f"node{i}", "--", "ip", "-4", "-o", "addr", "show", "eth0").stdout
        assert f"inet 192.168.122.10{i}/24" in eth0, eth0
    conn = virt.connect(host.daemon.uri)
    try:  # leases, from the static DHCP host entries: not addresses the guests set themselves
        leases = virt.network_leases(conn, "default")
    finally:
        conn.close()
    assert {mac: leases.get(mac) for mac in (f"52:54:00:00:00:0{i}" for i in range(1, 5))} == {
        f"52:54:00:00:00:0{i}": f"192.168.122.10{i}" for i in range(1, 5)}
    status = json.loads(host.lb("status", RDO, "--json").stdout)
    assert {n["node"]: (n["state"], n["ssh"]) for n in status["nodes"]} == {
        f"node{i}": ("running", True) for i in range(1, 5)}


# An A query for `node3` to the network's DNS (the guests' /etc/hosts knows the nodes
# too, so the query skips the resolver); prints the first answer's address.
DNS_QUERY = """
import socket
q = bytes.fromhex("abcd01000001000000000000") + b"\\x05node3\\x00" + bytes.fromhex("00010001")
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(10)
s.sendto(q, ("192.168.122.1", 53))
r = s.recv(512)
assert r[3] & 15 == 0 and int.from_bytes(r[6:8], "big") >= 1, r
print(".".join(map(str, r[len(q) + 12:len(q) + 16])))
"""


def test_the_networks_dns_answers_for_the_nodes(lab):
    """The DNS host entries: the host's network (its dnsmasq) answers for the nodes' names."""
    host, _ = lab
    answer = host.lb("ssh", RDO, "node1", "--", shlex.join(["python3", "-c", DNS_QUERY]), check=False)
    assert answer.returncode == 0 and answer.stdout.strip() == "192.168.122.103", answer.stdout + answer.stderr


def test_the_entries_are_added_once_beside_the_foreign_ones(lab):
    host, before = lab
    ours = [{"mac": f"52:54:00:00:00:0{i}", "name": f"node{i}", "ip": f"192.168.122.10{i}"} for i in range(1, 5)]
    assert host.default_hosts() == (sorted(before[0] + ours, key=lambda h: sorted(h.items())),
                                    sorted(before[1] + [(e["ip"], (e["name"],)) for e in ours]))
    assert "Nothing to do" in host.lb("up", RDO, "--no-config").stderr
    assert "No changes" in host.lb("plan", RDO).stdout
    assert len(host.default_hosts()[0]) == len(before[0]) + 4


def test_a_node_installs_a_package_through_the_hosts_cache(lab):
    """`default` is not labbuilder's network, yet its gateway is where the nodes reach the
    lab host's package cache: `up` relays it there, into the private libvirtd's network
    namespace, which has no other way out; the cache logs the .deb's transfer."""
    host, _ = lab
    conf = host.lb("ssh", RDO, "node1", "--", "cat", "/etc/apt/apt.conf.d/90labbuilder-proxy").stdout
    assert conf.strip() == 'Acquire::http::Proxy "http://192.168.122.1:3142";'
    install_through_cache(lambda *argv: host.lb("ssh", RDO, "node1", "--", *argv), host.state, "tree")
    listed = host.lb("ssh", RDO, "node1", "--", "tree", "-L", "1", "/etc/apt").stdout
    assert "apt.conf.d" in listed, listed

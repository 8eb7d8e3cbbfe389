"""A private libvirtd runs real networks and QEMU domains, isolated from the host. Tests that
boot a QEMU domain are marked `vm`; those that only start the daemon (or use the session's)
`libvirtd`."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import libvirt
import pytest

from labbuilder.model.errors import HostError
from labbuilder.system import privatelibvirtd, virt
from labbuilder.system.run import run

NETWORK_XML = """\
<network>
  <name>lbtest</name>
  <forward mode='nat'/>
  <bridge name='lbtest0' stp='off' delay='0'/>
  <ip address='192.168.150.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='192.168.150.100' end='192.168.150.199'/>
      <host mac='52:54:00:15:00:10' ip='192.168.150.10'/>
    </dhcp>
  </ip>
</network>
"""

DOMAIN_XML = """\
<domain type='qemu'>
  <name>lbtest-vm</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <boot dev='network'/>
  </os>
  <features>
    <acpi/>
    <smm state='off'/>
  </features>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <interface type='network'>
      <source network='lbtest'/>
      <mac address='52:54:00:15:00:10'/>
      <model type='virtio'/>
    </interface>
    <serial type='pty'>
      <log file='/var/log/libvirt/qemu/lbtest-vm-serial.log'/>
    </serial>
    <console type='pty'/>
    <video>
      <model type='vga'/>
    </video>
    <memballoon model='none'/>
  </devices>
</domain>
"""


def _live_processes() -> dict[int, tuple[list[str], str]]:
    """pid -> (argv, network namespace) of every process that is not a zombie."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            netns = os.readlink(entry / "ns" / "net")
        except OSError:
            continue
        if argv[0]:  # a zombie has an empty command line
            found[int(entry.name)] = (argv, netns)
    return found


def _programs_in(netns: str) -> dict[int, str]:
    """pid -> program name of every live process in network namespace `netns`."""
    return {pid: Path(argv[0]).name for pid, (argv, ns) in _live_processes().items() if ns == netns}


def _in_namespace(daemon: privatelibvirtd.PrivateDaemon, *argv: str):
    return run([*daemon.nsenter_argv(), *argv], check=False)


@pytest.fixture
def conn(private_libvirtd):
    """A connection to the session's private libvirtd."""
    connection = virt.connect(private_libvirtd.uri)
    yield connection
    connection.close()


@pytest.fixture
def nat_network(conn):
    """The `lbtest` NAT network, defined and started; removed afterwards."""
    net = conn.networkDefineXML(NETWORK_XML)
    net.create()
    yield net
    net.destroy()
    net.undefine()


@pytest.mark.libvirtd
def test_nat_network_lives_in_the_namespace(private_libvirtd, nat_network):
    inside = _in_namespace(private_libvirtd, "ip", "-o", "addr", "show", "dev", "lbtest0")
    assert inside.returncode == 0, inside.stderr
    assert "192.168.150.1/24" in inside.stdout
    assert run(["ip", "link", "show", "dev", "lbtest0"], check=False).returncode != 0

    nat_inside = _in_namespace(private_libvirtd, "iptables", "-t", "nat", "-S")
    assert "192.168.150.0/24" in nat_inside.stdout
    assert "192.168.150.0/24" not in run(["iptables", "-t", "nat", "-S"], check=False).stdout

    programs = _programs_in(os.readlink(private_libvirtd.netns))
    assert "dnsmasq" in programs.values()


@pytest.mark.vm
def test_qemu_domain_starts_on_the_network(private_libvirtd, conn, nat_network):
    dom = conn.defineXML(DOMAIN_XML)
    dom.create()
    try:
        assert dom.state()[0] == 1  # VIR_DOMAIN_RUNNING
        programs = _programs_in(os.readlink(private_libvirtd.netns))
        assert "qemu-system-x86_64" in programs.values()
        ports = _in_namespace(private_libvirtd, "ip", "-o", "link", "show", "master", "lbtest0")
        assert "vnet" in ports.stdout
        # virtlogd opened the serial log; outside the namespace it is under state_dir/log.
        assert (private_libvirtd.state_dir / "log" / "qemu" / "lbtest-vm-serial.log").exists()
    finally:
        dom.destroy()
    assert not dom.isActive()
    dom.undefine()


@pytest.mark.libvirtd
def test_attach_finds_the_running_daemon(private_libvirtd):
    assert privatelibvirtd.attach(private_libvirtd.state_dir) == private_libvirtd
    assert privatelibvirtd.ensure(private_libvirtd.state_dir) == private_libvirtd
    with pytest.raises(HostError, match="already runs"):
        privatelibvirtd.start(private_libvirtd.state_dir)


@pytest.mark.vm
def test_stop_leaves_nothing_behind(tmp_path_factory, private_libvirtd, nat_network):
    """A second daemon, with the same bridge and subnet as the session's at the same time."""
    state_dir = tmp_path_factory.mktemp("stop")
    daemon = privatelibvirtd.start(state_dir)
    try:
        conn = virt.connect(daemon.uri)
        try:
            conn.networkDefineXML(NETWORK_XML).create()
            conn.defineXML(DOMAIN_XML).create()
        finally:
            conn.close()
        netns = os.readlink(daemon.netns)
        before = _programs_in(netns)
        assert {"libvirtd", "virtlogd", "dnsmasq", "qemu-system-x86_64"} <= set(before.values())
    finally:
        privatelibvirtd.stop(daemon)

    assert _programs_in(netns) == {}
    mentions = [pid for pid, (argv, _) in _live_processes().items() if any(str(state_dir) in a for a in argv)]
    assert mentions == []
    with socket.socket(socket.AF_UNIX) as sock, pytest.raises(OSError):
        sock.connect(str(daemon.socket))
    assert privatelibvirtd.attach(state_dir) is None


def test_start_refuses_a_state_dir_too_long_for_a_socket(tmp_path):
    with pytest.raises(HostError, match="too long"):
        privatelibvirtd.start(tmp_path / ("x" * 100))


@pytest.mark.libvirtd
def test_eight_jobs_at_once_stay_under_the_daemons_request_limit(private_libvirtd):
    """labbuilder does a node's calls in a thread each (8 at once for 8 nodes). libvirtd
    serves at most 5 calls of one connection at once (its default, which the private
    daemon keeps, as a lab host's does) and stops reading the connection beyond that; an
    `up` of 8 once waited forever there. Each job has a connection of its own."""
    from labbuilder.lab.hosts import Host
    from labbuilder.system.connections import ConnectionPool, parallel

    log = private_libvirtd.state_dir / "log" / "libvirtd.log"
    seen = log.stat().st_size if log.exists() else 0
    host = Host(private_libvirtd.uri)
    conns = ConnectionPool()

    def churn(i: int) -> None:
        for _ in range(15):
            conns(host).defineXML(DOMAIN_XML.replace("lbtest-vm", f"lbtest-calls-{i}")).undefine()

    try:
        parallel([lambda i=i: churn(i) for i in range(8)])
        parallel([lambda i=i: churn(i) for i in range(8)])  # the same 8 connections again
        assert len(conns._idle[host.uri]) == 8  # given back, and none opened for the second round
        assert not [d for d in conns(host).listAllDomains() if d.name().startswith("lbtest-calls-")]
    finally:
        conns.close()
    with log.open() as f:
        f.seek(seen)
        assert "hit max requests limit" not in f.read()


@pytest.mark.libvirtd
def test_an_upload_streams_the_file_whole_and_stays_under_the_request_limit(private_libvirtd, tmp_path):
    """A base image reaches a host as one stream on one connection: its packets count
    toward the daemon's limit of 5 calls in flight, so the daemon must pace it, not hit
    the limit; and the volume holds the file's bytes."""
    import hashlib

    from labbuilder.lab import render

    log = private_libvirtd.state_dir / "log" / "libvirtd.log"
    seen = log.stat().st_size if log.exists() else 0
    blob = tmp_path / "blob"
    blob.write_bytes(os.urandom(96 << 20))
    conn = virt.connect(private_libvirtd.uri)
    try:
        pool = virt.ensure_pool(conn, "lbtest-upload",
                                render.pool_xml("lbtest-upload", "/var/lib/libvirt/images/lbtest-upload"))
        vol = virt.create_volume(pool, render.volume_xml("blob.raw", 96 << 20, "raw"))
        virt.upload_file(conn, vol, str(blob))
        stream, got = conn.newStream(0), hashlib.sha256()
        vol.download(stream, 0, 0, 0)
        stream.recvAll(lambda _s, data, _o: got.update(data), None)
        stream.finish()
        assert got.hexdigest() == hashlib.sha256(blob.read_bytes()).hexdigest()
    finally:
        virt.remove_pool(conn, "lbtest-upload")
        conn.close()
    with log.open() as f:
        f.seek(seen)
        assert "hit max requests limit" not in f.read()


@pytest.mark.libvirtd
def test_a_daemon_that_stops_answering_ends_the_call_with_an_error(tmp_path_factory):
    """A call on a hung libvirtd fails once keepalive gives up (1 s × 3 here), instead of
    waiting forever: the call runs in a thread that a watchdog waits for."""
    import signal
    import threading

    daemon = privatelibvirtd.start(tmp_path_factory.mktemp("hung"))
    pid = int((daemon.state_dir / "libvirtd.pid").read_text())
    ended: list[BaseException | None] = []

    def call() -> None:
        try:
            conn.listAllDomains()
            ended.append(None)
        except libvirt.libvirtError as e:
            ended.append(e)

    try:
        conn = virt.connect(daemon.uri, keepalive=(1, 2))
        os.kill(pid, signal.SIGSTOP)
        caller = threading.Thread(target=call, daemon=True)
        caller.start()
        caller.join(120)  # a watchdog, far beyond keepalive's 3 s: only a call with no end waits it out
        assert ended, "the call on the stopped daemon did not end"
        assert ended[0] is not None and "keepalive" in str(ended[0]), ended
    finally:
        os.kill(pid, signal.SIGCONT)
        privatelibvirtd.stop(daemon)

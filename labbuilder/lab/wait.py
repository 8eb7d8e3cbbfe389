"""Wait: until each node has its fixed leases and answers on SSH, driven by boot events."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable

from labbuilder.model.errors import HostError
from labbuilder.reporting import Progress
from labbuilder.system import ssh, virt
from labbuilder.system.connections import ConnectionPool, parallel

if TYPE_CHECKING:
    from labbuilder.lab.plan import LabPlan, NodePlan

# How often a waiting `up` looks (and bench/floor.py, which waits the same way): seconds.
LEASE_POLL_NO_AGENT = 10.0  # leases, before the guest agent has connected
LEASE_POLL = 2.0  # leases, once it has
SSH_PROBE = 2.0  # SSH, once the leases are there


def wait_ready(plan: LabPlan, conns: ConnectionPool, access: ssh.Access, progress: Progress,
               nodes: list[NodePlan] | None = None, timeout: float = 1200) -> dict[str, str]:
    """Wait until each node has its fixed leases and answers on SSH; node name → address.
    Boot events drive it: the guest agent connecting says a guest is up (before that,
    leases are looked at only every 10 s, for guests without an agent), and a domain
    that stops or crashes ends the wait at once instead of at the timeout."""
    nodes = nodes if nodes is not None else list(plan.nodes)
    ready: dict[str, str] = {}

    def one(node: NodePlan) -> None:
        ready[node.name] = wait_guest(conns(node.host), node.domain, lambda: _ready_address(conns, node),
                                     lambda a: access.target(a, node.domain, node.host.runtime.ssh_prefix), timeout,
                                     lambda: _no_lease(conns, node, timeout))
        progress.step(f"{len(ready)}/{len(nodes)} answer on SSH ({node.name})")

    with progress.stage(f"wait for {len(nodes)} node(s) to answer on SSH"):
        parallel([lambda n=n: one(n) for n in nodes])
    return ready


def node_leases(conns: ConnectionPool, node: NodePlan) -> dict[str, str]:
    """MAC → leased IPv4 on every DHCP network the node has a NIC on."""
    leases: dict[str, str] = {}
    for net in {n.libvirt_network for n in node.nics if n.dhcp}:
        if virt.network_info(conns(node.host), net):
            leases.update(virt.network_leases(conns(node.host), net))
    return leases


def node_address(conns: ConnectionPool, node: NodePlan) -> str | None:
    """Where to reach a node: its fixed address, else its first NIC's lease (None if none)."""
    if node.ssh_ip:
        return node.ssh_ip
    leases = node_leases(conns, node)
    return next((leases[n.mac] for n in node.nics if n.mac in leases), None)


def wait_guest(conn, domain: str, find_address: Callable[[], str | None], target: Callable[[str], ssh.SshTarget],
               timeout: float, no_address: Callable[[], str]) -> str:
    """Wait for one booting guest as `up` does, and return its address: `find_address()`
    (None until the guest's leases are there; dnsmasq has no lease events over the API)
    is looked at when the guest agent connects, then every LEASE_POLL s (every
    LEASE_POLL_NO_AGENT s before, for a guest that has no agent); then SSH is probed every
    SSH_PROBE s. A domain that stops ends the wait at once; HostError with `no_address()`
    if no address comes within `timeout`. bench/floor.py waits through this too."""
    deadline = time.monotonic() + timeout
    with virt.GuestWatch(conn, domain) as watch:
        while (address := find_address()) is None:
            if time.monotonic() > deadline:
                raise HostError(no_address())
            watch.wait(LEASE_POLL if watch.agent else LEASE_POLL_NO_AGENT, agent=not watch.agent)
        ssh.wait_for_ssh(target(address), deadline - time.monotonic(), interval=SSH_PROBE, sleep=watch.wait)
    return address


def _pending(conns: ConnectionPool, node: NodePlan) -> tuple[list, dict[str, str]]:
    """The node's DHCP NICs whose fixed address is not leased yet, and the leases."""
    leases = node_leases(conns, node)
    return [n for n in node.nics if n.dhcp and n.ip and leases.get(n.mac) != str(n.ip)], leases


def _ready_address(conns: ConnectionPool, node: NodePlan) -> str | None:
    """The node's address once every fixed lease of it is there; None before."""
    pending, leases = _pending(conns, node)
    address = node.ssh_ip or next((leases[n.mac] for n in node.nics if n.mac in leases), None)
    return None if pending else address


def _no_lease(conns: ConnectionPool, node: NodePlan, timeout: float) -> str:
    pending, _ = _pending(conns, node)
    return (f"{node.name}: no lease for {', '.join(n.guest_name for n in pending) or 'any NIC'} "
            f"within {timeout:.0f}s (see its serial log on {node.host.name})")

"""Wait: until each node has its fixed leases and answers on SSH, driven by boot events."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from labbuilder.model.errors import HostError
from labbuilder.reporting import Progress
from labbuilder.system import ssh, virt
from labbuilder.system.connections import ConnectionPool, parallel

if TYPE_CHECKING:
    from labbuilder.lab.plan import LabPlan, NodePlan


def wait_ready(plan: LabPlan, conns: ConnectionPool, access: ssh.Access, progress: Progress,
               nodes: list[NodePlan] | None = None, timeout: float = 1200) -> dict[str, str]:
    """Wait until each node has its fixed leases and answers on SSH; node key → address.
    Boot events drive it: the guest agent connecting says a guest is up (before that,
    leases are looked at only every 10 s, for guests without an agent), and a domain
    that stops or crashes ends the wait at once instead of at the timeout."""
    nodes = nodes if nodes is not None else list(plan.nodes)
    ready: dict[str, str] = {}

    def one(node: NodePlan) -> None:
        deadline = time.monotonic() + timeout
        with virt.GuestWatch(conns(node.host), node.name) as watch:
            address = _wait_address(node, conns, watch, deadline, timeout)
            target = access.target(address, node.name, node.host.runtime.ssh_prefix)
            ssh.wait_for_ssh(target, deadline - time.monotonic(), interval=2.0, sleep=watch.wait)
        ready[node.key] = address
        progress.step(f"{len(ready)}/{len(nodes)} answer on SSH ({node.key})")

    with progress.stage(f"wait for {len(nodes)} node(s) to answer on SSH"):
        parallel([lambda n=n: one(n) for n in nodes])
    return ready


def node_leases(conns: ConnectionPool, node: NodePlan) -> dict[str, str]:
    """MAC → leased IPv4 on every DHCP network the node has a NIC on."""
    leases: dict[str, str] = {}
    for net in {n.network for n in node.nics if n.dhcp}:
        if virt.network_info(conns(node.host), net):
            leases.update(virt.network_leases(conns(node.host), net))
    return leases


def node_address(conns: ConnectionPool, node: NodePlan) -> str | None:
    """Where to reach a node: its fixed address, else its first NIC's lease (None if none)."""
    if node.ssh_ip:
        return node.ssh_ip
    leases = node_leases(conns, node)
    return next((leases[n.mac] for n in node.nics if n.mac in leases), None)


def _wait_address(node: NodePlan, conns: ConnectionPool, watch: virt.GuestWatch, deadline: float,
                  timeout: float) -> str:
    """The node's address once its fixed leases are there. dnsmasq has no lease events
    over the API: they are read when the guest agent connects, then every 2 s (every
    10 s before, for a guest that has no agent)."""
    while True:
        leases = node_leases(conns, node)
        pending = [n for n in node.nics if n.dhcp and n.ip and leases.get(n.mac) != str(n.ip)]
        address = node.ssh_ip or next((leases[n.mac] for n in node.nics if n.mac in leases), None)
        if not pending and address:
            return address
        if time.monotonic() > deadline:
            raise HostError(f"{node.key}: no lease for {', '.join(n.guest_name for n in pending) or 'any NIC'} "
                            f"within {timeout:.0f}s (see its serial log on {node.host.name})")
        watch.wait(2 if watch.agent else 10, agent=not watch.agent)

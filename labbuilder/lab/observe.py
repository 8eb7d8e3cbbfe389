"""Observe: what labbuilder owns on each host of a plan, read back from libvirt (the
source of truth: nothing about VMs is kept locally)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from labbuilder.model.names import BASE_POOL, POOL_MARK, pool_dir, pool_name, pool_pattern
from labbuilder.system import virt

if TYPE_CHECKING:
    from labbuilder.lab.hosts import Host
    from labbuilder.lab.plan import ExistingNetworks, LabPlan
    from labbuilder.model.topology import Topology
    from labbuilder.system.connections import ConnectionPool


@dataclass(frozen=True)
class HostState:
    """What one host has of a lab's team: the objects it owns, the base image volumes
    uploaded there, whether the team's pool exists and, if it runs, its volumes."""

    owned: tuple[virt.HostObject, ...] = ()
    base_volumes: frozenset[str] = frozenset()
    pool_exists: bool = False
    pool_volumes: frozenset[str] | None = None  # None: no pool, or one not started (not read: plan changes nothing)
    networks: dict[str, virt.NetworkFacts | None] = field(default_factory=dict)  # the existing ones the plan joins


def observe_hosts(plan: LabPlan, conns: ConnectionPool, observed: dict[str, list[virt.HostObject]] | None = None,
                  existing: ExistingNetworks | None = None) -> dict[str, HostState]:
    """Per host URI, what it has of `plan`'s team; `observed` (per host URI, from
    virt.observe) and `existing` (existing_networks, what the plan was made from) save
    reading every domain and network, and the joined ones, again. A host that is not
    running yet (a private libvirtd `up` would start) has nothing."""
    states = {}
    for host in plan.hosts:
        if not host.runtime.running:
            states[host.uri] = HostState()
            continue
        conn = conns(host)
        seen = observed[host.uri] if observed is not None else virt.observe(conn)
        pool = virt.lookup_pool(conn, plan.pool)
        volumes = frozenset(virt.volume_names(pool)) if pool is not None and pool.isActive() else None
        joined = {n.libvirt_name: existing[(host.uri, n.libvirt_name)] if existing is not None
                  else virt.read_network(conn, n.libvirt_name) for n in plan.networks if n.existing and n.host == host}
        states[host.uri] = HostState(tuple(virt.owned(seen, plan.lab, plan.team)), frozenset(_base_volumes(conn)),
                                     pool is not None, volumes, joined)
    return states


def existing_networks(topo: Topology, hosts: dict[str, Host], conns: ConnectionPool) -> ExistingNetworks:
    """What the networks the topology joins (`existing:`) are on each host its slots land
    on, for the planner: (host URI, network) → its facts, None where there is no such
    network (nothing exists yet on a private libvirtd that is not started)."""
    names = [n.existing for n in topo.networks if n.existing]
    where = {h.uri: h for h in hosts.values()} if names else {}
    return {(uri, name): virt.read_network(conns(host), name) if host.runtime.running else None
            for uri, host in where.items() for name in names}


def _base_volumes(conn) -> set[str]:
    pool = virt.lookup_pool(conn, BASE_POOL)
    return virt.volume_names(pool) if pool is not None and pool.isActive() else set()


def pool_owner(conn, name: str) -> str | None:
    """Whose storage pool `name` is, by labbuilder's mark (pools have no <metadata>): the
    `lab/team` its mark volume (POOL_MARK) holds; "" for a pool at labbuilder's own path
    for that name holding nothing (a run cut short between making the pool and marking
    it, or between emptying and removing it); None for any other pool: not labbuilder's.
    An inactive pool at labbuilder's path is started to read it."""
    pool = virt.lookup_pool(conn, name)
    if pool is None or virt.pool_path(pool) != pool_dir(name):
        return None
    virt.start_pool(pool)
    volumes = virt.volume_names(pool)
    mark = virt.read_volume(conn, pool, POOL_MARK).strip(b"\0 \n") if POOL_MARK in volumes else b""
    if mark:
        return mark.decode(errors="replace")
    return "" if volumes <= {POOL_MARK} else None


def owned_pools(conn, lab: str, team: int | None) -> list[str]:
    """The pools of `lab` (one team, or every team when team is None) on the host: the
    name narrows the search, the mark decides (see pool_owner)."""
    found = []
    pattern = pool_pattern(lab, team)
    for name in (n for n in virt.pool_names(conn) if pattern.match(n)):
        owner = pool_owner(conn, name)
        mark_lab, _, mark_team = (owner or "").rpartition("/")
        if owner == "" or (mark_lab == lab and mark_team.isdigit() and pool_name(lab, int(mark_team)) == name):
            found.append(name)
    return found

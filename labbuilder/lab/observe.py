"""Observe: what labbuilder owns on each host of a plan, read back from libvirt (the
source of truth: nothing about VMs is kept locally)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from labbuilder.model.names import BASE_POOL
from labbuilder.system import virt

if TYPE_CHECKING:
    from labbuilder.lab.plan import LabPlan
    from labbuilder.system.connections import Connections


@dataclass(frozen=True)
class HostState:
    """What one host has of a lab's team: the objects it owns, the base image volumes
    uploaded there, and whether the team's pool exists."""

    owned: tuple[virt.HostObject, ...] = ()
    base_volumes: frozenset[str] = frozenset()
    pool_exists: bool = False


def observe_hosts(plan: LabPlan, conns: Connections,
                  observed: dict[str, list[virt.HostObject]] | None = None) -> dict[str, HostState]:
    """Per host URI, what it has of `plan`'s team; `observed` (per host URI, from
    virt.observe) saves reading every domain and network again. A host that is not
    running yet (a private libvirtd `up` would start) has nothing."""
    states = {}
    for host in plan.hosts:
        if not host.running:
            states[host.uri] = HostState()
            continue
        conn = conns(host)
        seen = observed[host.uri] if observed is not None else virt.observe(conn)
        states[host.uri] = HostState(tuple(virt.owned(seen, plan.lab, plan.team)), frozenset(_base_volumes(conn)),
                                     virt.lookup_pool(conn, plan.pool) is not None)
    return states


def _base_volumes(conn) -> set[str]:
    pool = virt.lookup_pool(conn, BASE_POOL)
    return virt.volume_names(pool) if pool is not None and pool.isActive() else set()

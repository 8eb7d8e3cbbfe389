"""Diff: what must happen on each host for it to match a plan. Pure: it reads the
rendered objects (render_plan) and what observe found on each host, and returns actions."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Generic, TypeVar

from labbuilder.lab import existing, render
from labbuilder.model.names import DONE_SUFFIX

if TYPE_CHECKING:
    from labbuilder.lab.hosts import Host
    from labbuilder.lab.observe import HostState
    from labbuilder.lab.plan import HostEntry, LabPlan, NetworkPlan, NodePlan


class ObjectKind(StrEnum):
    IMAGE = "image"
    NETWORK = "network"
    POOL = "pool"
    DOMAIN = "domain"
    HOST_ENTRY = "host entry"  # a static DHCP and DNS host entry in a network the host has (existing:)


class Verb(StrEnum):
    CREATE = "create"
    CHANGE = "change"
    START = "start"
    ADD = "add"
    REMOVE = "remove"
    UPLOAD = "upload"


@dataclass(frozen=True)
class Action:
    """One change on one host: `verb` the `kind` object `name` (a libvirt name; for a host
    entry, its MAC, address and hostname)."""

    verb: Verb
    kind: ObjectKind
    name: str
    host: Host
    detail: str = ""
    entry: HostEntry | None = None  # kind HOST_ENTRY: which


P = TypeVar("P", "NetworkPlan", "NodePlan")


@dataclass(frozen=True)
class Rendered(Generic[P]):
    """A network or domain of the plan, its libvirt name, its XML and the hash of its plan."""

    plan: P
    libvirt_name: str
    xml: str
    digest: str


@dataclass
class Desired:
    """Every network (keyed by host URI and libvirt name) and domain (by libvirt name)."""

    networks: dict[tuple[str, str], Rendered[NetworkPlan]] = field(default_factory=dict)
    domains: dict[str, Rendered[NodePlan]] = field(default_factory=dict)


def render_plan(plan: LabPlan, domain_type: str, now: float | None = None) -> Desired:
    """XML and plan hash of every network and domain; `now` stamps domain definitions."""
    created = int(time.time() if now is None else now)
    want = Desired()
    for net in (n for n in plan.networks if not n.existing):  # the host's own: never defined
        want.networks[(net.host.uri, net.libvirt_name)] = Rendered(
            net, net.libvirt_name, *render.network_xml(plan.lab, plan.team, net))
    for node in plan.nodes:
        xml, digest = render.domain_xml(plan.lab, plan.team, node, plan.pool, domain_type, created)
        want.domains[node.domain] = Rendered(node, node.domain, xml, digest)
    return want


def diff(plan: LabPlan, want: Desired, states: dict[str, HostState]) -> list[Action]:
    """The actions that make each host of `plan` match `want`, given what observe found
    there (`states`, per host URI)."""
    actions: list[Action] = []
    for host in plan.hosts:
        state = states[host.uri]
        owned = {o.name: o for o in state.owned}
        networks = [r for r in want.networks.values() if r.plan.host == host]
        domains = [r for r in want.domains.values() if r.plan.host == host]
        actions += _image_actions(plan, host, state.base_volumes)
        actions += _object_actions(ObjectKind.NETWORK, networks, owned, host)
        if not state.pool_exists:
            actions.append(Action(Verb.CREATE, ObjectKind.POOL, plan.pool, host))
        actions += _object_actions(ObjectKind.DOMAIN, domains, owned, host, _missing_volumes(domains, state))
        actions += _entry_actions(plan, host, state)
        wanted = {r.libvirt_name for r in networks + domains}
        actions += [Action(Verb.REMOVE, ObjectKind(o.kind), o.name, host, "not in the topology")
                    for o in owned.values() if o.name not in wanted]
    return actions


def _entry_actions(plan: LabPlan, host: Host, state: HostState) -> list[Action]:
    """Host entries in the existing networks: the nodes' that are missing (in part: a run
    cut short), and those the team's domains record that the plan no longer has."""
    wanted = [e for n in plan.nodes if n.host == host for e in n.entries]
    has = lambda e: existing.has(state.networks.get(e.network), e)
    stale = [e for e in existing.recorded(state.owned) if e not in wanted and any(has(e))]
    action = lambda verb, e, why: Action(verb, ObjectKind.HOST_ENTRY, f"{e.mac} {e.ip} {e.name}", host,
                                         f"network {e.network}{why}", e)
    return [action(Verb.REMOVE, e, ": not in the topology") for e in stale] + \
        [action(Verb.ADD, e, "") for e in wanted if not all(has(e))]


def _image_actions(plan: LabPlan, host: Host, have: set[str]) -> list[Action]:
    images = {n.image.volume: n.image for n in plan.nodes if n.host == host}
    return [Action(Verb.UPLOAD, ObjectKind.IMAGE, vol if img.sha256 else img.name, host,
                   f"{img.size / 2**20:.0f} MiB from {img.path}" if img.path else "once built")
            for vol, img in images.items() if vol + DONE_SUFFIX not in have]


def _missing_volumes(domains: list[Rendered[NodePlan]], state: HostState) -> dict[str, list[str]]:
    """Domain name → the volumes of its node that its host's pool lacks (a `reset` killed
    after deleting the overlay and seed leaves a domain without them). Nothing when the
    pool exists but is not started: its volumes are not read then."""
    if state.pool_exists and state.pool_volumes is None:
        return {}
    have = state.pool_volumes or frozenset()
    return {r.libvirt_name: missing for r in domains
            if (missing := [v for v in (r.plan.vda, *(d.volume for d in r.plan.disks), r.plan.seed_volume)
                            if v not in have])}


def _object_actions(kind: ObjectKind, wanted: list[Rendered], owned: dict, host: Host,
                    missing: dict[str, list[str]] | None = None) -> list[Action]:
    actions = []
    for r in wanted:
        name, digest = r.libvirt_name, r.digest
        have = owned.get(name)
        lacks = (missing or {}).get(name)
        if have is None:
            actions.append(Action(Verb.CREATE, kind, name, host))
        elif have.owner.get("plan") != digest:
            actions.append(Action(Verb.CHANGE, kind, name, host, "definition differs from the plan"))
        elif lacks:  # made again (the others kept), then the domain is started on them
            actions.append(Action(Verb.CHANGE, kind, name, host, f"volumes missing: {', '.join(lacks)}"))
        elif not have.active:
            actions.append(Action(Verb.START, kind, name, host))
        elif have.starting:  # an earlier run was killed while libvirt started it: wait for that
            actions.append(Action(Verb.START, kind, name, host, "its start, begun by an earlier run, is under way"))
        elif have.paused:  # by a checkpoint or revert cut short, or by hand: `up` means running
            actions.append(Action(Verb.START, kind, name, host, "paused; it is resumed"))
    return actions

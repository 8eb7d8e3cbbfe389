"""Apply: carry out a diff's actions on the hosts (networks, pools, base image uploads,
overlays, seeds, domains), and reset nodes to their base image."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from labbuilder.lab import handout, packages, render, seed
from labbuilder.lab.diff import Action, Desired, ObjectKind, Verb
from labbuilder.lab.observe import pool_owner
from labbuilder.model.errors import HostError
from labbuilder.model.names import BASE_POOL, DONE_SUFFIX, POOL_MARK, POOL_ROOT, pool_dir, pool_mark
from labbuilder.reporting import Progress
from labbuilder.system import locks, virt
from labbuilder.system.connections import ConnectionPool, parallel
from labbuilder.system.pause import pause_point

if TYPE_CHECKING:
    from labbuilder.lab.hosts import Host
    from labbuilder.lab.plan import LabPlan, NodePlan


@dataclass
class ApplyContext:
    plan: LabPlan
    want: Desired
    conns: ConnectionPool
    pubkey: str
    progress: Progress
    locks: Path  # per-host lock files (see _upload_image)
    host_keys: dict[str, tuple[str, str]] = field(default_factory=dict)  # node name → (private, public)
    student_key: str | None = None  # the team's handout key, once it has one (lab/handout.py)


def apply(ctx: ApplyContext, actions: list[Action]) -> None:
    """Carry out `actions`: per host images, networks and pool first, then nodes in parallel."""
    by_kind = lambda kind: [a for a in actions if a.kind == kind and a.verb != Verb.REMOVE]
    removals = [a for a in actions if a.verb == Verb.REMOVE]
    # A domain's host entries go before it: its metadata is what says they are ours.
    for a in sorted(removals, key=lambda a: (a.kind != ObjectKind.HOST_ENTRY, a.kind != ObjectKind.DOMAIN)):
        _remove(ctx, a)
    for a in by_kind(ObjectKind.IMAGE):
        _upload_image(ctx, a)
    for a in by_kind(ObjectKind.NETWORK):
        _apply_network(ctx, a)
    if by_kind(ObjectKind.NETWORK):
        pause_point("networks")
    for a in by_kind(ObjectKind.POOL):
        _ensure_lab_pool(ctx, a.host)
    nodes = by_kind(ObjectKind.DOMAIN)
    if nodes:
        bases = _base_paths(ctx, [a.host for a in nodes])
        with ctx.progress.stage(f"{len(nodes)} node(s): volumes, seeds, domains"):
            parallel([lambda a=a: _apply_node(ctx, a, bases[a.host]) for a in nodes])
    # A node whose domain is not (re)defined records its entries already (they are part of
    # its plan's hash): they are added straight away. The others were added by _apply_node.
    defined = {ctx.want.domains[a.name].plan.name for a in nodes}
    for a in by_kind(ObjectKind.HOST_ENTRY):
        if a.entry.name not in defined:  # the entry's name is its node's hostname: the node's name
            virt.add_host_entry(ctx.conns(a.host), *a.entry)


def _remove(ctx: ApplyContext, a: Action) -> None:
    conn = ctx.conns(a.host)
    if a.kind == ObjectKind.HOST_ENTRY:
        virt.remove_host_entry(conn, *a.entry)
    elif a.kind == ObjectKind.DOMAIN:
        virt.remove_domain(conn, a.name)
    else:
        virt.remove_network(conn, a.name)


def _base_pool(conn):
    return virt.ensure_pool(conn, BASE_POOL, render.pool_xml(BASE_POOL, f"{POOL_ROOT}/base"))


def _upload_image(ctx: ApplyContext, a: Action) -> None:
    """Upload a base image through the storage API, then mark it complete.

    Runs of other teams may find the same image missing at once: under a lock per host,
    the first uploads and the others find the marker and skip. The lock is a flock on
    this machine: it does not order runs on other machines that use the same remote host,
    one host reached through two URIs, or runs with another state directory.
    """
    conn = ctx.conns(a.host)
    path = locks.host_lock_path(ctx.locks, a.host.uri)
    blocked = lambda: ctx.progress.info(f"another labbuilder run is uploading to {a.host.name}: "
                                        f"waiting for it (lock {path})")
    with locks.exclusive(path, blocked):
        pool = _base_pool(conn)
        if a.name + DONE_SUFFIX in virt.volume_names(pool):
            ctx.progress.info(f"{a.name} on {a.host.name}: uploaded by another run meanwhile")
            return
        image = next(n.image for n in ctx.plan.nodes if n.image.volume == a.name)
        with ctx.progress.stage(f"upload {a.name} to {a.host.name}"):
            virt.delete_volume(pool, a.name)  # an upload cut short
            free = virt.pool_free(pool)
            if free < image.size:
                raise HostError(f"pool {BASE_POOL} on {a.host.name} ({POOL_ROOT}/base) has {free / 2**20:.0f} MiB "
                                f"free and image {image.name} needs {image.size / 2**20:.0f} MiB: free space there "
                                "(or remove images no lab uses), then run up again")
            vol = virt.create_volume(pool, render.volume_xml(a.name, image.size, "raw"))
            try:
                virt.upload_file(conn, vol, image.path)
            except HostError as e:  # the disk filled up under us, or the host went away
                virt.delete_volume(pool, a.name)
                raise HostError(f"uploading {image.name} into pool {BASE_POOL} on {a.host.name} failed: {e}") from e
            virt.create_volume(pool, render.volume_xml(a.name + DONE_SUFFIX, 0, "raw"))


def _apply_network(ctx: ApplyContext, a: Action) -> None:
    conn = ctx.conns(a.host)
    xml = ctx.want.networks[(a.host.uri, a.name)].xml
    if a.verb == Verb.CHANGE:  # a running network cannot take a new definition
        virt.remove_network(conn, a.name)
    virt.define_network(conn, xml)  # "start" redefines the same XML, then starts it


def _ensure_lab_pool(ctx: ApplyContext, host: Host) -> None:
    """The team's pool on `host` (through this thread's connection), made, started and
    marked as the team's (see observe.pool_owner). A pool of that name that is not the
    team's is left alone (not even started), and the run fails."""
    conn, name = ctx.conns(host), ctx.plan.pool
    if virt.lookup_pool(conn, name) is None:
        virt.ensure_pool(conn, name, render.pool_xml(name, pool_dir(name)))
    mark = pool_mark(ctx.plan.lab, ctx.plan.team)
    owner = pool_owner(conn, name)  # starts it, if it is at labbuilder's path
    if owner == "":  # made just now, or by a run cut short before it marked it
        pool, data = virt.require_pool(conn, name), mark.encode() + b"\n"
        virt.delete_volume(pool, POOL_MARK)  # an empty mark: its writing was cut short
        virt.upload_volume(conn, virt.create_volume(pool, render.volume_xml(POOL_MARK, len(data), "raw")), data)
    elif owner != mark:
        raise HostError(f"a storage pool named {name} exists on {host.name} and labbuilder does not own it "
                        f"(it has no mark {POOL_MARK} holding {mark!r}); it is left alone: remove or rename it, "
                        "or use another team")


def _base_paths(ctx: ApplyContext, hosts: list[Host]) -> dict[Host, dict[str, str]]:
    """Base image volume → path on each of `hosts` (uploaded by now), looked up once per
    apply; the lab's pool is made sure of on each."""
    found = {}
    for host in set(hosts):
        conn = ctx.conns(host)
        base = _base_pool(conn)
        volumes = {n.image.volume for n in ctx.plan.nodes if n.host == host}
        _ensure_lab_pool(ctx, host)
        found[host] = {v: virt.volume_path(base, v) for v in volumes}
    return found


def _apply_node(ctx: ApplyContext, a: Action, bases: dict[str, str]) -> None:
    conn = ctx.conns(a.host)
    rendered = ctx.want.domains[a.name]
    node, xml = rendered.plan, rendered.xml
    if a.verb == Verb.CREATE and virt.lookup_domain(conn, node.domain) is not None:  # exists, but not ours
        raise HostError(f"a domain named {node.domain} exists on {a.host.name} and labbuilder does "
                        "not own it; it is left alone: remove or rename it, or use another team")
    if a.verb == Verb.CHANGE:
        virt.stop_domain(conn, node.domain)
    if a.verb != Verb.START:
        pool = virt.require_pool(conn, ctx.plan.pool)  # through this thread's connection
        _create_volumes(ctx, conn, pool, node, bases, fresh=a.verb == Verb.CREATE)
        pause_point("volumes")
        dom = virt.define_domain(conn, xml)
        pause_point("define")
    else:
        dom = virt.lookup_domain(conn, node.domain)
    add_entries(conn, node)
    if a.verb == Verb.START and virt.starting(dom):
        ctx.progress.info(f"{node.name}: a start begun by an earlier run is under way; waiting for it to end")
    virt.start_domain(dom)
    ctx.progress.step(f"{node.name} started")


def add_entries(conn, node: NodePlan) -> None:
    """The node's host entries in the existing networks, those missing; after its domain is
    defined, so its metadata records them before they exist (a run cut short leaves no entry
    `down` would not find), and before it starts, so its first DHCP request finds its lease."""
    for entry in node.entries:
        virt.add_host_entry(conn, *entry)


def _create_volumes(ctx: ApplyContext, conn, pool, node: NodePlan, bases: dict[str, str], fresh: bool) -> None:
    """vda as a qcow2 overlay of the base image (O(1)), extra disks, the NoCloud seed, in
    the lab's `pool` (looked up through `conn`, this thread's connection)."""
    have = set() if fresh else virt.volume_names(pool)
    base = bases[node.image.volume]
    if fresh:
        for name in (node.vda, node.seed_volume, *(d.volume for d in node.disks)):
            virt.delete_volume(pool, name)
    if node.vda not in have:
        virt.create_volume(pool, render.volume_xml(node.vda, node.vda_bytes, "qcow2", base))
    for d in node.disks:
        if d.volume not in have:
            virt.create_volume(pool, render.volume_xml(d.volume, d.size_bytes, "qcow2"))
    if node.seed_volume not in have:
        iso = seed.seed_iso(node_seed(ctx.plan, node, ctx.pubkey, ctx.host_keys.get(node.name), ctx.student_key))
        vol = virt.create_volume(pool, render.volume_xml(node.seed_volume, len(iso), "raw"))
        virt.upload_volume(conn, vol, iso)


def node_seed(plan: LabPlan, node: NodePlan, pubkey: str, host_key: tuple[str, str] | None = None,
              student_key: str | None = None) -> seed.NodeIdentity:
    """The node's identity: hostname, the lab key, its SSH host key, its NICs, every lab
    node in /etc/hosts."""
    nics = tuple(seed.SeedNic(n.guest_name, n.mac,
                              addresses=(f"{n.ip}/{n.prefix}",) if n.ip and not n.dhcp else (),
                              dhcp=n.dhcp) for n in node.nics)
    hosts = tuple((other.lab_ip, other.name) for other in plan.nodes if other.lab_ip)
    return seed.NodeIdentity(instance_id=f"{node.domain}-{time.time_ns()}", hostname=node.name, fqdn=node.fqdn,
                             authorized_keys=(pubkey,), nics=nics, hosts=hosts,
                             apt_proxy=packages.node_proxy(plan, node), host_key=host_key,
                             extra={"users": [handout.seed_user(student_key)]} if student_key else {})


def reset_nodes(ctx: ApplyContext, nodes: list[NodePlan]) -> None:
    """Back to pristine: stop, new overlay (and seed) from the base image, start."""
    bases = _base_paths(ctx, [n.host for n in nodes])

    def one(node: NodePlan) -> None:
        conn = ctx.conns(node.host)
        virt.stop_domain(conn, node.domain)
        pool = virt.require_pool(conn, ctx.plan.pool)
        for name in (node.vda, node.seed_volume):
            virt.delete_volume(pool, name)
        pause_point("reset-deleted")
        _create_volumes(ctx, conn, pool, node, bases[node.host], fresh=False)
        dom = virt.define_domain(conn, ctx.want.domains[node.domain].xml)
        add_entries(conn, node)
        virt.start_domain(dom)

    with ctx.progress.stage(f"reset {len(nodes)} node(s) to the base image"):
        parallel([lambda n=n: one(n) for n in nodes])

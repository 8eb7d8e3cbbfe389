"""Observe → diff → apply for a LabPlan, reset, and the wait until nodes answer on SSH
(`down` is labbuilder.teardown).

libvirt is the source of truth: what exists is read back from each host through the
ownership metadata; nothing about VMs is kept locally.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from labbuilder.lab import render
from labbuilder.model.errors import HostError
from labbuilder.progress import Progress
from labbuilder.system import locks, ssh, virt
from labbuilder.system.connections import Connections, parallel

if TYPE_CHECKING:
    from labbuilder.lab import seed
    from labbuilder.lab.hosts import Host
    from labbuilder.lab.plan import LabPlan, NetworkPlan, NodePlan

BASE_POOL = "labbuilder-base"
POOL_ROOT = "/var/lib/libvirt/images/labbuilder"
DONE_SUFFIX = ".complete"  # marker volume: the upload before it finished


@dataclass(frozen=True)
class Action:
    verb: str  # create | change | start | remove | upload
    kind: str  # image | network | pool | domain
    name: str
    host: Host
    detail: str = ""


@dataclass
class Desired:
    """Rendered XML and plan hash of every network and domain of a plan."""

    networks: dict[str, tuple[NetworkPlan, str, str]] = field(default_factory=dict)
    domains: dict[str, tuple[NodePlan, str, str]] = field(default_factory=dict)


def render_plan(plan: LabPlan, domain_type: str, now: float | None = None) -> Desired:
    """XML and plan hash of every network and domain; `now` stamps domain definitions."""
    created = int(time.time() if now is None else now)
    want = Desired()
    for net in plan.networks:
        xml, digest = render.network_xml(plan.lab, plan.team, net)
        want.networks[f"{net.host.uri}|{net.name}"] = (net, xml, digest)
    for node in plan.nodes:
        xml, digest = render.domain_xml(plan.lab, plan.team, node, plan.pool, domain_type, created)
        want.domains[node.name] = (node, xml, digest)
    return want


# ---- diff ----

def diff(plan: LabPlan, want: Desired, conns: Connections,
         observed: dict[str, list[virt.HostObject]] | None = None) -> list[Action]:
    """What must happen on each host for it to match `plan`; `observed` (per host URI,
    from virt.observe) saves reading every domain and network again. A host that is
    not running yet (a private libvirtd `up` would start) has nothing: all is created."""
    actions: list[Action] = []
    for host in plan.hosts:
        owned, have, pool_exists = {}, set(), False
        if host.running:
            conn = conns(host)
            seen = observed[host.uri] if observed is not None else virt.observe(conn)
            owned = {o.name: o for o in virt.owned(seen, plan.lab, plan.team)}
            have = _base_volumes(conn)
            pool_exists = virt.lookup_pool(conn, plan.pool) is not None
        actions += _image_actions(plan, host, have)
        actions += _object_actions("network", [v for k, v in want.networks.items() if v[0].host == host], owned, host)
        if not pool_exists:
            actions.append(Action("create", "pool", plan.pool, host))
        actions += _object_actions("domain", [v for v in want.domains.values() if v[0].host == host], owned, host)
        wanted = {v[0].name for v in want.networks.values() if v[0].host == host} | \
                 {v[0].name for v in want.domains.values() if v[0].host == host}
        actions += [Action("remove", o.kind, o.name, host, "not in the topology")
                    for o in owned.values() if o.name not in wanted]
    return actions


def _base_volumes(conn) -> set[str]:
    pool = virt.lookup_pool(conn, BASE_POOL)
    return virt.volume_names(pool) if pool is not None and pool.isActive() else set()


def _image_actions(plan: LabPlan, host: Host, have: set[str]) -> list[Action]:
    images = {n.image.volume: n.image for n in plan.nodes if n.host == host}
    return [Action("upload", "image", vol, host, f"{img.size / 2**20:.0f} MiB from {img.path}")
            for vol, img in images.items() if vol + DONE_SUFFIX not in have]


def _object_actions(kind: str, wanted: list, owned: dict, host: Host) -> list[Action]:
    actions = []
    for obj, _xml, digest in wanted:
        have = owned.get(obj.name)
        if have is None:
            actions.append(Action("create", kind, obj.name, host))
        elif have.owner.get("plan") != digest:
            actions.append(Action("change", kind, obj.name, host, "definition differs from the plan"))
        elif not have.active:
            actions.append(Action("start", kind, obj.name, host))
        elif have.starting:  # an earlier run was killed while libvirt started it: wait for that
            actions.append(Action("start", kind, obj.name, host, "its start, begun by an earlier run, is under way"))
    return actions


# ---- apply ----

@dataclass
class ApplyContext:
    plan: LabPlan
    want: Desired
    conns: Connections
    pubkey: str
    progress: Progress
    locks: Path  # per-host lock files (see _upload_image)


def apply(ctx: ApplyContext, actions: list[Action]) -> None:
    """Carry out `actions`: per host images, networks and pool first, then nodes in parallel."""
    by_verb = lambda kind: [a for a in actions if a.kind == kind and a.verb != "remove"]
    removals = [a for a in actions if a.verb == "remove"]
    for a in sorted(removals, key=lambda a: a.kind != "domain"):
        _remove(ctx, a)
    for a in by_verb("image"):
        _upload_image(ctx, a)
    for a in by_verb("network"):
        _apply_network(ctx, a)
    for a in by_verb("pool"):
        _ensure_lab_pool(ctx.conns(a.host), ctx.plan.pool)
    nodes = by_verb("domain")
    if nodes:
        bases = _base_paths(ctx, [a.host for a in nodes])
        with ctx.progress.stage(f"{len(nodes)} node(s): volumes, seeds, domains"):
            parallel([lambda a=a: _apply_node(ctx, a, bases[a.host]) for a in nodes])


def _remove(ctx: ApplyContext, a: Action) -> None:
    conn = ctx.conns(a.host)
    if a.kind == "domain":
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
            vol = virt.create_volume(pool, render.volume_xml(a.name, image.size, "raw"))
            virt.upload_file(conn, vol, image.path)
            virt.create_volume(pool, render.volume_xml(a.name + DONE_SUFFIX, 0, "raw"))


def _apply_network(ctx: ApplyContext, a: Action) -> None:
    conn = ctx.conns(a.host)
    _, xml, _ = ctx.want.networks[f"{a.host.uri}|{a.name}"]
    if a.verb == "change":  # a running network cannot take a new definition
        virt.remove_network(conn, a.name)
    virt.define_network(conn, xml)  # "start" redefines the same XML, then starts it


def _ensure_lab_pool(conn, name: str):
    return virt.ensure_pool(conn, name, render.pool_xml(name, f"{POOL_ROOT}/{name}"))


def _base_paths(ctx: ApplyContext, hosts: list[Host]) -> dict[Host, dict[str, str]]:
    """Base image volume → path on each of `hosts` (uploaded by now), looked up once per
    apply; the lab's pool is made sure of on each."""
    found = {}
    for host in set(hosts):
        conn = ctx.conns(host)
        base = _base_pool(conn)
        volumes = {n.image.volume for n in ctx.plan.nodes if n.host == host}
        _ensure_lab_pool(conn, ctx.plan.pool)
        found[host] = {v: virt.volume_path(base, v) for v in volumes}
    return found


def _apply_node(ctx: ApplyContext, a: Action, bases: dict[str, str]) -> None:
    conn = ctx.conns(a.host)
    node, xml, _ = ctx.want.domains[a.name]
    if a.verb == "create" and virt.lookup_domain(conn, node.name) is not None:  # exists, but not ours
        raise HostError(f"a domain named {node.name} exists on {a.host.name} and labbuilder does "
                        "not own it; it is left alone: remove or rename it, or use another team")
    if a.verb == "change":
        virt.stop_domain(conn, node.name)
    if a.verb != "start":
        pool = virt.require_pool(conn, ctx.plan.pool)  # through this thread's connection
        _create_volumes(ctx, conn, pool, node, bases, fresh=a.verb == "create")
    dom = virt.define_domain(conn, xml) if a.verb != "start" else virt.lookup_domain(conn, node.name)
    if a.verb == "start" and virt.starting(dom):
        ctx.progress.info(f"{node.key}: a start begun by an earlier run is under way; waiting for it to end")
    virt.start_domain(dom)
    ctx.progress.step(f"{node.key} started")


def _create_volumes(ctx: ApplyContext, conn, pool, node: NodePlan, bases: dict[str, str], fresh: bool) -> None:
    """vda as a qcow2 overlay of the base image (O(1)), extra disks, the NoCloud seed, in
    the lab's `pool` (looked up through `conn`, this thread's connection)."""
    have = set() if fresh else virt.volume_names(pool)
    base = bases[node.image.volume]
    if fresh:
        for name in (node.vda, node.seed_volume, *(d.volume for d in node.disks)):
            virt.delete_volume(pool, name)
    if node.vda not in have:
        virt.create_volume(pool, render.volume_xml(node.vda, node.image.virtual_size, "qcow2", base))
    for d in node.disks:
        if d.volume not in have:
            virt.create_volume(pool, render.volume_xml(d.volume, d.size_bytes, "qcow2"))
    if node.seed_volume not in have:
        from labbuilder.lab import seed  # here: `down`, `status` and `ssh` make no seeds and start sooner without it

        iso = seed.seed_iso(node_seed(ctx.plan, node, ctx.pubkey))
        vol = virt.create_volume(pool, render.volume_xml(node.seed_volume, len(iso), "raw"))
        virt.upload_volume(conn, vol, iso)


def node_seed(plan: LabPlan, node: NodePlan, pubkey: str) -> seed.Seed:
    """The node's identity: hostname, the lab key, its NICs, every lab node in /etc/hosts."""
    from labbuilder.lab import seed

    nics = tuple(seed.SeedNic(n.guest_name, n.mac,
                              addresses=(f"{n.ip}/{n.prefix}",) if n.ip and not n.dhcp else (),
                              dhcp=n.dhcp) for n in node.nics)
    hosts = tuple((other.lab_ip, other.key) for other in plan.nodes if other.lab_ip)
    return seed.Seed(instance_id=f"{node.name}-{time.time_ns()}", hostname=node.key, fqdn=node.fqdn,
                     authorized_keys=(pubkey,), nics=nics, hosts=hosts)


# ---- wait ----

def wait_ready(plan: LabPlan, conns: Connections, key: Path, progress: Progress,
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
            target = ssh.SshTarget(address, key, prefix=node.host.ssh_prefix)
            ssh.wait_for_ssh(target, deadline - time.monotonic(), interval=2.0, sleep=watch.wait)
        ready[node.key] = address
        progress.step(f"{len(ready)}/{len(nodes)} answer on SSH ({node.key})")

    with progress.stage(f"wait for {len(nodes)} node(s) to answer on SSH"):
        parallel([lambda n=n: one(n) for n in nodes])
    return ready


def node_leases(conns: Connections, node: NodePlan) -> dict[str, str]:
    """MAC → leased IPv4 on every DHCP network the node has a NIC on."""
    leases: dict[str, str] = {}
    for net in {n.network for n in node.nics if n.dhcp}:
        if virt.network_info(conns(node.host), net):
            leases.update(virt.network_leases(conns(node.host), net))
    return leases


def node_address(conns: Connections, node: NodePlan) -> str | None:
    """Where to reach a node: its fixed address, else its first NIC's lease (None if none)."""
    if node.ssh_ip:
        return node.ssh_ip
    leases = node_leases(conns, node)
    return next((leases[n.mac] for n in node.nics if n.mac in leases), None)


def _wait_address(node: NodePlan, conns: Connections, watch: virt.GuestWatch, deadline: float,
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


# ---- reset ----

def reset_nodes(ctx: ApplyContext, nodes: list[NodePlan]) -> None:
    """Back to pristine: stop, new overlay (and seed) from the base image, start."""
    bases = _base_paths(ctx, [n.host for n in nodes])

    def one(node: NodePlan) -> None:
        conn = ctx.conns(node.host)
        virt.stop_domain(conn, node.name)
        pool = virt.require_pool(conn, ctx.plan.pool)
        for name in (node.vda, node.seed_volume):
            virt.delete_volume(pool, name)
        _create_volumes(ctx, conn, pool, node, bases[node.host], fresh=False)
        _, xml, _ = ctx.want.domains[node.name]
        virt.start_domain(virt.define_domain(conn, xml))

    with ctx.progress.stage(f"reset {len(nodes)} node(s) to the base image"):
        parallel([lambda n=n: one(n) for n in nodes])

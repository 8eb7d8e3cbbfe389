"""Warm checkpoints of a team: an internal snapshot (disks and memory) of every node,
taken while all of them are paused so they form one consistent point, and reverted in
parallel so a reset lands on running guests that answer on SSH without a boot.

A checkpoint is a libvirt snapshot of each owned domain, named after the checkpoint,
whose description carries labbuilder's record of it; it lives inside the node's
overlay (qcow2), so `down` removes it with the domain and its volumes.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from labbuilder.lab.plan import LabPlan, NodePlan
from labbuilder.lab.wait import node_address
from labbuilder.model.errors import CheckpointError, HostError, LabError
from labbuilder.model.names import is_local_uri
from labbuilder.reporting import Progress
from labbuilder.system import qemuimg, ssh, virt
from labbuilder.system.connections import ConnectionPool, parallel
from labbuilder.system.pause import pause_point

MARK = "labbuilder-checkpoint"


@dataclass(frozen=True)
class Checkpoint:
    name: str
    created: int
    role: str | None  # taken after this role of the config stage, if any
    nodes: tuple[str, ...]  # node names that have it
    missing: tuple[str, ...]  # node names of the team that do not
    memory_bytes: int | None  # memory state stored, summed over nodes (local hosts only)


def create(plan: LabPlan, conns: ConnectionPool, name: str, progress: Progress, role: str | None = None) -> Checkpoint:
    """Pause every node, snapshot each (disks + memory), resume them all."""
    nodes = list(plan.nodes)
    down = [n.name for n in nodes if virt.domain_state(conns(n.host), n.domain) not in ("running", "paused")]
    if down:
        raise CheckpointError(f"cannot take checkpoint {name!r}: {', '.join(down)} not running "
                              f"(bring the team up first: a checkpoint keeps running guests)")
    description = json.dumps({"mark": MARK, "role": role, "team": plan.team, "at": int(time.time())})
    with progress.stage(f"checkpoint {name} of {len(nodes)} node(s)"):
        # Guests write out what they have cached first: a cold reset boots from these
        # disks, and a file written a moment earlier (an SSH host key) must be on them.
        flushed = parallel([lambda n=n: virt.flush_guest_filesystems(conns(n.host), n.domain) for n in nodes])
        if not all(flushed):
            progress.info("note: no guest agent answered on " + ", ".join(
                n.name for n, ok in zip(nodes, flushed) if not ok) + ": their disks are saved as they are")
        try:
            parallel([lambda n=n: virt.suspend_domain(conns(n.host), n.domain) for n in nodes])
            pause_point("checkpoint-paused")
            parallel([lambda n=n: _snapshot(conns, n, name, description, progress) for n in nodes])
        finally:
            parallel([lambda n=n: virt.resume_domain(conns(n.host), n.domain) for n in nodes])
            # Their clocks stood still while paused.
            parallel([lambda n=n: virt.set_guest_time(conns(n.host), n.domain, time.time()) for n in nodes])
    return next(c for c in listing(plan, conns, sizes=False) if c.name == name)


def _snapshot(conns: ConnectionPool, node: NodePlan, name: str, description: str, progress: Progress) -> None:
    virt.create_snapshot(conns(node.host), node.domain, name, description)
    pause_point("checkpoint-node")
    progress.step(f"{node.name} saved")


def listing(plan: LabPlan, conns: ConnectionPool, sizes: bool = True) -> list[Checkpoint]:
    """The team's checkpoints, oldest first, with the nodes that have each."""
    found: dict[str, dict] = {}
    per_node = dict(zip([n.name for n in plan.nodes],
                        parallel([lambda n=n: virt.snapshots(conns(n.host), n.domain) for n in plan.nodes])))
    for node, snaps in per_node.items():
        for snap in snaps:
            meta = _meta(snap.description)
            if meta is None:
                continue  # a snapshot someone else took: not ours to list or revert
            entry = found.setdefault(snap.name, {"created": snap.created, "role": meta.get("role"), "nodes": []})
            entry["nodes"].append(node)
    memory = _memory_sizes(plan, conns) if sizes else {}
    return sorted((Checkpoint(name, e["created"], e["role"], tuple(e["nodes"]),
                              tuple(n.name for n in plan.nodes if n.name not in e["nodes"]),
                              memory.get(name)) for name, e in found.items()), key=lambda c: c.created)


def _meta(description: str) -> dict | None:
    try:
        meta = json.loads(description)
    except ValueError:
        return None
    return meta if isinstance(meta, dict) and meta.get("mark") == MARK else None


def _memory_sizes(plan: LabPlan, conns: ConnectionPool) -> dict[str, int]:
    """Checkpoint name → memory state bytes over all nodes, read from the overlays with
    qemu-img (local hosts only: a remote host's files are not visible here)."""
    sizes: dict[str, int] = {}
    for node in plan.nodes:
        if not is_local_uri(node.host.uri):
            continue
        pool = virt.lookup_pool(conns(node.host), plan.pool)
        try:
            info = qemuimg.info(virt.volume_path(pool, node.vda), node.host.runtime.files_prefix) if pool is not None else {}
        except LabError:
            continue
        for snap in info.get("snapshots", []):
            sizes[snap["name"]] = sizes.get(snap["name"], 0) + int(snap.get("vm-state-size", 0))
    return sizes


def revert(plan: LabPlan, conns: ConnectionPool, access: ssh.Access, checkpoint: str, nodes: list[NodePlan],
           progress: Progress, timeout: float = 600) -> dict[str, float]:
    """Nodes back to `checkpoint`, running, each answering on SSH with its clock set
    to now; node name → seconds until it answered."""
    _require(plan, conns, checkpoint, nodes)
    answered: dict[str, float] = {}
    start = time.monotonic()

    def one(node: NodePlan) -> None:
        conn = conns(node.host)
        virt.revert_snapshot(conn, node.domain, checkpoint, running=True)
        pause_point("revert-node")
        address = node_address(conns, node)
        if address is None:
            raise HostError(f"{node.name} has no address to reach it by")
        target = access.target(address, node.domain, node.host.runtime.ssh_prefix)
        # The guest restarts at the time it was saved: the first login sets its clock.
        # (Not the guest agent: its guest-set-time also runs `hwclock -w` in the guest,
        # measured here to add ≈ 1 s and 1 CPU-second to a reset of 4 nodes.)
        with virt.GuestWatch(conn, node.domain) as watch:  # a guest that crashes ends the wait
            ssh.sync_clock(target, timeout, sleep=watch.wait)
        answered[node.name] = round(time.monotonic() - start, 1)
        progress.step(f"{len(answered)}/{len(nodes)} back and answering ({node.name})")

    with progress.stage(f"reset {len(nodes)} node(s) to checkpoint {checkpoint}"):
        # All paused first, so none acts on a peer that is already back.
        parallel([lambda n=n: virt.suspend_domain(conns(n.host), n.domain) for n in nodes])
        try:
            parallel([lambda n=n: one(n) for n in nodes])
        finally:  # a node whose revert failed runs on as it was, not paused
            parallel([lambda n=n: virt.resume_domain(conns(n.host), n.domain) for n in nodes])
    return answered


def revert_cold(plan: LabPlan, conns: ConnectionPool, name: str, nodes: list[NodePlan], progress: Progress) -> None:
    """Disks only: revert (paused, so nothing more is written), power off, boot."""
    _require(plan, conns, name, nodes)

    def one(node: NodePlan) -> None:
        conn = conns(node.host)
        virt.revert_snapshot(conn, node.domain, name, running=False)
        virt.stop_domain(conn, node.domain)
        virt.start_domain(virt.lookup_domain(conn, node.domain))

    with progress.stage(f"reset {len(nodes)} node(s) to the disks of checkpoint {name}, booting"):
        parallel([lambda n=n: one(n) for n in nodes])


def _require(plan: LabPlan, conns: ConnectionPool, name: str, nodes: list[NodePlan]) -> None:
    checkpoints = listing(plan, conns, sizes=False)
    found = next((c for c in checkpoints if c.name == name), None)
    if found is None:
        have = ", ".join(c.name for c in checkpoints) or "none"
        raise CheckpointError(f"{plan.lab} team {plan.team} has no checkpoint {name!r} (checkpoints: {have})")
    lacking = [n.name for n in nodes if n.name not in found.nodes]
    if lacking:
        raise CheckpointError(f"checkpoint {name!r} does not cover {', '.join(lacking)} "
                              "(reset to the base image since it was taken); take it again")


def drop(conns: ConnectionPool, nodes: list[NodePlan]) -> list[str]:
    """Forget every labbuilder checkpoint of `nodes` (their overlays are about to be
    recreated, which takes the saved states with them); returns what was dropped."""
    dropped = []
    for node in nodes:
        conn = conns(node.host)
        for snap in virt.snapshots(conn, node.domain):
            if _meta(snap.description) is not None:
                virt.delete_snapshot(conn, node.domain, snap.name, metadata_only=True)
                dropped.append(f"{node.name}:{snap.name}")
    return dropped

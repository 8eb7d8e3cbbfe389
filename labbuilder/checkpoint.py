"""Warm checkpoints of a team: every node's memory saved to a file and its disks kept as
an internal qcow2 snapshot, taken while all nodes are paused so they form one consistent
point; a reset stops the nodes, reverts their disks and restores their memory in
parallel, so it lands on running guests that answer on SSH without a boot.

Per node and checkpoint there are two owned objects: a libvirt snapshot of the domain,
named after the checkpoint and taken while the domain is stopped (disks only, O(1) in
qcow2), whose description carries labbuilder's record; and the saved memory,
`<domain>--<checkpoint>.save`, a file in the team's storage pool. `down` removes both
with the domain and the pool. Restoring saved memory (a plain read) is several times
faster than reverting a snapshot with memory, which loads it from inside the qcow2.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from . import ssh, virt
from .errors import HostError, LabError
from .lifecycle import Connections, node_address, parallel
from .plan import LabPlan, NodePlan
from .progress import Progress

MARK = "labbuilder-checkpoint"
SAVE_SUFFIX = ".save"


class CheckpointError(LabError):
    """A checkpoint is missing, incomplete or cannot be taken."""


@dataclass(frozen=True)
class Checkpoint:
    name: str
    created: int
    role: str | None  # taken after this role of the config stage, if any
    nodes: tuple[str, ...]  # node keys that have it
    missing: tuple[str, ...]  # node keys of the team that do not
    memory_bytes: int | None  # saved memory, summed over nodes


def save_file(node: NodePlan, name: str) -> str:
    """The pool volume holding `node`'s memory at checkpoint `name`."""
    return f"{node.name}--{name}{SAVE_SUFFIX}"


def create(plan: LabPlan, conns: Connections, name: str, progress: Progress, role: str | None = None) -> Checkpoint:
    """Pause every node, save each (memory to a file, disks as a snapshot), bring them
    all back running with their clocks set."""
    nodes = list(plan.nodes)
    down = [n.key for n in nodes if virt.domain_state(conns(n.host), n.name) not in ("running", "paused")]
    if down:
        raise CheckpointError(f"cannot take checkpoint {name!r}: {', '.join(down)} not running "
                              f"(bring the team up first: a checkpoint keeps running guests)")
    description = json.dumps({"mark": MARK, "role": role, "team": plan.team, "at": int(time.time())})
    with progress.stage(f"checkpoint {name} of {len(nodes)} node(s)"):
        # Guests write out what they have cached first: a cold reset boots from these
        # disks, and a file written a moment earlier (an SSH host key) must be on them.
        flushed = parallel([lambda n=n: virt.flush_guest_filesystems(conns(n.host), n.name) for n in nodes])
        if not all(flushed):
            progress.info("note: no guest agent answered on " + ", ".join(
                n.key for n, ok in zip(nodes, flushed) if not ok) + ": their disks are saved as they are")
        _drop(plan, conns, nodes, lambda snap: snap == name, metadata_only=False)  # replaced as a whole
        failed: list[str] = []
        try:
            parallel([lambda n=n: virt.suspend_domain(conns(n.host), n.name) for n in nodes])
            parallel([lambda n=n: _save(plan, conns, n, name, description, progress, failed) for n in nodes])
        finally:
            untimed = _resume(conns, nodes)
        if untimed:
            progress.info(f"note: the clocks of {', '.join(sorted(untimed))} stood still while saving "
                          "(no guest agent answered to set them)")
        if failed:
            _drop(plan, conns, nodes, lambda snap: snap == name, metadata_only=False)
            raise CheckpointError(f"checkpoint {name!r} not taken: " + "; ".join(failed))
    return next(c for c in listing(plan, conns) if c.name == name)


def _save(plan: LabPlan, conns: Connections, node: NodePlan, name: str, description: str,
          progress: Progress, failed: list[str]) -> None:
    """Memory to the pool, disks to a snapshot while the domain is stopped, then restore
    it paused; a failure is collected in `failed` (the other nodes go on, and the caller
    removes what was made)."""
    conn = conns(node.host)
    path = virt.pool_file(virt.lookup_pool(conn, plan.pool), save_file(node, name))
    try:
        virt.save_domain(conn, node.name, path)
    except LabError as e:
        failed.append(f"{node.key}: {e}")
        return
    try:
        virt.create_snapshot(conn, node.name, name, description)
    except LabError as e:
        failed.append(f"{node.key}: {e}")
    try:
        virt.restore_domain(conn, path, paused=True)
    except LabError as e:
        failed.append(f"{node.key} is stopped, `reset --node {node.key}` brings it back: {e}")
        return
    progress.step(f"{node.key} saved")


def _resume(conns: Connections, nodes: list[NodePlan]) -> set[str]:
    """Run the (paused) nodes again, together, and set their clocks, which stood still,
    through the guest agent; returns the keys of nodes whose agent did not answer."""
    parallel([lambda n=n: virt.resume_domain(conns(n.host), n.name) for n in nodes
              if virt.domain_state(conns(n.host), n.name) == "paused"])
    timed = parallel([lambda n=n: virt.set_guest_time(conns(n.host), n.name, time.time()) for n in nodes])
    return {n.key for n, ok in zip(nodes, timed) if not ok}


def listing(plan: LabPlan, conns: Connections) -> list[Checkpoint]:
    """The team's checkpoints, oldest first, with the nodes that have each (a snapshot
    and its saved memory)."""
    found: dict[str, dict] = {}
    saved = _saved(plan, conns)
    per_node = parallel([lambda n=n: virt.snapshots(conns(n.host), n.name) for n in plan.nodes])
    for node, snaps in zip(plan.nodes, per_node):
        for snap in snaps:
            meta = _meta(snap.description)
            if meta is None:
                continue  # a snapshot someone else took: not ours to list or revert
            entry = found.setdefault(snap.name, {"created": snap.created, "role": meta.get("role"),
                                                 "nodes": [], "bytes": 0})
            size = saved.get((node.host, save_file(node, snap.name)))
            if size is not None:
                entry["nodes"].append(node.key)
                entry["bytes"] += size
    return sorted((Checkpoint(name, e["created"], e["role"], tuple(e["nodes"]),
                              tuple(n.key for n in plan.nodes if n.key not in e["nodes"]), e["bytes"])
                   for name, e in found.items()), key=lambda c: c.created)


def _saved(plan: LabPlan, conns: Connections) -> dict:
    """(host, volume name) → bytes of every saved memory file in the team's pools."""
    found = {}
    for host in {n.host for n in plan.nodes}:
        pool = virt.lookup_pool(conns(host), plan.pool)
        if pool is not None and pool.isActive():
            found.update({(host, vol): size for vol, size in virt.volume_sizes(pool).items()
                          if vol.endswith(SAVE_SUFFIX)})
    return found


def _meta(description: str) -> dict | None:
    try:
        meta = json.loads(description)
    except ValueError:
        return None
    return meta if isinstance(meta, dict) and meta.get("mark") == MARK else None


def revert(plan: LabPlan, conns: Connections, key, name: str, nodes: list[NodePlan], progress: Progress,
           timeout: float = 600) -> dict[str, float]:
    """Nodes back to checkpoint `name`, running, each answering on SSH with its clock set
    to now; node key → seconds until it answered."""
    _require(plan, conns, name, nodes)
    answered: dict[str, float] = {}
    start = time.monotonic()

    def restore(node: NodePlan) -> None:
        conn = conns(node.host)
        virt.stop_domain(conn, node.name)
        virt.revert_snapshot(conn, node.name, name)
        virt.restore_domain(conn, virt.pool_file(virt.lookup_pool(conn, plan.pool), save_file(node, name)))
        progress.step(f"{node.key} restored")

    def answer(node: NodePlan, untimed: set[str]) -> None:
        address = node_address(conns, node)
        if address is None:
            raise HostError(f"{node.key} has no address to reach it by")
        target = ssh.SshTarget(address, key, prefix=node.host.ssh_prefix)
        if node.key in untimed:  # no agent: set the clock over SSH (late by the connection time)
            ssh.sync_clock(target, timeout)
        else:
            ssh.wait_for_ssh(target, timeout, interval=0.5)
        answered[node.key] = round(time.monotonic() - start, 1)
        progress.step(f"{len(answered)}/{len(nodes)} back and answering ({node.key})")

    with progress.stage(f"reset {len(nodes)} node(s) to checkpoint {name}"):
        try:
            parallel([lambda n=n: restore(n) for n in nodes])
        finally:
            # All together (what is restored), so no guest sees a peer stand still.
            untimed = _resume(conns, nodes)
        parallel([lambda n=n: answer(n, untimed) for n in nodes])
    return answered


def revert_cold(plan: LabPlan, conns: Connections, name: str, nodes: list[NodePlan], progress: Progress) -> None:
    """Disks only: power off, revert the disks, boot."""
    _require(plan, conns, name, nodes)

    def one(node: NodePlan) -> None:
        conn = conns(node.host)
        virt.stop_domain(conn, node.name)
        virt.revert_snapshot(conn, node.name, name)
        virt.start_domain(virt.lookup_domain(conn, node.name))

    with progress.stage(f"reset {len(nodes)} node(s) to the disks of checkpoint {name}, booting"):
        parallel([lambda n=n: one(n) for n in nodes])


def _require(plan: LabPlan, conns: Connections, name: str, nodes: list[NodePlan]) -> None:
    checkpoints = listing(plan, conns)
    found = next((c for c in checkpoints if c.name == name), None)
    if found is None:
        have = ", ".join(c.name for c in checkpoints) or "none"
        raise CheckpointError(f"{plan.lab} team {plan.team} has no checkpoint {name!r} (checkpoints: {have})")
    lacking = [n.key for n in nodes if n.key not in found.nodes]
    if lacking:
        raise CheckpointError(f"checkpoint {name!r} does not cover {', '.join(lacking)} "
                              "(reset to the base image since it was taken); take it again")


def drop(plan: LabPlan, conns: Connections, nodes: list[NodePlan]) -> list[str]:
    """Remove every labbuilder checkpoint of `nodes` (their overlays are about to be
    recreated, which takes the disk snapshots with them); returns what was dropped."""
    return _drop(plan, conns, nodes, lambda snap: True, metadata_only=True)


def _drop(plan: LabPlan, conns: Connections, nodes: list[NodePlan], which, metadata_only: bool) -> list[str]:
    """Remove the checkpoints `which(name)` selects from `nodes`: snapshot (with
    `metadata_only`, the disk snapshot stays in the qcow2 until the overlay goes) and
    saved memory."""
    dropped = []
    for node in nodes:
        conn = conns(node.host)
        for snap in virt.snapshots(conn, node.name):
            if _meta(snap.description) is not None and which(snap.name):
                virt.delete_snapshot(conn, node.name, snap.name, metadata_only=metadata_only)
                dropped.append(f"{node.key}:{snap.name}")
        pool = virt.lookup_pool(conn, plan.pool)
        if pool is not None and pool.isActive():
            for vol in virt.volume_sizes(pool):
                if vol.startswith(f"{node.name}--") and vol.endswith(SAVE_SUFFIX) \
                        and which(vol[len(node.name) + 2:-len(SAVE_SUFFIX)]):
                    virt.delete_volume(pool, vol)
    return dropped

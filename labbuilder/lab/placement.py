"""Placement: which lab host of an inventory's pool each host slot of each team lands on,
by capacity. Pure: what a team needs (from the topology), what each host has room for
(its limits from the inventory, what was read from it through libvirt) and where teams
run already in; each team's hosts and each host's use after them out, or the teams that
do not fit and what the hosts lack for them.

The rule, and why:

- Teams in team order, each placed whole before the next. The teams of a command share
  one topology, so ordering them by size (first-fit decreasing) would change nothing;
  team order makes a class placed in one go land as it does placed in parts (`up --teams
  1-10`, later 11-20), which matters because a placement sticks.
- A team that runs already stays where it runs (its domains' hosts, found by their
  ownership metadata); its memory is among what its hosts have promised already.
- A new team goes whole onto the host with the most memory left that holds it (memory
  and pool space), ties to the pool's order: a class spreads over the hosts, which then
  share the CPU load as well. A team some of whose slots run already goes first to
  their host.
- Only when no host holds the team whole are its slots split, the largest first, each
  onto the host with the most memory left that holds it and joins the networks it
  shares with the team's slots elsewhere (an isolated network spanning hosts must be
  joined to a bridge on each of them: `bridges:` in the pool); where a slot finds no
  such host, the slots before it try their next one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from labbuilder.lab.plan import node_memory_mib
from labbuilder.model.errors import PlacementError
from labbuilder.model.inventory import PoolHost
from labbuilder.model.topology import Node, Topology

MiB, GiB = 1 << 20, 1 << 30
# What a node's overlay on its base image is expected to grow by: the packages and logs of
# its config stage. The node's memory comes on top: a checkpoint keeps it in the overlay.
OVERLAY_ALLOWANCE = 2 * GiB


@dataclass(frozen=True)
class SlotNeed:
    """What one host slot of a team needs: memory (its nodes'), pool space (disk_estimate)
    and the isolated networks its nodes are on."""

    slot: str
    memory: int
    disk: int
    segments: frozenset[str] = frozenset()


@dataclass(frozen=True)
class HostCapacity:
    """What was read from a lab host: its memory; the memory promised to its domains (the
    running ones, and labbuilder's defined ones: `up` starts them); the free space of the
    pool labbuilder's volumes go to (None: no pool to ask yet); and what labbuilder's
    volumes take there now."""

    memory: int
    promised: int = 0
    pool_free: int | None = None
    lab_volumes: int = 0


@dataclass(frozen=True)
class HostRoom:
    """A pool host as placement sees it: the memory its guests may be promised in all, what
    is promised now, the pool space lab volumes may still take (None: not known, not
    checked), and the networks the inventory joins to bridges there."""

    name: str
    memory: int
    promised: int
    disk: int | None
    joins: frozenset[str] = frozenset()


@dataclass(frozen=True)
class HostUse:
    """A pool host after the placement."""

    name: str
    memory: int  # may be promised in all
    promised: int  # promised after the placement
    disk_left: int | None  # pool space left after it (None: not known)
    teams: tuple[int, ...]  # the placed teams with a slot here

    @property
    def memory_left(self) -> int:
        return self.memory - self.promised


@dataclass(frozen=True)
class Placement:
    """Each team's slots on the pool's hosts (team → slot → host name), which teams ran
    there already, each host after it; the teams that do not fit, placed as they would be
    were the hosts larger, and what each host lacks for them (host, memory, pool space)."""

    slots: tuple[str, ...]
    teams: dict[int, dict[str, str]]
    running: frozenset[int]
    hosts: tuple[HostUse, ...]
    unfit: tuple[int, ...] = ()
    short: tuple[tuple[str, int, int], ...] = ()

    def refusal(self) -> str | None:
        """'teams 17–20 do not fit: host lab2 needs 6 GiB more memory', or None."""
        return refusal(self.unfit, self.short)


def refusal(unfit, short) -> str | None:
    """The teams that do not fit and what each host lacks for them (host, memory, pool
    space), in one line; None if every team fits."""
    if not unfit:
        return None
    lacks = []
    for host, memory, disk in short:
        parts = [f"{amount(n)} more {what}" for n, what in ((memory, "memory"), (disk, "pool space")) if n > 0]
        lacks.append(f"host {host} needs {' and '.join(parts)}")
    verb = "does" if len(unfit) == 1 else "do"
    return f"{team_list(unfit)} {verb} not fit: {', '.join(lacks)}"


def node_disk(node: Node, memory_scale: float = 1.0) -> int:
    """The pool space a node is expected to take: its extra disks' full size, its overlay's
    allowance (OVERLAY_ALLOWANCE) and its memory (a checkpoint's memory state)."""
    return sum(d.size_bytes for d in node.disks) + OVERLAY_ALLOWANCE + node_memory_mib(node, memory_scale) * MiB


def node_need(node: Node, memory_scale: float = 1.0) -> SlotNeed:
    """What one node needs on its host: its memory and pool space (node_disk)."""
    return SlotNeed(node.name, node_memory_mib(node, memory_scale) * MiB, node_disk(node, memory_scale))


def slot_needs(topo: Topology, memory_scale: float = 1.0) -> tuple[SlotNeed, ...]:
    """What each host slot of one team of `topo` needs, in the topology's slot order."""
    isolated = {n.name for n in topo.networks if n.mode == "isolated"}
    needs = []
    for slot in topo.hosts:
        nodes = [n for n in topo.nodes if n.host == slot.name]
        needs.append(SlotNeed(slot.name, sum(node_memory_mib(n, memory_scale) for n in nodes) * MiB,
                              sum(node_disk(n, memory_scale) for n in nodes),
                              frozenset(nic.network for n in nodes for nic in n.nics if nic.network in isolated)))
    return tuple(needs)


def host_room(host: PoolHost, seen: HostCapacity) -> HostRoom:
    """A pool host's room: (its `memory:` or what it has) × `overcommit`; `disk:` less
    what labbuilder's volumes take there, and never more than its pool has free."""
    memory = int((host.memory or seen.memory) * host.overcommit)
    disk = seen.pool_free
    if host.disk is not None:
        disk = host.disk - seen.lab_volumes if disk is None else min(disk, host.disk - seen.lab_volumes)
    return HostRoom(host.name, memory, seen.promised, disk, frozenset(n for n, _ in host.entry.bridges))


@dataclass
class _Left:
    memory: int
    disk: int | None
    teams: list[int] = field(default_factory=list)

    def holds(self, needs: list[SlotNeed]) -> bool:
        return (self.memory >= sum(n.memory for n in needs)
                and (self.disk is None or self.disk >= sum(n.disk for n in needs)))

    def take(self, needs: list[SlotNeed], sign: int = 1) -> None:
        """Count `needs` here (sign -1: give them back)."""
        self.memory -= sign * sum(n.memory for n in needs)
        if self.disk is not None:
            self.disk -= sign * sum(n.disk for n in needs)


def place(teams: list[int], needs: tuple[SlotNeed, ...], rooms: tuple[HostRoom, ...],
          found: dict[int, dict[str, str]]) -> Placement:
    """Each of `teams` on `rooms` (the pool, in its order) by the rule above; `found` says
    where teams run already (team → slot → host name; a slot not in it is placed).
    Teams that do not fit are left out in a first pass, then placed as if the hosts had
    no limit, to say what the hosts lack."""
    left = {r.name: _Left(r.memory - r.promised, r.disk) for r in rooms}
    order = {r.name: i for i, r in enumerate(rooms)}
    joins = {r.name: r.joins for r in rooms}
    placed: dict[int, dict[str, str]] = {}
    unfit = []
    for team in sorted(teams):
        got = _team(needs, found.get(team, {}), left, order, joins)
        if got is None:
            unfit.append(team)
            continue
        placed[team] = got
        _take(left, needs, got, found.get(team, {}), team)
    for team in unfit:
        placed[team] = _overflow(needs, found.get(team, {}), left, order, joins)
        _take(left, needs, placed[team], found.get(team, {}), team)
    hosts = tuple(HostUse(r.name, r.memory, r.memory - left[r.name].memory, left[r.name].disk,
                          tuple(sorted(left[r.name].teams))) for r in rooms)
    short = tuple((r.name, max(0, -left[r.name].memory), max(0, -(left[r.name].disk or 0)))
                  for r in rooms if left[r.name].memory < 0 or (left[r.name].disk or 0) < 0)
    running = frozenset(t for t in teams if found.get(t) and set(found[t]) >= {n.slot for n in needs})
    return Placement(tuple(n.slot for n in needs), {t: placed[t] for t in sorted(teams)}, running, hosts,
                     tuple(unfit), short)


def _take(left: dict[str, _Left], needs: tuple[SlotNeed, ...], got: dict[str, str], have: dict[str, str],
          team: int) -> None:
    """Count a team's new slots against their hosts (its running ones are counted there)."""
    for host in dict.fromkeys(got.values()):
        left[host].take([n for n in needs if got[n.slot] == host and n.slot not in have])
        left[host].teams.append(team)


def _ranked(left: dict[str, _Left], order: dict[str, int], have: dict[str, str]) -> list[str]:
    """Hosts to try: those the team runs on first, then the most memory left, then the pool's order."""
    return sorted(left, key=lambda h: (h not in have.values(), -left[h].memory, order[h]))


def _team(needs: tuple[SlotNeed, ...], have: dict[str, str], left: dict[str, _Left], order: dict[str, int],
          joins: dict[str, frozenset[str]]) -> dict[str, str] | None:
    """The team's slots → hosts: whole on one host if one holds it, else split; None if it does not fit."""
    todo = [n for n in needs if n.slot not in have]
    for host in _ranked(left, order, have):
        whole = {**have, **{n.slot: host for n in todo}}
        if left[host].holds(todo) and _joinable(whole, needs, joins):
            return whole
    return _split(needs, have, todo, left, order, joins)


def _split(needs: tuple[SlotNeed, ...], have: dict[str, str], todo: list[SlotNeed], left: dict[str, _Left],
           order: dict[str, int], joins: dict[str, frozenset[str]]) -> dict[str, str] | None:
    """The team's slots on several hosts: the largest slot first, each on the host ranked
    first that holds it and keeps the team's networks joined; where a later slot finds
    none, the earlier ones try their next host (a team has a few slots, a pool a few hosts)."""
    mine = {h: _Left(x.memory, x.disk) for h, x in left.items()}  # what this team's slots leave

    def next_slot(got: dict[str, str], rest: list[SlotNeed]) -> dict[str, str] | None:
        if not rest:
            return got
        need = rest[0]
        for host in _ranked(mine, order, {}):
            if mine[host].holds([need]) and _joinable({**got, need.slot: host}, needs, joins):
                mine[host].take([need])
                found = next_slot({**got, need.slot: host}, rest[1:])
                if found is not None:
                    return found
                mine[host].take([need], sign=-1)
        return None

    got = next_slot(dict(have), sorted(todo, key=lambda n: -n.memory))
    return {n.slot: got[n.slot] for n in needs} if got is not None else None


def _overflow(needs: tuple[SlotNeed, ...], have: dict[str, str], left: dict[str, _Left], order: dict[str, int],
              joins: dict[str, frozenset[str]]) -> dict[str, str]:
    """Where a team that does not fit would go were the hosts larger: whole, on the first
    host the rule ranks that keeps its networks joined."""
    ranked = _ranked(left, order, have)
    todo = [n for n in needs if n.slot not in have]
    for host in ranked:
        whole = {**have, **{n.slot: host for n in todo}}
        if _joinable(whole, needs, joins):
            return whole
    return {**have, **{n.slot: ranked[0] for n in todo}}


def _joinable(got: dict[str, str], needs: tuple[SlotNeed, ...], joins: dict[str, frozenset[str]]) -> bool:
    """Whether every isolated network two of the team's slots share, where they are on two
    hosts, is joined to a bridge on both."""
    segments = {n.slot: n.segments for n in needs}
    pairs = [(a, b) for a in got for b in got if a < b and got[a] != got[b]]
    return all(net in joins[got[a]] and net in joins[got[b]]
               for a, b in pairs for net in segments[a] & segments[b])


def fixed_refusal(asked: dict[int, dict[str, list[SlotNeed]]], rooms: tuple[HostRoom, ...]) -> str | None:
    """Teams whose hosts are fixed (the local host, an inventory's slots; no pool): `asked`
    is, per team, per host name, what its nodes that are not defined there yet need.
    Teams in team order, each taken whole or not at all, as `place` takes them; a host
    where a team asks nothing holds it, however full. The refusal of those that do not
    fit, or None."""
    left = {r.name: _Left(r.memory - r.promised, r.disk) for r in rooms}
    unfit = []
    for team, needs in sorted(asked.items()):
        needs = {host: n for host, n in needs.items() if n}
        if not all(left[host].holds(n) for host, n in needs.items()):
            unfit.append(team)
            continue
        for host, n in needs.items():
            left[host].take(n)
    for team in unfit:
        for host, n in asked[team].items():
            left[host].take(n)
    asked_on = {host for team in unfit for host, n in asked[team].items() if n}
    short = tuple((r.name, max(0, -left[r.name].memory), max(0, -(left[r.name].disk or 0))) for r in rooms
                  if r.name in asked_on and (left[r.name].memory < 0 or (left[r.name].disk or 0) < 0))
    return refusal(unfit, short)


def running_placement(topo: Topology, seen: dict[str, list[tuple[int, str]]]) -> dict[int, dict[str, str]]:
    """Where teams run: `seen` is, per pool host, the (team, node) of each of the lab's
    domains there (by their ownership metadata). Team → slot → host; PlacementError if
    a slot's nodes run on two hosts (a placed team is never moved)."""
    slot_of = {n.name: n.host for n in topo.nodes}
    where: dict[int, dict[str, set[str]]] = {}
    for host, domains in seen.items():
        for team, node in domains:
            if node in slot_of:
                where.setdefault(team, {}).setdefault(slot_of[node], set()).add(host)
    for team, slots in sorted(where.items()):
        for slot, hosts in slots.items():
            if len(hosts) > 1:
                raise PlacementError(f"team {team}'s slot {slot} runs on {' and '.join(sorted(hosts))}: a placed "
                                     f"team is not moved; bring it down (labbuilder down --team {team}) to place "
                                     "it again")
    return {team: {slot: hosts.pop() for slot, hosts in slots.items()} for team, slots in where.items()}


def team_runs(teams) -> str:
    """'3', '17–20', '3, 5–7'."""
    runs: list[list[int]] = []
    for t in sorted(teams):
        if runs and t == runs[-1][-1] + 1:
            runs[-1].append(t)
        else:
            runs.append([t])
    return ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}–{r[-1]}" for r in runs)


def team_list(teams) -> str:
    """'team 3', 'teams 17–20', 'teams 3, 5–7'."""
    return f"{'team' if len(teams) == 1 else 'teams'} {team_runs(teams)}"


def amount(n: int) -> str:
    """Bytes as a user reads them, rounded up: '512 MiB', '6 GiB', '5.5 GiB'."""
    if n < 0:
        return "-" + amount(-n)
    if n < GiB:
        return f"{-(-n // MiB)} MiB"
    return f"{-(-n * 10 // GiB) / 10:g} GiB"

"""A host inventory (`--hosts FILE`): where each host slot of a topology lands — a libvirt
URI, a private libvirtd's directory on this machine, or neither — and which topology
networks are joined to existing host bridges there; or, instead of fixing the slots, a
pool of lab hosts with their limits, on which the teams are placed by capacity
(lab/placement). Read and checked whole, with every problem pointing at its line;
nothing is started here.

What only the private libvirtd knows (the URI of the daemon in a directory, and whether a
directory may hold one) is passed in: model/ imports nothing from system/."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, NamedTuple

from labbuilder.model.errors import Problem, TopologyError
from labbuilder.model.topology import BRIDGE_HINT, BRIDGE_RE, NAME_HINT, NAME_RE, Topology, choice_hint
from labbuilder.model.uri import URI_HINT, uri_problem
from labbuilder.model.yamlread import Checker, KeyPath, load_with_marks, parse_size, short

_ENTRY = {"uri": str, "private": str, "bridges": dict}
_POOL_ENTRY = {**_ENTRY, "memory": (str, int), "disk": (str, int), "overcommit": (int, float)}
MAX_POOL_NAME = 30
OVERCOMMIT = (0.1, 10.0)
MAX_LIMIT_BYTES = 1 << 50  # 1 PiB
_ENTRY_HINT = "keep one: uri (a libvirt host) or private (a private libvirtd on this machine, in that directory)"


class SlotEntry(NamedTuple):
    """One slot of an inventory: a libvirt URI, a private libvirtd's directory, or neither
    (the slot lands where it would without the inventory); the (network, host bridge)
    pairs joined on its host; the line of `private`, to point at; and `lands_on`, the
    libvirt URI the slot lands on (its uri, its private libvirtd's, or the default)."""

    slot: str
    uri: str | None = None
    private: Path | None = None
    bridges: tuple[tuple[str, str], ...] = ()
    line: int | None = None
    lands_on: str = ""


class PoolHost(NamedTuple):
    """A lab host of an inventory's pool: where it is (`entry`, its `slot` the host's name
    in the pool), what its guests may be given — `memory` bytes (None: the host's memory,
    as libvirt reports it) times `overcommit` — and what lab volumes may take in its pools
    (`disk` bytes; None: the pool's free space)."""

    entry: SlotEntry
    memory: int | None = None
    disk: int | None = None
    overcommit: float = 1.0

    @property
    def name(self) -> str:
        return self.entry.slot


class Inventory(NamedTuple):
    """A checked inventory: the slots it fixes (slot → entry), or its pool (in its order)."""

    slots: dict[str, SlotEntry]
    pool: tuple[PoolHost, ...] = ()


class PrivateDirs(NamedTuple):
    """The private libvirtd's rules for a `private:` directory, from system/privatelibvirtd:
    the URI of the daemon kept there, and why the directory must not hold one (None: it may)."""

    uri: Callable[[Path], str]
    unfit: Callable[[Path], str | None]


def load_inventory(path: Path, topo: Topology, default_uri: str, private: PrivateDirs) -> Inventory:
    """A host inventory, checked whole (nothing is started here): either `hosts: {SLOT: URI
    | {uri: URI | private: DIR, bridges: {NETWORK: BRIDGE}}}` for the topology's slots, each
    entry carrying the bridges of its libvirt host, which its slots share; or `pool: {NAME:
    URI | {uri | private, bridges, memory, disk, overcommit}}`, the lab hosts the teams are
    placed on. `default_uri` is where an entry with neither uri nor private lands."""
    data, marks = load_with_marks(path, TopologyError)
    c = Checker(path, marks, TopologyError)
    top = c.mapping(data, (), {"hosts": dict, "pool": dict})
    if isinstance(data, dict) and "hosts" in data and "pool" in data:
        c.problem(("pool",), "an inventory fixes each slot's host (hosts) or lists a pool of hosts to place "
                  "the teams on (pool), not both", "keep one")
    elif isinstance(data, dict) and not ({"hosts", "pool"} & set(data)):
        c.problem((), "missing required key 'hosts'", "or 'pool': lab hosts the teams are placed on by capacity")
    for key in (k for k in ("hosts", "pool") if isinstance(data, dict) and k in data and data[k] is None):
        c.problem((key,), "must not be empty")
    if "pool" in top:
        return _pool(c, Path(path), top["pool"], topo, default_uri, private)
    entries = [_landing(e, default_uri, private) for slot, spec in top.get("hosts", {}).items()
               if (e := _slot(c, Path(path), slot, spec, topo, private)) is not None]
    shared = _bridges_per_host(c, entries)
    c.done()
    return Inventory({e.slot: e._replace(bridges=shared[e.lands_on]) for e in entries})


def _pool(c: Checker, inventory: Path, spec: dict, topo: Topology, default_uri: str,
          private: PrivateDirs) -> Inventory:
    if not spec:
        c.problem(("pool",), "lists no host", "e.g. pool: {lab1: qemu+ssh://root@lab1/system}")
    hosts = [h for name, value in spec.items() if (h := _pool_host(c, inventory, name, value, topo, private))]
    hosts = [h._replace(entry=_landing(h.entry, default_uri, private)) for h in hosts]
    seen: dict[str, str] = {}
    for h in hosts:
        first = seen.setdefault(h.entry.lands_on, h.name)
        if first != h.name:
            c.problem(("pool", h.name), f"is the same libvirt host as {first} ({h.entry.lands_on})",
                      "list each lab host once")
    c.done()
    return Inventory({}, tuple(hosts))


def _pool_host(c: Checker, inventory: Path, name, spec, topo: Topology, private: PrivateDirs) -> PoolHost | None:
    path = ("pool", name)
    if not (isinstance(name, str) and NAME_RE.fullmatch(name) and len(name) <= MAX_POOL_NAME):
        c.problem(path, f"{short(name)} is not a host name", f"{NAME_HINT}; at most {MAX_POOL_NAME} characters")
        return None
    if not isinstance(spec, dict):
        entry = _entry(c, inventory, name, spec, path, topo, private)
        return PoolHost(entry) if entry else None
    limits = c.mapping(spec, path, _POOL_ENTRY)
    entry = _entry(c, inventory, name, {k: v for k, v in limits.items() if k in _ENTRY}, path, topo, private)
    memory = _limit(c, limits, "memory", path, "e.g. memory: 64GiB")
    disk = _limit(c, limits, "disk", path, "e.g. disk: 500GiB")
    overcommit = limits.get("overcommit", 1.0)
    if not OVERCOMMIT[0] <= overcommit <= OVERCOMMIT[1]:
        c.problem(path + ("overcommit",), f"must be from {OVERCOMMIT[0]:g} to {OVERCOMMIT[1]:g}, got {overcommit}",
                  "guests may be promised memory × overcommit; 1 promises no more than there is")
        return None
    return PoolHost(entry, memory, disk, float(overcommit)) if entry else None


def _limit(c: Checker, limits: dict, key: str, path: KeyPath, hint: str) -> int | None:
    if key not in limits:
        return None
    size = parse_size(limits[key])
    if size is None or not 1 << 20 <= size <= MAX_LIMIT_BYTES:
        c.problem(path + (key,), f"{short(limits[key])} is not a size from 1M to 1P", hint)
        return None
    return size


def _landing(e: SlotEntry, default_uri: str, private: PrivateDirs) -> SlotEntry:
    return e._replace(lands_on=e.uri or (private.uri(e.private) if e.private else default_uri))


def _slot(c: Checker, inventory: Path, slot: str, spec, topo: Topology, private: PrivateDirs) -> SlotEntry | None:
    path = ("hosts", slot)
    slots = [h.name for h in topo.hosts]
    if slot not in slots:
        c.problem(path, "not a host slot of this topology", "slots: " + ", ".join(slots))
        return None
    if isinstance(spec, dict):
        spec = c.mapping(spec, path, _ENTRY)
    return _entry(c, inventory, slot, spec, path, topo, private)


def _entry(c: Checker, inventory: Path, key: str, spec, path: KeyPath, topo: Topology,
           private: PrivateDirs) -> SlotEntry | None:
    """Where a slot, or a pool host, is: `spec` a URI, or a mapping whose keys and types its
    caller checked (uri or private, bridges)."""
    if not c.is_type(spec, (str, dict), path):
        return None
    if isinstance(spec, str):
        uri = _uri(c, spec, path)
        return SlotEntry(key, uri) if uri else None
    e = spec
    if "uri" in e and "private" in e:
        c.problem(path, "has both 'uri' and 'private'", _ENTRY_HINT)
        return None
    uri = _uri(c, e["uri"], path + ("uri",)) if "uri" in e else None
    where = _private_dir(c, e["private"], path + ("private",), inventory, private) if "private" in e else None
    if ("uri" in e and uri is None) or ("private" in e and where is None):
        return None
    joined = _joined(c, e.get("bridges", {}), path + ("bridges",), topo)
    return SlotEntry(key, uri, where, joined, c.line(path + ("private",)))


def _uri(c: Checker, uri: str, path: KeyPath) -> str | None:
    problem = uri_problem(uri)
    if problem:
        c.problem(path, f"{short(uri, 100)}: {problem}", URI_HINT)
        return None
    return uri


def check_connect(connect: str | None) -> None:
    """--connect: a URI as an inventory may give; TopologyError otherwise."""
    problem = uri_problem(connect) if connect is not None else None
    if problem:
        raise TopologyError([Problem("--connect", None, "", f"{short(connect, 100)}: {problem}", URI_HINT)])


_PRIVATE_HINT = "e.g. private: /srv/labbuilder/host-b (a directory labbuilder made, or a new or empty one)"


def _private_dir(c: Checker, text: str, path: KeyPath, inventory: Path, private: PrivateDirs) -> Path | None:
    """The private libvirtd's directory, relative to the inventory file: one a private
    libvirtd may own (`private.unfit`)."""
    given = Path(text).expanduser()
    if not text.strip() or ".." in given.parts:
        c.problem(path, "must be a directory" if not text.strip() else f"{text!r} has a '..' in it", _PRIVATE_HINT)
        return None
    found = (inventory.parent / given).resolve()
    if found.exists() and not found.is_dir():
        c.problem(path, f"{found} is not a directory", "a private libvirtd keeps its state in a directory")
        return None
    why = private.unfit(found)
    if why:
        c.problem(path, f"{found} {why}", _PRIVATE_HINT)
        return None
    return found


def _joined(c: Checker, spec: dict, path: KeyPath, topo: Topology) -> tuple[tuple[str, str], ...]:
    """`bridges: {NETWORK: BRIDGE}`: topology networks joined to existing host bridges."""
    networks = {n.name: n for n in topo.networks}
    joined = []
    for network, bridge in spec.items():
        where = path + (network,)
        if network not in networks:
            c.problem(where, f"network '{network}' is not in the topology",
                      choice_hint(str(network), networks, "the topology's networks"))
        elif networks[network].existing:
            c.problem(where, f"network '{network}' is the host's own libvirt network "
                      f"'{networks[network].existing}' (existing)", "remove this entry")
        elif networks[network].mode == "bridge":
            c.problem(where, f"network '{network}' is on host bridge '{networks[network].bridge}' on every "
                      "host already (mode bridge)", "remove this entry")
        elif not c.is_type(bridge, str, where):
            continue
        elif not BRIDGE_RE.fullmatch(bridge):
            c.problem(where, f"{bridge!r} is not a Linux bridge name", BRIDGE_HINT)
        else:
            joined.append((network, bridge))
    return tuple(sorted(joined))


def _bridges_per_host(c: Checker, entries: list[SlotEntry]) -> dict[str, tuple[tuple[str, str], ...]]:
    """URI → the bridges its slots join: slots on the same libvirt host share them, and
    must not join one network to two bridges there."""
    merged: dict[str, dict[str, tuple[str, str]]] = {}  # URI → network → (bridge, slot)
    for e in entries:
        have = merged.setdefault(e.lands_on, {})
        for network, bridge in e.bridges:
            first, slot = have.setdefault(network, (bridge, e.slot))
            if first != bridge:
                c.problem(("hosts", e.slot, "bridges", network), f"{slot} is the same libvirt host and joins "
                          f"'{network}' to '{first}' there", "give both slots the same bridge")
    return {uri: tuple(sorted((n, b) for n, (b, _) in nets.items())) for uri, nets in merged.items()}

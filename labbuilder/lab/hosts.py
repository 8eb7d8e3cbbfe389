"""Where a lab's host slots land: --connect, a host inventory file, or the local host —
its running libvirtd if there is one, else a private libvirtd in its own namespaces.
An inventory may also join topology networks to existing host bridges, per host."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from labbuilder.model.errors import Problem, TopologyError
from labbuilder.model.topology import BRIDGE_HINT, BRIDGE_RE, Topology, choice_hint
from labbuilder.model.uri import URI_HINT, uri_problem
from labbuilder.model.yamlread import Checker, KeyPath, load_with_marks, short
from labbuilder.system import privatelibvirtd

SYSTEM_SOCKET = Path("/run/libvirt/libvirt-sock")
SYSTEM_URI = "qemu:///system"
STATE_ENV = "LABBUILDER_STATE"


@dataclass(frozen=True)
class Host:
    """Where a host slot lands: a libvirt URI, and how to reach guests from here."""

    uri: str
    ssh_prefix: tuple[str, ...] = ()  # e.g. nsenter into a private libvirtd's network namespace
    label: str = ""
    files_prefix: tuple[str, ...] = ()  # e.g. nsenter into its mount namespace, to read its files
    running: bool = True  # False: a private libvirtd `up` would start; nothing exists on it yet
    bridges: tuple[tuple[str, str], ...] = ()  # (network, existing host bridge) joined on this host
    netns: str | None = None  # a private libvirtd's network namespace (/proc/PID/ns/net); None: the host's

    @property
    def name(self) -> str:
        return self.label or self.uri

    def joined_bridge(self, network: str) -> str | None:
        """The host bridge the inventory joins `network` to on this host, if any."""
        return dict(self.bridges).get(network)


def state_root() -> Path:
    """$LABBUILDER_STATE, else ~/.local/state/labbuilder."""
    env = os.environ.get(STATE_ENV)
    return Path(env) if env else Path.home() / ".local" / "state" / "labbuilder"


def team_dir(lab: str, team: int) -> Path:
    """The local state of one lab and team: its SSH key, hand-off files and lock."""
    return state_root() / f"{lab}-t{team}"


def system_libvirtd_runs() -> bool:
    import socket  # here: not needed with --connect, --private or an inventory

    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect(str(SYSTEM_SOCKET))
        return True
    except OSError:
        return False


def private_host(state_dir: Path, start: bool | None = True, label: str = "private libvirtd") -> Host | None:
    """The private libvirtd in `state_dir`: started if `start` and not running; with
    `start` None, a stand-in Host (running=False) for the one `up` would start."""
    daemon = privatelibvirtd.ensure(state_dir) if start else privatelibvirtd.attach(state_dir)
    if daemon is None and start is None:
        return Host(_private_uri(state_dir), label=f"{label} (not started yet)", running=False)
    if daemon is None:
        return None
    return Host(daemon.uri, tuple(daemon.nsenter_argv()), label=label,
                files_prefix=tuple(daemon.nsenter_files_argv()), netns=daemon.netns)


def _private_uri(state_dir: Path) -> str:
    """The URI of the private libvirtd in `state_dir`, running or not."""
    return privatelibvirtd.PrivateLibvirtd(Path(state_dir).resolve(), 0).uri


def _default_host(connect: str | None, root: Path, private: bool, start: bool | None) -> Host | None:
    """Where a slot lands without an inventory entry: --connect, else the local host's
    libvirtd or, with `private`, the private one (None if it does not run and `start` is False)."""
    if connect:
        return Host(connect)
    return private_host(root / "libvirtd", start) if private else Host(SYSTEM_URI)


# ---------------------------------------------------------------------------- inventory

_ENTRY = {"uri": str, "private": str, "bridges": dict}
_ENTRY_HINT = "keep one: uri (a libvirt host) or private (a private libvirtd on this machine, in that directory)"


@dataclass(frozen=True)
class SlotEntry:
    """One slot of an inventory: a libvirt URI, a private libvirtd's directory, or neither
    (the slot lands where it would without the inventory); the (network, host bridge)
    pairs joined on its host; and the line of `private`, to point at."""

    slot: str
    uri: str | None = None
    private: Path | None = None
    bridges: tuple[tuple[str, str], ...] = ()
    line: int | None = None

    def target(self, default_uri: str) -> str:
        """The libvirt URI the slot lands on."""
        if self.uri:
            return self.uri
        return _private_uri(self.private) if self.private else default_uri


def load_inventory(path: Path, topo: Topology, default_uri: str) -> dict[str, SlotEntry]:
    """A host inventory: `hosts: {SLOT: URI | {uri: URI | private: DIR, bridges: {NETWORK:
    BRIDGE}}}` for the topology's slots, checked whole (nothing is started here). Each
    entry carries the bridges of its libvirt host, which its slots share; `default_uri`
    is where a slot with neither uri nor private lands."""
    data, marks = load_with_marks(path, TopologyError)
    c = Checker(path, marks, TopologyError)
    top = c.mapping(data, (), {"hosts": dict}, ("hosts",))
    entries = [e for slot, spec in top.get("hosts", {}).items()
               if (e := _entry(c, Path(path), slot, spec, topo)) is not None]
    shared = _bridges_per_host(c, entries, default_uri)
    c.done()
    return {e.slot: replace(e, bridges=shared[e.target(default_uri)]) for e in entries}


def _entry(c: Checker, inventory: Path, slot: str, spec, topo: Topology) -> SlotEntry | None:
    path = ("hosts", slot)
    slots = [h.name for h in topo.hosts]
    if slot not in slots:
        c.problem(path, "not a host slot of this topology", "slots: " + ", ".join(slots))
        return None
    if not c.is_type(spec, (str, dict), path):
        return None
    if isinstance(spec, str):
        uri = _uri(c, spec, path)
        return SlotEntry(slot, uri) if uri else None
    e = c.mapping(spec, path, _ENTRY)
    if "uri" in e and "private" in e:
        c.problem(path, "has both 'uri' and 'private'", _ENTRY_HINT)
        return None
    uri = _uri(c, e["uri"], path + ("uri",)) if "uri" in e else None
    private = _private_dir(c, e["private"], path + ("private",), inventory) if "private" in e else None
    if ("uri" in e and uri is None) or ("private" in e and private is None):
        return None
    joined = _joined(c, e.get("bridges", {}), path + ("bridges",), topo)
    return SlotEntry(slot, uri, private, joined, c.line(path + ("private",)))


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


def _private_dir(c: Checker, text: str, path: KeyPath, inventory: Path) -> Path | None:
    """The private libvirtd's directory, relative to the inventory file: one a private
    libvirtd may own (see privatelibvirtd.unfit_state_dir)."""
    given = Path(text).expanduser()
    if not text.strip() or ".." in given.parts:
        c.problem(path, "must be a directory" if not text.strip() else f"{text!r} has a '..' in it", _PRIVATE_HINT)
        return None
    found = (inventory.parent / given).resolve()
    if found.exists() and not found.is_dir():
        c.problem(path, f"{found} is not a directory", "a private libvirtd keeps its state in a directory")
        return None
    why = privatelibvirtd.unfit_state_dir(found)
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


def _bridges_per_host(c: Checker, entries: list[SlotEntry], default_uri: str) -> dict[str, tuple[tuple[str, str], ...]]:
    """URI → the bridges its slots join: slots on the same libvirt host share them, and
    must not join one network to two bridges there."""
    merged: dict[str, dict[str, tuple[str, str]]] = {}  # URI → network → (bridge, slot)
    for e in entries:
        have = merged.setdefault(e.target(default_uri), {})
        for network, bridge in e.bridges:
            first, slot = have.setdefault(network, (bridge, e.slot))
            if first != bridge:
                c.problem(("hosts", e.slot, "bridges", network), f"{slot} is the same libvirt host and joins "
                          f"'{network}' to '{first}' there", "give both slots the same bridge")
    return {uri: tuple(sorted((n, b) for n, (b, _) in nets.items())) for uri, nets in merged.items()}


def resolve_hosts(topo: Topology, connect: str | None, inventory: Path | None,
                  root: Path, private: bool | None = None, start: bool | None = True,
                  check: Callable[[dict[str, Host]], None] | None = None) -> dict[str, Host]:
    """Host per slot of `topo`: its inventory entry, else --connect, else the local host
    (its libvirtd, or a private one under `root`). The inventory is checked whole, and
    `check` is given where each slot lands (URI and bridges), before a private libvirtd is
    started (`start` as for private_host). Slots on one libvirt URI get one Host, with the
    bridges the inventory joins there."""
    check_connect(connect)
    if not connect and private is None:
        private = not system_libvirtd_runs()
    default_uri = connect or (_private_uri(root / "libvirtd") if private else SYSTEM_URI)
    listed = load_inventory(inventory, topo, default_uri) if inventory else {}
    shared = {e.target(default_uri): e.bridges for e in listed.values()}
    entries = [listed.get(h.name) or SlotEntry(h.name, bridges=shared.get(default_uri, ())) for h in topo.hosts]
    if check:
        check(_one_host_per_uri({e.slot: Host(e.target(default_uri), bridges=e.bridges) for e in entries}))
    default = None
    if any(not (e.uri or e.private) for e in entries):
        default = _default_host(connect, root, bool(private), start)
        if default is None:
            raise TopologyError([Problem(str(root), None, "", "no private libvirtd runs here "
                                         "(nothing was brought up with this state directory)")])
    return _one_host_per_uri({e.slot: _host(e, default, start, inventory) for e in entries})


def _host(e: SlotEntry, default: Host | None, start: bool | None, inventory: Path | None) -> Host:
    if e.uri:
        host = Host(e.uri)
    elif e.private:
        host = private_host(e.private, start, label=f"private libvirtd {e.private}")
        if host is None:
            raise TopologyError([Problem(str(inventory), e.line, f"hosts.{e.slot}.private",
                                         f"no private libvirtd runs in {e.private}", "`labbuilder up` starts it")])
    else:
        host = default
    return replace(host, bridges=e.bridges)


def _one_host_per_uri(hosts: dict[str, Host]) -> dict[str, Host]:
    """The first Host of each URI for every slot on it (a plan tells hosts apart by URI)."""
    first: dict[str, Host] = {}
    return {slot: first.setdefault(host.uri, host) for slot, host in hosts.items()}

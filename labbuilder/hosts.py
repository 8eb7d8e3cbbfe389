"""Where a lab's host slots land: --connect, a host inventory file, or the local host —
its running libvirtd if there is one, else a private libvirtd in its own namespaces.
An inventory may also join topology networks to existing host bridges, per host."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, replace
from pathlib import Path

from . import privatelibvirtd
from .errors import TopologyError, Problem
from .plan import Host
from .topology import BRIDGE_HINT, BRIDGE_RE, URI_RE, Topology, choice_hint
from .yamlcheck import Checker, KeyPath, load_with_marks

SYSTEM_SOCKET = Path("/run/libvirt/libvirt-sock")
STATE_ENV = "LABBUILDER_STATE"


def state_root() -> Path:
    """$LABBUILDER_STATE, else ~/.local/state/labbuilder."""
    env = os.environ.get(STATE_ENV)
    return Path(env) if env else Path.home() / ".local" / "state" / "labbuilder"


def system_libvirtd_runs() -> bool:
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
                files_prefix=tuple(daemon.nsenter_files_argv()))


def _private_uri(state_dir: Path) -> str:
    """The URI of the private libvirtd in `state_dir`, running or not."""
    return privatelibvirtd.PrivateLibvirtd(Path(state_dir).resolve(), 0).uri


def local_host(root: Path, private: bool | None = None, start: bool | None = True) -> Host | None:
    """qemu:///system if a libvirtd runs here (and private is not forced), else the private one."""
    if private is None:
        private = not system_libvirtd_runs()
    return private_host(root / "libvirtd", start) if private else Host("qemu:///system")


# ---------------------------------------------------------------------------- inventory

_ENTRY = {"uri": str, "private": str, "bridges": dict}
ENTRY_HINT = "uri: qemu+ssh://root@host-b/system, or private: DIR (a private libvirtd on this machine)"


@dataclass(frozen=True)
class _Entry:
    """One slot of an inventory as written: a libvirt URI or a private libvirtd's
    directory, and the (network, host bridge) pairs it joins."""

    slot: str
    uri: str | None
    private: Path | None
    bridges: tuple[tuple[str, str], ...] = ()

    @property
    def target(self) -> str:
        """The libvirt URI the slot lands on."""
        return self.uri or _private_uri(self.private)


def load_inventory(path: Path, topo: Topology, start: bool | None = True) -> dict[str, Host]:
    """A host inventory: `hosts: {slot: URI | {uri: URI | private: DIR, bridges: {NETWORK:
    BRIDGE}}}` for the topology's slots → Host per slot listed. Everything is checked
    before a private libvirtd is started (`start` as for private_host)."""
    data, marks = load_with_marks(path, TopologyError)
    c = Checker(path, marks, TopologyError)
    top = c.mapping(data, (), {"hosts": dict}, ("hosts",))
    entries = [e for slot, spec in top.get("hosts", {}).items()
               if (e := _entry(c, Path(path), slot, spec, topo)) is not None]
    bridges = _bridges_per_host(c, entries)
    c.done()
    found = {e.slot: _host(c, e, bridges[e.target], start) for e in entries}
    c.done()
    return found


def _entry(c: Checker, inventory: Path, slot: str, spec, topo: Topology) -> _Entry | None:
    path = ("hosts", slot)
    slots = [h.name for h in topo.hosts]
    if slot not in slots:
        c.problem(path, "not a host slot of this topology", "slots: " + ", ".join(slots))
        return None
    if not c.is_type(spec, (str, dict), path):
        return None
    if isinstance(spec, str):
        uri = _uri(c, spec, path)
        return _Entry(slot, uri, None) if uri else None
    e = c.mapping(spec, path, _ENTRY)
    joined = _joined(c, e.get("bridges", {}), path + ("bridges",), topo)
    given = [key for key in ("uri", "private") if spec.get(key) is not None]
    if len(given) != 1:
        c.problem(path, "has both 'uri' and 'private'" if given else "needs 'uri' or 'private'", ENTRY_HINT)
        return None
    uri = _uri(c, e["uri"], path + ("uri",)) if "uri" in e else None
    private = _private_dir(c, e["private"], path + ("private",), inventory) if "private" in e else None
    return _Entry(slot, uri, private, joined) if uri or private else None


def _uri(c: Checker, uri: str, path: KeyPath) -> str | None:
    if not URI_RE.match(uri):
        c.problem(path, f"{uri!r} is not a libvirt URI", "e.g. qemu+ssh://root@host-b/system")
        return None
    return uri


def _private_dir(c: Checker, text: str, path: KeyPath, inventory: Path) -> Path | None:
    """The private libvirtd's directory; relative to the inventory file."""
    if not text.strip():
        c.problem(path, "must be a directory", "e.g. private: /srv/labbuilder/host-b")
        return None
    found = (inventory.parent / Path(text).expanduser()).resolve()
    if found.exists() and not found.is_dir():
        c.problem(path, f"{found} is not a directory", "a private libvirtd keeps its state in a directory")
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
        elif not BRIDGE_RE.match(bridge):
            c.problem(where, f"{bridge!r} is not a Linux bridge name", BRIDGE_HINT)
        else:
            joined.append((network, bridge))
    return tuple(sorted(joined))


def _bridges_per_host(c: Checker, entries: list[_Entry]) -> dict[str, tuple[tuple[str, str], ...]]:
    """URI → the bridges its slots join: slots on the same libvirt host share them, and
    must not join one network to two bridges there."""
    merged: dict[str, dict[str, tuple[str, str]]] = {}  # URI → network → (bridge, slot)
    for e in entries:
        have = merged.setdefault(e.target, {})
        for network, bridge in e.bridges:
            first, slot = have.setdefault(network, (bridge, e.slot))
            if first != bridge:
                c.problem(("hosts", e.slot, "bridges", network), f"{slot} is the same libvirt host and joins "
                          f"'{network}' to '{first}' there", "give both slots the same bridge")
    return {uri: tuple(sorted((n, b) for n, (b, _) in nets.items())) for uri, nets in merged.items()}


def _host(c: Checker, e: _Entry, bridges: tuple[tuple[str, str], ...], start: bool | None) -> Host | None:
    if e.uri:
        return Host(e.uri, bridges=bridges)
    host = private_host(e.private, start, label=f"private libvirtd {e.private}")
    if host is None:
        c.problem(("hosts", e.slot, "private"), f"no private libvirtd runs in {e.private}",
                  "`labbuilder up` starts it")
        return None
    return replace(host, bridges=bridges)


def resolve_hosts(topo: Topology, connect: str | None, inventory: Path | None,
                  root: Path, private: bool | None = None, start: bool | None = True) -> dict[str, Host]:
    """Host per slot of `topo`: inventory entries first, then --connect, then the local
    host. Slots on the same libvirt URI get one Host (with the inventory's bridges)."""
    mapped = load_inventory(inventory, topo, start) if inventory else {}
    missing = [h.name for h in topo.hosts if h.name not in mapped]
    if missing:
        default = Host(connect) if connect else local_host(root, private, start)
        if default is None:
            raise TopologyError([Problem(str(root), None, "", "no private libvirtd runs here "
                                         "(nothing was brought up with this state directory)")])
        default = next((h for h in mapped.values() if h.uri == default.uri), default)
        mapped.update({s: default for s in missing})
    return mapped

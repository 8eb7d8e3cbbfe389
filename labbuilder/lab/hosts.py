"""Where a lab's host slots land: --connect, a host inventory file (model/inventory), or
the local host — its running libvirtd if there is one, else a private libvirtd in its
own namespaces — and what is found about each at run time. An inventory's pool gives
the hosts a placement (lab/placement) puts each team's slots on."""

from __future__ import annotations

import _socket  # not socket: its enum classes cost every `down` ≈ 1.5 ms of CPU at start
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from labbuilder.model.errors import Problem, TopologyError
from labbuilder.model.inventory import Inventory, PoolHost, PrivateDirs, SlotEntry, check_connect, load_inventory
from labbuilder.model.topology import Topology
from labbuilder.system import privatelibvirtd

SYSTEM_SOCKET = Path("/run/libvirt/libvirt-sock")
SYSTEM_URI = "qemu:///system"
XEN_URI = "xen:///system"  # libvirt's xen (libxl) driver on a Xen dom0
STATE_ENV = "LABBUILDER_STATE"


@dataclass(frozen=True)
class HostRuntime:
    """What is found about a host when a command runs (not what the inventory says):
    whether its libvirtd runs yet, and how this machine reaches into a private libvirtd's
    namespaces, where its guests and files are."""

    running: bool = True  # False: a private libvirtd `up` would start; nothing exists on it yet
    netns: str | None = None  # a private libvirtd's network namespace (/proc/PID/ns/net); None: the host's
    ssh_prefix: tuple[str, ...] = ()  # e.g. nsenter into that network namespace, to reach guests
    files_prefix: tuple[str, ...] = ()  # e.g. nsenter into its mount namespace, to read its files


@dataclass(frozen=True)
class Host:
    """Where a host slot lands (its placement: a libvirt URI, a label to show, the
    inventory's bridges there), and its runtime facts."""

    uri: str
    label: str = ""
    bridges: tuple[tuple[str, str], ...] = ()  # (network, existing host bridge) joined on this host
    runtime: HostRuntime = HostRuntime()
    pool_name: str = ""  # its name in the inventory's pool, when teams are placed on it by capacity

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
    """True if the system libvirtd (or systemd, for it) accepts connections on its socket."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(2)
        sock.connect(str(SYSTEM_SOCKET))
        return True
    except OSError:
        return False
    finally:
        sock.close()


def private_host(state_dir: Path, start: bool | None = True, label: str = "private libvirtd") -> Host | None:
    """The private libvirtd in `state_dir`: started if `start` and not running; with
    `start` None, a stand-in Host (running=False) for the one `up` would start."""
    daemon = privatelibvirtd.ensure(state_dir) if start else privatelibvirtd.attach(state_dir)
    if daemon is None and start is None:
        return Host(_private_uri(state_dir), f"{label} (not started yet)", runtime=HostRuntime(running=False))
    if daemon is None:
        return None
    return Host(daemon.uri, label, runtime=HostRuntime(netns=daemon.netns, ssh_prefix=tuple(daemon.nsenter_argv()),
                                                       files_prefix=tuple(daemon.nsenter_files_argv())))


def _private_uri(state_dir: Path) -> str:
    """The URI of the private libvirtd in `state_dir`, running or not."""
    return privatelibvirtd.PrivateDaemon(Path(state_dir).resolve(), 0).uri


PRIVATE_DIRS = PrivateDirs(uri=_private_uri, unfit=privatelibvirtd.unfit_state_dir)


def system_uri(topo: Topology) -> str:
    """The local host's libvirt driver for the topology's domains: QEMU's, or Xen's for domain_type xen."""
    return XEN_URI if topo.domain_type == "xen" else SYSTEM_URI


def _default_host(connect: str | None, root: Path, private: bool, start: bool | None, system: str) -> Host | None:
    """Where a slot lands without an inventory entry: --connect, else the local host's
    libvirtd (`system`, its URI) or, with `private`, the private one (None if it does not
    run and `start` is False)."""
    if connect:
        return Host(connect)
    return private_host(root / "libvirtd", start) if private else Host(system)


def _inventory(topo: Topology, connect: str | None, inventory: Path | None, root: Path,
               private: bool | None) -> tuple[Inventory, str, bool]:
    """The inventory checked whole (an empty one without --hosts), where an entry with
    neither uri nor private lands, and whether that is a private libvirtd. A domain_type
    xen lab lands on the local Xen driver, never on a private libvirtd of its own (QEMU's),
    unless `private` asks for one."""
    check_connect(connect)
    if not connect and private is None:
        private = topo.domain_type != "xen" and not system_libvirtd_runs()
    default_uri = connect or (_private_uri(root / "libvirtd") if private else system_uri(topo))
    found = load_inventory(inventory, topo, default_uri, PRIVATE_DIRS) if inventory else Inventory({})
    return found, default_uri, bool(private)


def resolve_hosts(topo: Topology, connect: str | None, inventory: Path | None,
                  root: Path, private: bool | None = None, start: bool | None = True,
                  check: Callable[[dict[str, Host]], None] | None = None) -> dict[str, Host]:
    """Host per slot of `topo`: its inventory entry, else --connect, else the local host
    (its libvirtd, or a private one under `root`). The inventory is checked whole, and
    `check` is given where each slot lands (URI and bridges), before a private libvirtd is
    started (`start` as for private_host). Slots on one libvirt URI get one Host, with the
    bridges the inventory joins there. Not for an inventory with a pool, which fixes no
    slot (pool_hosts, and lab/placement)."""
    listed, default_uri, private = _inventory(topo, connect, inventory, root, private)
    if listed.pool:
        raise ValueError("an inventory with a pool fixes no slot: its teams are placed on pool_hosts")
    shared = {e.lands_on: e.bridges for e in listed.slots.values()}
    entries = [listed.slots.get(h.name) or SlotEntry(h.name, bridges=shared.get(default_uri, ()), lands_on=default_uri)
               for h in topo.hosts]
    if check:
        check(_one_host_per_uri({e.slot: Host(e.lands_on, bridges=e.bridges) for e in entries}))
    default = None
    if any(not (e.uri or e.private) for e in entries):
        default = _default_host(connect, root, private, start, system_uri(topo))
        if default is None:
            raise TopologyError([Problem(str(root), None, "", "no private libvirtd runs here "
                                         "(nothing was brought up with this state directory)")])
    return _one_host_per_uri({e.slot: _host(e, default, start, inventory) for e in entries})


def pool_hosts(topo: Topology, connect: str | None, inventory: Path | None, root: Path,
               private: bool | None = None, start: bool | None = True,
               check: Callable[[dict[str, Host]], None] | None = None) -> tuple[tuple[PoolHost, Host], ...] | None:
    """The hosts of the inventory's pool, in its order, each with its Host (private
    libvirtds started as `start` says; start False: one that does not run is left out,
    nothing being there); None if the inventory has no pool. `check` is given where each
    pool host lands (its name → URI and bridges), before a private libvirtd is started."""
    listed, _, private = _inventory(topo, connect, inventory, root, private)
    if not listed.pool:
        return None
    if check:
        check({h.name: Host(h.entry.lands_on, bridges=h.entry.bridges) for h in listed.pool})
    default = None
    if any(not (h.entry.uri or h.entry.private) for h in listed.pool):
        default = _default_host(connect, root, private, start, system_uri(topo))
    found = []
    for member in listed.pool:
        e = member.entry
        if e.uri:
            host = Host(e.uri)
        elif e.private:
            host = private_host(e.private, start, label=member.name)
        else:
            host = default
        if host is not None:
            label = member.name + (" (not started yet)" if not host.runtime.running else "")
            found.append((member, replace(host, label=label, bridges=e.bridges, pool_name=member.name)))
    return tuple(found)


def every_host(topo: Topology, connect: str | None, inventory: Path | None, root: Path,
               private: bool | None = None, start: bool | None = False) -> tuple[Host, ...]:
    """Every running host a team of the lab may be on: the pool's, or where its slots land
    (start False: no private libvirtd running there is an error, as in resolve_hosts)."""
    pool = pool_hosts(topo, connect, inventory, root, private, start)
    hosts = [h for _, h in pool] if pool is not None else \
        resolve_hosts(topo, connect, inventory, root, private, start=start).values()
    return tuple({h.uri: h for h in hosts if h.runtime.running}.values())


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

"""Where a lab's host slots land: --connect, a host inventory file, or the local host —
its running libvirtd if there is one, else a private libvirtd in its own namespaces."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from . import privatelibvirtd
from .errors import TopologyError, Problem
from .plan import Host
from .yamlcheck import Checker, load_with_marks

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


def private_host(root: Path, start: bool | None = True) -> Host | None:
    """The private libvirtd under `root`/libvirtd: started if `start` and not running;
    with `start` None, a stand-in Host (running=False) for the one `up` would start."""
    daemon = privatelibvirtd.ensure(root / "libvirtd") if start else privatelibvirtd.attach(root / "libvirtd")
    if daemon is None and start is None:
        return Host(privatelibvirtd.PrivateLibvirtd(root / "libvirtd", 0).uri,
                    label="private libvirtd (not started yet)", running=False)
    if daemon is None:
        return None
    return Host(daemon.uri, tuple(daemon.nsenter_argv()), label="private libvirtd",
                files_prefix=tuple(daemon.nsenter_files_argv()))


def local_host(root: Path, private: bool | None = None, start: bool | None = True) -> Host | None:
    """qemu:///system if a libvirtd runs here (and private is not forced), else the private one."""
    if private is None:
        private = not system_libvirtd_runs()
    return private_host(root, start) if private else Host("qemu:///system")


def load_inventory(path: Path, slots: tuple[str, ...]) -> dict[str, Host]:
    """A host inventory: `hosts: {slot: uri}`; every slot must be a declared one."""
    data, marks = load_with_marks(path, TopologyError)
    c = Checker(path, marks, TopologyError)
    top = c.mapping(data, (), {"hosts": dict}, ("hosts",))
    found = {}
    for slot, uri in top.get("hosts", {}).items():
        if slot not in slots:
            c.problem(("hosts", slot), "not a host slot of this topology", "slots: " + ", ".join(slots))
        elif c.is_type(uri, str, ("hosts", slot)):
            found[slot] = Host(uri)
    c.done()
    return found


def resolve_hosts(slots: tuple[str, ...], connect: str | None, inventory: Path | None,
                  root: Path, private: bool | None = None, start: bool | None = True) -> dict[str, Host]:
    """Host per slot: inventory entries first, then --connect, then the local host."""
    mapped = load_inventory(inventory, slots) if inventory else {}
    missing = [s for s in slots if s not in mapped]
    if missing:
        default = Host(connect) if connect else local_host(root, private, start)
        if default is None:
            raise TopologyError([Problem(str(root), None, "", "no private libvirtd runs here "
                                         "(nothing was brought up with this state directory)")])
        mapped.update({s: default for s in missing})
    return mapped

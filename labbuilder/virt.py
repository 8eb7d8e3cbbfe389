"""The only module that imports `libvirt`: connections and the libvirt objects behind them."""

from __future__ import annotations

import libvirt

from .errors import HostError

# Undefine a domain together with everything libvirt keeps beside its definition.
_UNDEFINE_FLAGS = (
    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
    | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
    | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
    | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
)


def _ignore_error(_ctx: object, _err: object) -> None:
    """libvirt's default handler prints every error to stderr; we raise HostError instead."""


libvirt.registerErrorHandler(_ignore_error, None)


def connect(uri: str) -> libvirt.virConnect:
    """Open a read-write connection to `uri`; raise HostError if the host cannot be reached."""
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as e:
        raise HostError(f"cannot connect to libvirt at {uri}: {e.get_error_message()}") from None


def destroy_all(conn: libvirt.virConnect) -> None:
    """Stop and undefine every domain and every network on `conn`.

    For a throwaway private libvirtd only: it does not look at ownership.
    """
    for dom in conn.listAllDomains():
        _remove_domain(dom)
    for net in conn.listAllNetworks():
        _remove_network(net)


def _remove_domain(dom: libvirt.virDomain) -> None:
    """Destroy `dom` if it runs, then undefine it with its saved state and metadata."""
    name = dom.name()
    try:
        if dom.isActive():
            dom.destroy()
        if dom.isPersistent():
            dom.undefineFlags(_UNDEFINE_FLAGS)
    except libvirt.libvirtError as e:
        # A transient domain is gone as soon as it is destroyed.
        if e.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
            raise HostError(f"cannot remove domain {name}: {e.get_error_message()}") from None


def _remove_network(net: libvirt.virNetwork) -> None:
    """Destroy `net` if it is active, then undefine it."""
    name = net.name()
    try:
        if net.isActive():
            net.destroy()
        if net.isPersistent():
            net.undefine()
    except libvirt.libvirtError as e:
        if e.get_error_code() != libvirt.VIR_ERR_NO_NETWORK:
            raise HostError(f"cannot remove network {name}: {e.get_error_message()}") from None

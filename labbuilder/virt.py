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


def _call(what: str, fn, *args):
    """Call a libvirt function; turn libvirtError into HostError naming `what`."""
    try:
        return fn(*args)
    except libvirt.libvirtError as e:
        raise HostError(f"{what}: {e.get_error_message()}") from None


def define_network(conn: libvirt.virConnect, xml: str, start: bool = True) -> libvirt.virNetwork:
    """Define a persistent network from `xml` and start it."""
    net = _call("cannot define network", conn.networkDefineXML, xml)
    if start and not net.isActive():
        _call(f"cannot start network {net.name()}", net.create)
    return net


def ensure_pool(conn: libvirt.virConnect, name: str, xml: str) -> libvirt.virStoragePool:
    """The storage pool `name`, defined from `xml`, built and started if needed."""
    try:
        pool = conn.storagePoolLookupByName(name)
    except libvirt.libvirtError:
        pool = _call(f"cannot define storage pool {name}", conn.storagePoolDefineXML, xml)
        _call(f"cannot build storage pool {name}", pool.build, 0)
    if not pool.isActive():
        _call(f"cannot start storage pool {name}", pool.create)
    _call(f"cannot refresh storage pool {name}", pool.refresh)
    return pool


def volume_path(pool: libvirt.virStoragePool, name: str) -> str:
    return _call(f"no volume {name} in pool {pool.name()}", pool.storageVolLookupByName, name).path()


def create_volume(pool: libvirt.virStoragePool, xml: str) -> libvirt.virStorageVol:
    """Create a volume from `xml` in `pool` (qcow2 overlays are made by libvirt, O(1))."""
    return _call(f"cannot create volume in pool {pool.name()}", pool.createXML, xml, 0)


def upload_volume(conn: libvirt.virConnect, vol: libvirt.virStorageVol, data: bytes) -> None:
    """Write `data` into `vol` through the storage API (works for remote hosts too)."""
    stream = conn.newStream(0)
    _call(f"cannot upload to volume {vol.name()}", vol.upload, stream, 0, len(data), 0)
    sent = 0
    while sent < len(data):
        sent += _call("upload stream failed", stream.send, data[sent:sent + (1 << 20)])
    _call("upload stream failed", stream.finish)


def define_domain(conn: libvirt.virConnect, xml: str) -> libvirt.virDomain:
    return _call("cannot define domain", conn.defineXML, xml)


def start_domain(dom: libvirt.virDomain) -> None:
    if not dom.isActive():
        _call(f"cannot start domain {dom.name()}", dom.create)


def network_leases(conn: libvirt.virConnect, network: str) -> dict[str, str]:
    """MAC → IPv4 of the newest lease per MAC (dnsmasq keeps stale leases: compare expiry)."""
    net = _call(f"no network {network}", conn.networkLookupByName, network)
    newest: dict[str, tuple[int, str]] = {}
    for lease in _call(f"cannot read leases of {network}", net.DHCPLeases):
        if lease.get("type") != libvirt.VIR_IP_ADDR_TYPE_IPV4:
            continue
        mac, expiry = lease["mac"].lower(), lease.get("expirytime", 0)
        if mac not in newest or expiry > newest[mac][0]:
            newest[mac] = (expiry, lease["ipaddr"])
    return {mac: ip for mac, (_, ip) in newest.items()}

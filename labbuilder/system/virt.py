"""The only module that imports `libvirt`: connections and the libvirt objects behind them."""

from __future__ import annotations

import ipaddress
import os
import threading
import time
from dataclasses import dataclass
from typing import NamedTuple

import libvirt
from lxml import etree

from labbuilder.model.errors import HostError
from labbuilder.model.names import OWNER_NS

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


_loop_lock = threading.Lock()
_loop_started = False


def _event_loop() -> None:
    """libvirt's default event loop, run in a daemon thread, so connections deliver
    domain events (it must be registered before the first connection is opened)."""
    global _loop_started
    with _loop_lock:
        if _loop_started:
            return
        libvirt.virEventRegisterDefaultImpl()

        def run() -> None:
            while True:
                libvirt.virEventRunDefaultImpl()

        threading.Thread(target=run, name="libvirt-events", daemon=True).start()
        _loop_started = True


def alive(conn: libvirt.virConnect) -> bool:
    """Whether the connection is still open (a local check, no call to the daemon)."""
    try:
        return conn.isAlive() == 1
    except libvirt.libvirtError:
        return False


def connect(uri: str, keepalive: tuple[int, int] = (5, 6)) -> libvirt.virConnect:
    """Open a read-write connection to `uri`; raise HostError if the host cannot be reached.

    `keepalive` (interval s, count), as virsh's defaults: a daemon that answers nothing,
    not even a keepalive, for interval × (count + 1) s ends the calls waiting on it with an
    error instead of a wait forever.
    """
    _event_loop()
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError as e:
        raise HostError(f"cannot connect to libvirt at {uri}: {e.get_error_message()}", e.get_error_message()) from None
    try:
        conn.setKeepAlive(*keepalive)
    except libvirt.libvirtError:
        pass  # a driver without a daemon (test:///) has nothing to keep alive
    return conn


def domain_types(conn: libvirt.virConnect) -> set[str]:
    """The domain types (<domain type=…>) the host's driver runs, from its capabilities."""
    caps = etree.fromstring(_call("cannot read the host's capabilities", conn.getCapabilities).encode())
    return {d.get("type") for d in caps.iterfind("guest/arch/domain")}


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


def _when_idle(what: str, fn, *args, timeout: float = 30.0):
    """Call fn; while libvirt says the pool is busy with its own post-upload refresh
    (a short, internal job), try again."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn(*args)
        except libvirt.libvirtError as e:
            if "asynchronous jobs" not in (e.get_error_message() or "") or time.monotonic() > deadline:
                raise HostError(f"{what}: {e.get_error_message()}") from None
            time.sleep(0.2)


def define_network(conn: libvirt.virConnect, xml: str, start: bool = True) -> libvirt.virNetwork:
    """Define (or redefine, keeping its UUID) a persistent network from `xml`; start it."""
    net = _call("cannot define network", conn.networkDefineXML, _keep_uuid(xml, conn.networkLookupByName))
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
        _call(f"cannot start storage pool {name}", pool.create)  # starting reads its volumes
    # No refresh here: volumes made through the API are known already, and a refresh fails
    # while libvirt's own post-upload refresh runs ("asynchronous jobs running").
    return pool


def require_pool(conn: libvirt.virConnect, name: str) -> libvirt.virStoragePool:
    return _call(f"no storage pool {name}", conn.storagePoolLookupByName, name)


def start_pool(pool: libvirt.virStoragePool) -> None:
    """Start `pool` if it is not running (starting reads its volumes)."""
    if not pool.isActive():
        _call(f"cannot start storage pool {pool.name()}", pool.create)


def pool_path(pool: libvirt.virStoragePool) -> str:
    """The target path of a (dir) pool, as its definition gives it."""
    xml = _call(f"cannot read storage pool {pool.name()}", pool.XMLDesc, 0)
    return etree.fromstring(xml.encode()).findtext("target/path") or ""


def volume_path(pool: libvirt.virStoragePool, name: str) -> str:
    return _call(f"no volume {name} in pool {pool.name()}", pool.storageVolLookupByName, name).path()


def create_volume(pool: libvirt.virStoragePool, xml: str) -> libvirt.virStorageVol:
    """Create a volume from `xml` in `pool` (qcow2 overlays are made by libvirt, O(1))."""
    return _call(f"cannot create volume in pool {pool.name()}", pool.createXML, xml, 0)


def upload_volume(conn: libvirt.virConnect, vol: libvirt.virStorageVol, data: bytes) -> None:
    """Write `data` into `vol` through the storage API (works for remote hosts too)."""
    stream = conn.newStream(0)
    _call(f"cannot upload to volume {vol.name()}", vol.upload, stream, 0, len(data), 0)
    _send(stream, data)
    _call("upload stream failed", stream.finish)


def read_volume(conn: libvirt.virConnect, pool: libvirt.virStoragePool, name: str, limit: int = 4096) -> bytes:
    """The first `limit` bytes of volume `name`, through the storage API (remote hosts too)."""
    vol = _call(f"no volume {name} in pool {pool.name()}", pool.storageVolLookupByName, name)
    stream = conn.newStream(0)
    _call(f"cannot read volume {name}", vol.download, stream, 0, limit, 0)
    data = b""
    while len(data) < limit:
        chunk = _call(f"cannot read volume {name}", stream.recv, limit - len(data))
        if not chunk:
            break
        data += chunk
    _call(f"cannot read volume {name}", stream.finish)
    return data


def _keep_uuid(xml: str, lookup) -> str:
    """A redefinition must carry the existing object's UUID, or libvirt refuses it."""
    doc = etree.fromstring(xml.encode())
    try:
        existing = lookup(doc.findtext("name"))
    except libvirt.libvirtError:
        return xml
    if existing is None or doc.find("uuid") is not None:
        return xml
    etree.SubElement(doc, "uuid").text = existing.UUIDString()
    return etree.tostring(doc, encoding="unicode")


def define_domain(conn: libvirt.virConnect, xml: str) -> libvirt.virDomain:
    """Define (or redefine, keeping its UUID) a domain."""
    return _call("cannot define domain", conn.defineXML, _keep_uuid(xml, lambda n: lookup_domain(conn, n)))


def start_domain(dom: libvirt.virDomain, timeout: float = 300.0) -> None:
    """Start `dom`. If a start is under way already (one begun by a run that was killed
    while libvirt started the domain), wait for that start to end, then start the domain
    again only if it failed: `up` returns with every domain running, not paused. A
    domain paused otherwise (a checkpoint cut short leaves it so) is resumed."""
    if starting(dom):
        _wait_start_ended(dom, timeout)
    if not dom.isActive():
        _call(f"cannot start domain {dom.name()}", dom.create)
    elif _call(f"cannot read the state of {dom.name()}", dom.state)[0] == libvirt.VIR_DOMAIN_PAUSED:
        _call(f"cannot resume domain {dom.name()}", dom.resume)


# (state, reason) of a domain libvirt is starting: QEMU runs, its CPUs not yet
_STARTING = (libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_STARTING_UP)


def starting(dom: libvirt.virDomain) -> bool:
    """Whether libvirt is starting `dom` right now."""
    try:
        return tuple(dom.state()) == _STARTING
    except libvirt.libvirtError:
        return False  # gone meanwhile: dom.create says why


def _wait_start_ended(dom: libvirt.virDomain, timeout: float) -> None:
    """Until `dom` is no longer starting: woken by its lifecycle events (the start ending
    sends one), with a state read every 2 s in case an event is lost."""
    changed = threading.Event()
    conn = dom.connect()
    cb_id = _call(f"cannot watch domain {dom.name()}", conn.domainEventRegisterAny, dom,
                  libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, lambda *_: changed.set(), None)
    try:
        deadline = time.monotonic() + timeout
        while starting(dom):
            left = deadline - time.monotonic()
            if left <= 0:
                raise HostError(f"domain {dom.name()} has been starting for over {timeout:.0f} s (a start "
                                "begun by an earlier run): see its QEMU log on the host, or "
                                "`labbuilder reset --node` it")
            changed.wait(min(left, 2.0))
            changed.clear()
    finally:
        try:
            conn.domainEventDeregisterAny(cb_id)
        except libvirt.libvirtError:
            pass


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


# ---- ownership: every domain and network labbuilder defines carries <lb:owner …/> ----



@dataclass(frozen=True)
class HostObject:
    """A domain or network as read back from its host, each XML read once."""

    kind: str  # "domain" | "network"
    name: str
    owner: dict | None  # the ownership metadata; None: not labbuilder's
    active: bool
    macs: tuple[str, ...] = ()  # of a domain's NICs
    subnets: tuple[tuple[str, str], ...] = ()  # (address, prefix or netmask) of an active network
    starting: bool = False  # a domain libvirt is starting (paused, reason "starting up")
    paused: bool = False  # a domain paused otherwise (by a checkpoint or revert cut short, or by hand)
    memory_kib: int = 0  # a domain's memory
    entries: tuple[tuple[str, str, str, str], ...] = ()  # a domain's host entries in existing networks
    # (network, mac, ip, name), as its ownership metadata records them


def observe(conn: libvirt.virConnect) -> list[HostObject]:
    """Every domain and network on the host: ownership, state, MACs, subnets."""
    found = []
    for kind, objs in (("domain", conn.listAllDomains()), ("network", conn.listAllNetworks())):
        for obj in objs:
            try:
                doc = etree.fromstring(obj.XMLDesc(0).encode())
                if kind == "domain":  # one call for both: a qemu domain is inactive iff shut off
                    state = tuple(obj.state())
                    active = state[0] != libvirt.VIR_DOMAIN_SHUTOFF
                    starting = state == _STARTING
                    paused = state[0] == libvirt.VIR_DOMAIN_PAUSED and not starting
                else:
                    active, starting, paused = bool(obj.isActive()), False, False
            except libvirt.libvirtError:
                continue  # vanished meanwhile
            owner = doc.find(f"metadata/{{{OWNER_NS}}}owner")
            macs = tuple(m.get("address", "").lower() for m in doc.findall("devices/interface/mac"))
            subnets = tuple((ip.get("address"), ip.get("prefix") or ip.get("netmask"))
                            for ip in doc.findall("ip") if active and ip.get("address")
                            and (ip.get("prefix") or ip.get("netmask")))
            entries = tuple((e.get("network", ""), e.get("mac", ""), e.get("ip", ""), e.get("name", ""))
                            for e in (owner.findall(f"{{{OWNER_NS}}}entry") if owner is not None else ()))
            found.append(HostObject(kind, obj.name(), dict(owner.attrib) if owner is not None else None,
                                    active, macs, subnets, starting, paused, _memory_kib(doc), entries))
    return found


def _memory_kib(doc) -> int:
    """A domain's <memory> in KiB (libvirt gives its XML in KiB); 0 for a network."""
    text = doc.findtext("memory") if doc.tag == "domain" else None
    return int(text) if text and text.isdigit() else 0


def owned(objects: list[HostObject], lab: str | None = None, team: int | None = None) -> list[HostObject]:
    """The objects whose ownership metadata matches `lab` (and `team`)."""
    return [o for o in objects if o.owner and (lab is None or o.owner.get("lab") == lab) and
            (team is None or o.owner.get("team") == str(team))]


def owned_objects(conn: libvirt.virConnect, lab: str | None = None, team: int | None = None) -> list[HostObject]:
    """Domains and networks on the host whose ownership metadata matches `lab` (and `team`)."""
    return owned(observe(conn), lab, team)


def lookup_domain(conn: libvirt.virConnect, name: str) -> libvirt.virDomain | None:
    try:
        return conn.lookupByName(name)
    except libvirt.libvirtError:
        return None


def lookup_pool(conn: libvirt.virConnect, name: str) -> libvirt.virStoragePool | None:
    try:
        return conn.storagePoolLookupByName(name)
    except libvirt.libvirtError:
        return None


def remove_domain(conn: libvirt.virConnect, name: str) -> None:
    dom = lookup_domain(conn, name)
    if dom is not None:
        _remove_domain(dom)


def remove_network(conn: libvirt.virConnect, name: str) -> None:
    try:
        _remove_network(conn.networkLookupByName(name))
    except libvirt.libvirtError:
        pass


def stop_domain(conn: libvirt.virConnect, name: str) -> None:
    dom = lookup_domain(conn, name)
    if dom is not None and dom.isActive():
        try:
            dom.destroy()
        except libvirt.libvirtError as e:
            if e.get_error_code() != libvirt.VIR_ERR_OPERATION_INVALID:
                raise HostError(f"cannot stop {name}: {e.get_error_message()}") from None


def remove_pool(conn: libvirt.virConnect, name: str, last: str | None = None) -> None:
    """Delete every volume of pool `name` (volume `last` after all the others), then the
    pool itself."""
    pool = lookup_pool(conn, name)
    if pool is None:
        return
    start_pool(pool)
    for vol in sorted(pool.listAllVolumes(), key=lambda v: v.name() == last):
        _when_idle(f"cannot delete volume {vol.name()}", vol.delete, 0)
    _when_idle(f"cannot stop pool {name}", pool.destroy)
    try:
        pool.delete(0)
    except libvirt.libvirtError:
        pass  # directory already gone
    _call(f"cannot undefine pool {name}", pool.undefine)


def delete_volume(pool: libvirt.virStoragePool, name: str) -> None:
    try:
        pool.storageVolLookupByName(name).delete(0)
    except libvirt.libvirtError:
        pass


def volume_names(pool: libvirt.virStoragePool) -> set[str]:
    return {v.name() for v in _call(f"cannot list volumes of {pool.name()}", pool.listAllVolumes)}


def pool_free(pool: libvirt.virStoragePool) -> int:
    """Bytes free for new volumes in `pool`, as its host sees them now."""
    _when_idle(f"cannot refresh pool {pool.name()}", pool.refresh, 0)
    return int(_call(f"cannot read pool {pool.name()}", pool.info)[3])


def first_pool_free(conn: libvirt.virConnect, names: tuple[str, ...]) -> int | None:
    """pool_free of the first of the pools `names` that exists and runs; None if none does."""
    for name in names:
        pool = lookup_pool(conn, name)
        if pool is not None and pool.isActive():
            return pool_free(pool)
    return None


def pools_allocation(conn: libvirt.virConnect, names) -> int:
    """Bytes the volumes of the running pools whose names `names(name)` accepts take on
    their host's disks (their allocation, not their size)."""
    total = 0
    for pool in _call("cannot list storage pools", conn.listAllStoragePools):
        if names(pool.name()) and pool.isActive():
            total += sum(_call(f"cannot read volume {vol.name()}", vol.info)[2]
                         for vol in _call(f"cannot list volumes of {pool.name()}", pool.listAllVolumes))
    return total


def node_memory(conn: libvirt.virConnect) -> int:
    """Bytes of memory the host has, as libvirt reports it."""
    return int(_call("cannot read the host's memory", conn.getInfo)[1]) << 20


def upload_file(conn: libvirt.virConnect, vol: libvirt.virStorageVol, path: str) -> None:
    """Stream a local file into `vol` (base images reach remote hosts this way)."""
    size = os.path.getsize(path)
    stream = conn.newStream(0)
    _call(f"cannot upload to volume {vol.name()}", vol.upload, stream, 0, size, 0)
    with open(path, "rb") as f:
        while chunk := f.read(4 << 20):
            _send(stream, chunk)
    _call("upload stream failed", stream.finish)


def _send(stream, chunk: bytes) -> None:
    sent = 0
    while sent < len(chunk):
        sent += _call("upload stream failed", stream.send, chunk[sent:])


def domain_state(conn: libvirt.virConnect, name: str) -> str:
    dom = lookup_domain(conn, name)
    if dom is None:
        return "absent"
    state = tuple(dom.state())
    if state == _STARTING:
        return "starting"
    return {libvirt.VIR_DOMAIN_RUNNING: "running", libvirt.VIR_DOMAIN_SHUTOFF: "shut off",
            libvirt.VIR_DOMAIN_PAUSED: "paused", libvirt.VIR_DOMAIN_CRASHED: "crashed"}.get(state[0], "other")


def network_info(conn: libvirt.virConnect, name: str) -> tuple[bool, str] | None:
    """(active, bridge) of network `name`, or None if it does not exist."""
    try:
        net = conn.networkLookupByName(name)
        return bool(net.isActive()), net.bridgeName() if net.isActive() else ""
    except libvirt.libvirtError:
        return None


# ---- networks that exist on the host (`existing:`): read, and only their host entries changed ----

class NetworkFacts(NamedTuple):
    """A libvirt network labbuilder did not define, as its host has it."""

    name: str
    active: bool
    mode: str  # its forward mode (nat, route, open, bridge …); "isolated" without <forward>
    bridge: str  # its Linux bridge, if it names one
    address: str | None  # the host's IPv4 address on it (libvirt's <ip>): the guests' gateway
    prefix: int | None
    dhcp: tuple[str, str] | None  # its first DHCP range
    dhcp_hosts: tuple[tuple[str, str, str], ...] = ()  # (mac, ip, name): its static DHCP host entries
    dns_hosts: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (ip, hostnames): its DNS host entries


def _network_defs(net: libvirt.virNetwork) -> list[tuple[int, etree._Element]]:
    """(update flags, XML) of the network as it runs and as it is defined: a host entry is
    added to and removed from each where it is missing or present. A driver that cannot
    show the definition of a running network apart (libvirt's test driver) gives one XML
    for both."""
    read = lambda flags=0: etree.fromstring(_call(f"cannot read network {net.name()}", net.XMLDesc, flags).encode())
    live, config = libvirt.VIR_NETWORK_UPDATE_AFFECT_LIVE, libvirt.VIR_NETWORK_UPDATE_AFFECT_CONFIG
    if not net.isActive():
        return [(config, read())]
    if not net.isPersistent():
        return [(live, read())]
    try:
        defined = read(libvirt.VIR_NETWORK_XML_INACTIVE)
    except HostError:
        return [(live | config, read())]
    return [(live, read()), (config, defined)]


def _dhcp_ip(doc: etree._Element) -> etree._Element | None:
    """The IPv4 <ip> libvirt serves DHCP on, else the first IPv4 one."""
    ips = [ip for ip in doc.findall("ip") if ip.get("family", "ipv4") == "ipv4" and ip.get("address")]
    return next((ip for ip in ips if ip.find("dhcp") is not None), ips[0] if ips else None)


def _prefix(ip: etree._Element) -> int | None:
    try:
        if ip.get("prefix"):
            return int(ip.get("prefix"))
        return ipaddress.IPv4Network(f"0.0.0.0/{ip.get('netmask')}").prefixlen if ip.get("netmask") else None
    except ValueError:
        return None


def _dhcp_hosts(doc: etree._Element) -> list[tuple[str, str, str]]:
    return [((h.get("mac") or "").lower(), h.get("ip") or "", h.get("name") or "")
            for h in doc.findall("ip/dhcp/host")]


def _dns_hosts(doc: etree._Element) -> list[tuple[str, tuple[str, ...]]]:
    return [(h.get("ip") or "", tuple(n.text or "" for n in h.findall("hostname"))) for h in doc.findall("dns/host")]


def read_network(conn: libvirt.virConnect, name: str) -> NetworkFacts | None:
    """What the host's network `name` is (None: it does not exist): its mode, addressing,
    and the host entries of its running state and its definition together."""
    try:
        net = conn.networkLookupByName(name)
        defs = _network_defs(net)
        active = bool(net.isActive())
    except libvirt.libvirtError:
        return None  # none, or gone meanwhile
    doc = defs[0][1]
    forward, bridge, ip = doc.find("forward"), doc.find("bridge"), _dhcp_ip(doc)
    dhcp = ip.find("dhcp/range") if ip is not None else None
    return NetworkFacts(
        name, active, (forward.get("mode") or "nat") if forward is not None else "isolated",
        bridge.get("name", "") if bridge is not None else "",
        ip.get("address") if ip is not None else None, _prefix(ip) if ip is not None else None,
        (dhcp.get("start"), dhcp.get("end")) if dhcp is not None else None,
        tuple(dict.fromkeys(h for _, d in defs for h in _dhcp_hosts(d))),
        tuple(dict.fromkeys(h for _, d in defs for h in _dns_hosts(d))))


def _host_entry_xml(mac: str, ip: str, name: str) -> tuple[str, str]:
    """The <host> of a static DHCP entry and of a DNS entry, as virNetworkUpdate takes them."""
    dhcp = etree.Element("host", mac=mac, name=name, ip=ip)
    dns = etree.Element("host", ip=ip)
    etree.SubElement(dns, "hostname").text = name
    return etree.tostring(dhcp, encoding="unicode"), etree.tostring(dns, encoding="unicode")


def add_host_entry(conn: libvirt.virConnect, network: str, mac: str, ip: str, name: str) -> None:
    """Add the static DHCP host entry mac → ip (hostname `name`) and the DNS host entry
    ip → name to `network`, live and in its definition: each part only where it is not
    there yet (a run cut short may have added some). libvirt refuses one whose MAC, address
    or name another entry has."""
    net = _call(f"no network {network} on this host", conn.networkLookupByName, network)
    _update_host_entry(net, libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST, mac, ip, name)


def remove_host_entry(conn: libvirt.virConnect, network: str, mac: str, ip: str, name: str) -> bool:
    """Remove exactly the entries add_host_entry made (all of MAC, address and name equal),
    live and from the definition, where they are; an entry that differs is not touched,
    and a network that is gone has none. True if anything was removed."""
    try:
        net = conn.networkLookupByName(network)
    except libvirt.libvirtError:
        return False
    return _update_host_entry(net, libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE, mac, ip, name)


def _update_host_entry(net: libvirt.virNetwork, command: int, mac: str, ip: str, name: str) -> bool:
    """ADD_LAST each part of the entry (static DHCP host, DNS host) where it is missing, or
    DELETE it where it is there, in the network's running state and its definition: one
    update per part, flagged for every place it applies to. True if any was made."""
    dhcp_xml, dns_xml = _host_entry_xml(mac, ip, name)
    adding = command == libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST
    defs = _network_defs(net)
    updated = False
    for section, xml, has in ((libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST, dhcp_xml,
                               lambda doc: (mac, ip, name) in _dhcp_hosts(doc)),
                              (libvirt.VIR_NETWORK_SECTION_DNS_HOST, dns_xml,
                               lambda doc: (ip, (name,)) in _dns_hosts(doc))):
        flags = sum(flag for flag, doc in defs if has(doc) != adding)  # each def's own bits: LIVE, CONFIG
        if flags:  # none would be libvirt's AFFECT_CURRENT
            _call(f"cannot update network {net.name()}", net.update, command, section, -1, xml, flags)
            updated = True
    return updated


def pool_names(conn: libvirt.virConnect) -> list[str]:
    return [p.name() for p in conn.listAllStoragePools()]


def is_idle(conn: libvirt.virConnect) -> bool:
    """No running domain and no active network on this host."""
    return not conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE) and \
        not conn.listAllNetworks(libvirt.VIR_CONNECT_LIST_NETWORKS_ACTIVE)


# ---- metadata beside the ownership: the config stage's record of finished roles ----

def domain_metadata(conn: libvirt.virConnect, name: str, ns: str) -> str | None:
    """The domain's metadata element in namespace `ns` (live if running), or None."""
    dom = lookup_domain(conn, name)
    if dom is None:
        return None
    try:
        return dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, ns, 0)
    except libvirt.libvirtError:
        return None  # VIR_ERR_NO_DOMAIN_METADATA: nothing recorded yet


def set_domain_metadata(conn: libvirt.virConnect, name: str, ns: str, prefix: str, xml: str) -> None:
    """Replace the metadata element in namespace `ns`, in the definition and (if running) live."""
    dom = _call(f"no domain {name}", conn.lookupByName, name)
    flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG | (libvirt.VIR_DOMAIN_AFFECT_LIVE if dom.isActive() else 0)
    _call(f"cannot record metadata on {name}", dom.setMetadata,
          libvirt.VIR_DOMAIN_METADATA_ELEMENT, xml, prefix, ns, flags)


# ---- internal snapshots with memory state: the checkpoints ----

@dataclass(frozen=True)
class Snapshot:
    name: str
    description: str
    created: int
    state: str  # the domain's state when it was taken: running, paused, shutoff


def _snapshot_from_xml(xml: str) -> Snapshot:
    doc = etree.fromstring(xml.encode())
    return Snapshot(doc.findtext("name"), doc.findtext("description") or "",
                    int(doc.findtext("creationTime") or 0), doc.findtext("state") or "")


def snapshots(conn: libvirt.virConnect, name: str) -> list[Snapshot]:
    """The domain's snapshots, oldest first; [] if the domain does not exist."""
    dom = lookup_domain(conn, name)
    if dom is None:
        return []
    found = [_snapshot_from_xml(s.getXMLDesc(0)) for s in _call(f"cannot list snapshots of {name}", dom.listAllSnapshots)]
    return sorted(found, key=lambda s: s.created)


def suspend_domain(conn: libvirt.virConnect, name: str) -> None:
    dom = _call(f"no domain {name}", conn.lookupByName, name)
    if dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING:
        _call(f"cannot pause {name}", dom.suspend)


def resume_domain(conn: libvirt.virConnect, name: str) -> None:
    dom = _call(f"no domain {name}", conn.lookupByName, name)
    if dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED:
        _call(f"cannot resume {name}", dom.resume)


def create_snapshot(conn: libvirt.virConnect, name: str, snapshot: str, description: str) -> None:
    """An internal snapshot of disks and (if the domain runs) memory; replaces one of the same name."""
    dom = _call(f"no domain {name}", conn.lookupByName, name)
    delete_snapshot(conn, name, snapshot)
    doc = etree.Element("domainsnapshot")
    etree.SubElement(doc, "name").text = snapshot
    etree.SubElement(doc, "description").text = description
    _call(f"cannot take snapshot {snapshot} of {name}", dom.snapshotCreateXML,
          etree.tostring(doc, encoding="unicode"), libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC)


def revert_snapshot(conn: libvirt.virConnect, name: str, snapshot: str, running: bool = True) -> None:
    """Back to `snapshot`: running (memory state restored) or, without `running`, paused."""
    dom = _call(f"no domain {name}", conn.lookupByName, name)
    snap = _call(f"{name} has no snapshot {snapshot}", dom.snapshotLookupByName, snapshot, 0)
    flags = libvirt.VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING if running else libvirt.VIR_DOMAIN_SNAPSHOT_REVERT_PAUSED
    _call(f"cannot revert {name} to {snapshot}", dom.revertToSnapshot, snap, flags | libvirt.VIR_DOMAIN_SNAPSHOT_REVERT_FORCE)


def delete_snapshot(conn: libvirt.virConnect, name: str, snapshot: str, metadata_only: bool = False) -> bool:
    """Delete `snapshot` of domain `name` if it exists; True if there was one."""
    dom = lookup_domain(conn, name)
    if dom is None:
        return False
    try:
        snap = dom.snapshotLookupByName(snapshot, 0)
    except libvirt.libvirtError:
        return False
    flags = libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY if metadata_only else 0
    _call(f"cannot delete snapshot {snapshot} of {name}", snap.delete, flags)
    return True


def set_guest_time(conn: libvirt.virConnect, name: str, now: float) -> bool:
    """Set the guest's clock to `now` through its guest agent; False if there is no agent
    answering (the caller falls back to another way)."""
    dom = lookup_domain(conn, name)
    if dom is None:
        return False
    try:
        dom.setTime({"seconds": int(now), "nseconds": int((now % 1) * 1e9)}, 0)
        return True
    except libvirt.libvirtError:
        return False


def add_authorized_key(conn: libvirt.virConnect, name: str, user: str, key: str) -> bool:
    """Add `key` to `user`'s authorized SSH keys in the guest, through its guest agent (a key
    already there is not added twice); False if no agent answers."""
    dom = lookup_domain(conn, name)
    if dom is None:
        return False
    try:
        dom.authorizedSSHKeysSet(user, [key], libvirt.VIR_DOMAIN_AUTHORIZED_SSH_KEYS_SET_APPEND)
        return True
    except libvirt.libvirtError:
        return False


def flush_guest_filesystems(conn: libvirt.virConnect, name: str) -> bool:
    """Make the guest write out its file systems (freeze, then thaw at once, through the
    guest agent), so a disk saved now is not missing what the guest wrote just before;
    False if no agent answers."""
    dom = lookup_domain(conn, name)
    if dom is None:
        return False
    try:
        dom.fsFreeze()
    except libvirt.libvirtError:
        return False
    _call(f"cannot thaw the file systems of {name}", dom.fsThaw)
    return True


# ---- boot events ----

class GuestWatch:
    """What a booting domain reports through events: its guest agent connecting (the
    guest is up far enough to run its services) and the domain stopping or crashing (no
    point waiting any longer). Use as a context manager; the callbacks go at exit."""

    def __init__(self, conn: libvirt.virConnect, name: str):
        self.name = name
        self._conn = conn
        self._cond = threading.Condition()
        self.agent = False
        self.stopped: str | None = None  # why the domain is gone, once it is
        dom = _call(f"no domain {name}", conn.lookupByName, name)
        self._ids: list[int] = []
        try:
            for event, callback in ((libvirt.VIR_DOMAIN_EVENT_ID_AGENT_LIFECYCLE, self._on_agent),
                                    (libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_lifecycle)):
                self._ids.append(_call(f"cannot watch domain {name}", conn.domainEventRegisterAny,
                                       dom, event, callback, None))
        except HostError:
            self.__exit__()
            raise
        # Events tell what changes from now on; read where it stands first.
        try:
            if not dom.isActive():
                self._set(stopped="is not running")
            elif _agent_connected(dom.XMLDesc(0)):
                self._set(agent=True)
        except libvirt.libvirtError:
            self._set(stopped="vanished")

    def __enter__(self) -> "GuestWatch":
        return self

    def __exit__(self, *_exc) -> None:
        for cb_id in self._ids:
            try:
                self._conn.domainEventDeregisterAny(cb_id)
            except libvirt.libvirtError:
                pass  # the connection went first

    def _set(self, agent: bool | None = None, stopped: str | None = None) -> None:
        with self._cond:
            if agent is not None:
                self.agent = agent
            if stopped is not None:
                self.stopped = stopped
            self._cond.notify_all()

    def _on_agent(self, _conn, _dom, state: int, _reason: int, _opaque) -> None:
        self._set(agent=state == libvirt.VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_STATE_CONNECTED)

    def _on_lifecycle(self, _conn, _dom, event: int, detail: int, _opaque) -> None:
        if event == libvirt.VIR_DOMAIN_EVENT_STOPPED:
            why = {libvirt.VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN: "shut down",
                   libvirt.VIR_DOMAIN_EVENT_STOPPED_CRASHED: "crashed",
                   libvirt.VIR_DOMAIN_EVENT_STOPPED_FAILED: "failed"}.get(detail, "stopped")
            self._set(stopped=why)
        elif event == libvirt.VIR_DOMAIN_EVENT_CRASHED:
            self._set(stopped="crashed")

    def wait(self, timeout: float, agent: bool = False) -> None:
        """Sleep up to `timeout` seconds, waking early if the domain stops (and, with
        `agent`, when its guest agent connects); HostError once the domain is gone."""
        with self._cond:
            self._cond.wait_for(lambda: self.stopped is not None or (agent and self.agent), timeout)
        self.check()

    def check(self) -> None:
        if self.stopped is not None:
            raise HostError(f"domain {self.name} {self.stopped} before it answered")


def _agent_connected(xml: str) -> bool:
    target = etree.fromstring(xml.encode()).find("devices/channel/target[@name='org.qemu.guest_agent.0']")
    return target is not None and target.get("state") == "connected"

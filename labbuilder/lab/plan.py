"""Plan: a validated Topology + team + where its host slots land → LabPlan, every concrete
name, MAC, IP, bridge and volume. Pure: no libvirt, no files."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, NamedTuple

from labbuilder.model.errors import Problem, TopologyError
from labbuilder.model.names import bridge_name, derived_mac, libvirt_name, pool_name
from labbuilder.model.topology import Network, Node, Topology
from labbuilder.model.uri import XEN_HINT, uri_driver

if TYPE_CHECKING:
    from labbuilder.lab.hosts import Host
    from labbuilder.system.virt import NetworkFacts

# What the hosts' `existing:` networks are, read before planning: (host URI, libvirt name)
# → its facts, None where the host has no such network.
ExistingNetworks = Mapping[tuple[str, str], "NetworkFacts | None"]

@dataclass(frozen=True)
class BaseImage:
    name: str
    path: str  # local file, uploaded to each host's base pool
    sha256: str
    size: int
    virtual_size: int

    @property
    def volume(self) -> str:
        return f"{self.name}-{self.sha256[:12]}.qcow2"


class HostEntry(NamedTuple):
    """A static DHCP host entry (MAC → address, hostname) and its DNS host entry (address →
    hostname) that labbuilder adds to a network that exists on the host, recorded in its
    node's domain metadata: the network's XML has no room to say whose an entry is."""

    network: str  # the existing network's libvirt name
    mac: str
    ip: str
    name: str  # the node's hostname


@dataclass(frozen=True)
class NetworkPlan:
    name: str  # the topology's
    libvirt_name: str
    host: Host
    mode: str
    bridge: str
    subnet: ipaddress.IPv4Network | None
    gateway: ipaddress.IPv4Address | None
    dhcp: tuple[ipaddress.IPv4Address, ipaddress.IPv4Address] | None
    dns_domain: str  # the network's DNS domain ("" for none)
    static_hosts: tuple[tuple[str, str, str], ...]  # (mac, ip, hostname) static DHCP entries
    existing: bool = False  # the host's own network (`existing:`): only its static_hosts are labbuilder's


@dataclass(frozen=True)
class NicPlan:
    guest_name: str
    network: str  # the topology's name of its network
    libvirt_network: str  # the libvirt name of its network
    mac: str
    ip: ipaddress.IPv4Address | None
    prefix: int | None
    dhcp: bool  # the guest uses DHCP (its network has DHCP); the lease is fixed if ip is set
    configure: bool
    joined: bool = False  # its network is joined to a host bridge: the host has no address there
    host_bridge: str = ""  # the existing host bridge it is on (a bridge-mode or joined network); "": libvirt's own


@dataclass(frozen=True)
class DiskPlan:
    target: str
    volume: str
    size_bytes: int
    bus: str


@dataclass(frozen=True)
class NodePlan:
    name: str  # the topology's = its hostname
    domain: str  # libvirt domain name
    host: Host
    roles: tuple[str, ...]
    memory_mib: int
    vcpus: int
    image: BaseImage
    nics: tuple[NicPlan, ...]
    disks: tuple[DiskPlan, ...]
    fqdn: str
    root_bytes: int = 0  # the topology's `disk:`; 0: the image's own size
    entries: tuple[HostEntry, ...] = ()  # its host entries in existing networks (its metadata records them)

    @property
    def vda_bytes(self) -> int:
        """The root disk's size: the topology's `disk:`, never less than the image's."""
        return max(self.root_bytes, self.image.virtual_size)

    @property
    def vda(self) -> str:
        return f"{self.name}-vda.qcow2"

    @property
    def seed_volume(self) -> str:
        return f"{self.name}-seed.iso"

    @property
    def lab_ip(self) -> str | None:
        """The address the other nodes know it by (their /etc/hosts): its first fixed one."""
        return next((str(n.ip) for n in self.nics if n.ip and n.configure), None)

    @property
    def ssh_ip(self) -> str | None:
        """The first address reachable from the host (every lab network has the host on it,
        but one joined to a host bridge)."""
        return next((str(n.ip) for n in self.nics if n.ip and n.configure and not n.joined), None)


@dataclass(frozen=True)
class LabPlan:
    lab: str
    team: int
    topology_path: str
    pool: str
    networks: tuple[NetworkPlan, ...]
    nodes: tuple[NodePlan, ...]
    memory_note: str = ""
    packages: str = "cache"  # the guests' package source (Topology.packages)

    @property
    def hosts(self) -> tuple[Host, ...]:
        seen: dict[str, Host] = {}
        for obj in (*self.networks, *self.nodes):
            seen.setdefault(obj.host.uri, obj.host)
        return tuple(seen.values())

    def node(self, name: str) -> NodePlan:
        return next(n for n in self.nodes if n.name == name)


def _network_plan(topo: Topology, net: Network, team: int, host: Host, hosts: dict[str, Host],
                  existing: ExistingNetworks) -> NetworkPlan:
    if net.existing:
        return _existing_network_plan(topo, net, team, host, hosts, existing.get((host.uri, net.existing)))
    shifted = net.for_team(team)
    joined = host.joined_bridge(net.name)
    if joined:
        return _joined_network_plan(topo, shifted, team, host, joined)
    statics = []
    if shifted.dhcp:
        for node in topo.nodes:
            for nic in node.nics:
                if nic.network == net.name and nic.ip:
                    statics.append((_mac(topo, team, node, nic.index),
                                    str(net.shift_ip(nic.ip, team)), node.name))
    return NetworkPlan(
        name=net.name, libvirt_name=libvirt_name(topo.lab, team, net.name), host=host, mode=net.mode,
        bridge=net.bridge if net.mode == "bridge" else bridge_name(topo.lab, team, net.name),
        subnet=shifted.subnet, gateway=shifted.gateway, dhcp=shifted.dhcp,
        dns_domain=net.domain or "", static_hosts=tuple(statics))


def _joined_network_plan(topo: Topology, shifted: Network, team: int, host: Host, bridge: str) -> NetworkPlan:
    """A network joined to an existing host bridge: a bridge-mode libvirt network, no
    gateway or DHCP of libvirt's; the guests set their addresses in `shifted.subnet`."""
    return NetworkPlan(
        name=shifted.name, libvirt_name=libvirt_name(topo.lab, team, shifted.name), host=host, mode="bridge",
        bridge=bridge, subnet=shifted.subnet, gateway=None, dhcp=None, dns_domain="", static_hosts=())


def _existing_network_plan(topo: Topology, net: Network, team: int, host: Host, hosts: dict[str, Host],
                           facts: NetworkFacts | None) -> NetworkPlan:
    """A network the host has (`existing:`), as it is there (unknown where it is not: the
    checks before any change say so); the static hosts are its nodes' there."""
    statics = tuple((e.mac, e.ip, e.name) for node in topo.nodes if hosts[node.host] == host
                    for e in _entries(topo, team, node) if e.network == net.existing)
    subnet, gateway, dhcp = _addressing(facts)
    return NetworkPlan(name=net.name, libvirt_name=net.existing, host=host, mode=facts.mode if facts else "",
                       bridge=facts.bridge if facts else "", subnet=subnet, gateway=gateway, dhcp=dhcp,
                       dns_domain="", static_hosts=statics, existing=True)


def _addressing(facts: NetworkFacts | None) -> tuple:
    """(subnet, gateway, DHCP range) of an existing network; None each where it has none."""
    if facts is None or facts.address is None or facts.prefix is None:
        return None, None, None
    interface = ipaddress.ip_interface(f"{facts.address}/{facts.prefix}")
    dhcp = tuple(map(ipaddress.IPv4Address, facts.dhcp)) if facts.dhcp else None
    return interface.network, interface.ip, dhcp


def _entries(topo: Topology, team: int, node: Node) -> tuple[HostEntry, ...]:
    """The node's host entries: one per NIC with an address on an existing network."""
    return tuple(HostEntry(topo.network(nic.network).existing, _mac(topo, team, node, nic.index), str(nic.ip), node.name)
                 for nic in node.nics if nic.ip and topo.network(nic.network).existing)


def _mac(topo: Topology, team: int, node: Node, index: int) -> str:
    nic = node.nics[index]
    return nic.mac or derived_mac(topo.lab, team, node.name, index)


def _nic_plan(topo: Topology, team: int, node: Node, nic, host: Host, existing: ExistingNetworks) -> NicPlan:
    net = next(n for n in topo.networks if n.name == nic.network)
    shifted = net.for_team(team)
    subnet, dhcp = shifted.subnet, shifted.dhcp
    if net.existing:
        subnet, _, dhcp = _addressing(existing.get((host.uri, net.existing)))
    joined = host.joined_bridge(net.name)
    return NicPlan(
        guest_name=nic.guest_name, network=net.name,
        libvirt_network=net.existing or libvirt_name(topo.lab, team, net.name),
        mac=_mac(topo, team, node, nic.index),
        ip=net.shift_ip(nic.ip, team) if nic.ip else None,
        prefix=subnet.prefixlen if subnet else None,
        dhcp=bool(dhcp) and nic.configure and not joined, configure=nic.configure, joined=bool(joined),
        host_bridge=joined or (net.bridge if net.mode == "bridge" else "") or "")


def node_memory_mib(node: Node, memory_scale: float = 1.0) -> int:
    """A node's memory with --memory-scale, never below 256 MiB."""
    return max(256, int(node.memory_mib * memory_scale))


def _node_plan(topo: Topology, team: int, node: Node, host: Host, image: BaseImage,
               memory_scale: float, existing: ExistingNetworks) -> NodePlan:
    dns_domain = next((n.domain for n in topo.networks if n.domain), None)
    return NodePlan(
        name=node.name, domain=libvirt_name(topo.lab, team, node.name), host=host, roles=node.roles,
        memory_mib=node_memory_mib(node, memory_scale), vcpus=node.vcpus, image=image,
        nics=tuple(_nic_plan(topo, team, node, nic, host, existing) for nic in node.nics),
        disks=tuple(DiskPlan(_disk_target(topo, d.target), f"{node.name}-{d.target}.qcow2", d.size_bytes, d.bus)
                    for d in node.disks),
        fqdn=f"{node.name}.{dns_domain}" if dns_domain else node.name, root_bytes=node.root_bytes,
        entries=_entries(topo, team, node))


def _disk_target(topo: Topology, target: str) -> str:
    """The guest's name of a disk: vdX, or xvdX in a Xen domU (its disks are Xen's)."""
    return "x" + target if topo.domain_type == "xen" else target


def _slots_on(topo: Topology, net: Network, hosts: dict[str, Host]) -> dict[str, str]:
    """URI → the first host slot landing there with a node on `net`: hosts that are
    the same URI count once."""
    found: dict[str, str] = {}
    for node in topo.nodes:
        if any(nic.network == net.name for nic in node.nics):
            found.setdefault(hosts[node.host].uri, node.host)
    return found


def _hosts_of(topo: Topology, net: Network, hosts: dict[str, Host]) -> list[Host]:
    """Every distinct host with a node on `net` (a network is defined on each of them)."""
    return [hosts[slot] for slot in _slots_on(topo, net, hosts).values()] or [hosts[topo.hosts[0].name]]


def check_host_networks(topo: Topology, hosts: dict[str, Host]) -> None:
    """Where the slots land must suit the networks: an isolated network whose nodes run on
    several libvirt hosts is joined to a host bridge on each (libvirt cannot link hosts),
    and a NIC on a joined network has a fixed ip (no DHCP there). Raises TopologyError."""
    problems = [p for net in topo.networks if (p := _split_network(topo, net, hosts))]
    problems += _nics_without_address(topo, hosts)
    if problems:
        raise TopologyError(sorted(problems, key=lambda p: p.line or 0))


def check_host_drivers(topo: Topology, hosts: dict[str, Host], what: str = "host slot") -> None:
    """A domain_type xen lab lands only where libvirt's xen driver is (or its test driver,
    which takes any domain type): never on QEMU's, a private libvirtd's included. Raises
    TopologyError naming each of `hosts` (`what` they are: host slots, or pool hosts) that
    lands elsewhere, before anything starts."""
    if topo.domain_type != "xen":
        return
    problems = [topo.problem(("domain_type",), f"{what} {name} lands on {host.uri}, libvirt's {uri_driver(host.uri)} "
                             "driver: a domain_type xen lab runs only on a Xen dom0, through libvirt's xen driver",
                             XEN_HINT)
                for name, host in hosts.items() if uri_driver(host.uri) not in ("xen", "test")]
    if problems:
        raise TopologyError(problems)


def _split_network(topo: Topology, net: Network, hosts: dict[str, Host]) -> Problem | None:
    slots = list(_slots_on(topo, net, hosts).values())
    unjoined = [slot for slot in slots if hosts[slot].joined_bridge(net.name) is None]
    if net.mode != "isolated" or len(slots) < 2 or not unjoined:
        return None
    where = ", ".join(f"{slot}: {hosts[slot].uri}" for slot in slots)
    return topo.problem(
        ("networks", net.name), f"its nodes run on {len(slots)} libvirt hosts ({where}); "
        "an isolated network does not reach from one host to another",
        "join it to a bridge linked between the hosts in the host inventory: "
        + ", ".join(f"hosts.{slot}.bridges.{net.name}: BRIDGE" for slot in unjoined))


def _nics_without_address(topo: Topology, hosts: dict[str, Host]) -> list[Problem]:
    problems = []
    for node in topo.nodes:
        for nic in node.nics:
            bridge = hosts[node.host].joined_bridge(nic.network)
            if bridge and nic.configure and nic.ip is None:
                problems.append(topo.problem(
                    ("nodes", node.name, "nics", nic.index),
                    f"network '{nic.network}' is joined to host bridge '{bridge}' on {node.host}, "
                    "where it has no DHCP: this NIC needs an ip",
                    f"give it an ip in {topo.network(nic.network).subnet}, or set configure: false"))
    return problems


def plan_lab(topo: Topology, team: int, hosts: dict[str, Host], images: dict[str, BaseImage],
             memory_scale: float = 1.0, existing: ExistingNetworks | None = None) -> LabPlan:
    """The concrete lab for `team`. `hosts` maps every host slot to a Host; `images` maps
    every image name the topology uses to a built BaseImage (checked by the caller);
    `existing`, what the hosts' networks named by `existing:` are (observe.existing_networks).
    Raises TopologyError if the hosts do not suit the networks (check_host_networks)."""
    check_host_networks(topo, hosts)
    existing = existing or {}
    networks = tuple(_network_plan(topo, net, team, host, hosts, existing)
                     for net in topo.networks for host in _hosts_of(topo, net, hosts))
    nodes = tuple(_node_plan(topo, team, node, hosts[node.host], images[node.image], memory_scale, existing)
                  for node in topo.nodes)
    small = [topo.problem(("nodes", n.name, "disk"), f"the root disk cannot be smaller than image {n.image.name!r} "
                          f"({n.image.virtual_size / 2**30:.1f} GiB)", "leave `disk:` out to keep the image's size")
             for n in nodes if n.root_bytes and n.image.virtual_size and n.root_bytes < n.image.virtual_size]
    if small:
        raise TopologyError(small)
    note = "" if memory_scale == 1.0 else f"memory scaled by {memory_scale:g} (--memory-scale)"
    return LabPlan(topo.lab, team, str(topo.path), pool_name(topo.lab, team),
                   networks, nodes, note, topo.packages)

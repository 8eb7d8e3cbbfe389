"""Plan: a validated Topology + team + where its host slots land → LabPlan, every concrete
name, MAC, IP, bridge and volume. Pure: no libvirt, no files."""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass

from .topology import Network, Node, Topology

MAX_TEAM = 99


@dataclass(frozen=True)
class Host:
    """Where a host slot lands: a libvirt URI, and how to reach guests from here."""

    uri: str
    ssh_prefix: tuple[str, ...] = ()  # e.g. nsenter into a private libvirtd's network namespace
    label: str = ""
    files_prefix: tuple[str, ...] = ()  # e.g. nsenter into its mount namespace, to read its files
    running: bool = True  # False: a private libvirtd `up` would start; nothing exists on it yet

    @property
    def name(self) -> str:
        return self.label or self.uri


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


@dataclass(frozen=True)
class NetworkPlan:
    key: str  # name in the topology
    name: str  # libvirt name
    host: Host
    mode: str
    bridge: str
    subnet: ipaddress.IPv4Network | None
    gateway: ipaddress.IPv4Address | None
    dhcp: tuple[ipaddress.IPv4Address, ipaddress.IPv4Address] | None
    domain: str
    static_hosts: tuple[tuple[str, str, str], ...]  # (mac, ip, hostname) static DHCP entries


@dataclass(frozen=True)
class NicPlan:
    guest_name: str
    network_key: str
    network: str  # libvirt network name
    mac: str
    ip: ipaddress.IPv4Address | None
    prefix: int | None
    dhcp: bool  # the guest uses DHCP (its network has DHCP); the lease is fixed if ip is set
    configure: bool


@dataclass(frozen=True)
class DiskPlan:
    target: str
    volume: str
    size_bytes: int
    bus: str


@dataclass(frozen=True)
class NodePlan:
    key: str  # node name in the topology = hostname
    name: str  # libvirt domain name
    host: Host
    roles: tuple[str, ...]
    memory_mib: int
    vcpus: int
    image: BaseImage
    nics: tuple[NicPlan, ...]
    disks: tuple[DiskPlan, ...]
    fqdn: str

    @property
    def vda(self) -> str:
        return f"{self.key}-vda.qcow2"

    @property
    def seed_volume(self) -> str:
        return f"{self.key}-seed.iso"

    @property
    def ssh_ip(self) -> str | None:
        """The first address reachable from the host (every lab network has the host on it)."""
        return next((str(n.ip) for n in self.nics if n.ip and n.configure), None)


@dataclass(frozen=True)
class LabPlan:
    lab: str
    team: int
    topology_path: str
    pool: str
    networks: tuple[NetworkPlan, ...]
    nodes: tuple[NodePlan, ...]
    memory_note: str = ""

    @property
    def hosts(self) -> tuple[Host, ...]:
        seen: dict[str, Host] = {}
        for obj in (*self.networks, *self.nodes):
            seen.setdefault(obj.host.uri, obj.host)
        return tuple(seen.values())

    def node(self, key: str) -> NodePlan:
        return next(n for n in self.nodes if n.key == key)


def object_name(lab: str, team: int, name: str) -> str:
    return f"{lab}-t{team}-{name}"


def bridge_name(lab: str, team: int, network: str) -> str:
    """Linux bridge names fit 15 characters: derived from a hash, never user text."""
    return "lb" + hashlib.sha256(f"{lab}/{team}/{network}".encode()).hexdigest()[:10]


def derived_mac(lab: str, team: int, node: str, nic: int) -> str:
    digest = hashlib.sha256(f"{lab}/{team}/{node}/{nic}".encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])


def _network_plan(topo: Topology, net: Network, team: int, host: Host) -> NetworkPlan:
    shifted = net.for_team(team)
    statics = []
    if shifted.dhcp:
        for node in topo.nodes:
            for nic in node.nics:
                if nic.network == net.name and nic.ip:
                    statics.append((_mac(topo, team, node, nic.index),
                                    str(net.shift_ip(nic.ip, team)), node.name))
    return NetworkPlan(
        key=net.name, name=object_name(topo.lab, team, net.name), host=host, mode=net.mode,
        bridge=net.bridge if net.mode == "bridge" else bridge_name(topo.lab, team, net.name),
        subnet=shifted.subnet, gateway=shifted.gateway, dhcp=shifted.dhcp,
        domain=net.domain or "", static_hosts=tuple(statics))


def _mac(topo: Topology, team: int, node: Node, index: int) -> str:
    nic = node.nics[index]
    return nic.mac or derived_mac(topo.lab, team, node.name, index)


def _nic_plan(topo: Topology, team: int, node: Node, nic) -> NicPlan:
    net = next(n for n in topo.networks if n.name == nic.network)
    shifted = net.for_team(team)
    return NicPlan(
        guest_name=nic.guest_name, network_key=net.name, network=object_name(topo.lab, team, net.name),
        mac=_mac(topo, team, node, nic.index),
        ip=net.shift_ip(nic.ip, team) if nic.ip else None,
        prefix=shifted.subnet.prefixlen if shifted.subnet else None,
        dhcp=bool(shifted.dhcp) and nic.configure, configure=nic.configure)


def _node_plan(topo: Topology, team: int, node: Node, host: Host, image: BaseImage,
               memory_scale: float) -> NodePlan:
    domain = next((n.domain for n in topo.networks if n.domain), None)
    return NodePlan(
        key=node.name, name=object_name(topo.lab, team, node.name), host=host, roles=node.roles,
        memory_mib=max(256, int(node.memory_mib * memory_scale)), vcpus=node.vcpus, image=image,
        nics=tuple(_nic_plan(topo, team, node, nic) for nic in node.nics),
        disks=tuple(DiskPlan(d.target, f"{node.name}-{d.target}.qcow2", d.size_bytes, d.bus)
                    for d in node.disks),
        fqdn=f"{node.name}.{domain}" if domain else node.name)


def _hosts_of(topo: Topology, net: Network, hosts: dict[str, Host]) -> list[Host]:
    """Every distinct host with a node on `net` (a network is defined on each of them)."""
    found: dict[str, Host] = {}
    for node in topo.nodes:
        if any(nic.network == net.name for nic in node.nics):
            found.setdefault(hosts[node.host].uri, hosts[node.host])
    return list(found.values()) or [hosts[topo.hosts[0].name]]


def plan_lab(topo: Topology, team: int, hosts: dict[str, Host], images: dict[str, BaseImage],
             memory_scale: float = 1.0) -> LabPlan:
    """The concrete lab for `team`. `hosts` maps every host slot to a Host; `images` maps
    every image name the topology uses to a built BaseImage (checked by the caller)."""
    networks = tuple(_network_plan(topo, net, team, host)
                     for net in topo.networks for host in _hosts_of(topo, net, hosts))
    nodes = tuple(_node_plan(topo, team, node, hosts[node.host], images[node.image], memory_scale)
                  for node in topo.nodes)
    note = "" if memory_scale == 1.0 else f"memory scaled by {memory_scale:g} (--memory-scale)"
    return LabPlan(topo.lab, team, str(topo.path), object_name(topo.lab, team, "pool"),
                   networks, nodes, note)

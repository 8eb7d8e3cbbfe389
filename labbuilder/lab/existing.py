"""Networks that exist on a host (`existing:` in a topology, e.g. libvirt's `default`):
labbuilder never defines, changes or removes them; it adds its nodes' static DHCP host
entries and DNS host entries there, and records them in the nodes' domain metadata (the
network's XML has no room to say whose an entry is). Pure: what is checked before any
change and which entries are whose, from what observe read."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

from labbuilder.lab.hosts import SYSTEM_URI
from labbuilder.lab.plan import HostEntry

if TYPE_CHECKING:
    from labbuilder.lab.hosts import Host
    from labbuilder.lab.plan import ExistingNetworks, LabPlan, NetworkPlan, NicPlan, NodePlan
    from labbuilder.model.errors import Problem
    from labbuilder.model.topology import Topology
    from labbuilder.system.virt import HostObject, NetworkFacts

STOCK_DEFAULT = "/usr/share/libvirt/networks/default.xml"


def recorded(objects: list[HostObject] | tuple[HostObject, ...]) -> dict[HostEntry, str]:
    """Host entry → the domain whose ownership metadata records it, of `objects`."""
    return {HostEntry(*e): o.name for o in objects if o.kind == "domain" for e in o.entries}


def has(facts: NetworkFacts | None, entry: HostEntry) -> tuple[bool, bool]:
    """Whether the network has the entry's static DHCP host and its DNS host, as made."""
    if facts is None:
        return False, False
    return (entry.mac, entry.ip, entry.name) in facts.dhcp_hosts, (entry.ip, (entry.name,)) in facts.dns_hosts


def virsh(uri: str) -> str:
    """The virsh command that reaches `uri`."""
    return "virsh" if uri == SYSTEM_URI else f"virsh -c {uri}"


def problems(topo: Topology, plan: LabPlan, existing: ExistingNetworks,
             observed: dict[str, list[HostObject]]) -> list[Problem]:
    """Before any change: every network the plan joins exists on its host, is active and
    serves DHCP on IPv4; each node's address there lies in its subnet; and no entry there
    that is not this team's has a node's MAC, address or hostname (it would be overwritten
    or refused halfway). `observed`: every domain and network per host URI."""
    found = []
    for net in (n for n in plan.networks if n.existing):
        facts = existing.get((net.host.uri, net.libvirt_name))
        trouble = _network_problem(topo, net, facts)
        if trouble is not None:
            found.append(trouble)
            continue
        others = recorded(observed.get(net.host.uri, []))
        ours = {e for e, domain in others.items() if domain in {n.domain for n in plan.nodes}}
        for node, index, nic in _nics_on(plan, net):
            found += _address_problems(topo, net, node, index, nic)
            clash = _clash(topo, net, facts, node, index, ours, others)
            if clash is not None:
                found.append(clash)
    return found


def _nics_on(plan: LabPlan, net: NetworkPlan) -> Iterator[tuple[NodePlan, int, NicPlan]]:
    for node in (n for n in plan.nodes if n.host == net.host):
        for index, nic in enumerate(node.nics):
            if nic.network == net.name and nic.ip:
                yield node, index, nic


def _network_problem(topo: Topology, net: NetworkPlan, facts: NetworkFacts | None) -> Problem | None:
    host, where = net.host, ("networks", net.name, "existing")
    if facts is None:
        return topo.problem(where, f"network '{net.libvirt_name}' does not exist on {host.name}",
                            _create_hint(host, net.libvirt_name))
    if not facts.active:
        return topo.problem(where, f"network '{net.libvirt_name}' on {host.name} is not active",
                            f"start it: {virsh(host.uri)} net-start {net.libvirt_name}")
    if net.subnet is None or net.dhcp is None:
        return topo.problem(where, f"network '{net.libvirt_name}' on {host.name} has no IPv4 DHCP of libvirt's, "
                            "where labbuilder adds the nodes' static host entries",
                            "join a network whose <ip> has a <dhcp> range (nat, route or isolated), as libvirt's default")
    return None


def _create_hint(host: Host, name: str) -> str:
    cmd = virsh(host.uri)
    if not host.runtime.running:  # a private libvirtd `up` would start: it starts with the host's definitions
        return f"`labbuilder up` starts it (and stops here, changing nothing else); then start the network " \
               f"there: {cmd} net-start {name}"
    if name == "default":
        return f"create libvirt's stock one: {cmd} net-define {STOCK_DEFAULT} && {cmd} net-start default"
    return f"define and start it there ({cmd} net-define FILE && {cmd} net-start {name}), " \
           f"or name one that exists ({cmd} net-list --all)"


def _address_problems(topo: Topology, net: NetworkPlan, node: NodePlan, index: int, nic: NicPlan) -> list[Problem]:
    path, subnet = ("nodes", node.name, "nics", index, "ip"), net.subnet
    if nic.ip not in subnet:
        why = f"is outside {subnet}, the subnet of network '{net.libvirt_name}' on {net.host.name}"
    elif nic.ip in (subnet.network_address, subnet.broadcast_address):
        why = f"is the {'network' if nic.ip == subnet.network_address else 'broadcast'} address of {subnet}"
    elif nic.ip == net.gateway:
        why = f"is the host's own address on network '{net.libvirt_name}' on {net.host.name}"
    else:
        return []
    return [topo.problem(path, f"{nic.ip} {why}", f"pick an address inside {subnet}, other than {net.gateway}")]


def _clash(topo: Topology, net: NetworkPlan, facts: NetworkFacts, node: NodePlan, index: int,
           ours: set[HostEntry], others: dict[HostEntry, str]) -> Problem | None:
    """The first entry in the network, not this team's, that has this NIC's MAC, address or
    node's hostname; as a problem at the topology's line for it."""
    want = HostEntry(net.libvirt_name, node.nics[index].mac, str(node.nics[index].ip), node.name)
    for mac, ip, name in facts.dhcp_hosts:
        mine = HostEntry(net.libvirt_name, mac, ip, name)
        same = [f for f, hit in (("mac", mac == want.mac), ("ip", ip == want.ip), ("name", name == want.name)) if hit]
        if same and mine not in ours:
            return _clash_problem(topo, net, node, index, same[0], f"<host mac='{mac}' name='{name}' ip='{ip}'/>",
                                  "ip-dhcp-host", others.get(mine))
    for ip, names in facts.dns_hosts:
        mine = any(e.ip == ip and (e.name,) == names for e in ours if e.network == net.libvirt_name)
        same = [f for f, hit in (("ip", ip == want.ip), ("name", want.name in names)) if hit]
        if same and not mine:
            shown = "".join(f"<hostname>{n}</hostname>" for n in names)
            owner = next((d for e, d in others.items()
                          if e.network == net.libvirt_name and e.ip == ip and (e.name,) == names), None)
            return _clash_problem(topo, net, node, index, same[0], f"<host ip='{ip}'>{shown}</host>", "dns-host", owner)
    return None


def _clash_problem(topo: Topology, net: NetworkPlan, node: NodePlan, index: int, field: str, entry: str,
                   section: str, domain: str | None) -> Problem:
    nic = node.nics[index]
    fixed_mac = topo.node(node.name).nics[index].mac is not None
    path, what, change = {
        "mac": (("nodes", node.name, "nics", index) + (("mac",) if fixed_mac else ()), f"MAC {nic.mac}", "use another mac"),
        "ip": (("nodes", node.name, "nics", index, "ip"), f"address {nic.ip}", "use another ip"),
        "name": (("nodes", node.name), f"hostname {node.name}", "rename the node"),
    }[field]
    whose = f"labbuilder made it for domain {domain}" if domain else "labbuilder did not make it"
    hint = (f"{change}, or bring down the lab of {domain} first" if domain else
            f"{change}, or remove that entry if nothing needs it: "
            f"{virsh(net.host.uri)} net-update {net.libvirt_name} delete {section} \"{entry}\" --live --config")
    return topo.problem(path, f"{what} is taken by the entry {entry} in network '{net.libvirt_name}' on {net.host.name} "
                              f"({whose})", hint)

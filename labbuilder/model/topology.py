"""Topologies: YAML in topologies/ → a validated, frozen Topology.

`load_topology()` collects every problem in the file and raises them together as one
TopologyError, each naming file, line and dotted key path, e.g.
``topologies/gridka.yaml:42: nodes.db-node.nics.1.ip: 10.0.1.3 is outside 10.0.0.0/24``.
The Topology keeps those marks, so later stages (the planner) can point at a line too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Network, ip_network
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from labbuilder.model.errors import Problem, TeamError, TopologyError
from labbuilder.model.names import MAX_TEAM, libvirt_name
from labbuilder.model.yamlread import IMAGE_NAME_RE, Checker, KeyPath, closest, dotted, load_with_marks, parse_size, short

# Whole strings only: every pattern is used with fullmatch (a `$` would let "demo\n" pass).
VAR_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
NAME_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")
NAME_HINT = "use lowercase letters, digits and '-', starting and ending with a letter or digit"
BRIDGE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,14}")
BRIDGE_HINT = "at most 15 characters: letters, digits, '-', '_' and '.'"
DOMAIN_RE = re.compile(r"(?=.{1,253}\Z)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*"
                       r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
MAC_RE = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}")
EXISTING_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # a libvirt network's name on the host
SLOT_URI_HINT = ("a topology names host slots only; say where they land in a host inventory: "
                 "labbuilder up TOPOLOGY --hosts hosts.yaml, with hosts: {SLOT: qemu+ssh://root@host/system}")

MAX_LAB_NAME = 20
MAX_LIBVIRT_NAME = 60
MAX_NICS = 4
MAX_DISKS = 25  # vdb … vdz
MIN_MEMORY_MIB = 128
MAX_MEMORY_MIB = 1 << 20  # 1 TiB
MAX_VCPUS = 256
MIN_DISK_BYTES = 1 << 20
MAX_DISK_BYTES = 64 << 40  # 64 TiB
MODES = ("nat", "isolated", "bridge")
PACKAGE_SOURCES = ("cache", "direct", "none")
# auto: KVM where it works, else QEMU's TCG (system/accel); xen: a Xen PV domU (libvirt's libxl driver)
DOMAIN_TYPES = ("auto", "xen")
MAX_XEN_DISKS = 24  # xvdb … xvdy: the seed takes the disk after the last
BUSES = ("virtio", "scsi", "sata")
PRIVATE_BLOCKS = tuple(IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
UNICAST_END = IPv4Address("223.255.255.255")


@dataclass(frozen=True)
class HostSlot:
    """A logical hypervisor slot; an inventory or --connect says which libvirt host it is."""

    name: str


@dataclass(frozen=True)
class Network:
    """A lab network as written in the file, i.e. as team 1 sees it."""

    name: str
    mode: str  # nat | isolated | bridge
    subnet: IPv4Network | None  # None for bridge
    gateway: IPv4Address | None
    dhcp: tuple[IPv4Address, IPv4Address] | None
    domain: str | None
    per_team: bool  # each team gets the subnet shifted by (team-1) subnet sizes
    bridge: str | None  # mode bridge: the existing host bridge
    existing: str | None = None  # mode existing: the libvirt network on the host it joins

    def offset(self, team: int) -> int:
        """How far team `team`'s addresses lie from the file's (0 unless per_team)."""
        _check_team(team)
        if not self.per_team or self.subnet is None:
            return 0
        return (team - 1) * self.subnet.num_addresses

    def for_team(self, team: int) -> Network:
        """This network as team `team` (1..99) sees it: subnet, gateway and DHCP range
        shifted when per_team, else unchanged."""
        shift = self.offset(team)
        if not shift:
            return self
        subnet = IPv4Network((int(self.subnet.network_address) + shift, self.subnet.prefixlen))
        dhcp = (self.dhcp[0] + shift, self.dhcp[1] + shift) if self.dhcp else None
        gateway = self.gateway + shift if self.gateway else None
        return replace(self, subnet=subnet, gateway=gateway, dhcp=dhcp)

    def shift_ip(self, ip: IPv4Address, team: int) -> IPv4Address:
        """An address written in the file for this network, as team `team` uses it."""
        return ip + self.offset(team)

    def in_dhcp_range(self, ip: IPv4Address) -> bool:
        return bool(self.dhcp) and self.dhcp[0] <= ip <= self.dhcp[1]


def shift_ip(network: Network, ip: IPv4Address, team: int) -> IPv4Address:
    """An address written in the file on `network`, as team `team` (1..99) uses it."""
    return network.shift_ip(ip, team)


@dataclass(frozen=True)
class Nic:
    index: int  # position in the node's nics list
    network: str
    ip: IPv4Address | None  # as written (team 1); see Network.shift_ip
    mac: str | None  # fixed MAC, lowercase; None = derived by the planner
    configure: bool

    @property
    def guest_name(self) -> str:
        return f"eth{self.index}"


@dataclass(frozen=True)
class Disk:
    index: int  # position in the node's disks list: 0 is vdb (vda is the base image overlay)
    size_bytes: int
    bus: str  # virtio | scsi | sata

    @property
    def target(self) -> str:
        return "vd" + chr(ord("b") + self.index)


@dataclass(frozen=True)
class Node:
    name: str  # also its hostname
    host: str  # host slot name
    roles: tuple[str, ...]
    memory_mib: int
    vcpus: int
    image: str  # the node's own image, else the topology's
    nics: tuple[Nic, ...]
    disks: tuple[Disk, ...]
    root_bytes: int = 0  # `disk:` the root disk's size; 0: the image's own

    @property
    def hostname(self) -> str:
        return self.name


@dataclass(frozen=True)
class Topology:
    path: str
    lab: str
    description: str
    image: str | None  # default image of the nodes
    hosts: tuple[HostSlot, ...]
    networks: tuple[Network, ...]
    nodes: tuple[Node, ...]
    roles: tuple[str, ...]  # config stage, in order
    role_dir: str = ""  # where roles/<role>/ step scripts live (absolute)
    vars: Mapping[str, Any] = field(default_factory=dict)  # role variables for the config stage
    packages: str = "cache"  # the guests' package source: cache | direct | none (PACKAGE_SOURCES)
    domain_type: str = "auto"  # DOMAIN_TYPES
    marks: Mapping[KeyPath, int] = field(default_factory=dict, compare=False, repr=False)

    def problem(self, path: KeyPath, message: str, hint: str = "") -> Problem:
        """A Problem at key path `path` (e.g. ("nodes", "db-node", "image")), with its line."""
        while path and path not in self.marks:
            path = path[:-1]
        return Problem(self.path, self.marks.get(path), dotted(path), message, hint)

    def image_uses(self) -> tuple[tuple[str, KeyPath], ...]:
        """(image name, key path that names it) per node: its own `image`, else the top-level one."""
        uses = []
        for node in self.nodes:
            own = ("nodes", node.name, "image")
            uses.append((node.image, own if own in self.marks else ("image",)))
        return tuple(uses)

    def network(self, name: str) -> Network:
        return next(n for n in self.networks if n.name == name)

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)


def _check_team(team: int) -> None:
    if not 1 <= team <= MAX_TEAM:
        raise TeamError(f"team {team} is not in 1..{MAX_TEAM}")


# ---------------------------------------------------------------------------- loading

_TOP = {"lab": str, "description": str, "image": str, "hosts": dict, "networks": dict,
        "nodes": dict, "roles": list, "role_dir": str, "vars": dict, "packages": str, "domain_type": str}
_NETWORK = {"mode": str, "subnet": str, "gateway": str, "dhcp": list, "domain": str,
            "per_team": bool, "bridge": str, "existing": str}
_NOT_WITH_EXISTING = ("mode", "subnet", "gateway", "dhcp", "domain", "per_team", "bridge")
_NODE = {"host": str, "roles": list, "memory": int, "vcpus": int, "image": str, "nics": list,
         "disks": list, "disk": (str, int)}
_NIC = {"network": str, "ip": str, "mac": (str, int), "configure": bool}
_DISK = {"size": (str, int), "bus": str}


@dataclass
class _Declared:
    """What nodes may refer to; None where the section itself is broken (already reported)."""

    lab: str
    image: str | None
    hosts: tuple[str, ...] | None
    networks: dict[str, Network] | None
    roles: tuple[str, ...] | None
    ips: dict = field(default_factory=dict)  # (network, ip) → key path of its first use
    macs: dict = field(default_factory=dict)  # mac → key path of its first use


def load_topology(path: Path | str) -> Topology:
    """Read and validate a topology file; raise TopologyError listing every problem found."""
    data, marks = load_with_marks(Path(path), TopologyError)
    c = Checker(path, marks, TopologyError)
    top = c.mapping(data, (), _TOP, ("lab", "networks", "nodes"))
    lab = _lab(c, top.get("lab"))
    image = _image(c, top["image"], ("image",)) if "image" in top else None
    roles = _roles(c, _section(data, top, "roles", []))
    hosts = _hosts(c, _section(data, top, "hosts", {"default": {}}))
    networks = _networks(c, _section(data, top, "networks", None), lab)
    declared = _Declared(lab, image, _names(hosts), _by_name(networks), roles)
    nodes = _nodes(c, _section(data, top, "nodes", None), declared)
    role_dir = _role_dir(c, Path(path), top.get("role_dir"), lab)
    role_vars = _vars(c, top.get("vars", {}))
    packages = _packages(c, top.get("packages", "cache"))
    domain_type = _domain_type(c, top.get("domain_type", "auto"), nodes)
    c.done()
    return Topology(str(path), lab, top.get("description", ""), image, hosts, networks, nodes,
                    roles, role_dir, MappingProxyType(role_vars), packages, domain_type, MappingProxyType(dict(marks)))


def _packages(c: Checker, value: str) -> str:
    if value not in PACKAGE_SOURCES:
        c.problem(("packages",), f"{value!r} is not a package source",
                  "cache (the lab host's apt-cacher-ng, the default), direct (the guests' own sources) "
                  "or none (start no cache)")
    return value


def _domain_type(c: Checker, value: str, nodes: tuple[Node, ...]) -> str:
    """`domain_type: xen` makes every node a Xen PV domU, whose disks are Xen's (xvdX)."""
    if value not in DOMAIN_TYPES:
        c.problem(("domain_type",), f"{value!r} is not a domain type", choice_hint(value, DOMAIN_TYPES, "one of"))
    if value != "xen":
        return value
    for node in nodes:
        if len(node.disks) > MAX_XEN_DISKS:
            c.problem(("nodes", node.name, "disks", MAX_XEN_DISKS),
                      f"at most {MAX_XEN_DISKS} extra disks with domain_type xen: xvdb–xvdy, and the seed takes the next")
        for disk in node.disks:
            if disk.bus != "virtio":
                c.problem(("nodes", node.name, "disks", disk.index, "bus"),
                          f"bus {disk.bus} is QEMU's: with domain_type xen every disk is a Xen PV disk (xvdX)",
                          "remove bus")
    return value


def _section(data: Any, top: dict, key: str, default: Any) -> Any:
    """top[key]; `default` when the file leaves it out; None when it is there but broken."""
    if key in top:
        return top[key]
    present = isinstance(data, dict) and data.get(key) is not None
    return None if present else default


def _names(items: tuple | None) -> tuple[str, ...] | None:
    return None if items is None else tuple(i.name for i in items)


def _by_name(items: tuple | None) -> dict | None:
    return None if items is None else {i.name: i for i in items}


def choice_hint(word: str, options, what: str) -> str:
    """'did you mean …?' when a choice is close, else the choices."""
    close = closest(word, options)
    if close:
        return f"did you mean '{close}'?"
    return f"{what}: {', '.join(options)}" if options else f"there are no {what}"


def _name_ok(c: Checker, name: Any, path: KeyPath, what: str) -> bool:
    if not isinstance(name, str):
        c.problem(path, f"{what} name must be a string, got {name!r}", NAME_HINT)
        return False
    if not NAME_RE.fullmatch(name):
        c.problem(path, f"{name!r} is not a valid {what} name", NAME_HINT)
        return False
    return True


def _libvirt_length(c: Checker, lab: str, name: str, path: KeyPath, what: str) -> None:
    longest = libvirt_name(lab, MAX_TEAM, name)
    if len(longest) > MAX_LIBVIRT_NAME:
        room = MAX_LIBVIRT_NAME - len(libvirt_name(lab, MAX_TEAM, ""))
        c.problem(path, f"libvirt name {longest!r} would be {len(longest)} characters, "
                        f"more than {MAX_LIBVIRT_NAME}", f"use a {what} name of at most {room} characters")


def _lab(c: Checker, lab: str | None) -> str:
    if lab is None:  # missing: reported by the mapping check
        return ""
    if not NAME_RE.fullmatch(lab):
        c.problem(("lab",), f"{lab!r} is not a valid lab name", NAME_HINT)
    elif len(lab) > MAX_LAB_NAME:
        c.problem(("lab",), f"{lab!r} is {len(lab)} characters, more than {MAX_LAB_NAME}",
                  "libvirt names are <lab>-t<team>-<node>: keep the lab name short")
    return lab


def _image(c: Checker, name: str, path: KeyPath) -> str:
    if not IMAGE_NAME_RE.fullmatch(name):
        c.problem(path, f"{name!r} is not an image recipe name", "the name: of a recipe in images/, e.g. debian-12")
    return name


def _roles(c: Checker, items: list | None) -> tuple[str, ...] | None:
    if items is None:
        return None
    first: dict[str, int] = {}
    for i, role in enumerate(items):
        if not c.is_type(role, str, ("roles", i)):
            continue
        if role in first:
            c.problem(("roles", i), f"role {role!r} is listed twice", f"first as roles.{first[role]}")
        else:
            _name_ok(c, role, ("roles", i), "role")
            first[role] = i
    return tuple(first)


def _role_dir(c: Checker, path: Path, value: str | None, lab: str) -> str:
    """Absolute role directory: `role_dir` relative to the topology file, else roles/<lab>;
    either way inside the topology file's directory."""
    base = path.resolve().parent
    found = (base / (value or f"roles/{lab}")).resolve()
    if value is not None and (not value or value.startswith("~")):
        c.problem(("role_dir",), f"{value!r} is not a directory path", "a path relative to this file, e.g. roles/gridka")
    elif value is not None and not found.is_relative_to(base):
        c.problem(("role_dir",), f"{short(value)} leads outside this topology's directory ({path.parent})",
                  "role scripts run as root in the guests: keep them beside the topology, e.g. roles/gridka")
    return str(found)


def _vars(c: Checker, items: dict) -> dict:
    """Role variables: names usable in templates (`vars.NAME`), values any YAML."""
    for key in items:
        if not isinstance(key, str) or not VAR_RE.fullmatch(key):
            c.problem(("vars", key), f"{key!r} is not a variable name", "letters, digits and _, not first a digit")
    return dict(items)


# ---------------------------------------------------------------------------- hosts

def _hosts(c: Checker, spec: dict | None) -> tuple[HostSlot, ...] | None:
    if spec is None:
        return None
    if not spec:
        c.problem(("hosts",), "declares no host slot", "leave hosts out for one slot named 'default'")
    return tuple(_host(c, name, value) for name, value in spec.items())


def _host(c: Checker, name: Any, spec: Any) -> HostSlot:
    path = ("hosts", name)
    _name_ok(c, name, path, "host slot")
    h = c.mapping({} if spec is None else spec, path, {"uri": str})
    if "uri" in h:  # never used: a slot lands where --hosts or --connect says
        c.problem(path + ("uri",), "a topology does not say where a host slot lands", SLOT_URI_HINT)
    return HostSlot(str(name))


# ---------------------------------------------------------------------------- networks

def _networks(c: Checker, spec: dict | None, lab: str) -> tuple[Network, ...] | None:
    if spec is None:
        return None
    if not spec:
        c.problem(("networks",), "declares no network", "every node needs a NIC on a network")
    networks = tuple(_network(c, name, value, lab) for name, value in spec.items())
    _check_overlaps(c, networks)
    _check_joined_once(c, networks)
    return networks


def _network(c: Checker, name: Any, spec: Any, lab: str) -> Network:
    path = ("networks", name)
    if _name_ok(c, name, path, "network"):
        _libvirt_length(c, lab, name, path, "network")
    raw = spec if isinstance(spec, dict) else {}
    n = c.mapping(spec, path, _NETWORK, () if "existing" in raw else ("mode",))
    if "existing" in raw:
        return _existing_network(c, str(name), n, raw, path)
    mode = n.get("mode", "")
    if mode == "bridge":
        return _bridge_network(c, str(name), n, raw, path)
    if mode in MODES:
        return _routed_network(c, str(name), mode, n, raw, path)
    if mode:
        c.problem(path + ("mode",), f"unknown mode {mode!r}", choice_hint(mode, MODES, "one of"))
    return Network(str(name), mode, None, None, None, None, False, None)


def _bridge_network(c: Checker, name: str, n: dict, raw: dict, path: KeyPath) -> Network:
    for key in ("subnet", "gateway", "dhcp", "domain", "per_team"):
        if key in raw:
            c.problem(path + (key,), "not allowed with mode bridge",
                      "the LAN behind the host bridge does its own addressing, shared by every team")
    bridge = n.get("bridge")
    if raw.get("bridge") is None:
        c.problem(path, "missing required key 'bridge'", "the existing bridge on the host, e.g. br0")
    elif bridge is not None and not BRIDGE_RE.fullmatch(bridge):
        c.problem(path + ("bridge",), f"{bridge!r} is not a Linux bridge name", BRIDGE_HINT)
    return Network(name, "bridge", None, None, None, None, False, bridge)


def _existing_network(c: Checker, name: str, n: dict, raw: dict, path: KeyPath) -> Network:
    """`existing: default`: a libvirt network the host has already; labbuilder adds its
    nodes' host entries there and nothing else, so its addressing is the host's."""
    existing = n.get("existing")
    for key in (k for k in _NOT_WITH_EXISTING if k in raw):
        c.problem(path + (key,), "not allowed with existing",
                  f"network '{existing or '?'}' exists on the host: its mode and addressing are its own, "
                  "shared by every team")
    if raw.get("existing") is None:
        c.problem(path + ("existing",), "must not be empty", "the name of a libvirt network on the host, e.g. default")
    elif existing is not None and not EXISTING_RE.fullmatch(existing):
        c.problem(path + ("existing",), f"{existing!r} is not a libvirt network name",
                  "letters, digits, '-', '_' and '.', e.g. default")
        existing = None
    return Network(name, "existing", None, None, None, None, False, None, existing or "")


def _check_joined_once(c: Checker, networks: tuple[Network, ...]) -> None:
    first: dict[str, str] = {}
    for net in (n for n in networks if n.existing):
        if net.existing in first:
            c.problem(("networks", net.name, "existing"),
                      f"libvirt network '{net.existing}' is joined already as network '{first[net.existing]}'",
                      "name it once and put the NICs on that network")
        first.setdefault(net.existing, net.name)


def _routed_network(c: Checker, name: str, mode: str, n: dict, raw: dict, path: KeyPath) -> Network:
    if "bridge" in raw:
        c.problem(path + ("bridge",), f"only for mode bridge, this network is {mode}")
    subnet = _subnet(c, n, raw, path, mode)
    per_team = n.get("per_team", True)
    if subnet is not None and per_team:
        _check_team_room(c, subnet, path + ("subnet",))
    gateway = _gateway(c, n, path, subnet)
    dhcp = _dhcp(c, n["dhcp"], path + ("dhcp",), subnet) if "dhcp" in n else None
    if dhcp and gateway and dhcp[0] <= gateway <= dhcp[1]:
        c.problem(path + ("dhcp",), f"the range {dhcp[0]}–{dhcp[1]} holds the gateway {gateway}",
                  "DHCP would hand the gateway's address to a guest: keep the range clear of it")
    domain = n.get("domain")
    if domain is not None and not DOMAIN_RE.fullmatch(domain):
        c.problem(path + ("domain",), f"{domain!r} is not a DNS domain", "e.g. example.org")
    return Network(name, mode, subnet, gateway, dhcp, domain, per_team, None)


def _subnet(c: Checker, n: dict, raw: dict, path: KeyPath, mode: str) -> IPv4Network | None:
    if raw.get("subnet") is None:
        article = "an" if mode[0] in "aeiou" else "a"
        c.problem(path, "missing required key 'subnet'", f"{article} {mode} network needs an IPv4 subnet, e.g. 192.168.130.0/24")
        return None
    if "subnet" not in n:
        return None
    return _parse_subnet(c, n["subnet"], path + ("subnet",))


def _parse_subnet(c: Checker, text: str, path: KeyPath) -> IPv4Network | None:
    try:
        net = ip_network(text, strict=False)
    except ValueError:
        c.problem(path, f"{text!r} is not an IPv4 subnet", "e.g. 192.168.130.0/24")
        return None
    if net.version != 4:
        c.problem(path, f"{text} is not an IPv4 subnet", "only IPv4 is supported, e.g. 192.168.130.0/24")
    elif "/" not in text:
        c.problem(path, f"{text} has no prefix length", f"e.g. {text}/24")
    elif str(net) != text.strip():
        c.problem(path, f"{text} has host bits set", f"did you mean {net}?")
    elif net.prefixlen > 30:
        c.problem(path, f"{net} leaves no room for a gateway and guests", "use a /30 or larger, e.g. /24")
    else:
        return net
    return None


def _check_team_room(c: Checker, subnet: IPv4Network, path: KeyPath) -> None:
    """With per_team, the subnet of team 99 must still be valid (and private if this one is)."""
    block = next((b for b in PRIVATE_BLOCKS if subnet.subnet_of(b)), None)
    start, end = (block[0], block[-1]) if block else (IPv4Address(0), UNICAST_END)
    size = subnet.num_addresses
    last = int(subnet.network_address) + (MAX_TEAM - 1) * size
    if last + size - 1 <= int(end):
        return
    where = f"the private range {block}" if block else "unicast IPv4"
    team99 = IPv4Network((last, subnet.prefixlen)) if last < 1 << 32 else "addresses past 255.255.255.255"
    highest = int(end) + 1 - MAX_TEAM * size
    hint = (f"use a subnet at or below {IPv4Network((highest, subnet.prefixlen))}, or per_team: false"
            if highest >= int(start) else "use a smaller subnet, or per_team: false")
    c.problem(path, f"with per_team, team {MAX_TEAM} would get {team99}, outside {where}", hint)


def _check_overlaps(c: Checker, networks: tuple[Network, ...]) -> None:
    """No subnet of one network may meet a subnet of another, for any two teams 1..MAX_TEAM
    (teams share lab hosts). With per_team the teams' subnets of a network lie end to end,
    so each network's subnets for all teams make one range of addresses: compare those."""
    seen: list[Network] = []
    for net in (n for n in networks if n.subnet is not None):
        for other in seen:
            if net.subnet.overlaps(other.subnet):
                c.problem(("networks", net.name, "subnet"),
                          f"{net.subnet} overlaps {other.subnet} of network '{other.name}'")
            elif _overlap_start(net, other) is not None:
                _team_overlap(c, net, other)
        seen.append(net)


def _team_span(net: Network) -> tuple[int, int]:
    """The first and last address of the subnets every team gets of `net`."""
    start = int(net.subnet.network_address)
    return start, start + (MAX_TEAM if net.per_team else 1) * net.subnet.num_addresses - 1


def _overlap_start(a: Network, b: Network) -> int | None:
    """The first address both networks' team ranges hold; None if they hold none in common."""
    (a0, a1), (b0, b1) = _team_span(a), _team_span(b)
    return max(a0, b0) if max(a0, b0) <= min(a1, b1) else None


def _team_overlap(c: Checker, net: Network, other: Network) -> None:
    where = _overlap_start(net, other)
    t, u = ((where - _team_span(n)[0]) // n.subnet.num_addresses + 1 for n in (net, other))
    ranged = [n for n in (net, other) if n.per_team]
    hint = "; ".join(f"network '{n.name}' takes {IPv4Address(_team_span(n)[0])}–{IPv4Address(_team_span(n)[1])} "
                     f"for teams 1–{MAX_TEAM}" for n in ranged)
    c.problem(("networks", net.name, "subnet"),
              f"{_team_subnet(net, t)} overlaps {_team_subnet(other, u)} of network '{other.name}'",
              f"per_team shifts a subnet by its size for each team: {hint}; move one of the subnets")


def _team_subnet(net: Network, team: int) -> str:
    return f"team {team}'s {net.for_team(team).subnet}" if net.per_team else f"{net.subnet} (every team's)"


def _parse_ip(c: Checker, text: str, path: KeyPath) -> IPv4Address | None:
    try:
        return IPv4Address(text.strip())
    except ValueError:
        c.problem(path, f"{text!r} is not an IPv4 address")
        return None


def _inside(c: Checker, subnet: IPv4Network, ip: IPv4Address, path: KeyPath, hint: str = "") -> bool:
    """Report unless `ip` is a usable address of `subnet` (not its network or broadcast address)."""
    if ip not in subnet:
        c.problem(path, f"{ip} is outside {subnet}", hint)
    elif ip in (subnet.network_address, subnet.broadcast_address):
        which = "network" if ip == subnet.network_address else "broadcast"
        c.problem(path, f"{ip} is the {which} address of {subnet}", hint)
    else:
        return True
    return False


def _gateway(c: Checker, n: dict, path: KeyPath, subnet: IPv4Network | None) -> IPv4Address | None:
    if "gateway" not in n:
        return subnet.network_address + 1 if subnet else None
    ip = _parse_ip(c, n["gateway"], path + ("gateway",))
    if ip is not None and subnet is not None:
        _inside(c, subnet, ip, path + ("gateway",))
    return ip


def _dhcp(c: Checker, items: list, path: KeyPath,
          subnet: IPv4Network | None) -> tuple[IPv4Address, IPv4Address] | None:
    if len(items) != 2:
        c.problem(path, f"must be [start, end], got {items!r}", "e.g. [192.168.130.100, 192.168.130.254]")
        return None
    ends = [_parse_ip(c, x, path + (i,)) if c.is_type(x, str, path + (i,)) else None
            for i, x in enumerate(items)]
    if None in ends:
        return None
    if subnet is not None and not all([_inside(c, subnet, ip, path + (i,)) for i, ip in enumerate(ends)]):
        return None
    if ends[0] > ends[1]:
        c.problem(path, f"start {ends[0]} is after end {ends[1]}")
        return None
    return ends[0], ends[1]


# ---------------------------------------------------------------------------- nodes

def _nodes(c: Checker, spec: dict | None, declared: _Declared) -> tuple[Node, ...]:
    if spec is None:
        return ()
    if not spec:
        c.problem(("nodes",), "declares no node")
    nodes = (_node(c, name, value, declared) for name, value in spec.items())
    return tuple(n for n in nodes if n is not None)


def _node(c: Checker, name: Any, spec: Any, declared: _Declared) -> Node | None:
    path = ("nodes", name)
    if _name_ok(c, name, path, "node"):
        _libvirt_length(c, declared.lab, name, path, "node")
    n = c.mapping(spec, path, _NODE, ("memory",))
    if not isinstance(spec, dict):
        return None
    return Node(
        name=str(name), host=_node_host(c, n, spec, path, declared.hosts),
        roles=_node_roles(c, n.get("roles", []), path + ("roles",), declared.roles),
        memory_mib=_in_range(c, n, "memory", path, (MIN_MEMORY_MIB, MAX_MEMORY_MIB), " MiB"),
        vcpus=_in_range(c, n, "vcpus", path, (1, MAX_VCPUS), "", default=1),
        image=_node_image(c, n, spec, path, declared.image),
        nics=_nics(c, n.get("nics"), spec, path, declared),
        disks=_disks(c, n.get("disks", []), path + ("disks",)),
        root_bytes=_root_size(c, n, path))


def _root_size(c: Checker, n: dict, path: KeyPath) -> int:
    """`disk: 30G`: the root disk grows to this size (its file system with it, at first boot)."""
    if "disk" not in n:
        return 0
    size = parse_size(n["disk"])
    if size is None or not MIN_DISK_BYTES <= size <= MAX_DISK_BYTES:
        c.problem(path + ("disk",), f"{short(n['disk'])} is not a disk size from 1M to 64T", "e.g. 30G")
        return 0
    return size


def _in_range(c: Checker, n: dict, key: str, path: KeyPath, bounds: tuple[int, int], unit: str,
              default: int = 0) -> int:
    value, (minimum, maximum) = n.get(key, default), bounds
    if key in n and value < minimum:
        c.problem(path + (key,), f"must be at least {minimum}{unit}, got {value}")
    elif key in n and value > maximum:
        c.problem(path + (key,), f"must be at most {maximum}{unit}, got {value}")
    return value


def _node_host(c: Checker, n: dict, raw: dict, path: KeyPath, hosts: tuple[str, ...] | None) -> str:
    if "host" in n:
        if hosts is not None and n["host"] not in hosts:
            c.problem(path + ("host",), f"host slot {n['host']!r} is not declared",
                      choice_hint(n["host"], hosts, "declared host slots"))
        return n["host"]
    if raw.get("host") is not None or hosts is None:
        return ""
    if len(hosts) == 1:
        return hosts[0]
    c.problem(path, "missing required key 'host'",
              f"this topology has {len(hosts)} host slots: {', '.join(hosts)}")
    return ""


def _node_roles(c: Checker, items: list, path: KeyPath, declared: tuple[str, ...] | None) -> tuple[str, ...]:
    roles: list[str] = []
    for i, role in enumerate(items):
        if not c.is_type(role, str, path + (i,)):
            continue
        if role in roles:
            c.problem(path + (i,), f"role {role!r} is listed twice")
            continue
        if declared is not None and role not in declared:
            close = closest(role, declared)
            c.problem(path + (i,), f"role {role!r} is not in the top-level roles",
                      f"did you mean '{close}'?" if close else "add it to the top-level roles list")
        roles.append(role)
    return tuple(roles)


def _node_image(c: Checker, n: dict, raw: dict, path: KeyPath, default: str | None) -> str:
    if "image" in n:
        return _image(c, n["image"], path + ("image",))
    if raw.get("image") is None and default is None:
        c.problem(path, "missing required key 'image'", "or set a default image at the top level")
    return default or ""


# ---------------------------------------------------------------------------- NICs

def _nics(c: Checker, items: list | None, raw: dict, path: KeyPath, declared: _Declared) -> tuple[Nic, ...]:
    if items is None:
        if raw.get("nics") is None:
            c.problem(path, "missing required key 'nics'", "a node needs at least one NIC, e.g. nics: [{network: nat}]")
        return ()
    if not items:
        c.problem(path + ("nics",), "a node needs at least one NIC", "e.g. nics: [{network: nat}]")
    if len(items) > MAX_NICS:
        c.problem(path + ("nics", MAX_NICS), f"at most {MAX_NICS} NICs: the guest names them eth0–eth3")
    nics = (_nic(c, i, item, path + ("nics", i), declared) for i, item in enumerate(items))
    return tuple(n for n in nics if n is not None)


def _nic(c: Checker, index: int, spec: Any, path: KeyPath, declared: _Declared) -> Nic | None:
    n = c.mapping(spec, path, _NIC, ("network",))
    if not isinstance(spec, dict):
        return None
    network = _nic_network(c, n, path, declared.networks)
    configure = n.get("configure", True)
    ip = _nic_ip(c, n, path, network, configure, declared.ips)
    if network is not None and ip is None and configure and network.subnet and not network.dhcp:
        c.problem(path, f"network '{network.name}' has no dhcp, so this NIC needs an ip",
                  "give it an ip, or set configure: false")
    return Nic(index, n.get("network", ""), ip, _nic_mac(c, n, path, declared.macs), configure)


def _nic_network(c: Checker, n: dict, path: KeyPath, networks: dict[str, Network] | None) -> Network | None:
    name = n.get("network")
    if name is None or networks is None:
        return None
    if name not in networks:
        c.problem(path + ("network",), f"network '{name}' is not declared",
                  choice_hint(name, networks, "declared networks"))
    return networks.get(name)


def _nic_ip(c: Checker, n: dict, path: KeyPath, network: Network | None, configure: bool,
            used: dict) -> IPv4Address | None:
    if "ip" not in n:
        return None
    if not configure:
        c.problem(path + ("ip",), "a NIC with configure: false gets no address",
                  "remove ip, or remove configure: false")
        return None
    ip = _parse_ip(c, n["ip"], path + ("ip",))
    if ip is not None and network is not None and network.existing is not None:
        _existing_ip(c, ip, path, network, used)
    if ip is None or network is None or network.mode not in MODES:
        return ip
    if network.mode == "bridge":
        c.problem(path + ("ip",), f"network '{network.name}' is a host bridge: its LAN assigns addresses",
                  "remove ip")
    elif network.subnet is not None:
        _check_static_ip(c, ip, path + ("ip",), network, used)
    return ip


def _existing_ip(c: Checker, ip: IPv4Address, path: KeyPath, network: Network, used: dict) -> None:
    """An address on a network the host has: its subnet is the host's (checked when
    planning); it is one NIC's, and a node has one there (its host entries are named by
    its hostname, which libvirt allows once per network)."""
    node = ("node", path[1])
    if (network.name, node) in used:
        first = used[(network.name, node)]
        c.problem(path + ("ip",), f"node '{path[1]}' has an address on network '{network.name}' already, "
                  f"at {dotted(first)} (line {c.line(first)})",
                  "the host's network holds one entry per hostname: give the node one address there")
        return
    used[(network.name, node)] = path + ("ip",)
    _claim(c, used, (network.name, ip), path + ("ip",), f"{ip} on network '{network.name}'")


def _check_static_ip(c: Checker, ip: IPv4Address, path: KeyPath, network: Network, used: dict) -> None:
    if not _inside(c, network.subnet, ip, path, f"this NIC is on network '{network.name}'"):
        return
    if ip == network.gateway:
        c.problem(path, f"{ip} is the gateway of network '{network.name}'", "pick another address")
    elif network.in_dhcp_range(ip):
        start, end = network.dhcp
        c.problem(path, f"{ip} is inside the DHCP range {start}–{end} of network '{network.name}'",
                  "a static lease must lie outside the range: pick another address or shrink dhcp")
    else:
        _claim(c, used, (network.name, ip), path, f"{ip} on network '{network.name}'")


def _claim(c: Checker, used: dict, key: Any, path: KeyPath, what: str) -> None:
    """Report `key` if an earlier NIC took it; else remember this NIC as its user."""
    if key in used:
        first = used[key]
        c.problem(path, f"{what} is already used by {dotted(first[:-1])} (line {c.line(first)})")
    else:
        used[key] = path


def _nic_mac(c: Checker, n: dict, path: KeyPath, used: dict) -> str | None:
    value = n.get("mac")
    if value is None:
        return None
    if isinstance(value, int):
        _mac_number(c, value, path + ("mac",))
        return None
    mac = value.strip().lower()
    if not MAC_RE.fullmatch(mac) or mac == "00:00:00:00:00:00":
        c.problem(path + ("mac",), f"{value!r} is not a MAC address", "six hex pairs, e.g. 52:54:00:00:00:01")
    elif int(mac[:2], 16) & 1:
        c.problem(path + ("mac",), f"{mac} is a multicast MAC", "the first byte must be even, e.g. 52:54:00:…")
    else:
        _claim(c, used, mac, path + ("mac",), f"MAC {mac}")
        return mac
    return None


def _mac_number(c: Checker, value: int, path: KeyPath) -> None:
    """YAML 1.1 reads an unquoted 52:54:00:00:00:01 as a base-60 integer: say so."""
    first, digits = value, []
    for _ in range(5):
        first, digit = divmod(first, 60)
        digits.append(f"{digit:02d}")
    if not 0 < first < 100:
        c.problem(path, f"must be a string, got {value!r}", 'e.g. mac: "52:54:00:00:00:01"')
        return
    text = ":".join([f"{first:02d}", *reversed(digits)])
    c.problem(path, f"YAML reads the unquoted {text} as a number", f'quote it: mac: "{text}"')


# ---------------------------------------------------------------------------- disks

def _disks(c: Checker, items: list, path: KeyPath) -> tuple[Disk, ...]:
    if len(items) > MAX_DISKS:
        c.problem(path + (MAX_DISKS,), f"at most {MAX_DISKS} extra disks: vdb–vdz")
    disks = (_disk(c, i, item, path + (i,)) for i, item in enumerate(items))
    return tuple(d for d in disks if d is not None)


def _disk(c: Checker, index: int, spec: Any, path: KeyPath) -> Disk | None:
    d = c.mapping(spec, path, _DISK, ("size",))
    size = parse_size(d["size"]) if "size" in d else None
    if "size" in d and (size is None or not MIN_DISK_BYTES <= size <= MAX_DISK_BYTES):
        c.problem(path + ("size",), f"{short(d['size'])} is not a disk size from 1M to 64T", "e.g. 2G")
    bus = d.get("bus", "virtio")
    if bus not in BUSES:
        c.problem(path + ("bus",), f"unknown bus {bus!r}", choice_hint(bus, BUSES, "one of"))
    return Disk(index, size or 0, bus) if isinstance(spec, dict) else None

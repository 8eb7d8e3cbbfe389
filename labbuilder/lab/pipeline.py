"""What the lab commands do, each a column of steps: load → validate → plan → render →
apply → wait → hand-off. The CLI calls these and prints what they return."""

from __future__ import annotations

import ipaddress
import os
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, ContextManager

import yaml

from labbuilder.image import cache as image_cache
from labbuilder.lab import (
    apply,
    checkpoints,
    checks,
    config_stage,
    diff,
    existing,
    glance,
    handout,
    observe,
    packages,
    placement,
    render,
)
from labbuilder.lab import wait as wait_for
from labbuilder.lab.apply import ApplyContext
from labbuilder.lab.diff import Action, ObjectKind, Verb
from labbuilder.lab.hosts import Host, every_host, pool_hosts, resolve_hosts, state_root, team_dir
from labbuilder.lab.plan import (
    BaseImage,
    ExistingNetworks,
    LabPlan,
    NetworkPlan,
    NodePlan,
    check_host_drivers,
    check_host_networks,
    plan_lab,
)
from labbuilder.lab.status import LabStatus, NetworkStatus, NodeStatus
from labbuilder.model.errors import CheckpointError, ConfigError, HostError, LabError, PlacementError, TopologyError
from labbuilder.model.inventory import PoolHost, SlotEntry
from labbuilder.model.names import BASE_POOL, any_lab_pool, is_local_uri
from labbuilder.model.request import LabRequest
from labbuilder.model.topology import Topology, load_topology
from labbuilder.model.uri import XEN_HINT, uri_driver
from labbuilder.reporting import Progress
from labbuilder.system import accel, hostnet, locks, ssh, virt
from labbuilder.system.connections import ConnectionPool, parallel
from labbuilder.system.pause import pause_point
from labbuilder.system.run import run


@dataclass
class Lab:
    """A planned lab, its connections and its local state directory."""

    topology: Topology
    plan: LabPlan
    conns: ConnectionPool
    state: Path
    domain_type: str
    accel_reason: str
    # What check_hosts read, per host URI. `plan` diffs against it; up and reset read again
    # under the team lock: another run of the team may have changed things in between.
    observed: dict[str, list[virt.HostObject]] | None = None
    # The local hosts' routes and bridges, read once per command: its teams' labs share it.
    host_networks: hostnet.HostNetworks = field(default_factory=hostnet.HostNetworks)
    images_to_build: dict[str, Path] = field(default_factory=dict)  # `plan`: image name → its recipe
    placement: placement.Placement | None = None  # the command's teams on the inventory's pool
    # What the networks the topology joins (`existing:`) are on its hosts, read before planning;
    # `plan` diffs against it too (as against `observed`).
    existing: ExistingNetworks = field(default_factory=dict)
    # The pool's placement locks (place_teams), shared by the command's teams: each team is
    # done with them once its domains are defined (up, reset) or its lab is closed.
    hold: locks.HeldFor | None = None

    @property
    def ssh_key(self) -> Path:
        return self.state / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.state / "known_hosts"

    @property
    def access(self) -> ssh.Access:
        """The lab key, and host keys checked strictly once labbuilder has given them."""
        return ssh.Access(self.ssh_key, self.known_hosts if self.known_hosts.exists() else None)

    def target(self, node: NodePlan, address: str) -> ssh.SshTarget:
        return self.access.target(address, node.domain, node.host.runtime.ssh_prefix)

    def close(self) -> None:
        self.placed()
        self.conns.close()

    def placed(self) -> None:
        """The team's domains are defined (or will not be by this command): other runs may
        place teams on the pool again once every team of this one has said so."""
        if self.hold:
            self.hold.done(self.plan.team)


@dataclass(frozen=True)
class Placed:
    """A command's teams placed on the inventory's pool: the placement, and each team's
    Host per slot."""

    placement: placement.Placement
    hosts: dict[int, dict[str, Host]]
    hold: locks.HeldFor | None = None  # the pool's placement locks, for commands that create teams


@dataclass(frozen=True)
class _Shared:
    """What the teams of one command have in common, found once: the topology, its images
    (and those `plan` would build: image name → recipe), the reader of the local hosts'
    routes and bridges, the teams placed on the inventory's pool (None without one), and
    what each host holds (host URI → its domains and networks), read at the first need."""

    topology: Topology
    images: dict[str, BaseImage]
    planned: dict[str, Path]
    host_networks: hostnet.HostNetworks
    placed: Placed | None
    seen: dict[str, list[virt.HostObject]]


def open_lab(req: LabRequest, start_private: bool | None = True, check: bool = True) -> Lab:
    """open_labs of one team."""
    return open_labs([req], start_private, check)[0]


def open_labs(reqs: list[LabRequest], start_private: bool | None = True, check: bool = True,
              waiting: Callable[[str], None] = lambda message: None) -> list[Lab]:
    """Each team's lab for one command (`reqs`: its teams, of one topology): the topology
    loaded and validated, its images and each team's hosts found, the team planned; with
    `check` (commands that create things), the hosts checked for clashing subnets and MACs.
    `start_private`: start a private libvirtd if one is needed and none runs; False: fail
    then; None: plan against a stand-in for it (nothing exists there yet). What is the same
    for every team (_Shared) is found once; with a pool, the teams are placed together:
    with `check`, refused (PlacementError) if they do not fit, and for commands that create
    teams under the pool's placement locks (place_teams; `waiting` says when another run
    holds them)."""
    topo = load_topology(reqs[0].topology)
    planned: dict[str, Path] = {}
    # `plan` (start_private None) shows images it would build; up and reset build them first.
    images = find_images(topo, reqs[0].image_cache, required=check, planned=planned if start_private is None else None)
    seen: dict[str, list[virt.HostObject]] = {}
    placed = place_teams(topo, reqs[0], [r.team for r in reqs], start_private, check, seen, waiting)
    try:
        shared = _Shared(topo, images, planned, hostnet.HostNetworks(), placed, seen)
        labs = [_open_team(req, shared, start_private, check) for req in reqs]
        if check and placed is None:
            check_capacity(labs, reqs[0].memory_scale, seen)
    except BaseException:
        if placed and placed.hold:
            placed.hold.release()
        raise
    return labs


def _open_team(req: LabRequest, shared: _Shared, start_private: bool | None, check: bool) -> Lab:
    """One team's lab of open_labs: its hosts (placed, or where its slots land), its plan."""
    topo, placed = shared.topology, shared.placed
    conns = ConnectionPool()
    if placed:  # place_teams checked the pool's hosts
        hosts = placed.hosts[req.team]
    else:
        hosts = _hosts(topo, req, start_private)
        check_xen_hosts(topo, dict.fromkeys(hosts.values()), conns)  # before anything is read from them
    joined = observe.existing_networks(topo, hosts, conns)
    plan = plan_lab(topo, req.team, hosts, shared.images, req.memory_scale, joined)
    lab = Lab(topo, plan, conns, team_dir(topo.lab, req.team), *_domain_type(topo, plan),
              host_networks=shared.host_networks, images_to_build=shared.planned,
              placement=placed.placement if placed else None, existing=joined, hold=placed and placed.hold)
    if check:
        lab.observed = check_hosts(lab, shared.seen)
    return lab


def place_teams(topo: Topology, req: LabRequest, teams: list[int], start_private: bool | None,
                refuse: bool, seen: dict[str, list[virt.HostObject]],
                waiting: Callable[[str], None] = lambda message: None) -> Placed | None:
    """The teams on the inventory's pool by capacity (lab/placement), from what its hosts
    have and where the lab's teams run (their domains' ownership); None without a pool.
    With `refuse`, teams that do not fit are a PlacementError; else they are placed as
    they would be were the hosts larger (status shows them "not created" there). A xen
    lab is refused unless every pool host is a Xen dom0's (a team may land on any): each is
    checked before a private libvirtd starts or its capacity is read. What was read from each
    pool host goes into `seen` (host URI → its domains and networks).

    A command that creates teams (`refuse`, and not `plan`) holds a lock per pool host
    from before it reads their capacity until each of its teams has defined its domains
    (Lab.placed): another run's placement on those hosts waits for it, so two runs never
    count the same room. The locks are this machine's (as the upload locks: apply.py)."""
    pool = _pool_hosts(topo, req, start_private)
    if pool is None:
        return None
    hold = None
    if refuse and start_private is not None:
        hold = locks.HeldFor([locks.host_lock_path(state_root() / "locks", h.uri, "placement") for _, h in pool],
                             teams, lambda path: waiting("another labbuilder run is placing teams on this pool: "
                                                         f"waiting for it (lock {path})"))
    try:
        return _placed(topo, req, teams, pool, refuse, seen, hold)
    except BaseException:
        if hold:
            hold.release()
        raise


def _placed(topo: Topology, req: LabRequest, teams: list[int], pool: list, refuse: bool,
            seen: dict[str, list[virt.HostObject]], hold: locks.HeldFor | None) -> Placed:
    """place_teams, from its pool's hosts on."""
    conns = ConnectionPool()
    try:
        check_xen_hosts(topo, [h for _, h in pool if h.runtime.running], conns)
        read = parallel([lambda m=m, h=h: _read_capacity(conns, m, h) for m, h in pool])
    finally:
        conns.close()
    seen.update((h.uri, objects) for (_, h), (objects, _) in zip(pool, read))
    found = placement.running_placement(topo, {h.pool_name: _team_nodes(objects, topo.lab)
                                               for (_, h), (objects, _) in zip(pool, read)})
    rooms = tuple(placement.host_room(m, capacity) for (m, _), (_, capacity) in zip(pool, read))
    result = placement.place(teams, placement.slot_needs(topo, req.memory_scale), rooms, found)
    if refuse and result.unfit:
        raise PlacementError(result.refusal())
    by_name = {h.pool_name: h for _, h in pool}
    return Placed(result, {t: {slot: by_name[name] for slot, name in slots.items()}
                           for t, slots in result.teams.items()}, hold)


def _team_nodes(objects: list[virt.HostObject], lab: str) -> list[tuple[int, str]]:
    """(team, node) of each of the lab's domains among `objects`, by their ownership."""
    return [(int(o.owner["team"]), o.owner.get("node", "")) for o in virt.owned(objects, lab)
            if o.kind == "domain" and o.owner.get("team", "").isdigit()]


def _read_capacity(conns: ConnectionPool, member, host: Host,
                   objects: list[virt.HostObject] | None = None) -> tuple[list[virt.HostObject], placement.HostCapacity]:
    """What is on a pool host (`objects` when read already) and what it has room for (a
    private libvirtd not started yet: nothing, and this machine's memory)."""
    if not host.runtime.running:
        return [], placement.HostCapacity(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    conn = conns(host)
    objects = virt.observe(conn) if objects is None else objects
    return objects, _host_capacity(conn, objects, lab_volumes=member.disk is not None)


def _host_capacity(conn, objects: list[virt.HostObject], lab_volumes: bool) -> placement.HostCapacity:
    """What a lab host has room for, read from libvirt: its memory; the memory of its
    running domains and of labbuilder's defined ones (`up` starts them), from `objects`;
    the free space of labbuilder's base pool (else of libvirt's `default` pool, on the
    same disk as a rule); with `lab_volumes`, what labbuilder's volumes take there."""
    promised = sum(o.memory_kib << 10 for o in objects if o.kind == "domain" and (o.active or o.owner))
    return placement.HostCapacity(virt.node_memory(conn), promised,
                                  virt.first_pool_free(conn, (BASE_POOL, "default")),
                                  virt.pools_allocation(conn, any_lab_pool) if lab_volumes else 0)


def check_capacity(labs: list[Lab], memory_scale: float, seen: dict[str, list[virt.HostObject]]) -> None:
    """Before a command creates teams on hosts it does not choose (the local host, an
    inventory's fixed slots): the memory and pool space their nodes not defined yet need,
    against what each host has and has promised (as a pool host without limits: its
    memory, once; its pool's free space). Refused (PlacementError) with what each host
    lacks; listing the host in an inventory's pool with `overcommit:` promises more.
    `seen`: what check_hosts read from the hosts."""
    hosts = {h.name: (PoolHost(SlotEntry(h.name)), h) for lab in labs for h in lab.plan.hosts}  # no limits
    conns = labs[0].conns
    read = parallel([lambda m=m, h=h: _read_capacity(conns, m, h, seen.get(h.uri)) for m, h in hosts.values()])
    rooms = tuple(placement.host_room(m, capacity) for (m, _), (_, capacity) in zip(hosts.values(), read))
    defined = {uri: {o.name for o in objects if o.kind == "domain"} for uri, objects in seen.items()}
    asked: dict[int, dict[str, list[placement.SlotNeed]]] = {}
    for lab in labs:
        for node in lab.plan.nodes:
            need = asked.setdefault(lab.plan.team, {}).setdefault(node.host.name, [])
            if node.domain not in defined.get(node.host.uri, ()):
                need.append(placement.node_need(lab.topology.node(node.name), memory_scale))
    refusal = placement.fixed_refusal(asked, rooms)
    if refusal:
        raise PlacementError(f"{refusal} (its memory less what its domains have; to promise more, list it in an "
                             "inventory's pool with overcommit:)")


def check_class(labs: list[Lab]) -> None:
    """Before a command changes several teams: a fixed MAC (the topology's own) allows one
    team per host its node lands on — and per host bridge its NIC is on, which joins the
    hosts behind it into one segment —, an address on a network the host has (`existing:`,
    shared by every team there) one team per host; several would clash halfway. Refused
    with the MAC's or address's line."""
    topology = labs[0].topology
    fixed = [(node.name, nic.index) for node in topology.nodes for nic in node.nics if nic.mac]
    if (sharing := _teams_sharing(labs, fixed)) > 1:
        node, index = fixed[0]
        raise TopologyError([topology.problem(
            ("nodes", node, "nics", index, "mac"), f"fixed MACs allow one team per host, and {sharing} teams "
            "would share it", "run one team per lab host (an inventory per team), or leave the MACs out")])
    shared = [(node.name, nic) for node in topology.nodes for nic in node.nics
              if nic.ip and topology.network(nic.network).existing]
    if (sharing := _teams_sharing(labs, [(node, nic.index) for node, nic in shared])) > 1:
        node, nic = shared[0]
        raise TopologyError([topology.problem(
            ("nodes", node, "nics", nic.index, "ip"), f"network '{topology.network(nic.network).existing}' is the "
            f"host's own, shared by every team: its fixed addresses allow one team, and {sharing} teams would share them",
            "run one team per lab host (an inventory per team), or leave the ips out")])


def _teams_sharing(labs: list[Lab], nics: list[tuple[str, int]]) -> int:
    """The most teams whose `nics` (node name, NIC index) are on one host or host bridge."""
    return max(Counter(where for lab in labs for where in _segments(lab, nics)).values(), default=0)


def _segments(lab: Lab, nics: list[tuple[str, int]]) -> set:
    """Where the team's `nics` (node name, NIC index) are: the hosts their nodes land on,
    and the host bridges they are on (one segment whichever host a team runs on)."""
    found = set()
    for name, index in nics:
        node = lab.plan.node(name)
        found.add(node.host.uri)
        if node.nics[index].host_bridge:
            found.add(("bridge", node.nics[index].network))
    return found


def existing_teams(req: LabRequest) -> list[int]:
    """The teams of the topology's lab that own anything on its hosts (the pool's, or where
    its slots land), found by ownership metadata as `down` finds them; starts nothing."""
    topo = load_topology(req.topology)
    hosts = every_host(topo, req.connect, req.inventory, state_root(), req.private, start=None)
    conns = ConnectionPool()
    try:
        return sorted({int(o.owner["team"]) for h in hosts for o in virt.owned_objects(conns(h), topo.lab)
                       if o.owner.get("team", "").isdigit()})
    finally:
        conns.close()


def _pool_hosts(topo: Topology, req: LabRequest, start_private: bool | None):
    """The inventory's pool (pool_hosts), each host's driver checked against the topology's
    domain type before a private libvirtd is started; None without a pool."""
    return pool_hosts(topo, req.connect, req.inventory, state_root(), req.private, start_private,
                      check=lambda where: check_host_drivers(topo, where, "pool host"))


def _hosts(topo: Topology, req: LabRequest, start_private: bool | None) -> dict[str, Host]:
    """Host per slot, checked against the topology's networks and domain type before a
    private libvirtd is started."""
    def check(where: dict[str, Host]) -> None:
        check_host_networks(topo, where)
        check_host_drivers(topo, where)

    return resolve_hosts(topo, req.connect, req.inventory, state_root(), req.private, start_private, check=check)


def find_images(topo: Topology, cache: Path | None, required: bool = True,
                planned: dict[str, Path] | None = None) -> dict[str, BaseImage]:
    """Every image the topology names, from `cache` (None: the default cache); a missing
    one is a topology problem — unless `planned` is given: a missing image with a recipe
    (image_recipe) is then planned (a stand-in) and added to `planned` (name → recipe),
    for `plan` to show and `up` to build first. Not `required` (commands that make no
    overlays: down, status, ssh …): stand-ins carrying only the names, and the cache is
    not read, so these work where it is empty (cleared, or another machine)."""
    names: dict = {}
    for name, path in topo.image_uses():
        names.setdefault(name, path)  # a problem names the first use
    if not required:
        return {name: BaseImage(name, "", "", 0, 0) for name in names}

    cache = cache or image_cache.default_cache_dir()
    built = {b.name: b for b in image_cache.list_images(cache)}
    found, problems = {}, []
    for name, path in names.items():
        if name not in built:
            recipe = image_recipe(topo, name)
            if recipe is not None and planned is not None:
                planned[name] = recipe
                found[name] = BaseImage(name, "", "", 0, 0)
                continue
            problems.append(topo.problem(path, f"base image {name!r} is not built (cache: {cache})",
                                         f"labbuilder image build {recipe}" if recipe else
                                         f"no recipe images/{name}.yaml next to the topology or above it"))
            continue
        m = built[name].manifest["image"]
        found[name] = BaseImage(name, str(built[name].image), m["sha256"], m["size"], m["virtual_size"])
    if problems:
        raise TopologyError(problems)
    return found


def image_recipe(topo: Topology, name: str) -> Path | None:
    """The recipe of image `name`: images/<name>.yaml beside the topology, or in the
    directory above it (a project's topologies/ and images/ side by side)."""
    here = Path(topo.path).resolve().parent
    for d in (here, here.parent):
        recipe = d / "images" / f"{name}.yaml"
        if recipe.is_file():
            try:  # as the user would type it, from here
                return recipe.relative_to(Path.cwd())
            except ValueError:
                return recipe
    return None


def images_to_build(req: LabRequest, teams: list[int] | None = None) -> dict[Path, str]:
    """The images the topology names that are not in the cache but have a recipe
    (image_recipe): recipe → image name, for `up` and `reset` to build first. What would
    refuse the command once they are built refuses it before the minutes of a build:
    the teams (`teams`, else req's) are opened against the images to be, as `plan` opens
    them (placed on a pool, their hosts checked — a xen lab's for libvirt's xen driver —,
    nothing started), and a class is checked for what its teams would share."""
    topo = load_topology(req.topology)
    planned: dict[str, Path] = {}
    find_images(topo, req.image_cache, planned=planned)
    if planned:
        labs = open_labs([replace(req, team=t) for t in teams or [req.team]], start_private=None)
        try:
            if len(labs) > 1:
                check_class(labs)
        finally:
            for lab in labs:
                lab.close()
    return {recipe: name for name, recipe in planned.items()}


def _domain_type(topo: Topology, plan: LabPlan) -> tuple[str, str]:
    """The libvirt domain type of the lab's nodes, and why."""
    if topo.domain_type == "xen":
        return "xen", "a Xen PV domU, as the topology says"
    if all(is_local_uri(h.uri) for h in plan.hosts):
        found = accel.detect()
        return found.domain_type, found.reason
    return "kvm", "remote lab hosts are expected to have KVM"


def check_xen_hosts(topo: Topology, hosts, conns: ConnectionPool) -> None:
    """A domain_type xen lab's `hosts` are Xen dom0s: libvirt's xen driver answers there and
    runs xen domains (libvirt's test driver takes any domain type). TopologyError, one line
    per host, if not: a host without the Xen hypervisor has the driver but it never loads."""
    if topo.domain_type != "xen":
        return
    problems = []
    for host in (h for h in hosts if uri_driver(h.uri) != "test"):
        try:
            types = virt.domain_types(conns(host))
            why = "" if "xen" in types else f"it runs {', '.join(sorted(types)) or 'no'} domains"
        except HostError as e:
            why = e.reason or str(e)
        if why:
            problems.append(topo.problem(
                ("domain_type",), f"host {host.name} has no Xen hypervisor (libvirt's xen driver: {why}): "
                "a domain_type xen lab runs only on a Xen dom0", XEN_HINT))
    if problems:
        raise TopologyError(problems)


def check_hosts(lab: Lab, seen: dict[str, list[virt.HostObject]]) -> dict[str, list[virt.HostObject]]:
    """Subnets and MACs that clash with what already exists on a target host (not our
    own): libvirt networks and domains, and on a local host its routes too, the host
    bridges its bridge-mode networks need, and the networks it joins (existing.problems).
    `seen`: what the command read from hosts already (host URI → every domain and
    network), the teams' other hosts added to it. Returns the lab's hosts' part of it."""
    for h in lab.plan.hosts:
        if h.uri not in seen:
            seen[h.uri] = virt.observe(lab.conns(h)) if h.runtime.running else []
    observed = {h.uri: seen[h.uri] for h in lab.plan.hosts}
    problems = _mac_clashes(lab, observed) + existing.problems(lab.topology, lab.plan, lab.existing, observed)
    # A joined network (existing:) is not ours: the lab's own networks must not clash with it.
    ours = {n.libvirt_name for n in lab.plan.networks if not n.existing}
    for host in lab.plan.hosts:
        networks = [(o.name, ipaddress.ip_interface(f"{addr}/{prefix}").network)
                    for o in observed[host.uri] if o.kind == "network" for addr, prefix in o.subnets]
        others = [(f"network {name!r} ({subnet})", subnet) for name, subnet in networks if name not in ours]
        if host.runtime.running and is_local_uri(host.uri):  # a remote host's routes are not visible from here
            libvirt_subnets = {subnet for _, subnet in networks}
            others += [(f"route {r.network} dev {r.dev}", r.network) for r in lab.host_networks.routes(host.runtime.ssh_prefix)
                         if r.network not in libvirt_subnets]
            problems += _missing_bridges(lab, host)
        for net in (n for n in lab.plan.networks if n.host == host and n.subnet and not n.existing):
            for other, subnet in others:
                # A bridge-mode network joins a LAN the host already routes to: that is the point.
                if subnet.overlaps(net.subnet) and not (net.mode == "bridge" and other.startswith("route ")):
                    problems.append(lab.topology.problem(
                        ("networks", net.name, "subnet"), f"{net.subnet} clashes with {other} on {host.name}",
                        "choose another subnet or team, or bring that network down"))
    if problems:
        raise TopologyError(problems)
    return observed


def _missing_bridges(lab: Lab, host: Host) -> list:
    """Bridge-mode networks on a local `host` (the topology's, or joined by the inventory)
    whose host bridge is not there: libvirt would start them and fail at the first guest."""
    wanted = [n for n in lab.plan.networks if n.host == host and n.mode == "bridge"]
    present = lab.host_networks.bridges(host.runtime.ssh_prefix) if wanted else set()
    return [lab.topology.problem(("networks", net.name), f"host bridge {net.bridge!r} does not exist on {host.name}",
                                 "create it (linked between the hosts, for a joined network), or name another")
            for net in wanted if net.bridge not in present]


def _mac_clashes(lab: Lab, observed: dict[str, list[virt.HostObject]]) -> list:
    problems = []
    ours = {n.domain for n in lab.plan.nodes}
    for host in lab.plan.hosts:
        used = {mac: o.name for o in observed[host.uri] if o.kind == "domain" and o.name not in ours
                for mac in o.macs}
        for node in (n for n in lab.plan.nodes if n.host == host):
            for i, nic in enumerate(node.nics):
                if nic.mac in used:
                    fixed = lab.topology.node(node.name).nics[i].mac is not None
                    problems.append(lab.topology.problem(
                        ("nodes", node.name, "nics", i) + (("mac",) if fixed else ()),
                        f"MAC {nic.mac} is already used by domain {used[nic.mac]!r} on {host.name}",
                        "fixed MACs allow one team per host" if fixed else "use another team number"))
    return problems


def team_lock(lab: Lab) -> ContextManager[None]:
    """One up/reset/down per lab and team at a time; other teams run in parallel."""
    return locks.team_lock(lab.state, lab.plan.lab, lab.plan.team)


def _context(lab: Lab, progress: Progress) -> ApplyContext:
    """What applying needs; makes the lab key and each node's host key on first use and
    lists the host keys in the team's known_hosts (under the team lock)."""
    private_dir(lab.state)
    pubkey = ssh.ensure_keypair(lab.ssh_key)
    host_keys = {n.name: ssh.ensure_host_key(lab.state / "host-keys" / n.name) for n in lab.plan.nodes}
    _write_known_hosts(lab, host_keys)
    student = handout.student_key(lab.state).with_suffix(".pub")
    return ApplyContext(lab.plan, diff.render_plan(lab.plan, lab.domain_type), lab.conns, pubkey, progress,
                        state_root() / "locks", host_keys, student.read_text().strip() if student.exists() else None)


def _write_known_hosts(lab: Lab, host_keys: dict[str, tuple[str, str]]) -> None:
    """The team's known_hosts: each node's host key under its libvirt name, but for nodes
    whose key labbuilder did not give (_unknown_host_key)."""
    write_private(lab.known_hosts, ssh.known_hosts([(n.domain, host_keys[n.name][1]) for n in lab.plan.nodes
                                                    if not _unknown_host_key(lab, n).exists()]))


def changes(lab: Lab) -> list[Action]:
    """What `up` would do (used by `plan`); changes nothing."""
    want = diff.render_plan(lab.plan, lab.domain_type)
    return diff.diff(lab.plan, want, observe.observe_hosts(lab.plan, lab.conns, lab.observed, lab.existing))


def up(lab: Lab, progress: Progress) -> list[Action]:
    """Converge the hosts to the plan (no waiting: see `wait`); return what was done."""
    with team_lock(lab):
        packages.ensure_cache(lab.plan, progress)  # before any guest boots: they install through it
        running = _running(lab)
        # A new key while nodes run: the team's state directory was deleted, and they know only the old one.
        booted = running if not lab.ssh_key.exists() else []
        # A running node with no host key file here booted with a key labbuilder did not make
        # (its team's state was lost, or an older labbuilder made it): until a reset gives it
        # one, SSH learns its key on first use (_unknown_host_key).
        for node in running:
            if not (lab.state / "host-keys" / node.name).exists():
                private_dir(lab.state)
                _unknown_host_key(lab, node).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                _unknown_host_key(lab, node).touch()
        ctx = _context(lab, progress)
        actions = diff.diff(lab.plan, ctx.want, observe.observe_hosts(lab.plan, lab.conns))
        try:
            apply.apply(ctx, actions)
        finally:
            lab.placed()
        if booted:
            give_key(lab, booted, ctx.pubkey, progress)
        write_handoff(lab, {})
    return actions


def _unknown_host_key(lab: Lab, node: NodePlan) -> Path:
    """Marks a node whose host key labbuilder did not give (its team state was lost while it
    ran): known_hosts leaves it out, and SSH learns its key on first use, until a reset."""
    return lab.state / "host-keys" / f"{node.name}.unknown"


def _running(lab: Lab) -> list[NodePlan]:
    return [n for n in lab.plan.nodes if virt.domain_state(lab.conns(n.host), n.domain) == "running"]


def give_key(lab: Lab, nodes: list[NodePlan], pubkey: str, progress: Progress) -> None:
    """Give the team's new SSH key to `nodes`, booted with the old one, through their guest
    agents; a node whose agent does not answer is named, with the way out."""
    given = parallel([lambda n=n: virt.add_authorized_key(lab.conns(n.host), n.domain, "root", pubkey)
                      for n in nodes])
    missed = [n.name for n, ok in zip(nodes, given) if not ok]
    if missed:
        progress.info(f"note: the team's SSH key is new and no guest agent took it on {', '.join(missed)}: "
                      f"if they do not answer on SSH, reset them (labbuilder reset --node NODE)")


def wait(lab: Lab, progress: Progress) -> dict[str, str]:
    """Wait until every node answers on SSH; refresh the hand-off files with the addresses."""
    pause_point("wait")
    ready = wait_for.wait_ready(lab.plan, lab.conns, lab.access, progress)
    handoff(lab, ready)
    return ready


def handoff(lab: Lab, addresses: dict[str, str]) -> HandoffFiles:
    """write_handoff under the team lock (commands that do not hold it already)."""
    with team_lock(lab):
        return write_handoff(lab, addresses)


def reset(lab: Lab, nodes: list[str], progress: Progress) -> dict[str, str]:
    """Nodes (default: all) back to a fresh overlay of the base image, running, on SSH.
    Their checkpoints go with the old overlays."""
    targets = [lab.plan.node(n) for n in nodes] if nodes else list(lab.plan.nodes)
    with team_lock(lab):
        packages.ensure_cache(lab.plan, progress)
        ctx = _context(lab, progress)
        infrastructure = (ObjectKind.IMAGE, ObjectKind.NETWORK, ObjectKind.POOL)
        actions = diff.diff(lab.plan, ctx.want, observe.observe_hosts(lab.plan, lab.conns))
        # The reset nodes' host entries the plan no longer has go before their domains are
        # defined anew (the new metadata would not record them); their own are added as each is.
        stale = [a for a in actions if a.kind == ObjectKind.HOST_ENTRY and a.verb == Verb.REMOVE
                 and a.entry.name in {n.name for n in targets}]
        apply.apply(ctx, [a for a in actions if a.kind in infrastructure] + stale)
        dropped = checkpoints.drop(lab.conns, targets)
        if dropped:
            progress.info(f"Checkpoints of the reset nodes are gone with their disks: {', '.join(dropped)}")
        try:
            apply.reset_nodes(ctx, targets)
        finally:
            lab.placed()
        known = [n for n in targets if _unknown_host_key(lab, n).exists()]
        for node in known:  # their new seeds carry the host keys labbuilder made: list them
            _unknown_host_key(lab, node).unlink()
        if known:
            _write_known_hosts(lab, ctx.host_keys)
        return wait_for.wait_ready(lab.plan, lab.conns, lab.access, progress, targets)


def reset_to(lab: Lab, name: str, nodes: list[str], progress: Progress, cold: bool = False) -> dict[str, str]:
    """Nodes (default: all) back to checkpoint `name`: warm (memory state, no boot, clocks
    set) or `cold` (its disks, then a boot); running and answering on SSH."""
    require_checkpoints(lab)
    targets = [lab.plan.node(n) for n in nodes] if nodes else list(lab.plan.nodes)
    with team_lock(lab):
        if not cold:
            checkpoints.revert(lab.plan, lab.conns, lab.access, name, targets, progress)
            return {n.name: ssh_target(lab, n.name).address for n in targets}
        checkpoints.revert_cold(lab.plan, lab.conns, name, targets, progress)
        return wait_for.wait_ready(lab.plan, lab.conns, lab.access, progress, targets)


def take_checkpoint(lab: Lab, name: str, progress: Progress, role: str | None = None) -> checkpoints.Checkpoint:
    """A consistent point (disks + memory) of every node of the team, once they have
    finished booting."""
    require_checkpoints(lab)
    with team_lock(lab):
        return _checkpoint(lab, name, progress, role)


def require_checkpoints(lab: Lab) -> None:
    """Checkpoints are QEMU's (internal snapshots with memory, the guest agent's clock and
    flush): a domain_type xen lab has none, refused at that line before anything changes."""
    if lab.topology.domain_type == "xen":
        raise TopologyError([lab.topology.problem(
            ("domain_type",), "checkpoints (checkpoint, up --checkpoints, reset --to) need QEMU's snapshots: "
            "a domain_type xen lab has none", "reset the team cold (labbuilder reset) instead")])


def _checkpoint(lab: Lab, name: str, progress: Progress, role: str | None) -> checkpoints.Checkpoint:
    settle_boots(lab, progress)
    return checkpoints.create(lab.plan, lab.conns, name, progress, role)


def settle_boots(lab: Lab, progress: Progress, timeout: float = 600) -> None:
    """Wait until systemd on every node has finished starting up (cloud-init's last stage
    included): a checkpoint taken while guests still boot keeps that work in its memory
    state, and every reset to it does it again. A node SSH does not reach is not waited for."""
    nodes = [n for n in lab.plan.nodes if virt.domain_state(lab.conns(n.host), n.domain) == "running"]
    with progress.stage(f"wait for {len(nodes)} node(s) to finish booting"):
        parallel([lambda n=n: _boot_finished(lab, n.name, timeout) for n in nodes])


def _boot_finished(lab: Lab, node_name: str, timeout: float) -> None:
    try:  # "degraded" (a unit failed) is finished too: its exit status does not matter here
        ssh.ssh_run(ssh_target(lab, node_name), ["systemctl", "is-system-running", "--wait"], check=False,
                    timeout=timeout)
    except LabError:
        pass  # no address, unreachable or too slow: checkpoint it as it is


def list_checkpoints(lab: Lab) -> list[checkpoints.Checkpoint]:
    if not all(h.runtime.running for h in lab.plan.hosts):  # a private libvirtd not started: none
        return []
    return checkpoints.listing(lab.plan, lab.conns)


def serial_log(lab: Lab, node_name: str) -> str:
    """What the node's serial console printed so far (its log file on a local lab host)."""
    node = lab.plan.node(node_name)
    path = render.serial_log_path(node)
    if not is_local_uri(node.host.uri):
        raise HostError(f"{node_name}'s console log is on {node.host.name} at {path}: read it there")
    proc = run([*node.host.runtime.files_prefix, "cat", path], check=False)
    if proc.returncode != 0:
        raise HostError(f"{node_name} has no console log yet on {node.host.name} ({path}): is it created?")
    return proc.stdout


def check_config(lab: Lab) -> None:
    """The config stage's roles exist (before `up` changes anything)."""
    config_stage.load_roles(lab.topology, lab.plan)


def configure(lab: Lab, progress: Progress, addresses: dict[str, str] | None = None, *,
              start: str | None = None, until: str | None = None, only: str | None = None,
              driver: str = "builtin", checkpoints_after: bool = False, checks_after: bool = False) -> list[str]:
    """Run the config stage on the team's nodes (they must answer on SSH); return the
    roles run. With `checks_after`, each role's checks run after it and a failing one
    stops the stage; with `checkpoints_after`, checkpoint `after-<role>` after each role."""
    with team_lock(lab):
        addresses = addresses or {n.name: ssh_target(lab, n.name).address for n in lab.plan.nodes}
        files = write_handoff(lab, addresses)
        def after(role: str) -> None:
            if checks_after:
                _require_checks(stage, role)
            if checkpoints_after:
                _checkpoint(lab, f"after-{role}", progress, role)

        stage = _stage(lab, addresses, progress, after if checks_after or checkpoints_after else None)
        if driver == "ansible":
            return config_stage.ansible_stage(stage, files.inventory, files.ssh_config, start, until, only)
        try:
            return config_stage.run_stage(stage, start, until, only)
        finally:
            config_stage.close_connections(stage)


@dataclass(frozen=True)
class NodeDisk:
    """What a capture reads: a node's root overlay as its host sees it (`prefix` runs
    qemu-img where that path and its backing file are visible), at an internal snapshot
    (`checkpoint`) or as it is; whether its domain runs; its base image's name; and where
    it comes from, for the manifest."""

    path: str
    prefix: tuple[str, ...]
    checkpoint: str | None
    running: bool
    base_image: str
    source: dict


def node_disk(lab: Lab, name: str, checkpoint: str | None) -> NodeDisk:
    """What `image capture` reads of node `name`: its root overlay, shut off or at
    `checkpoint`. Refused (LabError) for a node that is not there, on a host whose files
    are not visible here, running with no checkpoint named, or without that checkpoint."""
    node = next((n for n in lab.plan.nodes if n.name == name), None)
    if node is None:
        raise LabError(f"no node {name!r} in {lab.plan.lab}: {', '.join(n.name for n in lab.plan.nodes)}")
    where = f"{lab.plan.lab} team {lab.plan.team} node {name}"
    if not is_local_uri(node.host.uri):
        raise HostError(f"{where} is on {node.host.name}, whose files are not visible here: capture it on that host")
    conn = lab.conns(node.host)
    state = virt.domain_state(conn, node.domain)
    if state == "absent":
        raise LabError(f"{where} is not created: nothing to capture (labbuilder up first)")
    if checkpoint is None and state != "shut off":
        raise LabError(f"{where} is {state}: capture reads a shut-off node's disk, or a checkpoint's "
                       f"(--checkpoint NAME); shut it down first (labbuilder ssh TOPOLOGY {name} --team "
                       f"{lab.plan.team} -- poweroff)")
    if checkpoint is not None and checkpoint not in {s.name for s in virt.snapshots(conn, node.domain)}:
        raise CheckpointError(f"{where} has no checkpoint {checkpoint!r} (labbuilder checkpoints lists them)")
    pool = virt.lookup_pool(conn, lab.plan.pool)
    if pool is None:
        raise LabError(f"{where}: its pool {lab.plan.pool} is not there")
    return NodeDisk(virt.volume_path(pool, node.vda), node.host.runtime.files_prefix, checkpoint, state != "shut off",
                    node.image.name, {"lab": lab.plan.lab, "team": lab.plan.team, "node": name,
                                      "topology": str(lab.topology.path), "checkpoint": checkpoint})


def upload_image(lab: Lab, built, name: str, node: str | None, progress: Progress):
    """Upload a built image into the lab's Glance through a node of the image role;
    verified against its manifest (glance.Uploaded)."""
    node = glance.image_node(lab.plan, node)
    return glance.upload(ssh_target(lab, node), node, built, name, progress)


def package_source(lab: Lab) -> list[str]:
    """What `plan` says of the guests' package source."""
    return packages.describe(lab.plan)


def node_proxy(lab: Lab, node: NodePlan) -> str | None:
    """The apt proxy a node's seed gives it (None: none)."""
    return packages.node_proxy(lab.plan, node)


def check(lab: Lab, progress: Progress, role: str | None = None) -> list:
    """Run the checks of every role (or of `role`) on the team's nodes; a CheckResult per
    node and check. The nodes must answer on SSH."""
    addresses = {n.name: ssh_target(lab, n.name).address for n in lab.plan.nodes}
    stage = _stage(lab, addresses, progress)
    try:
        return checks.run_checks(stage, checks.load_checks(stage, role))
    finally:
        config_stage.close_connections(stage)


def _require_checks(stage, role: str) -> None:
    failed = [r for r in checks.run_checks(stage, checks.load_checks(stage, role)) if not r.passed]
    if failed:
        f = failed[0]
        raise ConfigError([f"check {f.check} of role {role} failed on {f.node} (exit status {f.status})",
                           *[f"  | {line}" for line in f.tail], f"full log: {f.log}",
                           f"{len(failed)} check(s) failed in all; `labbuilder check` shows every one"])


def _stage(lab: Lab, addresses: dict[str, str], progress: Progress, after=None):
    targets = {n.name: lab.target(n, addresses[n.name]) for n in lab.plan.nodes}
    return config_stage.Stage(lab.topology, lab.plan, lab.conns, targets, inventory(lab.plan, addresses),
                              lab.state / "config", progress, after)


def status(lab: Lab, ready: dict[str, str] | None = None, probe_rest: bool = False) -> LabStatus:
    """Per node: host, state, addresses, SSH; per network: bridge, active. With `ready`
    (node → address, from a wait just done) SSH is taken from it instead of probed;
    `probe_rest` still probes the nodes it does not name."""
    owners = {o.name: o.owner for h in lab.plan.hosts if h.runtime.running
              for o in virt.owned_objects(lab.conns(h), lab.plan.lab, lab.plan.team)}

    def one(node: NodePlan) -> NodeStatus:
        if not node.host.runtime.running:  # a private libvirtd not started yet: nothing exists there
            return NodeStatus(node.name, node.domain, node.host.name, "absent",
                              {nic.guest_name: None for nic in node.nics}, False, tuple(node.roles), (), None)
        conn = lab.conns(node.host)
        state = virt.domain_state(conn, node.domain)
        leases = wait_for.node_leases(lab.conns, node)
        ips = {nic.guest_name: leases.get(nic.mac) or (str(nic.ip) if nic.ip else None) for nic in node.nics}
        address = node.ssh_ip or next((ip for ip in ips.values() if ip), None)
        if ready is not None and (node.name in ready or not probe_rest):
            reachable = node.name in ready
        else:
            try:
                reachable = bool(state == "running" and address and lab.ssh_key.exists() and
                                 ssh.answers(lab.target(node, address)))
            except HostError:  # another host key than ours: not our node to log in to
                reachable = False
        created = owners.get(node.domain, {}).get("created", "")
        return NodeStatus(node.name, node.domain, node.host.name, state, ips, reachable, tuple(node.roles),
                          tuple(config_stage.read_record(conn, node.domain).done),
                          int(time.time()) - int(created) if created.isdigit() else None)

    nodes = parallel([lambda n=n: one(n) for n in lab.plan.nodes])
    return LabStatus(lab.plan.lab, lab.plan.team, tuple(nodes), tuple(_network_status(lab, net) for net in lab.plan.networks))


def _network_status(lab: Lab, net: NetworkPlan) -> NetworkStatus:
    info = virt.network_info(lab.conns(net.host), net.libvirt_name) if net.host.runtime.running else None
    return NetworkStatus(net.name, net.libvirt_name, net.host.name, str(net.subnet) if net.subnet else None,
                         info[1] if info else None, bool(info and info[0]), info is not None)


def write_handout(lab: Lab, out: Path, jump: str | None, progress: Progress) -> Path:
    """The team's handout (lab/handout.py) in `out`: its student key made if need be and
    installed on every node now (they must answer on SSH) and in the seeds of nodes made
    or reset later. Returns the team's handout directory."""
    with team_lock(lab):
        private_dir(lab.state)
        pubkey = handout.ensure_student_key(lab.state)
        addresses = {n.name: ssh_target(lab, n.name).address for n in lab.plan.nodes}
        with progress.stage(f"install the team's student key on {len(addresses)} node(s)"):
            parallel([lambda n=n: ssh.ssh_run(lab.target(n, addresses[n.name]),
                                              ["bash", "-c", handout.install_script(pubkey)])
                      for n in lab.plan.nodes])
        nodes = [handout.NodeLine(n.name, tuple(n.roles), addresses[n.name],
                                  {nic.network: str(nic.ip) for nic in n.nics if nic.ip}) for n in lab.plan.nodes]
        return handout.write(out, lab.plan.lab, lab.plan.team, nodes, lab.state,
                             lab.known_hosts if lab.known_hosts.exists() else None,
                             {n.name: n.domain for n in lab.plan.nodes}, dict(lab.topology.vars), jump)


# ---- hand-off: inventory, ssh config, hosts file ----

def ssh_target(lab: Lab, node_name: str) -> ssh.SshTarget:
    node = lab.plan.node(node_name)
    address = wait_for.node_address(lab.conns, node)
    if address is None:
        raise TopologyError([lab.topology.problem(("nodes", node_name), "node has no known address yet")])
    return lab.target(node, address)


def inventory(plan: LabPlan, addresses: dict[str, str]) -> dict:
    """Ansible-compatible YAML inventory: groups per role, host vars per node."""
    hosts = {}
    for node in plan.nodes:
        hosts[node.name] = {
            "ansible_host": addresses.get(node.name) or node.ssh_ip,
            "ansible_user": "root",
            "lab_name": plan.lab,
            "roles": list(node.roles),
            "lab_team": plan.team,
            "fqdn": node.fqdn,
            "libvirt_domain": node.domain,
            "libvirt_uri": node.host.uri,
            "interfaces": [{"name": n.guest_name, "mac": n.mac, "network": n.network,
                            "ip": str(n.ip) if n.ip else None, "prefix": n.prefix,
                            "configured": n.configure} for n in node.nics],
            "ips": {n.network: str(n.ip) for n in node.nics if n.ip},
            "disks": [{"device": f"/dev/{d.target}", "size_bytes": d.size_bytes} for d in node.disks],
            **({"root_disk_bytes": node.root_bytes} if node.root_bytes else {}),
        }
    roles = sorted({r for n in plan.nodes for r in n.roles})
    networks = {n.name: {"subnet": str(n.subnet) if n.subnet else None,
                        "gateway": str(n.gateway) if n.gateway else None, "mode": n.mode} for n in plan.networks}
    return {"all": {"hosts": hosts, "vars": {"lab_networks": networks}, "children": {
        r: {"hosts": {n.name: None for n in plan.nodes if r in n.roles}} for r in roles}}}


@dataclass(frozen=True)
class HandoffFiles:
    """The hand-off files in a team's state directory."""

    inventory: Path  # inventory.yaml, Ansible-compatible
    ssh_config: Path
    hosts: Path  # /etc/hosts lines
    vars: Path  # vars.yaml: the topology's vars, for the roles


def write_handoff(lab: Lab, addresses: dict[str, str]) -> HandoffFiles:
    """Write inventory.yaml, ssh_config, hosts and the role variables (vars.yaml) into
    the lab's state directory (0700; each file 0600, written whole then renamed into
    place, so a reader never sees half a file). Callers hold the team lock."""
    private_dir(lab.state)
    files = HandoffFiles(lab.state / "inventory.yaml", lab.state / "ssh_config", lab.state / "hosts",
                         lab.state / "vars.yaml")
    reached = [n for n in lab.plan.nodes if addresses.get(n.name) or n.ssh_ip]
    write_private(files.vars, yaml.safe_dump(dict(lab.topology.vars), sort_keys=False))
    write_private(files.inventory, yaml.safe_dump(inventory(lab.plan, addresses), sort_keys=False))
    write_private(files.hosts, "".join(f"{addresses.get(n.name) or n.ssh_ip} {n.name}\n" for n in reached))
    write_private(files.ssh_config, ssh.ssh_config(
        [(n.name, addresses.get(n.name) or n.ssh_ip, n.domain, n.host.runtime.ssh_prefix) for n in reached],
        lab.access))
    return files


def private_dir(path: Path) -> None:
    """`path` and the state root above it exist, readable by their owner only."""
    for d in (state_root(), path):
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        d.chmod(0o700)


def write_private(path: Path, text: str) -> None:
    """`text` into `path`, mode 0600, atomically: a temporary file beside it, renamed over it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)

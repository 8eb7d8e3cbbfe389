"""What the lab commands do, each a column of steps: load → validate → plan → render →
apply → wait → hand-off. The CLI calls these and prints what they return."""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ContextManager

import yaml

from labbuilder.lab import apply, diff, observe, packages
from labbuilder.lab import wait as wait_for
from labbuilder.lab.apply import ApplyContext
from labbuilder.lab.diff import Action, ObjectKind
from labbuilder.lab.hosts import Host, resolve_hosts, state_root, team_dir
from labbuilder.lab.plan import BaseImage, LabPlan, NodePlan, check_host_networks, plan_lab
from labbuilder.model.errors import ConfigError, LabError, TopologyError
from labbuilder.model.names import is_local_uri
from labbuilder.model.request import LabRequest
from labbuilder.model.topology import Topology, load_topology
from labbuilder.progress import Progress

# checkpoint, config and the image pipeline are imported where they
# are used: `status` and `ssh` start sooner without them (`down` is labbuilder.teardown).
from labbuilder.system import accel, hostnet, locks, ssh, virt
from labbuilder.system.connections import Connections, parallel
from labbuilder.system.pause import pause_point

if TYPE_CHECKING:
    from labbuilder.lab.checkpoint import Checkpoint


@dataclass
class Lab:
    """A planned lab, its connections and its local state directory."""

    topology: Topology
    plan: LabPlan
    conns: Connections
    state: Path
    domain_type: str
    accel_reason: str
    # What check_hosts read, per host URI. `plan` diffs against it; up and reset read again
    # under the team lock: another run of the team may have changed things in between.
    observed: dict[str, list[virt.HostObject]] | None = None

    @property
    def key(self) -> Path:
        return self.state / "id_ed25519"

    def close(self) -> None:
        self.conns.close()


def open_lab(req: LabRequest, start_private: bool | None = True, check: bool = True) -> Lab:
    """Load and validate the topology, find its images and hosts, plan it; with `check`
    (commands that create things), check the hosts for clashing subnets and MACs.
    `start_private`: start a private libvirtd if one is needed and none runs; False: fail
    then; None: plan against a stand-in for it (nothing exists there yet)."""
    topo = load_topology(req.topology)
    images = find_images(topo, req.image_cache, required=check)
    hosts = _hosts(topo, req, start_private)
    plan = plan_lab(topo, req.team, hosts, images, req.memory_scale)
    lab = Lab(topo, plan, Connections(), team_dir(topo.lab, req.team), *_domain_type(plan))
    if check:
        lab.observed = check_hosts(lab)
    return lab


def _hosts(topo: Topology, req: LabRequest, start_private: bool | None) -> dict[str, Host]:
    """Host per slot, checked against the topology's networks before a private libvirtd
    is started."""
    return resolve_hosts(topo, req.connect, req.inventory, state_root(), req.private, start_private,
                         check=lambda where: check_host_networks(topo, where))


def find_images(topo: Topology, cache: Path | None, required: bool = True) -> dict[str, BaseImage]:
    """Every image the topology names, from `cache` (None: the default cache); a missing
    one is a topology problem. Not `required` (commands that make no overlays: down,
    status, ssh …): stand-ins carrying only the names, and the cache is not read, so these
    work where it is empty (cleared, or another machine with the topology)."""
    names: dict = {}
    for name, path in topo.image_uses():
        names.setdefault(name, path)  # a problem names the first use
    if not required:
        return {name: BaseImage(name, "", "", 0, 0) for name in names}
    from labbuilder.image import build as image_mod

    cache = cache or image_mod.default_cache_dir()
    built = {b.name: b for b in image_mod.list_images(cache)}
    found, problems = {}, []
    for name, path in names.items():
        if name not in built:
            problems.append(topo.problem(path, f"base image {name!r} is not built (cache: {cache})",
                                         f"labbuilder image build images/{name}.yaml"))
            continue
        m = built[name].manifest["image"]
        found[name] = BaseImage(name, str(built[name].image), m["sha256"], m["size"], m["virtual_size"])
    if problems:
        raise TopologyError(problems)
    return found


def _domain_type(plan: LabPlan) -> tuple[str, str]:
    if all(is_local_uri(h.uri) for h in plan.hosts):
        found = accel.detect()
        return found.domain_type, found.reason
    return "kvm", "remote lab hosts are expected to have KVM"


def check_hosts(lab: Lab) -> dict[str, list[virt.HostObject]]:
    """Subnets and MACs that clash with what already exists on a target host (not our
    own): libvirt networks and domains, and on a local host its routes too, and the
    host bridges its bridge-mode networks need.
    Returns what it read: every domain and network, per host URI."""
    observed = {h.uri: virt.observe(lab.conns(h)) if h.running else [] for h in lab.plan.hosts}
    problems = _mac_clashes(lab, observed)
    ours = {n.name for n in lab.plan.networks}
    for host in lab.plan.hosts:
        networks = [(o.name, ipaddress.ip_interface(f"{addr}/{prefix}").network)
                    for o in observed[host.uri] if o.kind == "network" for addr, prefix in o.subnets]
        existing = [(f"network {name!r} ({subnet})", subnet) for name, subnet in networks if name not in ours]
        if host.running and is_local_uri(host.uri):  # a remote host's routes are not visible from here
            libvirt_subnets = {subnet for _, subnet in networks}
            existing += [(f"route {r.network} dev {r.dev}", r.network) for r in hostnet.routes(host.ssh_prefix)
                         if r.network not in libvirt_subnets]
            problems += _missing_bridges(lab, host)
        for net in (n for n in lab.plan.networks if n.host == host and n.subnet):
            for other, subnet in existing:
                # A bridge-mode network joins a LAN the host already routes to: that is the point.
                if subnet.overlaps(net.subnet) and not (net.mode == "bridge" and other.startswith("route ")):
                    problems.append(lab.topology.problem(
                        ("networks", net.key, "subnet"), f"{net.subnet} clashes with {other} on {host.name}",
                        "choose another subnet or team, or bring that network down"))
    if problems:
        raise TopologyError(problems)
    return observed


def _missing_bridges(lab: Lab, host: Host) -> list:
    """Bridge-mode networks on a local `host` (the topology's, or joined by the inventory)
    whose host bridge is not there: libvirt would start them and fail at the first guest."""
    wanted = [n for n in lab.plan.networks if n.host == host and n.mode == "bridge"]
    present = hostnet.bridges(host.ssh_prefix) if wanted else set()
    return [lab.topology.problem(("networks", net.key), f"host bridge {net.bridge!r} does not exist on {host.name}",
                                 "create it (linked between the hosts, for a joined network), or name another")
            for net in wanted if net.bridge not in present]


def _mac_clashes(lab: Lab, observed: dict[str, list[virt.HostObject]]) -> list:
    problems = []
    ours = {n.name for n in lab.plan.nodes}
    for host in lab.plan.hosts:
        used = {mac: o.name for o in observed[host.uri] if o.kind == "domain" and o.name not in ours
                for mac in o.macs}
        for node in (n for n in lab.plan.nodes if n.host == host):
            for i, nic in enumerate(node.nics):
                if nic.mac in used:
                    fixed = lab.topology.node(node.key).nics[i].mac is not None
                    problems.append(lab.topology.problem(
                        ("nodes", node.key, "nics", i) + (("mac",) if fixed else ()),
                        f"MAC {nic.mac} is already used by domain {used[nic.mac]!r} on {host.name}",
                        "fixed MACs allow one team per host" if fixed else "use another team number"))
    return problems


def team_lock(lab: Lab) -> ContextManager[None]:
    """One up/reset/down per lab and team at a time; other teams run in parallel."""
    return locks.team_lock(lab.state, lab.plan.lab, lab.plan.team)


def _context(lab: Lab, progress: Progress) -> ApplyContext:
    pubkey = ssh.ensure_keypair(lab.key)
    return ApplyContext(lab.plan, diff.render_plan(lab.plan, lab.domain_type), lab.conns, pubkey, progress,
                        state_root() / "locks")


def changes(lab: Lab) -> list[Action]:
    """What `up` would do (used by `plan`); changes nothing."""
    want = diff.render_plan(lab.plan, lab.domain_type)
    return diff.diff(lab.plan, want, observe.observe_hosts(lab.plan, lab.conns, lab.observed))


def up(lab: Lab, progress: Progress) -> list[Action]:
    """Converge the hosts to the plan (no waiting: see `wait`); return what was done."""
    with team_lock(lab):
        packages.ensure_cache(lab.plan, progress)  # before any guest boots: they install through it
        # A new key while nodes run: the team's state directory was deleted, and they know only the old one.
        booted = _running(lab) if not lab.key.exists() else []
        ctx = _context(lab, progress)
        actions = diff.diff(lab.plan, ctx.want, observe.observe_hosts(lab.plan, lab.conns))
        apply.apply(ctx, actions)
        if booted:
            give_key(lab, booted, ctx.pubkey, progress)
        write_handoff(lab, {})
    return actions


def _running(lab: Lab) -> list[NodePlan]:
    return [n for n in lab.plan.nodes if virt.domain_state(lab.conns(n.host), n.name) == "running"]


def give_key(lab: Lab, nodes: list[NodePlan], pubkey: str, progress: Progress) -> None:
    """Give the team's new SSH key to `nodes`, booted with the old one, through their guest
    agents; a node whose agent does not answer is named, with the way out."""
    given = parallel([lambda n=n: virt.add_authorized_key(lab.conns(n.host), n.name, "root", pubkey)
                      for n in nodes])
    missed = [n.key for n, ok in zip(nodes, given) if not ok]
    if missed:
        progress.info(f"note: the team's SSH key is new and no guest agent took it on {', '.join(missed)}: "
                      f"if they do not answer on SSH, reset them (labbuilder reset --node NODE)")


def wait(lab: Lab, progress: Progress) -> dict[str, str]:
    """Wait until every node answers on SSH; refresh the hand-off files with the addresses."""
    pause_point("wait")
    ready = wait_for.wait_ready(lab.plan, lab.conns, lab.key, progress)
    write_handoff(lab, ready)
    return ready


def reset(lab: Lab, nodes: list[str], progress: Progress) -> dict[str, str]:
    """Nodes (default: all) back to a fresh overlay of the base image, running, on SSH.
    Their checkpoints go with the old overlays."""
    from labbuilder.lab import checkpoint

    targets = [lab.plan.node(n) for n in nodes] if nodes else list(lab.plan.nodes)
    with team_lock(lab):
        packages.ensure_cache(lab.plan, progress)
        ctx = _context(lab, progress)
        infrastructure = (ObjectKind.IMAGE, ObjectKind.NETWORK, ObjectKind.POOL)
        actions = diff.diff(lab.plan, ctx.want, observe.observe_hosts(lab.plan, lab.conns))
        apply.apply(ctx, [a for a in actions if a.kind in infrastructure])
        dropped = checkpoint.drop(lab.conns, targets)
        if dropped:
            progress.info(f"Checkpoints of the reset nodes are gone with their disks: {', '.join(dropped)}")
        apply.reset_nodes(ctx, targets)
        return wait_for.wait_ready(lab.plan, lab.conns, lab.key, progress, targets)


def reset_to(lab: Lab, name: str, nodes: list[str], progress: Progress, cold: bool = False) -> dict[str, str]:
    """Nodes (default: all) back to checkpoint `name`: warm (memory state, no boot, clocks
    set) or `cold` (its disks, then a boot); running and answering on SSH."""
    from labbuilder.lab import checkpoint

    targets = [lab.plan.node(n) for n in nodes] if nodes else list(lab.plan.nodes)
    with team_lock(lab):
        if not cold:
            checkpoint.revert(lab.plan, lab.conns, lab.key, name, targets, progress)
            return {n.key: ssh_target(lab, n.key).address for n in targets}
        checkpoint.revert_cold(lab.plan, lab.conns, name, targets, progress)
        return wait_for.wait_ready(lab.plan, lab.conns, lab.key, progress, targets)


def take_checkpoint(lab: Lab, name: str, progress: Progress, role: str | None = None) -> Checkpoint:
    """A consistent point (disks + memory) of every node of the team, once they have
    finished booting."""
    with team_lock(lab):
        return _checkpoint(lab, name, progress, role)


def _checkpoint(lab: Lab, name: str, progress: Progress, role: str | None) -> Checkpoint:
    from labbuilder.lab import checkpoint

    settle_boots(lab, progress)
    return checkpoint.create(lab.plan, lab.conns, name, progress, role)


def settle_boots(lab: Lab, progress: Progress, timeout: float = 600) -> None:
    """Wait until systemd on every node has finished starting up (cloud-init's last stage
    included): a checkpoint taken while guests still boot keeps that work in its memory
    state, and every reset to it does it again. A node SSH does not reach is not waited for."""
    nodes = [n for n in lab.plan.nodes if virt.domain_state(lab.conns(n.host), n.name) == "running"]
    with progress.stage(f"wait for {len(nodes)} node(s) to finish booting"):
        parallel([lambda n=n: _boot_finished(lab, n.key, timeout) for n in nodes])


def _boot_finished(lab: Lab, node_key: str, timeout: float) -> None:
    try:  # "degraded" (a unit failed) is finished too: its exit status does not matter here
        ssh.ssh_run(ssh_target(lab, node_key), ["systemctl", "is-system-running", "--wait"], check=False,
                    timeout=timeout)
    except LabError:
        pass  # no address, unreachable or too slow: checkpoint it as it is


def checkpoints(lab: Lab) -> list[Checkpoint]:
    from labbuilder.lab import checkpoint

    return checkpoint.listing(lab.plan, lab.conns)


def check_config(lab: Lab) -> None:
    """The config stage's roles exist (before `up` changes anything)."""
    from labbuilder.lab import config_stage

    config_stage.load_roles(lab.topology, lab.plan)


def configure(lab: Lab, progress: Progress, addresses: dict[str, str] | None = None, *,
              start: str | None = None, until: str | None = None, only: str | None = None,
              driver: str = "builtin", checkpoints_after: bool = False, checks_after: bool = False) -> list[str]:
    """Run the config stage on the team's nodes (they must answer on SSH); return the
    roles run. With `checks_after`, each role's checks run after it and a failing one
    stops the stage; with `checkpoints_after`, checkpoint `after-<role>` after each role."""
    from labbuilder.lab import config_stage

    with team_lock(lab):
        addresses = addresses or {n.key: ssh_target(lab, n.key).address for n in lab.plan.nodes}
        files = write_handoff(lab, addresses)
        def after(role: str) -> None:
            if checks_after:
                _require_checks(stage, role)
            if checkpoints_after:
                _checkpoint(lab, f"after-{role}", progress, role)

        stage = _stage(lab, addresses, progress, after if checks_after or checkpoints_after else None)
        if driver == "ansible":
            return config_stage.ansible_stage(stage, files["inventory"], files["ssh_config"], start, until, only)
        try:
            return config_stage.run_stage(stage, start, until, only)
        finally:
            config_stage.close_connections(stage)


def upload_image(lab: Lab, built, name: str, node: str | None, progress: Progress):
    """Upload a built image into the lab's Glance through a node of the image role;
    verified against its manifest (glance.Uploaded)."""
    from labbuilder.lab import glance

    node = glance.image_node(lab.plan, node)
    return glance.upload(ssh_target(lab, node), node, built, name, progress)


def package_source(lab: Lab) -> list[str]:
    """What `plan` says of the guests' package source."""
    return packages.describe(lab.plan)


def node_proxy(lab: Lab, node) -> str | None:
    """The apt proxy a node's seed gives it (None: none)."""
    return packages.node_proxy(lab.plan, node)


def check(lab: Lab, progress: Progress, role: str | None = None) -> list:
    """Run the checks of every role (or of `role`) on the team's nodes; a CheckResult per
    node and check. The nodes must answer on SSH."""
    from labbuilder.lab import checks, config_stage

    addresses = {n.key: ssh_target(lab, n.key).address for n in lab.plan.nodes}
    stage = _stage(lab, addresses, progress)
    try:
        return checks.run_checks(stage, checks.load_checks(stage, role))
    finally:
        config_stage.close_connections(stage)


def _require_checks(stage, role: str) -> None:
    from labbuilder.lab import checks

    failed = [r for r in checks.run_checks(stage, checks.load_checks(stage, role)) if not r.passed]
    if failed:
        f = failed[0]
        raise ConfigError([f"check {f.check} of role {role} failed on {f.node} (exit status {f.status})",
                           *[f"  | {line}" for line in f.tail], f"full log: {f.log}",
                           f"{len(failed)} check(s) failed in all; `labbuilder check` shows every one"])


def _stage(lab: Lab, addresses: dict[str, str], progress: Progress, after=None):
    from labbuilder.lab import config_stage

    targets = {n.key: ssh.SshTarget(addresses[n.key], lab.key, prefix=n.host.ssh_prefix) for n in lab.plan.nodes}
    return config_stage.Stage(lab.topology, lab.plan, lab.conns, targets, inventory(lab.plan, addresses),
                              lab.state / "config", progress, after)


def status(lab: Lab, ready: dict[str, str] | None = None, probe_rest: bool = False) -> dict:
    """Per node: host, state, addresses, SSH; per network: bridge, active. With `ready`
    (node → address, from a wait just done) SSH is taken from it instead of probed;
    `probe_rest` still probes the nodes it does not name."""
    from labbuilder.lab import config_stage

    nodes = []
    owners = {o.name: o.owner for h in lab.plan.hosts for o in virt.owned_objects(lab.conns(h), lab.plan.lab, lab.plan.team)}

    def one(node):
        conn = lab.conns(node.host)
        state = virt.domain_state(conn, node.name)
        leases = wait_for.node_leases(lab.conns, node)
        ips = {nic.guest_name: leases.get(nic.mac) or (str(nic.ip) if nic.ip else None) for nic in node.nics}
        address = node.ssh_ip or next((ip for ip in ips.values() if ip), None)
        if ready is not None and (node.key in ready or not probe_rest):
            reachable = node.key in ready
        else:
            reachable = bool(state == "running" and address and lab.key.exists() and
                             ssh.answers(ssh.SshTarget(address, lab.key, prefix=node.host.ssh_prefix)))
        created = owners.get(node.name, {}).get("created", "")
        nodes.append({"node": node.key, "domain": node.name, "host": node.host.name, "state": state,
                      "addresses": ips, "ssh": reachable, "roles": list(node.roles),
                      "roles_done": list(config_stage.read_record(conn, node.name).done),
                      "age_seconds": int(time.time()) - int(created) if created.isdigit() else None})

    parallel([lambda n=n: one(n) for n in lab.plan.nodes])
    order = [n.key for n in lab.plan.nodes]
    nodes.sort(key=lambda n: order.index(n["node"]))
    networks = []
    for net in lab.plan.networks:
        info = virt.network_info(lab.conns(net.host), net.name)
        networks.append({"network": net.key, "name": net.name, "host": net.host.name,
                         "subnet": str(net.subnet) if net.subnet else None,
                         "bridge": info[1] if info else None, "active": bool(info and info[0]),
                         "exists": info is not None})
    return {"lab": lab.plan.lab, "team": lab.plan.team, "nodes": nodes, "networks": networks}


# ---- hand-off: inventory, ssh config, hosts file ----

def ssh_target(lab: Lab, node_key: str) -> ssh.SshTarget:
    node = lab.plan.node(node_key)
    address = wait_for.node_address(lab.conns, node)
    if address is None:
        raise TopologyError([lab.topology.problem(("nodes", node_key), "node has no known address yet")])
    return ssh.SshTarget(address, lab.key, prefix=node.host.ssh_prefix)


def inventory(plan: LabPlan, addresses: dict[str, str]) -> dict:
    """Ansible-compatible YAML inventory: groups per role, host vars per node."""
    hosts = {}
    for node in plan.nodes:
        hosts[node.key] = {
            "ansible_host": addresses.get(node.key) or node.ssh_ip,
            "ansible_user": "root",
            "lab_name": plan.lab,
            "roles": list(node.roles),
            "lab_team": plan.team,
            "libvirt_domain": node.name,
            "libvirt_uri": node.host.uri,
            "interfaces": [{"name": n.guest_name, "mac": n.mac, "network": n.network_key,
                            "ip": str(n.ip) if n.ip else None, "prefix": n.prefix,
                            "configured": n.configure} for n in node.nics],
            "ips": {n.network_key: str(n.ip) for n in node.nics if n.ip},
            "disks": [{"device": f"/dev/{d.target}", "size_bytes": d.size_bytes} for d in node.disks],
        }
    roles = sorted({r for n in plan.nodes for r in n.roles})
    networks = {n.key: {"subnet": str(n.subnet) if n.subnet else None,
                        "gateway": str(n.gateway) if n.gateway else None, "mode": n.mode} for n in plan.networks}
    return {"all": {"hosts": hosts, "vars": {"lab_networks": networks}, "children": {
        r: {"hosts": {n.key: None for n in plan.nodes if r in n.roles}} for r in roles}}}


def write_handoff(lab: Lab, addresses: dict[str, str]) -> dict[str, Path]:
    """Write inventory.yaml, ssh_config, hosts and the role variables (vars.yaml) into
    the lab's state directory."""
    lab.state.mkdir(parents=True, exist_ok=True)
    files = {"inventory": lab.state / "inventory.yaml", "ssh_config": lab.state / "ssh_config",
             "hosts": lab.state / "hosts", "vars": lab.state / "vars.yaml"}
    files["vars"].write_text(yaml.safe_dump(dict(lab.topology.vars), sort_keys=False))
    files["inventory"].write_text(yaml.safe_dump(inventory(lab.plan, addresses), sort_keys=False))
    files["hosts"].write_text("".join(f"{addresses.get(n.key) or n.ssh_ip} {n.key}\n"
                                      for n in lab.plan.nodes if addresses.get(n.key) or n.ssh_ip))
    files["ssh_config"].write_text(ssh.ssh_config(
        [(n.key, addresses.get(n.key) or n.ssh_ip, n.host.ssh_prefix) for n in lab.plan.nodes
         if addresses.get(n.key) or n.ssh_ip], lab.key))
    return files

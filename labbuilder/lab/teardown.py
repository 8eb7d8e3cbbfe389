"""`down`: remove every libvirt object a lab (team) owns, found by the ownership metadata
on its hosts (no local state needed), and nothing else. Pools have no <metadata>: a
pool is the team's by the mark volume labbuilder puts in it (observe.pool_owner), never
by its name alone.

With a pool of hosts in the inventory, `down` looks on each of them (where the teams were
placed is not needed: ownership says which objects are the team's).

`down` runs while the lab's guests take every CPU, and each module it imports is CPU
they keep: so this loads and checks the topology and finds its hosts, and no more. It
makes no plan and imports neither rendering, SSH, nor the accelerator probe (lab.py
does, for the other commands), nor what starting the package cache or running a class
needs (`down --teams` is lab/teams.down_teams).
"""

from __future__ import annotations

from dataclasses import dataclass

from labbuilder.lab.hosts import Host, every_host, state_root, team_dir
from labbuilder.lab.observe import owned_pools
from labbuilder.model import names
from labbuilder.model.names import is_local_uri
from labbuilder.model.request import LabRequest
from labbuilder.model.topology import Topology, load_topology
from labbuilder.system import aptprocs, locks, privatelibvirtd, virt
from labbuilder.system.connections import ConnectionPool, parallel
from labbuilder.system.pause import pause_point


@dataclass(frozen=True)
class Removal:
    lab: str
    team: int
    hosts: tuple[Host, ...]
    removed: tuple[str, ...]  # "domain demo-t1-alpha", "pool demo-t1-pool", …


def down(req: LabRequest, all_teams: bool = False) -> Removal:
    """Remove what the lab (team; every team with `all_teams`) owns on the hosts its slots
    land on. A private libvirtd that `up` started for this state directory is stopped too
    once nothing runs in it. Starts nothing: no running private libvirtd is an error."""
    topo = load_topology(req.topology)
    hosts = lab_hosts(topo, req)
    conns = ConnectionPool()
    try:
        with locks.team_lock(team_dir(topo.lab, req.team), topo.lab, req.team, every_team=all_teams):
            removed = []
            for host in hosts:
                removed += remove_owned(conns, host, topo.lab, None if all_teams else req.team)
            removed += stop_idle(conns, hosts)
    finally:
        conns.close()
    return Removal(topo.lab, req.team, hosts, tuple(removed))


def lab_hosts(topo: Topology, req: LabRequest) -> tuple[Host, ...]:
    """The distinct hosts the topology's slots land on, or every running host of the
    inventory's pool (a team is removed wherever its objects are: their ownership says
    whose they are); starts no private libvirtd."""
    return every_host(topo, req.connect, req.inventory, state_root(), req.private, start=False)


def stop_idle(conns: ConnectionPool, hosts: tuple[Host, ...]) -> list[str]:
    """The package cache and the private libvirtd labbuilder started here, if no lab is
    left in them (what went, as `down` lists it)."""
    return _stop_idle_package_cache(conns, hosts) + _stop_idle_private_libvirtd(conns, hosts)


def remove_owned(conns: ConnectionPool, host: Host, lab: str, team: int | None) -> list[str]:
    """Remove every object this lab (team) owns on `host`; nothing else. Returns what went."""
    owned = virt.owned_objects(conns(host), lab, team)
    # The host entries the domains record in networks labbuilder did not define, before the
    # domains: their metadata is what says these are ours (a `down` cut short keeps it).
    entries = [e for o in owned if o.kind == "domain" for e in o.entries if virt.remove_host_entry(conns(host), *e)]
    parallel([lambda o=o: virt.remove_domain(conns(host), o.name) for o in owned if o.kind == "domain"])
    pause_point("down-domains")
    pools = owned_pools(conns(host), lab, team)
    # With the domains gone, networks and pools wait on nothing: all at once. A pool's mark
    # goes last: a `down` cut short leaves the pool still marked, for the next one.
    parallel([lambda o=o: virt.remove_network(conns(host), o.name) for o in owned if o.kind == "network"] +
             [lambda p=p: virt.remove_pool(conns(host), p, last=names.POOL_MARK) for p in pools])
    return [f"host entry {mac} {ip} {name} in network {net}" for net, mac, ip, name in entries] + \
        [f"{o.kind} {o.name}" for o in owned] + [f"pool {p}" for p in pools]


def _stop_idle_package_cache(conns: ConnectionPool, hosts: tuple[Host, ...]) -> list[str]:
    """The last lab's `down` stops the package cache labbuilder started here, and its
    relays; the packages stay on disk for the next `up`. A cache labbuilder did not
    start is left alone, and so is ours while any lab object remains on a local host or
    another labbuilder state's labs still reach it through their relays."""
    cache_dir = state_root() / "aptcache"
    if not (cache_dir / "acng.pid").exists():
        return []
    if any(virt.owned_objects(conns(h)) for h in hosts if is_local_uri(h.uri)):
        return []

    if not aptprocs.stop(cache_dir):
        return ["package cache relays (the cache itself serves another labbuilder state's labs)"]
    return ["package cache (no lab left on this machine)"]


def _stop_idle_private_libvirtd(conns: ConnectionPool, hosts: tuple[Host, ...]) -> list[str]:
    """Stop the private libvirtd `up` started here (state directory's) once nothing runs in
    it, unless the inventory joins bridges there: they live in its network namespace,
    which would go with it. An inventory's `private:` libvirtds are left running."""
    daemon = privatelibvirtd.attach(state_root() / "libvirtd")
    host = next((h for h in hosts if daemon is not None and h.uri == daemon.uri), None)
    if host is None or host.bridges or not virt.is_idle(conns(host)):
        return []
    conns.close()
    privatelibvirtd.stop(daemon)
    return ["private libvirtd (nothing left in it)"]

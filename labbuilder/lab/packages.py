"""The guests' package source (topology key `packages`):

- cache (default): the lab host's package cache, apt-cacher-ng, shared by every lab and
  team on that host, fetching only from the mirror the host's own apt uses. Guests reach
  it at their NAT network's gateway, port 3142: a relay listens there (inside a private
  libvirtd's network namespace, or the host's own) and forwards to the cache on
  127.0.0.1. Each node's seed writes the apt proxy, so role scripts and students'
  `apt-get` need nothing else.
- direct: the guests use their own sources (through NAT, or the LAN of a host bridge);
  labbuilder sets nothing.
- none: the lab needs no packages; no cache is started.

On a remote host labbuilder starts nothing: it expects apt-cacher-ng there on port 3142.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from labbuilder.lab.hosts import state_root
from labbuilder.model.names import is_local_uri
from labbuilder.reporting import Progress
from labbuilder.system import aptcache

if TYPE_CHECKING:
    from labbuilder.lab.hosts import Host
    from labbuilder.lab.plan import LabPlan, NodePlan


def cache_dir():
    """Where labbuilder keeps the package cache it owns (config, packages, logs, relays)."""
    return state_root() / "aptcache"


def proxy_gateway(plan: LabPlan, node: NodePlan) -> str | None:
    """The gateway of the node's first NAT network: where it reaches the package cache.
    None when the lab uses no cache or the node has no NAT NIC."""
    if plan.packages != "cache":
        return None
    networks = {(n.host.uri, n.libvirt_name): n for n in plan.networks}
    for nic in node.nics:
        net = networks.get((node.host.uri, nic.libvirt_network))
        if net is not None and net.mode == "nat" and net.gateway is not None and not nic.joined:
            return str(net.gateway)
    return None


def node_proxy(plan: LabPlan, node: NodePlan) -> str | None:
    """The apt proxy URL the node's seed writes, or None."""
    gateway = proxy_gateway(plan, node)
    return aptcache.proxy_url(gateway) if gateway else None


def gateways(plan: LabPlan) -> dict[Host, set[str]]:
    """Per host, the gateways its nodes reach the cache at."""
    found: dict[Host, set[str]] = {}
    for node in plan.nodes:
        gateway = proxy_gateway(plan, node)
        if gateway:
            found.setdefault(node.host, set()).add(gateway)
    return found


def describe(plan: LabPlan) -> list[str]:
    """What `plan` says about the package source, a line per host."""
    if plan.packages != "cache":
        return [f"packages: {plan.packages}" + (" (the guests' own sources; labbuilder sets no proxy)"
                                                if plan.packages == "direct" else " (no package source is set up)")]
    lines = []
    for host, where in gateways(plan).items():
        urls = ", ".join(aptcache.proxy_url(g) for g in sorted(where))
        owner = "labbuilder's apt-cacher-ng on this machine" if is_local_uri(host.uri) else \
            f"the apt-cacher-ng that must run on {host.name}"
        lines.append(f"packages: cache — {owner}; guests on {host.name} use {urls}")
    return lines or ["packages: cache — no node has a NAT network, so none reaches it"]


def ensure_cache(plan: LabPlan, progress: Progress) -> None:
    """Before any guest boots: the package cache runs on this machine and answers at every
    NAT gateway the lab's nodes use on local hosts (HostError in one line if not)."""
    local = {h: g for h, g in gateways(plan).items() if is_local_uri(h.uri)}
    if not local:
        return
    cache = aptcache.ensure_running(cache_dir())
    for host, where in local.items():
        for gateway in sorted(where):
            aptcache.relay_into_namespace(cache, host.runtime.netns, gateway)
    progress.info(f"package cache: apt-cacher-ng on 127.0.0.1:{cache.port}"
                  f"{'' if cache.owned else ' (already running, not labbuilder’s)'}, reached at "
                  + ", ".join(aptcache.proxy_url(g) for where in local.values() for g in sorted(where)))

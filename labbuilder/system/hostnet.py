"""The IPv4 routes and the bridges of a local lab host (the machine itself, or a private
libvirtd's network namespace), read with `ip -json`: a topology's subnet must not clash
with a network the host already reaches another way (a VPN, a docker bridge, a LAN), and
a network on a host bridge needs that bridge."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass

from labbuilder.system.run import run


@dataclass(frozen=True)
class Route:
    network: ipaddress.IPv4Network
    dev: str


def routes(prefix: tuple[str, ...] = ()) -> list[Route]:
    """Every IPv4 route of the host but the default one, in every table; `prefix` runs
    `ip` elsewhere (nsenter into a network namespace)."""
    out = run([*prefix, "ip", "-json", "-4", "route", "show", "table", "all"]).stdout
    found = []
    for entry in json.loads(out or "[]"):
        dst = entry.get("dst", "default")
        if dst == "default" or entry.get("type", "unicast") != "unicast":
            continue  # the default route overlaps everything; local/broadcast ones mirror addresses
        found.append(Route(ipaddress.ip_network(dst if "/" in dst else f"{dst}/32", strict=False), entry.get("dev", "")))
    return found


def bridges(prefix: tuple[str, ...] = ()) -> set[str]:
    """The names of the host's Linux bridges; `prefix` as for routes."""
    out = run([*prefix, "ip", "-json", "link", "show", "type", "bridge"]).stdout
    return {entry["ifname"] for entry in json.loads(out or "[]")}


class HostNetworks:
    """The routes and bridges of this machine's network namespaces, each read at most once:
    one reader serves a whole command (every team and host it checks), so `ip` runs once
    per namespace and question, not once per team, host or check."""

    def __init__(self) -> None:
        self._routes: dict[tuple[str, ...], list[Route]] = {}
        self._bridges: dict[tuple[str, ...], set[str]] = {}

    def routes(self, prefix: tuple[str, ...] = ()) -> list[Route]:
        """routes(prefix), read on first use."""
        if prefix not in self._routes:
            self._routes[prefix] = routes(prefix)
        return self._routes[prefix]

    def bridges(self, prefix: tuple[str, ...] = ()) -> set[str]:
        """bridges(prefix), read on first use."""
        if prefix not in self._bridges:
            self._bridges[prefix] = bridges(prefix)
        return self._bridges[prefix]

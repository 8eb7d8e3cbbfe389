"""A drawing of a planned lab: its nodes (by host), their NICs and the networks they are
on. As Mermaid text (for docs) and as a self-contained SVG (for the class page and
`labbuilder graph`). Pure: a LabPlan in, text out."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape, quoteattr

if TYPE_CHECKING:
    from labbuilder.lab.plan import LabPlan, NicPlan

_PALETTE = ("#dbeafe", "#dcfce7", "#fef3c7", "#fce7f3", "#ede9fe", "#e0f2fe")


def _id(prefix: str, name: str) -> str:
    return prefix + re.sub(r"[^A-Za-z0-9_]", "_", name)


def _nic_label(nic: NicPlan) -> str:
    address = str(nic.ip) if nic.ip else ("dhcp" if nic.dhcp else "-")
    return f"{nic.guest_name} {address}" + ("" if nic.configure else " (unconfigured)")


def mermaid(plan: LabPlan) -> str:
    """flowchart LR: a subgraph per host with its nodes, a node per network, an edge per NIC."""
    lines = ["flowchart LR"]
    for host in plan.hosts:
        lines.append(f'  subgraph {_id("host_", host.name)}["{host.name}"]')
        for n in (n for n in plan.nodes if n.host == host):
            roles = ", ".join(n.roles) or "no roles"
            lines.append(f'    {_id("node_", n.name)}["{n.name}<br/>{roles}<br/>{n.memory_mib} MiB"]')
        lines.append("  end")
    for net in {n.name: n for n in plan.networks}.values():
        lines.append(f'  {_id("net_", net.name)}(("{net.name}<br/>{net.mode} {net.subnet or ""}"))')
    for n in plan.nodes:
        for nic in n.nics:
            lines.append(f'  {_id("node_", n.name)} -- "{_nic_label(nic)}" --- {_id("net_", nic.network)}')
    return "\n".join(lines) + "\n"


def svg(plan: LabPlan) -> str:
    """Networks as horizontal bars across the top, nodes as boxes below (coloured by host),
    a line from each NIC to its network labelled with the NIC and its address."""
    networks = list({n.name: n for n in plan.networks}.values())
    nodes = list(plan.nodes)
    colour = {h.uri: _PALETTE[i % len(_PALETTE)] for i, h in enumerate(plan.hosts)}
    box_w, box_h, gap, bar_h, bar_gap, margin = 170, 74, 30, 26, 14, 20
    width = max(margin * 2 + len(nodes) * (box_w + gap) - gap + 90, 480)  # room for the last NIC's label
    bars_top = 50
    node_top = bars_top + len(networks) * (bar_h + bar_gap) + 60
    legend_top = node_top + box_h + 30
    height = legend_top + 22 * len(plan.hosts) + margin
    bar_y = {net.name: bars_top + i * (bar_h + bar_gap) for i, net in enumerate(networks)}
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
           f'<title>{escape(plan.lab)} team {plan.team}</title>',
           f'<text x="{margin}" y="28" font-size="16" font-weight="bold">{escape(plan.lab)} team {plan.team}</text>']
    boxes: list[str] = []  # drawn last: over the lines
    dots: list[str] = []  # where a NIC meets its network, over the bar
    for i, n in enumerate(nodes):
        x = margin + i * (box_w + gap)
        for j, nic in enumerate(n.nics):
            lx = x + 14 + j * ((box_w - 28) // max(1, len(n.nics) - 1) if len(n.nics) > 1 else 0)
            if len(n.nics) == 1:
                lx = x + box_w // 2
            y1 = bar_y[nic.network] + bar_h
            dots.append(f'<circle cx="{lx}" cy="{y1 - bar_h // 2}" r="4" fill="#334155"/>')
            out.append(f'<line x1="{lx}" y1="{y1 - bar_h // 2}" x2="{lx}" y2="{node_top}" stroke="#334155"/>'
                       f'<text x="{lx + 3}" y="{node_top - 8 - 12 * (j % 3)}" font-size="10">'
                       f'{escape(_nic_label(nic))}</text>')
        boxes.append(f'<g class="node" data-node={quoteattr(n.name)}>'
                   f'<rect x="{x}" y="{node_top}" width="{box_w}" height="{box_h}" rx="6" '
                   f'fill="{colour[n.host.uri]}" stroke="#1e293b"/>'
                   f'<text x="{x + 8}" y="{node_top + 18}" font-weight="bold">{escape(n.name)}</text>'
                   f'<text x="{x + 8}" y="{node_top + 36}">{escape(", ".join(n.roles) or "no roles")}</text>'
                   f'<text x="{x + 8}" y="{node_top + 54}">{n.memory_mib} MiB · {n.vcpus} vCPU'
                   f'{" · " + str(len(n.disks)) + " disk(s)" if n.disks else ""}</text></g>')
    for net in networks:
        y = bar_y[net.name]
        out.append(f'<g class="network" data-network={quoteattr(net.name)}>'
                   f'<rect x="{margin}" y="{y}" width="{width - 2 * margin}" height="{bar_h}" rx="4" '
                   f'fill="#f1f5f9" stroke="#64748b"/>'
                   f'<text x="{margin + 8}" y="{y + 17}">{escape(net.name)} · {escape(net.mode)} · '
                   f'{escape(str(net.subnet or "no subnet"))} · {escape(net.libvirt_name)}</text></g>')
    out += dots + boxes
    for i, host in enumerate(plan.hosts):
        y = legend_top + 22 * i
        out.append(f'<rect x="{margin}" y="{y}" width="14" height="14" fill="{colour[host.uri]}" stroke="#1e293b"/>'
                   f'<text x="{margin + 20}" y="{y + 12}">host {escape(host.name)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"

"""Render libvirt XML from the Jinja2 templates in labbuilder/templates/ (package data),
and shell scripts from templates (the package's, and the role steps').

Autoescape and StrictUndefined: no user text reaches XML unescaped, and a missing value
is an error naming the template and line, not an empty attribute. In shell, a value
passed through the `quote` filter is one shell word.
"""

from __future__ import annotations

import hashlib
import shlex
from functools import cache
from typing import TYPE_CHECKING

import jinja2
from lxml import etree

from labbuilder.model.names import OWNER_NS, pool_dir

if TYPE_CHECKING:
    from labbuilder.lab.plan import NetworkPlan, NodePlan


@cache
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("labbuilder", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def shell_env(loader: jinja2.BaseLoader) -> jinja2.Environment:
    """Shell script templates from `loader`: strict about undefined names, the trailing
    newline kept, and the filter `quote` (shell_quote)."""
    env = jinja2.Environment(loader=loader, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["quote"] = shell_quote
    return env


@cache
def _shell_env() -> jinja2.Environment:
    return shell_env(jinja2.PackageLoader("labbuilder", "templates"))


def shell_quote(value) -> str:
    """One shell word for `value` (a number, a name, a password with ' $ ; in it)."""
    return shlex.quote(str(value))


def render_shell(template: str, **values) -> str:
    """Render a shell script template (e.g. 'student-user.sh.j2'); a value passed through
    its `quote` filter is one shell word whatever it holds."""
    return _shell_env().get_template(template).render(**values)


def render_xml(template: str, **values) -> str:
    """Render `template` (e.g. 'domain.xml.j2') and check the result is well-formed XML."""
    text = _env().get_template(template).render(ns=OWNER_NS, **values)
    etree.fromstring(text.encode())  # raises on malformed output
    return text


def _with_hash(template: str, values: dict) -> tuple[str, str]:
    """Render twice: once with an empty plan hash (and creation time) to compute the
    hash, once carrying both."""
    draft = render_xml(template, **{**values, "owner": {**values["owner"], "plan": "", "created": ""}})
    digest = hashlib.sha256(draft.encode()).hexdigest()[:16]
    return render_xml(template, **{**values, "owner": {**values["owner"], "plan": digest}}), digest


def network_xml(lab: str, team: int, net: NetworkPlan) -> tuple[str, str]:
    """(XML, plan hash) of a planned network."""
    return _with_hash("network.xml.j2", dict(
        name=net.libvirt_name, owner={"lab": lab, "team": team, "network": net.name, "host": net.host.pool_name},
        mode=net.mode, bridge=net.bridge, domain=net.dns_domain,
        gateway=str(net.gateway) if net.gateway else "", prefix=net.subnet.prefixlen if net.subnet else "",
        dhcp_start=str(net.dhcp[0]) if net.dhcp else "", dhcp_end=str(net.dhcp[1]) if net.dhcp else "",
        hosts=[{"mac": mac, "ip": ip, "name": name} for mac, ip, name in net.static_hosts]))


def domain_xml(lab: str, team: int, node: NodePlan, pool: str, domain_type: str, created: int) -> tuple[str, str]:
    """(XML, plan hash) of a planned node's domain; `created` (epoch seconds) gives `status` its age."""
    if domain_type == "xen":
        return _with_hash("domain-xen.xml.j2", _xen_domain(lab, team, node, pool, created))
    disks = [{"pool": pool, "volume": node.vda, "target": "vda", "format": "qcow2", "bus": "virtio"}]
    # virtio disks are vdX; scsi/sata ones sdX (sda is the seed cdrom, so vdb → sdb).
    disks += [{"pool": pool, "volume": d.volume, "format": "qcow2", "bus": d.bus,
               "target": d.target if d.bus == "virtio" else "sd" + d.target[2:]} for d in node.disks]
    return _with_hash("domain.xml.j2", dict(
        _domain_values(lab, team, node, created), domain_type=domain_type, disks=disks,
        seed={"pool": pool, "volume": node.seed_volume},
        nics=[{"network": n.libvirt_network, "mac": n.mac} for n in node.nics],
        serial_log=serial_log_path(node)))


def _domain_values(lab: str, team: int, node: NodePlan, created: int) -> dict:
    """What both domain templates take alike: the name, the ownership element's values
    (domain-owner.xml.j2, its host entries too), memory and vCPUs."""
    return dict(
        name=node.domain,
        owner={"lab": lab, "team": team, "node": node.name, "host": node.host.pool_name, "created": created},
        entries=[e._asdict() for e in node.entries], memory_mib=node.memory_mib, vcpus=node.vcpus)


def _xen_domain(lab: str, team: int, node: NodePlan, pool: str, created: int) -> dict:
    """A Xen PV domU's values: its volumes by path (libxl reads no pool), xvdX, and the NICs
    on a host bridge as bridge interfaces (libxl's own way), the others on their network."""
    disks = [("xvda", node.vda), *((d.target, d.volume) for d in node.disks)]
    return dict(
        _domain_values(lab, team, node, created),
        disks=[{"path": f"{pool_dir(pool)}/{volume}", "target": target, "format": "qcow2"} for target, volume in disks],
        seed={"path": f"{pool_dir(pool)}/{node.seed_volume}", "target": "xvd" + chr(ord("a") + len(disks))},
        nics=[{"bridge": n.host_bridge, "network": n.libvirt_network, "mac": n.mac} for n in node.nics])


def pool_xml(name: str, path: str) -> str:
    return render_xml("pool.xml.j2", name=name, path=path)


def volume_xml(name: str, capacity: int, fmt: str, backing: str = "") -> str:
    return render_xml("volume.xml.j2", name=name, capacity=capacity, format=fmt, backing=backing)


def serial_log_path(node: NodePlan) -> str:
    """Where the host's libvirt keeps what the node's serial console prints."""
    return f"/var/log/libvirt/qemu/{node.domain}-serial.log"

"""NoCloud seeds: per-node cloud-init documents, written as an ISO 9660 image labelled
`cidata` with pycdlib (pure Python, in memory: no genisoimage/cloud-localds process,
and the same bytes can be uploaded to a remote host through the storage API)."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from importlib import resources

import pycdlib
import yaml

APT_PROXY_FILE = "/etc/apt/apt.conf.d/90labbuilder-proxy"
BASE_USER_DATA = resources.files("labbuilder") / "templates" / "user-data.yaml"
# Written by cloud-init's init stage: the lab images skip its config and final stages
# when it is there (images/debian-12.yaml), as a lab seed gives them nothing to run.
# Under /var/lib/cloud, which a capture removes: a captured image boots as any other.
LAB_NODE_MARK = "/var/lib/cloud/labbuilder-node"
LAB_NODE_MARK_TEXT = "a labbuilder lab node: cloud-config.service and cloud-final.service do not run\n"


@dataclass(frozen=True)
class SeedNic:
    name: str  # eth0, eth1, … in topology order
    mac: str
    addresses: tuple[str, ...] = ()  # "10.0.0.3/24"; empty and dhcp False → left unconfigured
    dhcp: bool = False
    gateway: str | None = None


@dataclass(frozen=True)
class NodeIdentity:
    instance_id: str
    hostname: str
    fqdn: str
    authorized_keys: tuple[str, ...]
    nics: tuple[SeedNic, ...]
    hosts: tuple[tuple[str, str], ...] = ()  # (ip, name) lines for /etc/hosts
    apt_proxy: str | None = None  # http://GATEWAY:3142, the lab host's package cache
    host_key: tuple[str, str] | None = None  # (private, public) ed25519 SSH host key labbuilder made
    extra: dict = field(default_factory=dict)


def meta_data(seed: NodeIdentity) -> dict:
    return {"instance-id": seed.instance_id, "local-hostname": seed.hostname}


def user_data(seed: NodeIdentity) -> dict:
    doc = yaml.safe_load(BASE_USER_DATA.read_text())
    doc.update(hostname=seed.hostname, fqdn=seed.fqdn, ssh_authorized_keys=list(seed.authorized_keys))
    doc["write_files"] = [{"path": "/etc/hosts", "permissions": "0644", "content": hosts_file(seed)},
                          {"path": LAB_NODE_MARK, "permissions": "0644", "content": LAB_NODE_MARK_TEXT}]
    if seed.apt_proxy:  # a file, not cloud-init's apt module: the lab images leave that out (boot time)
        doc["write_files"].append({"path": APT_PROXY_FILE, "permissions": "0644",
                                   "content": f'Acquire::http::Proxy "{seed.apt_proxy}";\n'})
    if seed.host_key:  # the node's only host key: the one in the team's known_hosts
        private, public = seed.host_key
        doc.update(ssh_deletekeys=True, ssh_genkeytypes=[],
                   ssh_keys={"ed25519_private": private, "ed25519_public": public})
    doc.update(seed.extra)
    return doc


def hosts_file(seed: NodeIdentity) -> str:
    """/etc/hosts: localhost, the node itself, then every lab node it should know."""
    lines = ["127.0.0.1 localhost", f"127.0.1.1 {seed.fqdn} {seed.hostname}",
             "::1 localhost ip6-localhost ip6-loopback"]
    lines += [f"{ip} {name}" for ip, name in seed.hosts]
    return "\n".join(lines) + "\n"


def network_config(seed: NodeIdentity) -> dict:
    """Netplan-style v2 config, NICs matched by MAC (names follow topology order)."""
    ethernets = {}
    for nic in seed.nics:
        conf: dict = {"match": {"macaddress": nic.mac}, "set-name": nic.name}
        if nic.dhcp:
            conf["dhcp4"] = True
        if nic.addresses:
            conf["addresses"] = list(nic.addresses)
        if nic.gateway:
            conf["routes"] = [{"to": "0.0.0.0/0", "via": nic.gateway}]
        if not nic.dhcp and not nic.addresses:
            conf["dhcp4"] = False
            conf["link-local"] = []
        ethernets[nic.name] = conf
    return {"version": 2, "ethernets": ethernets}


def seed_iso(seed: NodeIdentity) -> bytes:
    """The NoCloud ISO (volume label cidata, Rock Ridge + Joliet) for `seed`."""
    files = {
        "meta-data": yaml.safe_dump(meta_data(seed), sort_keys=False),
        "user-data": "#cloud-config\n" + yaml.safe_dump(user_data(seed), sort_keys=False),
        "network-config": yaml.safe_dump(network_config(seed), sort_keys=False),
    }
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident="cidata")
    for name, text in files.items():
        data = text.encode()
        iso_name = "/" + name.replace("-", "").upper()[:8] + ".;1"
        iso.add_fp(io.BytesIO(data), len(data), iso_name, rr_name=name, joliet_path="/" + name)
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    return out.getvalue()

"""A built image into a lab's Glance: copied to a node of the image role, created there
with the openstack client and the manifest's Glance fields, and checked: the checksum
(MD5) and os_hash_value (SHA-256, the image role sets glance's hashing_algorithm) Glance
computed must be the manifest's, else the image is deleted from Glance again.

Why through a node and not openstacksdk on this machine: the lab's cloud answers on the
lab's internal network, which its nodes reach wherever the lab lives (a private
libvirtd's namespace, a remote host); SSH to a node is the path labbuilder already has.
A cloud this machine reaches goes through openstacksdk instead (system/cloud.py,
`image upload --os-cloud`), checked with the same `verify`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from labbuilder.model.errors import ImageError, LabError
from labbuilder.reporting import Progress
from labbuilder.system import ssh

if TYPE_CHECKING:
    from labbuilder.image.cache import BuiltImage

IMAGE_ROLE = "image"
# admin's credentials, then the command given as arguments: no value is spliced into shell text
_WITH_ADMIN = ["bash", "-c", '. /root/admin-openrc && exec "$@"', "labbuilder-upload"]


@dataclass(frozen=True)
class Uploaded:
    id: str
    name: str
    node: str
    checksum: str
    os_hash_algo: str
    os_hash_value: str


def image_node(plan, node: str | None) -> str:
    """The node to upload through: `node`, else the first node of the image role."""
    if node is not None:
        if node not in {n.name for n in plan.nodes}:
            raise LabError(f"no node {node!r} in {plan.lab}")
        return node
    nodes = [n.name for n in plan.nodes if IMAGE_ROLE in n.roles]
    if not nodes:
        raise LabError(f"no node of {plan.lab} has role {IMAGE_ROLE!r} (glance): name one with --node")
    return nodes[0]


def create_args(built: BuiltImage, name: str, remote: str) -> list[str]:
    """`openstack image create` with the manifest's Glance fields."""
    g = built.manifest["glance"]
    args = ["openstack", "image", "create", "-f", "json", "--file", remote,
            "--disk-format", g["disk_format"], "--container-format", g["container_format"],
            "--min-disk", str(g["min_disk"]), "--min-ram", str(g["min_ram"])]
    for key in ("os_distro", "os_version"):
        if g.get(key):
            args += ["--property", f"{key}={g[key]}"]
    return [*args, name]


def verify(built: BuiltImage, shown: dict) -> list[str]:
    """What differs between the manifest and what Glance computed (empty: nothing)."""
    image = built.manifest["image"]
    wrong = []
    if shown.get("checksum") != image["md5"]:
        wrong.append(f"checksum {shown.get('checksum')} is not the manifest's MD5 {image['md5']}")
    if shown.get("os_hash_algo") == "sha256" and shown.get("os_hash_value") != image["sha256"]:
        wrong.append(f"os_hash_value {shown.get('os_hash_value')} is not the manifest's SHA-256 {image['sha256']}")
    return wrong


def upload(target: ssh.SshTarget, node: str, built: BuiltImage, name: str, progress: Progress) -> Uploaded:
    """Upload `built` as `name` through `target` (a node with admin-openrc); verified."""
    path = Path(built.image)
    remote = f"/var/tmp/labbuilder-upload-{name}{path.suffix}"
    with progress.stage(f"copy {path.name} ({path.stat().st_size / 2**20:.0f} MiB) to {node}"):
        ssh.copy_to(target, path, remote)
    created = None
    try:
        with progress.stage(f"create image {name} in Glance"):
            created = json.loads(ssh.ssh_run(target, [*_WITH_ADMIN, *create_args(built, name, remote)],
                                             timeout=3600).stdout)
            # what create prints predates the upload's end (no checksum yet): ask again. The
            # client alone took over 2 minutes to answer on a busy TCG node.
            shown = json.loads(ssh.ssh_run(target, [*_WITH_ADMIN, "openstack", "image", "show", "-f", "json",
                                                    created["id"]], timeout=900).stdout)
    except BaseException:
        if created is not None:  # an image Glance holds but nobody verified is not left behind
            ssh.ssh_run(target, [*_WITH_ADMIN, "openstack", "image", "delete", created["id"]], check=False,
                        timeout=900)
        raise
    finally:
        ssh.ssh_run(target, ["rm", "-f", remote], check=False)
    shown = {**shown.get("properties", {}), **shown}  # the client lists os_hash_* among the properties
    wrong = verify(built, shown)
    if wrong:
        ssh.ssh_run(target, [*_WITH_ADMIN, "openstack", "image", "delete", shown["id"]], check=False)
        raise ImageError(f"Glance stored image {name} differently; it was deleted again: {'; '.join(wrong)}")
    return Uploaded(shown["id"], name, node, shown["checksum"], shown.get("os_hash_algo", ""),
                    shown.get("os_hash_value", ""))

"""Every naming rule for what labbuilder creates on a libvirt host, in one place.

Pure: topology validation (how long a name may be), plan (what to name each object),
render (the owner element) and teardown (what is ours) all read these rules here."""

from __future__ import annotations

import hashlib
import re

OWNER_NS = "urn:labbuilder:owner:1"  # <lb:owner lab= team= node|network= plan=> in <metadata>
MAX_TEAM = 99
LOCAL_URI_PREFIXES = ("qemu:///", "qemu+unix:///")
BASE_POOL = "labbuilder-base"  # the base images on each host, shared by every lab
POOL_ROOT = "/var/lib/libvirt/images/labbuilder"
DONE_SUFFIX = ".complete"  # marker volume: the upload before it finished
POOL_MARK = ".labbuilder-owner"  # volume in each lab pool holding its owner, `<lab>/<team>`


def libvirt_name(lab: str, team: int, name: str) -> str:
    """The libvirt name of a lab's node or network: `<lab>-t<team>-<name>`."""
    return f"{lab}-t{team}-{name}"


def pool_name(lab: str, team: int) -> str:
    """The storage pool of a lab's team: `<lab>-t<team>-pool`."""
    return libvirt_name(lab, team, "pool")


def pool_dir(pool: str) -> str:
    """Where a lab pool's volumes live on its host: labbuilder's own directory."""
    return f"{POOL_ROOT}/{pool}"


def pool_mark(lab: str, team: int) -> str:
    """What a lab pool's mark volume (POOL_MARK) holds: pools have no <metadata>, so this
    says whose a pool is; `down` removes a pool only with its mark."""
    return f"{lab}/{team}"


def pool_pattern(lab: str, team: int | None) -> re.Pattern:
    """Matches the pool names of one team of `lab`, or of every team when team is None."""
    return re.compile(rf"^{re.escape(lab)}-t{team if team is not None else '[0-9]+'}-pool\Z")


def any_lab_pool(name: str) -> bool:
    """Whether `name` is a storage pool of labbuilder's: the base images', or a team's of any lab."""
    return name == BASE_POOL or re.fullmatch(r"[a-z0-9-]+-t[0-9]+-pool", name) is not None


def bridge_name(lab: str, team: int, network: str) -> str:
    """Linux bridge names fit 15 characters: derived from a hash, never user text."""
    return "lb" + hashlib.sha256(f"{lab}/{team}/{network}".encode()).hexdigest()[:10]


def derived_mac(lab: str, team: int, node: str, nic: int) -> str:
    """A stable MAC inside 52:54:00:xx:xx:xx for a NIC the topology gives none."""
    digest = hashlib.sha256(f"{lab}/{team}/{node}/{nic}".encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])


def is_local_uri(uri: str) -> bool:
    """A libvirt URI of this machine's own daemon (system or private)."""
    return uri.startswith(LOCAL_URI_PREFIXES)

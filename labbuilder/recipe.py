"""Image recipes: YAML in images/ → a validated, frozen Recipe, and its cache hash."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import RecipeError
from .yamlcheck import Checker, load_with_marks

# Bump when the build code changes what a recipe produces, so old cache entries are not reused.
PIPELINE_VERSION = 1

SUITES = {
    "debian": ("buster", "bullseye", "bookworm", "trixie", "sid"),
    "ubuntu": ("focal", "jammy", "noble"),
}
DEFAULT_MIRRORS = {"debian": "http://deb.debian.org/debian", "ubuntu": "http://archive.ubuntu.com/ubuntu"}
VARIANTS = ("apt", "required", "important", "standard", "minbase")
OUTPUTS = ("qcow2", "raw")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
UNIT_RE = re.compile(r"^[A-Za-z0-9@._-]+$")
PACKAGE_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]*$")
SIZE_RE = re.compile(r"^(\d+)\s*([KMGT]i?B?)?$", re.I)


@dataclass(frozen=True)
class FileSpec:
    path: str
    content: str
    mode: int


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    path: str
    suite: str
    distro: str
    mirror: str
    variant: str
    packages: tuple[str, ...]
    kernel_cmdline: str
    files: tuple[FileSpec, ...]
    enable: tuple[str, ...]
    mask: tuple[str, ...]
    sysprep_operations: str
    size_bytes: int
    outputs: tuple[str, ...]
    min_ram_mb: int
    os_version: str

    def hash(self) -> str:
        """sha256 over everything that changes the built image (not name/description/path)."""
        data = asdict(self)
        for k in ("description", "path"):
            data.pop(k)
        data["pipeline"] = PIPELINE_VERSION
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def parse_size(text: str | int) -> int | None:
    """'3G', '512M', '3GiB' or a byte count → bytes (binary units); None if unreadable."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    m = SIZE_RE.match(str(text).strip())
    if not m:
        return None
    unit = (m.group(2) or "").upper()[:1]
    return int(m.group(1)) * 1024 ** " KMGT".index(unit or " ")


_TOP = {"name": str, "description": str, "source": dict, "packages": list, "kernel_cmdline": str,
        "files": list, "services": dict, "sysprep": dict, "size": (str, int), "outputs": list,
        "glance": dict}
_MMDEBSTRAP = {"suite": str, "variant": str, "mirror": str}
_FILE = {"path": str, "content": str, "mode": str}
_SERVICES = {"enable": list, "mask": list}
_SYSPREP = {"operations": str}
_GLANCE = {"min_ram": int, "os_version": (str, int)}


def _distro_of(suite: str) -> str | None:
    return next((d for d, suites in SUITES.items() if suite in suites), None)


def _names(c: Checker, items: list, path: tuple, pattern: re.Pattern, what: str) -> tuple[str, ...]:
    good = []
    for i, item in enumerate(items):
        if c.is_type(item, str, path + (i,)):
            if pattern.match(item):
                good.append(item)
            else:
                c.problem(path + (i,), f"{item!r} is not a valid {what}")
    return tuple(good)


def _source(c: Checker, top: dict) -> dict:
    source = c.mapping(top.get("source", {}), ("source",), {"mmdebstrap": dict}, ("mmdebstrap",))
    mm = c.mapping(source.get("mmdebstrap", {}), ("source", "mmdebstrap"), _MMDEBSTRAP, ("suite",)) \
        if "mmdebstrap" in source else {}
    suite = mm.get("suite")
    if suite and not _distro_of(suite):
        known = ", ".join(s for suites in SUITES.values() for s in suites)
        c.problem(("source", "mmdebstrap", "suite"), f"unknown suite {suite!r}", f"known: {known}")
    if mm.get("variant", "apt") not in VARIANTS:
        c.problem(("source", "mmdebstrap", "variant"), f"unknown variant {mm['variant']!r}",
                  "one of " + ", ".join(VARIANTS))
    return mm


def _files(c: Checker, items: list) -> tuple[FileSpec, ...]:
    out = []
    for i, item in enumerate(items):
        f = c.mapping(item, ("files", i), _FILE, ("path", "content"))
        path, mode = f.get("path", ""), f.get("mode", "0644")
        if path and not path.startswith("/"):
            c.problem(("files", i, "path"), f"{path!r} must be an absolute path in the image")
        if not re.fullmatch(r"0?[0-7]{3,4}", mode):
            c.problem(("files", i, "mode"), f"{mode!r} is not an octal mode like '0644'")
        elif path.startswith("/") and "content" in f:
            out.append(FileSpec(path, f["content"], int(mode, 8)))
    return tuple(out)


def load_recipe(path: Path) -> Recipe:
    """Read and validate a recipe file; raise RecipeError listing every problem found."""
    data, marks = load_with_marks(path, RecipeError)
    c = Checker(path, marks, RecipeError)
    top = c.mapping(data, (), _TOP, ("name", "source", "size"))
    name = top.get("name", "")
    if name and not NAME_RE.match(name):
        c.problem(("name",), f"{name!r} must match [a-z0-9-] (at most 63 characters)")
    mm = _source(c, top)
    packages = _names(c, top.get("packages", []), ("packages",), PACKAGE_RE, "Debian package name")
    services = c.mapping(top.get("services", {}), ("services",), _SERVICES)
    enable = _names(c, services.get("enable", []), ("services", "enable"), UNIT_RE, "systemd unit")
    mask = _names(c, services.get("mask", []), ("services", "mask"), UNIT_RE, "systemd unit")
    sysprep = c.mapping(top.get("sysprep", {}), ("sysprep",), _SYSPREP)
    glance = c.mapping(top.get("glance", {}), ("glance",), _GLANCE)
    size = parse_size(top["size"]) if "size" in top else None
    if "size" in top and (size is None or size < 1024 ** 3):
        c.problem(("size",), f"{top['size']!r} is not a disk size of at least 1G", "e.g. 3G")
    outputs = _names(c, top.get("outputs", ["qcow2"]), ("outputs",), re.compile(r".*"), "output")
    for i, o in enumerate(outputs):
        if o not in OUTPUTS:
            c.problem(("outputs", i), f"unknown output {o!r}", "one of " + ", ".join(OUTPUTS))
    files = _files(c, top.get("files", []))
    c.done()
    distro = _distro_of(mm["suite"])
    return Recipe(
        name=name, description=top.get("description", ""), path=str(path), suite=mm["suite"],
        distro=distro, mirror=mm.get("mirror", DEFAULT_MIRRORS[distro]),
        variant=mm.get("variant", "apt"), packages=packages,
        kernel_cmdline=top.get("kernel_cmdline", ""), files=files, enable=enable, mask=mask,
        sysprep_operations=sysprep.get("operations", "defaults,-customize"), size_bytes=size,
        outputs=outputs, min_ram_mb=glance.get("min_ram", 512),
        os_version=str(glance.get("os_version", "")),
    )

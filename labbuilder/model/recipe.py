"""Image recipes: YAML in images/ → a validated, frozen Recipe, and its cache hash."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from labbuilder.model.errors import RecipeError
from labbuilder.model.yamlread import IMAGE_NAME_RE as NAME_RE
from labbuilder.model.yamlread import Checker, load_with_marks, parse_size, short

# Bump when the build code changes what a recipe produces, so old cache entries are not reused.
PIPELINE_VERSION = 1

SUITES = {
    "debian": ("buster", "bullseye", "bookworm", "trixie", "sid"),
    "ubuntu": ("focal", "jammy", "noble"),
}
DEFAULT_MIRRORS = {"debian": "http://deb.debian.org/debian", "ubuntu": "http://archive.ubuntu.com/ubuntu"}
VARIANTS = ("apt", "required", "important", "standard", "minbase")
OUTPUTS = ("qcow2", "raw", "vagrant")  # vagrant: a vagrant-libvirt box of the qcow2
# Whole strings only (fullmatch). What reaches mmdebstrap's, GRUB's and virt-sysprep's
# command lines and files is limited to characters that cannot end or add an argument.
UNIT_RE = re.compile(r"[A-Za-z0-9@._-]+")
PACKAGE_RE = re.compile(r"[a-z0-9][a-z0-9+.-]*")
MIRROR_RE = re.compile(r"[A-Za-z0-9._~:/@%+-]+")
MIRROR_SCHEMES = ("http", "https", "file")
CMDLINE_RE = re.compile(r"[A-Za-z0-9._,:=/@+-]+(?: [A-Za-z0-9._,:=/@+-]+)*")
MAX_CMDLINE = 1024
SYSPREP_OP_RE = re.compile(r"-?[a-z0-9][a-z0-9-]*")
MIN_SIZE_BYTES = 1 << 30
MAX_SIZE_BYTES = 64 << 40  # 64 TiB
MAX_MIN_RAM_MB = 1 << 20  # 1 TiB


@dataclass(frozen=True)
class FileSpec:
    path: str
    content: str
    mode: int
    # also written before mmdebstrap installs the recipe's packages (after the essential
    # ones), so their maintainer scripts see it; written again with the other files after
    before_packages: bool = False


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
    disable: tuple[str, ...] = ()  # installed, not started at boot: the config stage enables them
    extends: str = ""  # the parent recipe's name; already flattened into the fields above

    def hash(self) -> str:
        """sha256 over everything that changes the built image (not name/description/path;
        not extends: the flattened fields say it all)."""
        data = asdict(self)
        for k in ("description", "path", "extends"):
            data.pop(k)
        if not data["disable"]:
            data.pop("disable")  # recipes that disable nothing keep the hash they had before
        for f in data["files"]:
            if not f["before_packages"]:
                f.pop("before_packages")  # likewise files written only after the packages
        data["pipeline"] = PIPELINE_VERSION
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


_TOP = {"name": str, "description": str, "source": dict, "packages": list, "kernel_cmdline": str,
        "files": list, "services": dict, "sysprep": dict, "size": (str, int), "outputs": list,
        "glance": dict}
_MMDEBSTRAP = {"suite": str, "variant": str, "mirror": str}
_FILE = {"path": str, "content": str, "mode": str, "before_packages": bool}
_SERVICES = {"enable": list, "mask": list, "disable": list}
_SYSPREP = {"operations": str}
_GLANCE = {"min_ram": int, "os_version": (str, int)}
# A recipe that `extends` another adds to it or overrides these; the rest it inherits.
_CHILD_TOP = {"name": str, "extends": str, "description": str, "packages": list, "files": list,
              "services": dict, "size": (str, int), "glance": dict, "kernel_cmdline": str,
              "outputs": list}
_INHERITED = ("source", "sysprep")


def _distro_of(suite: str) -> str | None:
    return next((d for d, suites in SUITES.items() if suite in suites), None)


def _names(c: Checker, items: list, path: tuple, pattern: re.Pattern, what: str) -> tuple[str, ...]:
    good = []
    for i, item in enumerate(items):
        if c.is_type(item, str, path + (i,)):
            if pattern.fullmatch(item):
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
    if "mirror" in mm:
        _mirror(c, mm["mirror"])
    return mm


def _mirror(c: Checker, url: str) -> None:
    """An http(s) or file URL of a Debian mirror, and nothing that could be more."""
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if not MIRROR_RE.fullmatch(url) or parts is None or parts.scheme not in MIRROR_SCHEMES \
            or bool(parts.netloc) != parts.scheme.startswith("http") or not (parts.netloc or parts.path):
        c.problem(("source", "mmdebstrap", "mirror"), f"{short(url)} is not an http(s) or file URL of a mirror",
                  "e.g. http://deb.debian.org/debian or file:///srv/mirror/debian; letters, digits and ._~:/@%+- only")


def _files(c: Checker, items: list) -> tuple[FileSpec, ...]:
    out = []
    for i, item in enumerate(items):
        f = c.mapping(item, ("files", i), _FILE, ("path", "content"))
        path, mode = f.get("path", ""), f.get("mode", "0644")
        if path and not path.startswith("/"):
            c.problem(("files", i, "path"), f"{short(path)} must be an absolute path in the image")
            path = ""
        elif ".." in PurePosixPath(path).parts or not path.isprintable():
            c.problem(("files", i, "path"), f"{short(path)} has a '..' or a control character in it",
                      "the file's own absolute path, e.g. /etc/motd")
            path = ""
        if not re.fullmatch(r"0?[0-7]{3,4}", mode):
            c.problem(("files", i, "mode"), f"{mode!r} is not an octal mode like '0644'")
        elif path.startswith("/") and "content" in f:
            out.append(FileSpec(path, f["content"], int(mode, 8), f.get("before_packages", False)))
    return tuple(out)


def load_recipe(path: Path) -> Recipe:
    """Read and validate a recipe file, flattening the recipes it extends into one Recipe;
    raise RecipeError listing every problem found (each at its own file and line)."""
    return _load(Path(path), ())


def _load(path: Path, chain: tuple[Path, ...]) -> Recipe:
    data, marks = load_with_marks(path, RecipeError)
    c = Checker(path, marks, RecipeError)
    if isinstance(data, dict) and "extends" in data:
        return _child_recipe(c, data, path, chain)
    return _base_recipe(c, data, path)


def _base_recipe(c: Checker, data, path: Path) -> Recipe:
    top = c.mapping(data, (), _TOP, ("name", "source", "size"))
    mm = _source(c, top)
    common = _common(c, top)
    sysprep = c.mapping(top.get("sysprep", {}), ("sysprep",), _SYSPREP)
    _sysprep_operations(c, sysprep.get("operations", "defaults"))
    outputs = _outputs(c, top.get("outputs", ["qcow2"]))
    c.done()
    distro, units, glance = _distro_of(mm["suite"]), common["units"], common["glance"]
    return Recipe(
        name=common["name"], description=top.get("description", ""), path=str(path), suite=mm["suite"],
        distro=distro, mirror=mm.get("mirror", DEFAULT_MIRRORS[distro]),
        variant=mm.get("variant", "apt"), packages=common["packages"],
        kernel_cmdline=top.get("kernel_cmdline", ""), files=common["files"], enable=units["enable"],
        mask=units["mask"], disable=units["disable"],
        sysprep_operations=sysprep.get("operations", "defaults,-customize"), size_bytes=common["size"],
        outputs=outputs, min_ram_mb=glance.get("min_ram", 512),
        os_version=str(glance.get("os_version", "")),
    )


def _sysprep_operations(c: Checker, text: str) -> None:
    for i, op in enumerate(text.split(",")):
        if not SYSPREP_OP_RE.fullmatch(op):
            c.problem(("sysprep", "operations"), f"operation {short(op)} (number {i + 1}) is not a virt-sysprep "
                      "operation name", "names from virt-sysprep --list-operations, comma-separated, "
                      "'-' before one to leave it out: defaults,-customize")


def _kernel_cmdline(c: Checker, text: str) -> None:
    if text and (len(text) > MAX_CMDLINE or not CMDLINE_RE.fullmatch(text)):
        c.problem(("kernel_cmdline",), f"{short(text)} is not kernel parameters GRUB can take as they are",
                  f"words of letters, digits and ._,:=/@+- separated by single spaces, at most {MAX_CMDLINE} "
                  "characters (no quotes, $, ;, backslash or newline)")


def _size(c: Checker, top: dict) -> int | None:
    size = parse_size(top["size"]) if "size" in top else None
    if "size" in top and (size is None or not MIN_SIZE_BYTES <= size <= MAX_SIZE_BYTES):
        c.problem(("size",), f"{short(top['size'])} is not a disk size from 1G to 64T", "e.g. 3G")
        return None
    return size


def _glance(c: Checker, top: dict) -> dict:
    glance = c.mapping(top.get("glance", {}), ("glance",), _GLANCE)
    if not 0 <= glance.get("min_ram", 0) <= MAX_MIN_RAM_MB:
        c.problem(("glance", "min_ram"), f"must be from 0 to {MAX_MIN_RAM_MB} (MB), got {glance['min_ram']}")
    return glance


def _common(c: Checker, top: dict) -> dict:
    """The keys a base recipe and a recipe that extends another share, checked."""
    name = top.get("name", "")
    if name and not NAME_RE.fullmatch(name):
        c.problem(("name",), f"{short(name)} must match [a-z0-9-] (at most 63 characters)")
    _kernel_cmdline(c, top.get("kernel_cmdline", ""))
    packages = _names(c, top.get("packages", []), ("packages",), PACKAGE_RE, "Debian package name")
    services = c.mapping(top.get("services", {}), ("services",), _SERVICES)
    units = {k: _names(c, services.get(k, []), ("services", k), UNIT_RE, "systemd unit") for k in _SERVICES}
    _unit_clashes(c, units)
    return {"name": name, "packages": packages, "files": _files(c, top.get("files", [])),
            "units": units, "glance": _glance(c, top), "size": _size(c, top)}


def _outputs(c: Checker, items: list) -> tuple[str, ...]:
    outputs = _names(c, items, ("outputs",), re.compile(r".*"), "output")
    for i, o in enumerate(outputs):
        if o not in OUTPUTS:
            c.problem(("outputs", i), f"unknown output {o!r}", "one of " + ", ".join(OUTPUTS))
    return outputs


def _unit_clashes(c: Checker, units: dict[str, tuple[str, ...]]) -> None:
    seen: dict[str, str] = {}
    for kind, names in units.items():
        for i, unit in enumerate(names):
            if seen.setdefault(unit, kind) != kind:
                c.problem(("services", kind, i), f"{unit!r} is also in services.{seen[unit]}",
                          "a unit is enabled, masked or disabled, not two of these")


def _child_recipe(c: Checker, data: dict, path: Path, chain: tuple[Path, ...]) -> Recipe:
    for key in _INHERITED:
        if key in data:
            c.problem((key,), f"cannot be set in a recipe that extends {data['extends']!r} (it comes from there)",
                      "allowed here: " + ", ".join(_CHILD_TOP))
    top = c.mapping({k: v for k, v in data.items() if k not in _INHERITED}, (), _CHILD_TOP,
                    ("name", "extends"))
    common = _common(c, top)
    outputs = _outputs(c, top["outputs"]) if "outputs" in top else None
    parent = _parent(c, path, top.get("extends"), chain) if "extends" in top else None
    c.done()
    return _merge(parent, common, top, path, outputs)


def _parent(c: Checker, path: Path, name: str, chain: tuple[Path, ...]) -> Recipe | None:
    """The recipe `name` next to `path`, loaded (and flattened) itself; None after
    recording why it cannot be (bad name, missing, a cycle, its own problems)."""
    if not NAME_RE.fullmatch(name):
        c.problem(("extends",), f"{short(name)} is not a recipe name",
                  "the name of another recipe file in the same directory, without .yaml")
        return None
    here, parent_path = path.resolve(), path.parent / f"{name}.yaml"
    if parent_path.resolve() in chain + (here,):
        cycle = " → ".join(p.stem for p in chain + (here, parent_path.resolve()))
        c.problem(("extends",), f"{name!r} makes a cycle: {cycle}",
                  "a recipe cannot extend itself, directly or through the recipes it extends")
        return None
    if not parent_path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.yaml") if p.resolve() != here)
        c.problem(("extends",), f"no recipe {name!r} ({parent_path} does not exist)",
                  "recipes in the same directory: " + (", ".join(known) or "none"))
        return None
    try:
        return _load(parent_path, chain + (here,))
    except RecipeError as e:
        c.problems.extend(e.problems)
        return None


def _merge(parent: Recipe, common: dict, top: dict, path: Path, outputs: tuple[str, ...] | None) -> Recipe:
    """`parent` with the child's additions and overrides; for a unit, the child's word wins."""
    units, glance, files = common["units"], common["glance"], common["files"]
    overridden = {f.path for f in files}

    def _units(kind: str) -> tuple[str, ...]:
        others = {u for k, names in units.items() if k != kind for u in names}
        return _union(tuple(u for u in getattr(parent, kind) if u not in others), units[kind])

    return replace(
        parent, name=common["name"], description=top.get("description", parent.description),
        path=str(path), extends=top["extends"], packages=_union(parent.packages, common["packages"]),
        kernel_cmdline=top.get("kernel_cmdline", parent.kernel_cmdline),
        files=tuple(f for f in parent.files if f.path not in overridden) + files,
        enable=_units("enable"), mask=_units("mask"), disable=_units("disable"),
        size_bytes=common["size"] or parent.size_bytes,
        min_ram_mb=glance.get("min_ram", parent.min_ram_mb),
        os_version=str(glance.get("os_version", parent.os_version)),
        outputs=parent.outputs if outputs is None else outputs,
    )


def _union(first: tuple[str, ...], then: tuple[str, ...]) -> tuple[str, ...]:
    """`first` followed by what of `then` is not in it yet, order kept."""
    return tuple(dict.fromkeys(first + then))

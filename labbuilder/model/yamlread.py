"""YAML loading with line marks, and a checker that collects every problem with its line.

`load_with_marks()` maps each dotted key path (``nodes.db-node.nics.1.ip``) to the line
it is on, so a problem can be reported as ``FILE:LINE: key.path: message``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from labbuilder.model.errors import InputError, Problem

KeyPath = tuple  # of str | int

# Values both image recipes and topologies hold: an image's name, a size.
IMAGE_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
SIZE_RE = re.compile(r"^(\d+)\s*([KMGT]i?B?)?$", re.I)


def parse_size(text: str | int) -> int | None:
    """'3G', '512M', '3GiB' or a byte count → bytes (binary units); None if unreadable."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    m = SIZE_RE.match(str(text).strip())
    if not m:
        return None
    unit = (m.group(2) or "").upper()[:1]
    return int(m.group(1)) * 1024 ** " KMGT".index(unit or " ")


class Marks(dict):
    """Key path → line. `duplicates` lists each repeated mapping key as
    (path of the mapping, key, line, line of its first occurrence)."""

    def __init__(self) -> None:
        super().__init__()
        self.duplicates: list[tuple[KeyPath, Any, int, int]] = []

    def forget(self, prefix: KeyPath) -> None:
        """Drop the marks of a value that a later duplicate key replaces."""
        for path in [p for p in self if p[:len(prefix)] == prefix]:
            del self[path]


# libyaml's parser where PyYAML was built with it: the same nodes and marks, faster.
_FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _construct(node: yaml.Node, path: KeyPath, marks: Marks, scalars: yaml.constructor.SafeConstructor) -> Any:
    marks.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        return _construct_mapping(node, path, marks, scalars)
    if isinstance(node, yaml.SequenceNode):
        return [_construct(v, path + (i,), marks, scalars) for i, v in enumerate(node.value)]
    return scalars.construct_object(node, deep=True)


def _construct_mapping(node: yaml.MappingNode, path: KeyPath, marks: Marks,
                       scalars: yaml.constructor.SafeConstructor) -> dict:
    # Like PyYAML, the last of equal keys wins; unlike PyYAML, the repeat is recorded.
    out: dict = {}
    first: dict = {}
    for key_node, value_node in node.value:
        key = scalars.construct_object(key_node, deep=True)
        key = str(key) if not isinstance(key, (str, int)) else key
        line = key_node.start_mark.line + 1
        if key in first:
            marks.duplicates.append((path, key, line, first[key]))
            marks.forget(path + (key,))
        first.setdefault(key, line)
        marks[path + (key,)] = line
        out[key] = _construct(value_node, path + (key,), marks, scalars)
    return out


def load_with_marks(path: Path, error: type[InputError] = InputError) -> tuple[Any, Marks]:
    """Read a YAML file; return (data, marks). Raises `error` on syntax errors. Repeated
    mapping keys are not errors here: they are listed in `marks.duplicates` for Checker."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise error([Problem(str(path), None, "", f"cannot read file: {e.strerror}")]) from None
    try:
        node = yaml.compose(text, Loader=_FAST_LOADER)
    except yaml.YAMLError:
        node = _compose_reporting(text, path, error)  # PyYAML's own parser words the error
    marks = Marks()
    if node is None:
        return {}, marks
    return _construct(node, (), marks, yaml.constructor.SafeConstructor()), marks


def _compose_reporting(text: str, path: Path, error: type[InputError]) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        line = e.problem_mark.line + 1 if e.problem_mark else None
        raise error([Problem(str(path), line, "", f"YAML syntax error: {e.problem}")]) from None


def dotted(path: KeyPath) -> str:
    return ".".join(str(p) for p in path)


_TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false", list: "a list",
               dict: "a mapping", float: "a number"}


class Checker:
    """Collects problems in one file; `done()` raises them all at once. Duplicate keys
    recorded by load_with_marks() are problems from the start."""

    def __init__(self, path: Path | str, marks: dict[KeyPath, int], error: type[InputError] = InputError):
        self.path, self.marks, self.error = str(path), marks, error
        self.problems: list[Problem] = [
            Problem(self.path, line, dotted(where), f"duplicate key '{key}' (first at line {first})")
            for where, key, line, first in getattr(marks, "duplicates", ())]

    def line(self, path: KeyPath) -> int | None:
        while path not in self.marks and path:
            path = path[:-1]
        return self.marks.get(path)

    def problem(self, path: KeyPath, message: str, hint: str = "") -> None:
        self.problems.append(Problem(self.path, self.line(path), dotted(path), message, hint))

    def is_type(self, value: Any, typ: type | tuple, path: KeyPath) -> bool:
        types = typ if isinstance(typ, tuple) else (typ,)
        ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
        if not ok:
            want = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in types)
            self.problem(path, f"must be {want}, got {value!r}")
        return ok

    def mapping(self, value: Any, path: KeyPath, allowed: dict[str, type | tuple],
                required: tuple[str, ...] = ()) -> dict:
        """Check a mapping's keys (unknown, missing) and value types; return the good part."""
        if not self.is_type(value, dict, path):
            return {}
        good = {}
        for key, item in value.items():
            if key not in allowed:
                close = closest(str(key), allowed)
                self.problem(path + (key,), "unknown key",
                             f"did you mean '{close}'?" if close else "allowed: " + ", ".join(allowed))
            elif item is not None and self.is_type(item, allowed[key], path + (key,)):
                good[key] = item
            elif item is None and key in required:
                self.problem(path + (key,), "must not be empty")
        for key in required:
            if key not in value:
                self.problem(path, f"missing required key '{key}'")
        return good

    def done(self) -> None:
        if self.problems:
            # This file's problems first, then those of files it includes (a recipe's parent).
            self.problems.sort(key=lambda p: (p.path != self.path, p.line or 0))
            raise self.error(self.problems)


def closest(word: str, options) -> str | None:
    """The option closest to `word`, if one is close enough for a "did you mean"."""
    import difflib  # here: only a problem needs it

    found = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return found[0] if found else None

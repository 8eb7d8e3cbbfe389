"""YAML loading with line marks, and a checker that collects every problem with its line.

`load_with_marks()` maps each dotted key path (``nodes.db-node.nics.1.ip``) to the line
it is on, so a problem can be reported as ``FILE:LINE: key.path: message``.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

import yaml

from labbuilder.model import yamlnodes
from labbuilder.model.errors import InputError, Problem
from labbuilder.model.yamlnodes import dotted

KeyPath = tuple  # of str | int

# Values both image recipes and topologies hold: an image's name, a size. Whole strings
# only (fullmatch); a size has at most 30 digits (Python reads no more than 4300).
IMAGE_NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
SIZE_RE = re.compile(r"(\d{1,30})\s*([KMGT]i?B?)?", re.I)


def parse_size(text: str | int) -> int | None:
    """'3G', '512M', '3GiB' or a byte count → bytes (binary units); None if unreadable."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    m = SIZE_RE.fullmatch(str(text).strip())
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
        self.problems: list[tuple[KeyPath, int, str, str]] = []  # (path, line, message, hint)

    def forget(self, prefix: KeyPath) -> None:
        """Drop the marks of a value that a later duplicate key replaces."""
        for path in [p for p in self if p[:len(prefix)] == prefix]:
            del self[path]


MERGE_TAG = "tag:yaml.org,2002:merge"


def _construct(node: yaml.Node, path: KeyPath, marks: Marks, scalars: yaml.constructor.SafeConstructor) -> Any:
    marks.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        return _construct_mapping(node, path, marks, scalars)
    if isinstance(node, yaml.SequenceNode):
        return [_construct(v, path + (i,), marks, scalars) for i, v in enumerate(node.value)]
    return _scalar(node, scalars)


def _scalar(node: yaml.ScalarNode, scalars: yaml.constructor.SafeConstructor) -> Any:
    """The scalar's value; its text where YAML 1.1 would fail on it (2024-02-30, `=`, an
    integer of more digits than Python reads)."""
    try:
        return scalars.construct_object(node, deep=True)
    except (yaml.constructor.ConstructorError, ValueError, OverflowError):
        return node.value


def _construct_mapping(node: yaml.MappingNode, path: KeyPath, marks: Marks,
                       scalars: yaml.constructor.SafeConstructor) -> dict:
    # Like PyYAML, the last of equal keys wins; unlike PyYAML, the repeat is recorded.
    # Keys a merge key (`<<: *x`) brings in come first and keep the lines they are written
    # on; a key written in this mapping overrides them without being a repeat.
    out: dict = {}
    first: dict = {}
    for key_node, value_node in _merged_pairs(node, path, marks):
        key = _key(key_node, scalars)
        if key in out:
            marks.forget(path + (key,))
        marks[path + (key,)] = key_node.start_mark.line + 1
        out[key] = _construct(value_node, path + (key,), marks, scalars)
    for key_node, value_node in node.value:
        if key_node.tag == MERGE_TAG:
            continue
        key = _key(key_node, scalars)
        line = key_node.start_mark.line + 1
        if key in first:
            marks.duplicates.append((path, key, line, first[key]))
        first.setdefault(key, line)
        if key in out:
            marks.forget(path + (key,))
        marks[path + (key,)] = line
        out[key] = _construct(value_node, path + (key,), marks, scalars)
    return out


def _key(node: yaml.Node, scalars: yaml.constructor.SafeConstructor) -> Any:
    key = _scalar(node, scalars) if isinstance(node, yaml.ScalarNode) else "?"
    return key if isinstance(key, (str, int)) else str(key)


def _merged_pairs(node: yaml.MappingNode, path: KeyPath, marks: Marks) -> list[tuple[yaml.Node, yaml.Node]]:
    """The (key, value) pairs this mapping's merge keys bring in, in PyYAML's order (of
    equal keys, the last wins: the first mapping a merge key lists)."""
    pairs: list = []
    for key_node, value_node in node.value:
        if key_node.tag != MERGE_TAG:
            continue
        sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
        if not all(isinstance(s, yaml.MappingNode) for s in sources):
            marks.problems.append((path + ("<<",), key_node.start_mark.line + 1,
                                   "a merge key takes a mapping or a list of mappings",
                                   "e.g. <<: *common, where common: &common {memory: 512}"))
            continue
        for source in reversed(sources):
            pairs += _merged_pairs(source, path, marks)
            pairs += [(k, v) for k, v in source.value if k.tag != MERGE_TAG]
    return pairs


def load_with_marks(path: Path, error: type[InputError] = InputError) -> tuple[Any, Marks]:
    """Read a YAML file; return (data, marks). Raises `error` on what yamlnodes refuses
    (not UTF-8 text, syntax, tags, bounds) and on a bad merge key. Repeated mapping keys
    are not errors here: they are listed in `marks.duplicates` for Checker."""
    node = yamlnodes.compose(yamlnodes.read_text(Path(path), error), Path(path), error)
    marks = Marks()
    if node is None:
        return {}, marks
    data = _construct(node, (), marks, yaml.constructor.SafeConstructor())
    if marks.problems:
        raise error([Problem(str(path), line, dotted(where), message, hint)
                     for where, line, message, hint in marks.problems])
    return data, marks


def short(value: Any, limit: int = 60) -> str:
    """repr(value), cut to `limit` characters: a message quotes a value, not a megabyte."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


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
            want = "a number" if set(types) == {int, float} else " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in types)
            self.problem(path, f"must be {want}, got {short(value)}")
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
    found = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return found[0] if found else None

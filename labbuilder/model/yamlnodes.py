"""A YAML file → one node tree, bounded before any Python value is made.

The file is read as bytes and must be UTF-8 text YAML can hold (no NUL or other control
characters). Its parse events (libyaml's parser where PyYAML has it) are composed here,
without recursion, into yaml.Node objects, refusing on the way what plain data does not
need: tags (``!foo``, ``!!python/…``), mapping keys that are not plain values, an alias
inside its own anchor, anchors defined twice. Bounds, counted as if every alias were
expanded: at most MAX_NODES nodes (an alias bomb stops at its first alias past it) and
collections at most MAX_DEPTH deep. Every problem is a Problem with its line and key path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from labbuilder.model.errors import InputError, Problem

MAX_FILE_BYTES = 1 << 20
MAX_NODES = 100_000
MAX_DEPTH = 50

# What YAML allows in a stream (PyYAML's Reader.NON_PRINTABLE): tab, newlines, printable.
_NOT_PRINTABLE = re.compile("[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# Control characters a double-quoted scalar can still spell ("\0", "\e"): not in a value.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_TAG_HINT = "labbuilder reads plain YAML: remove the tag (quote a value to make it a string)"
_YAML_TAGS = "tag:yaml.org,2002:"
# libyaml's parser where PyYAML was built with it: the same events and marks, faster.
_FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class Refused(Exception):
    """A bound was passed: composing stops at once."""


def read_text(path: Path, error: type[InputError]) -> str:
    """The file's text: at most MAX_FILE_BYTES of UTF-8 that YAML can hold; else `error`."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise error([Problem(str(path), None, "", f"cannot read file: {e.strerror}")]) from None
    if len(data) > MAX_FILE_BYTES:
        raise error([Problem(str(path), None, "", f"larger than {MAX_FILE_BYTES >> 10} KiB",
                             "a topology, host inventory or recipe is a few KiB of YAML")])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise error([Problem(str(path), line, "", f"not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start})",
                             "save the file as UTF-8")]) from None
    _check_printable(path, text, error)
    return text


def _check_printable(path: Path, text: str, error: type[InputError]) -> None:
    bad = _NOT_PRINTABLE.search(text)
    if bad is None:
        return
    line = text.count("\n", 0, bad.start()) + 1
    column = bad.start() - (text.rfind("\n", 0, bad.start()) + 1) + 1
    what = "a NUL byte" if bad.group() == "\0" else f"control character U+{ord(bad.group()):04X}"
    raise error([Problem(str(path), line, "", f"{what} at column {column}",
                         "YAML holds text only: tab, newline and printable characters")])


def compose(text: str, path: Path, error: type[InputError]) -> yaml.Node | None:
    """The single document of `text` as a node tree (None if empty); `error` listing every
    problem (syntax, tags, bounds …) otherwise."""
    composer = _Composer(str(path))
    try:
        node = composer.document(_FAST_LOADER(text))
    except yaml.YAMLError:
        composer = _Composer(str(path))  # PyYAML's own parser words the error
        node = _compose_reporting(composer, text)
    except Refused:
        pass
    if composer.problems:
        raise error(composer.problems)
    return node


def _compose_reporting(composer: _Composer, text: str) -> yaml.Node | None:
    try:
        return composer.document(yaml.SafeLoader(text))
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        composer.problems.append(Problem(composer.path, mark.line + 1 if mark else None, "",
                                         f"YAML syntax error: {e.problem}"))
    except Refused:
        pass
    return None


@dataclass
class _Frame:
    """A collection being composed: its node, key path, size and height so far."""

    node: yaml.Node
    path: tuple
    anchor: str | None
    size: int = 1  # nodes in it, aliases counted expanded
    height: int = 1  # collections nested in it, itself included, aliases expanded
    key: yaml.Node | None = None  # a mapping's key waiting for its value

    def child_path(self) -> tuple:
        if isinstance(self.node, yaml.SequenceNode):
            return self.path + (len(self.node.value),)
        if self.key is None:
            return self.path
        return self.path + (self.key.value if isinstance(self.key, yaml.ScalarNode) else "?",)


@dataclass
class _Composer:
    path: str
    problems: list[Problem] = field(default_factory=list)
    anchors: dict = field(default_factory=dict)  # name → (node, size, height); node None while open
    count: int = 0  # nodes so far, aliases counted expanded

    def document(self, loader) -> yaml.Node | None:
        """Compose the stream's one document."""
        loader.get_event()  # StreamStart
        if loader.check_event(yaml.StreamEndEvent):
            return None
        loader.get_event()  # DocumentStart
        node = self._tree(loader)
        loader.get_event()  # DocumentEnd
        if not loader.check_event(yaml.StreamEndEvent):
            event = loader.get_event()
            raise yaml.composer.ComposerError("expected a single document in the stream", None,
                                              "but found another document", event.start_mark)
        return node

    def _tree(self, loader) -> yaml.Node:
        stack: list[_Frame] = []
        while True:
            event = loader.get_event()
            where = stack[-1].child_path() if stack else ()
            if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                stack.append(self._open(event, where, len(stack)))
                continue
            if isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                node, size, height = self._close(stack.pop(), event)
            elif isinstance(event, yaml.AliasEvent):
                node, size, height = self._alias(event, where, len(stack))
            else:
                node, size, height = self._scalar(loader, event, where), 1, 0
            if not stack:
                return node
            self._add(stack[-1], node, size, height)

    def _open(self, event, path: tuple, depth: int) -> _Frame:
        if depth >= MAX_DEPTH:
            self._refuse(event, path, f"nested more than {MAX_DEPTH} deep", "")
        self._count(event, path, 1)
        self._tag(event, path)
        kind = yaml.SequenceNode if isinstance(event, yaml.SequenceStartEvent) else yaml.MappingNode
        tag = _YAML_TAGS + ("seq" if kind is yaml.SequenceNode else "map")
        node = kind(tag, [], event.start_mark, None, flow_style=event.flow_style)
        self._anchor(event, path)
        return _Frame(node, path, event.anchor)

    def _close(self, frame: _Frame, event) -> tuple[yaml.Node, int, int]:
        frame.node.end_mark = event.end_mark
        if frame.anchor is not None:
            self.anchors[frame.anchor] = (frame.node, frame.size, frame.height)
        return frame.node, frame.size, frame.height

    def _add(self, frame: _Frame, node: yaml.Node, size: int, height: int) -> None:
        frame.size += size
        frame.height = max(frame.height, height + 1)
        if isinstance(frame.node, yaml.SequenceNode):
            frame.node.value.append(node)
        elif frame.key is None:
            if not isinstance(node, yaml.ScalarNode):
                self._problem(node.start_mark, frame.path, "a mapping key must be a plain value, not a "
                              + ("list" if isinstance(node, yaml.SequenceNode) else "mapping"), "")
            frame.key = node
        else:
            frame.node.value.append((frame.key, node))
            frame.key = None

    def _scalar(self, loader, event, path: tuple) -> yaml.ScalarNode:
        self._count(event, path, 1)
        tag = None if self._tag(event, path) else loader.resolve(yaml.ScalarNode, event.value, event.implicit)
        if tag in (None, _YAML_TAGS + "timestamp"):  # no input has a date: 2024-02-30 is text
            tag = _YAML_TAGS + "str"
        bad = _CONTROL.search(event.value)
        if bad:
            self._problem(event.start_mark, path, f"control character U+{ord(bad.group()):04X} in a value",
                          "values are text: tab and newline are the only control characters they may hold")
        node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, style=event.style)
        self._anchor(event, path)
        if event.anchor is not None:
            self.anchors[event.anchor] = (node, 1, 0)
        return node

    def _alias(self, event, path: tuple, depth: int) -> tuple[yaml.Node, int, int]:
        found = self.anchors.get(event.anchor)
        if found is None or found[0] is None:
            why = "inside its own anchor" if found else f"with no anchor &{event.anchor} before it"
            self._problem(event.start_mark, path, f"alias *{event.anchor} {why}",
                          "an alias repeats a value defined earlier in the file")
            return yaml.ScalarNode(_YAML_TAGS + "null", "", event.start_mark, event.end_mark), 1, 0
        node, size, height = found
        if depth + height > MAX_DEPTH:
            self._refuse(event, path, f"alias *{event.anchor} nests values more than {MAX_DEPTH} deep", "")
        self._count(event, path, size)
        return node, size, height

    def _anchor(self, event, path: tuple) -> None:
        if event.anchor is None:
            return
        if event.anchor in self.anchors:
            first = self.anchors[event.anchor][0]
            line = f" (first at line {first.start_mark.line + 1})" if first is not None else ""
            self._problem(event.start_mark, path, f"anchor &{event.anchor} is defined twice{line}",
                          "give each anchor its own name")
        else:
            self.anchors[event.anchor] = (None, 0, 0)  # open: an alias to it now would loop

    def _tag(self, event, path: tuple) -> bool:
        """Report an explicit tag; True if there was one."""
        if event.tag is None:
            return False
        shown = "!!" + event.tag[len(_YAML_TAGS):] if event.tag.startswith(_YAML_TAGS) else event.tag
        self._problem(event.start_mark, path, f"YAML tag {shown} is not allowed", _TAG_HINT)
        return True

    def _count(self, event, path: tuple, size: int) -> None:
        self.count += size
        if self.count > MAX_NODES:
            self._refuse(event, path, f"more than {MAX_NODES} values, each alias counted as what it repeats",
                         "aliases multiply what their anchors hold; a lab needs far fewer values")

    def _refuse(self, event, path: tuple, message: str, hint: str) -> None:
        self._problem(event.start_mark, path, message, hint)
        raise Refused

    def _problem(self, mark, path: tuple, message: str, hint: str) -> None:
        key = dotted(path[:5]) + (".…" if len(path) > 6 else dotted(path[5:], "."))
        self.problems.append(Problem(self.path, mark.line + 1 if mark else None, key, message, hint))


_PLAIN_KEY = re.compile(r"[^\s.'\"]+")


def dotted(path: tuple, lead: str = "") -> str:
    """A key path as text, `nodes.db-node.nics.1.ip`; a key with a space, dot or quote
    (or a newline) is quoted: `nodes.'a\\n'`."""
    if not path:
        return ""
    return lead + ".".join(p if isinstance(p, str) and _PLAIN_KEY.fullmatch(p) else
                           str(p) if isinstance(p, int) else repr(p) for p in path)

"""One error hierarchy. Library code raises these; only the CLI turns them into text."""

from __future__ import annotations

import shlex
from dataclasses import dataclass


class LabError(Exception):
    """Base of every error a user can see. `exit_code` is what the CLI exits with."""

    exit_code = 1
    log: str | None = None  # the full log of what failed, shown after the message

    def lines(self) -> list[str]:
        return [str(self)]


# Control characters in user text (a name "a\n", an ESC from a YAML "\e") print escaped:
# a problem stays on its line, and a terminal gets no escape sequence.
_ESCAPED = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7f, 0xa0))}


@dataclass
class Problem:
    """One problem in an input file: where it is and what is wrong."""

    path: str
    line: int | None
    key: str
    message: str
    hint: str = ""

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        text = f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"
        return (text + (f" (hint: {self.hint})" if self.hint else "")).translate(_ESCAPED)


class InputError(LabError):
    """Bad user input (a recipe, topology or inventory): every problem found, collected."""

    exit_code = 2

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))

    def lines(self) -> list[str]:
        return [str(p) for p in self.problems]


class RecipeError(InputError):
    """An image recipe is invalid."""


class TopologyError(InputError):
    """A topology (or host inventory) is invalid."""


class ToolError(LabError):
    """An external command failed. Both its streams are kept: some tools print warnings on
    stderr and the reason on stdout (ansible-playbook, dpkg under mmdebstrap)."""

    def __init__(self, argv: list[str], rc: int, stderr: str, log: str | None = None, stdout: str = ""):
        self.argv, self.rc, self.stderr, self.stdout, self.log = argv, rc, stderr, stdout, log
        super().__init__(f"{argv[0]} failed with exit status {rc}")

    @property
    def output(self) -> str:
        """stderr, then stdout: what to search for a known failure's words."""
        return "\n".join(s for s in (self.stderr, self.stdout) if s)

    def lines(self) -> list[str]:
        out = [f"{shlex.join(self.argv[:1])} failed (exit status {self.rc}): {shlex.join(self.argv)}"]
        for stream in (self.stderr, self.stdout):  # the last lines of each: stdout's under stderr's
            tail = [l for l in stream.strip().splitlines() if l.strip()][-3:]
            out += [f"  {l}" for l in tail]
        if self.log:
            out.append(f"full log: {self.log}")
        return out


class HostError(LabError):
    """A libvirt host could not be reached or refused an operation; `reason`: libvirt's own word."""

    def __init__(self, message: str, reason: str = ""):
        self.reason = reason
        super().__init__(message)


class ImageError(LabError):
    """An image is missing or unusable."""


class LockedError(LabError):
    """Another labbuilder run holds the lock for this lab and team."""


class TeamError(LabError):
    """A team number outside 1..MAX_TEAM."""

    exit_code = 2


class ConfigError(LabError):
    """A step failed: node, role, step, exit status and the tail of its log."""

    def __init__(self, lines: list[str]):
        self._lines = lines
        super().__init__(lines[0])

    def lines(self) -> list[str]:
        return self._lines


class CheckpointError(LabError):
    """A checkpoint is missing, incomplete or cannot be taken."""


class ClassError(LabError):
    """Some teams of a class command failed (each one's error is in the command's table)."""


class PlacementError(LabError):
    """The teams do not fit on the pool's hosts, or where a team runs cannot be kept."""

    exit_code = 2

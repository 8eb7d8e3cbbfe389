"""Every external command goes through `run()`: an argument list, never a shell string."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path
from typing import Callable, TypeVar

from labbuilder.model.errors import ToolError

# A child that dies with labbuilder (even by SIGKILL): it must not write into a work
# directory the next build removes, nor hold the mounts it made.
DIES_WITH_US = ["setpriv", "--pdeathsig", "KILL", "--"]


def run(
    argv: list[str],
    *,
    log: Path | None = None,
    env: dict[str, str] | None = None,
    input: bytes | None = None,
    check: bool = True,
    timeout: float | None = None,
) -> subprocess.CompletedProcess:
    """Run `argv`; return the CompletedProcess (stdout/stderr as text).

    With `log`, the command line and its full output are appended to that file.
    On failure raises ToolError with the exit status, both streams and the log path.
    """
    full_env = {**os.environ, **(env or {})}
    try:
        proc = subprocess.run(
            argv, input=input, capture_output=True, env=full_env, timeout=timeout
        )
    except FileNotFoundError:
        raise ToolError(argv, 127, f"{argv[0]}: command not found") from None
    except subprocess.TimeoutExpired as e:
        raise ToolError(argv, -1, f"timed out after {timeout}s", str(log) if log else None) from e
    out = proc.stdout.decode(errors="replace")
    err = proc.stderr.decode(errors="replace")
    if log is not None:
        with open(log, "a") as f:
            f.write(f"$ {shlex.join(argv)}\n{out}{err}[exit {proc.returncode}]\n")
    if check and proc.returncode != 0:
        raise ToolError(argv, proc.returncode, err, str(log) if log else None, stdout=out)
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


T = TypeVar("T")


def once_more_on(flake: str, attempt: Callable[[], T], before_again: Callable[[ToolError], None]) -> T:
    """attempt(); when it fails with a ToolError whose output holds `flake` (a known
    failure that a new try gets past), before_again(that error), then attempt() once more.
    Any other failure, or the same one twice, is raised."""
    try:
        return attempt()
    except ToolError as e:
        if flake not in e.output:
            raise
        before_again(e)
    return attempt()

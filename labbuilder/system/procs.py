"""Processes by pid, for the daemons labbuilder starts (private libvirtd, apt-cacher-ng
and its relays): read a pidfile, a command line, whether a pid runs, and stop pids."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

POLL = 0.05  # seconds between looks at whether the pids are gone


def read_pid(pidfile: Path) -> int | None:
    """The pid in `pidfile`, or None if it is missing or garbled."""
    try:
        return int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None


def cmdline(pid: int) -> list[str]:
    """The argument vector of `pid`; empty if it is gone (or a zombie)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [os.fsdecode(arg) for arg in raw.split(b"\0") if arg]


def alive(pid: int) -> bool:
    """True if `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def parent(pid: int) -> int | None:
    """The parent pid of `pid`; None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rpartition(")")[2].split()[1])


def terminate(pids: list[int], timeout: float) -> None:
    """SIGTERM `pids`, wait up to `timeout` s for them to exit, SIGKILL those that did not
    and wait up to `timeout` s again."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = [pid for pid in pids if alive(pid)]
        for pid in pids:
            send_signal(pid, sig)
        wait_gone(pids, timeout)


def send_signal(pid: int, sig: signal.Signals) -> None:
    """Send `sig` to `pid` if it still exists."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def wait_gone(pids: list[int], timeout: float) -> None:
    """Wait up to `timeout` seconds for every pid in `pids` to exit."""
    deadline = time.monotonic() + timeout
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(POLL)

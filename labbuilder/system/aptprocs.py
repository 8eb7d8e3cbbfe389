"""The package cache's processes, found again from its state dir by their pid files: the
apt-cacher-ng daemon labbuilder started (acng.pid) and the relays (relays/*.pid), and
stopping them. system/aptcache.py starts them; this is what `down` needs of them, so a
`down` loads nothing of starting a cache (its configuration, the host's mirrors, the
port probe).
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from labbuilder.system import locks, procs

BINARY = Path("/usr/sbin/apt-cacher-ng")
RELAY_SCRIPT = Path(__file__).with_name("aptrelay.py")
STOP_TIMEOUT = 10.0


def stop(state_dir: Path) -> bool:
    """Stop every relay started from `state_dir`, then the daemon it owns — unless a relay
    another labbuilder state started still forwards to that daemon's port (its labs use
    it). The cache stays on disk for the next start. True if the daemon was stopped; a
    cache we do not own is never stopped."""
    with host_lock():
        for pidfile, pid in relay_pids(state_dir).items():
            stop_relay(pidfile, pid)
        port = _port(state_dir)
        if port is not None and _relays_to(port):
            return False
        return _stop_daemon(state_dir)


def relay_pids(state_dir: Path) -> dict[Path, int]:
    """Pid file → pid of each relay started from `state_dir` that still runs."""
    found = {}
    for pidfile in sorted((Path(state_dir) / "relays").glob("*.pid")):
        pid = relay_pid(pidfile)
        if pid is not None:
            found[pidfile] = pid
    return found


def stop_relay(pidfile: Path, pid: int) -> None:
    """Stop one relay (by its recorded pid), e.g. when its lab network is removed."""
    if relay_pid(pidfile) == pid:
        procs.terminate([pid], STOP_TIMEOUT)
    if procs.read_pid(pidfile) == pid:  # not a newer relay's
        pidfile.unlink(missing_ok=True)


def relay_pid(pidfile: Path) -> int | None:
    """The pid in `pidfile` if it is a relay started with that pidfile."""
    pid = procs.read_pid(pidfile)
    argv = procs.cmdline(pid) if pid is not None else []
    return pid if _is_relay(argv) and str(pidfile) in argv else None


def daemon_pid(state_dir: Path) -> int | None:
    """The pid in acng.pid if it is an apt-cacher-ng running with our conf dir."""
    pid = procs.read_pid(state_dir / "acng.pid")
    argv = procs.cmdline(pid) if pid is not None else []
    ours = argv and Path(argv[0]).name == BINARY.name and str(state_dir / "conf") in argv
    return pid if ours else None


@contextmanager
def host_lock() -> Iterator[None]:
    """One start, relay or stop of a package cache at a time on this host, whatever its
    state dir or port (one lock for all: each is quick), per user (the file is 0600)."""
    base = Path("/run/lock") if os.access("/run/lock", os.W_OK) else Path("/tmp")
    with locks.exclusive(base / f"labbuilder-aptcache-{os.getuid()}.lock", lambda: None):
        yield


def _stop_daemon(state_dir: Path) -> bool:
    """Stop the daemon started from `state_dir`, if it runs; True if it did."""
    pid = daemon_pid(state_dir)
    if pid is not None:
        procs.terminate([pid], STOP_TIMEOUT)
    return pid is not None


def _port(state_dir: Path) -> int | None:
    """The port in the acng.conf labbuilder wrote for the daemon of `state_dir`."""
    conf = state_dir / "conf" / "acng.conf"
    found = re.search(r"^Port: *([0-9]+)$", conf.read_text(), re.M) if conf.exists() else None
    return int(found.group(1)) if found else None


def _relays_to(port: int) -> list[int]:
    """Every relay process on this host forwarding to 127.0.0.1:`port`, whoever started it."""
    pids = (int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit())
    return [pid for pid in pids if _is_relay_to(procs.cmdline(pid), port)]


def _is_relay(argv: list[str]) -> bool:
    """A relay by its script's name, not its path: one started from another checkout of
    labbuilder (or another install) is a relay all the same."""
    return len(argv) >= 2 and Path(argv[1]).name == RELAY_SCRIPT.name


def _is_relay_to(argv: list[str], port: int) -> bool:
    if not _is_relay(argv) or "--upstream" not in argv:
        return False
    return argv[argv.index("--upstream") + 1:][:1] == [str(port)]

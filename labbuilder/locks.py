"""Exclusive locks between labbuilder runs on this machine: flock(2) on a file."""

from __future__ import annotations

import fcntl
import hashlib
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from .errors import LockedError


@contextmanager
def exclusive(path: Path, blocked: Callable[[], None]) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created 0600) for the with-block. If another
    process holds it, `blocked()` is called first: it raises to give up, or returns to wait."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if not _try_lock(fd):
            blocked()
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # the kernel drops the lock with the last descriptor, also on SIGKILL


@contextmanager
def team_lock(state: Path, lab: str, team: int) -> Iterator[None]:
    """One up/reset/down of a lab and team at a time (`state`: its state directory);
    other teams run in parallel. A second one fails at once."""
    def blocked() -> None:
        raise LockedError(f"another labbuilder run is working on {lab} team {team} "
                          f"(lock {state / 'lock'}); try again when it ends")

    with exclusive(state / "lock", blocked):
        yield


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def host_lock_path(root: Path, uri: str) -> Path:
    """The lock file of libvirt host `uri` under `root` (a hash: URIs carry '/' and '?')."""
    return root / f"host-{hashlib.sha256(uri.encode()).hexdigest()[:16]}.lock"

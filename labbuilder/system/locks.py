"""Exclusive locks between labbuilder runs on this machine: flock(2) on a file."""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Callable, Hashable, Iterable, Iterator

from labbuilder.model.errors import LockedError


@contextmanager
def exclusive(path: Path, blocked: Callable[[], None], shared: bool = False) -> Iterator[None]:
    """Hold an exclusive (or, with `shared`, a shared) lock on `path` (created 0600) for the
    with-block. If another process holds it so that it cannot be had at once, `blocked()`
    is called first: it raises to give up, or returns to wait."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    try:
        if not _try_lock(fd, mode):
            blocked()
            fcntl.flock(fd, mode)
        yield
    finally:
        os.close(fd)  # the kernel drops the lock with the last descriptor, also on SIGKILL


@contextmanager
def team_lock(state: Path, lab: str, team: int, every_team: bool = False) -> Iterator[None]:
    """One up/reset/down of a lab and team at a time (`state`: its state directory, in
    the state root); other teams run in parallel. With `every_team` (`down --all-teams`):
    no run on any team of the lab meanwhile. A run that cannot have its lock fails at once.

    Two locks: every run holds the lab's lock shared and its team's exclusive; a run on
    every team holds the lab's exclusive."""
    lab_lock = state.parent / "locks" / f"lab-{lab}.lock"

    def lab_blocked() -> None:
        raise LockedError(f"another labbuilder run is working on a team of {lab} (lock {lab_lock}); "
                          "try again when it ends" if every_team else
                          f"another labbuilder run is removing every team of {lab} (lock {lab_lock}); "
                          "try again when it ends")

    def team_blocked() -> None:
        raise LockedError(f"another labbuilder run is working on {lab} team {team} "
                          f"(lock {state / 'lock'}); try again when it ends")

    with exclusive(lab_lock, lab_blocked, shared=not every_team):
        if every_team:
            yield
        else:
            with exclusive(state / "lock", team_blocked):
                yield


def _try_lock(fd: int, mode: int) -> bool:
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def host_lock_path(root: Path, uri: str, what: str = "host") -> Path:
    """The lock file of libvirt host `uri` under `root` (a hash: URIs carry '/' and '?'),
    for `what` is done on it ("host": uploads to it; "placement": teams placed on it)."""
    return root / f"{what}-{hashlib.sha256(uri.encode()).hexdigest()[:16]}.lock"


class HeldFor:
    """Exclusive locks on `paths` (taken in sorted order, so two runs never wait for each
    other crosswise; `blocked(path)` as in `exclusive`), held until each of `holders` has
    said it is `done` with them, or `release()`: the threads of one command share them."""

    def __init__(self, paths: Iterable[Path], holders: Iterable[Hashable], blocked: Callable[[Path], None]) -> None:
        self._stack = ExitStack()
        self._left = set(holders)
        self._mutex = threading.Lock()
        try:
            for path in sorted(set(paths)):
                self._stack.enter_context(exclusive(path, lambda path=path: blocked(path)))
        except BaseException:
            self._stack.close()
            raise

    def done(self, holder: Hashable) -> None:
        """`holder` needs the locks no more (again: nothing); the last one releases them."""
        with self._mutex:
            self._left.discard(holder)
            if not self._left:
                self._stack.close()

    def release(self) -> None:
        with self._mutex:
            self._left.clear()
            self._stack.close()

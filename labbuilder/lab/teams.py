"""A class: one command over many teams. Team ranges (`1-20`, `1,3,5-7`), running a
team's work for each of them in parallel, bounded per lab host, where one team's failure
does not stop the others, and `down` of many teams (of one: lab/teardown.py, which a
`down` loads without this module)."""

from __future__ import annotations

import dataclasses
import os
import re
import threading
import time
from dataclasses import dataclass
from typing import Callable, Generic, Iterable, TypeVar

from labbuilder.lab import teardown
from labbuilder.lab.hosts import team_dir
from labbuilder.model.errors import LabError
from labbuilder.model.names import MAX_TEAM
from labbuilder.model.request import LabRequest
from labbuilder.model.topology import load_topology
from labbuilder.system import locks
from labbuilder.system.connections import ConnectionPool

T = TypeVar("T")
_PART = re.compile(r"([0-9]{1,3})(?:-([0-9]{1,3}))?")


def parse_teams(text: str) -> list[int]:
    """`1-20`, `1,3,5-7` → sorted team numbers; ValueError with the reason."""
    teams: set[int] = set()
    for part in text.replace(" ", "").split(","):
        m = _PART.fullmatch(part)
        if not m:
            raise ValueError(f"{part!r} is not a team or a range like 1-20 (e.g. 1,3,5-7)")
        first, last = int(m[1]), int(m[2] or m[1])
        if last < first:
            raise ValueError(f"{part!r}: the range runs backwards")
        if first < 1 or last > MAX_TEAM:
            raise ValueError(f"{part!r}: teams run from 1 to {MAX_TEAM}")
        teams.update(range(first, last + 1))
    return sorted(teams)


def default_parallel() -> int:
    """Teams at once per lab host: one per CPU here (TCG boots are CPU-bound)."""
    return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class TeamResult(Generic[T]):
    team: int
    ok: bool
    seconds: float
    value: T | None = None  # what the team's work returned
    error: str = ""  # the whole message; `first_line` for tables

    @property
    def first_line(self) -> str:
        return self.error.strip().splitlines()[0] if self.error.strip() else ""


class HostSlots:
    """At most `limit` teams at once on each lab host. A team holds a slot on every host
    it lives on, taken in one order so two teams never wait on each other."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._sems: dict[str, threading.Semaphore] = {}
        self._lock = threading.Lock()

    def _sem(self, host: str) -> threading.Semaphore:
        with self._lock:
            return self._sems.setdefault(host, threading.Semaphore(self.limit))

    def hold(self, hosts: Iterable[str]) -> _Held:
        return _Held([self._sem(h) for h in sorted(set(hosts))])


class _Held:
    def __init__(self, sems: list[threading.Semaphore]) -> None:
        self.sems = sems

    def __enter__(self) -> None:
        for s in self.sems:
            s.acquire()

    def __exit__(self, *exc) -> None:
        for s in reversed(self.sems):
            s.release()


def run_teams(teams: list[int], work: Callable[[int, HostSlots], T], parallel: int,
              done: Callable[[TeamResult[T]], None] = lambda r: None) -> list[TeamResult[T]]:
    """`work(team, slots)` for every team; the work holds `slots.hold(its host URIs)` while
    it acts on its hosts, so at most `parallel` teams act at once per host. A LabError (or
    any other error) fails that team only; `done` is called as each team ends. Results in
    team order."""
    slots = HostSlots(parallel)
    results: dict[int, TeamResult[T]] = {}

    def one(team: int) -> None:
        start = time.monotonic()
        try:
            result = TeamResult(team, True, 0.0, work(team, slots))
        except LabError as e:
            result = TeamResult(team, False, 0.0, error="\n".join(e.lines()))
        except Exception as e:  # noqa: BLE001 - one team's bug must not take the class down
            result = TeamResult(team, False, 0.0, error=f"{type(e).__name__}: {e}")
        result = dataclasses.replace(result, seconds=round(time.monotonic() - start, 1))
        results[team] = result
        done(result)

    # A thread per team: each waits for its hosts' slots, so no host is idle while another
    # team's slot there is free. Plain threads, as connections.parallel: concurrent.futures
    # imports logging, and `down --teams` starts while the guests take every CPU.
    threads = [threading.Thread(target=one, args=(t,), daemon=True) for t in teams]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [results[t] for t in teams]


def down_teams(req: LabRequest, teams: list[int], parallel: int, progress_of, done) -> tuple[list, list[str]]:
    """`down` of each of `teams` in parallel (at most `parallel` per host), each under its
    own team lock; one team's failure leaves the others going. Then, once, the package
    cache and private libvirtd if nothing is left in them. Returns (a TeamResult per team,
    its value the team's removed objects; what else went)."""
    topo = load_topology(req.topology)
    hosts = teardown.lab_hosts(topo, req)

    def one(team: int, slots: HostSlots) -> list[str]:
        conns = ConnectionPool()
        progress = progress_of(team)
        try:
            with slots.hold(h.uri for h in hosts), locks.team_lock(team_dir(topo.lab, team), topo.lab, team):
                with progress.stage("remove the team's domains, networks and pools"):
                    return [r for host in hosts for r in teardown.remove_owned(conns, host, topo.lab, team)]
        finally:
            conns.close()
            getattr(progress, "close", lambda: None)()

    results = run_teams(teams, one, parallel, done)
    conns = ConnectionPool()
    try:
        return results, teardown.stop_idle(conns, hosts)
    finally:
        conns.close()


def failed_summary(results: list[TeamResult]) -> str | None:
    """'teams 3, 7 failed' (None if none did)."""
    failed = [str(r.team) for r in results if not r.ok]
    if not failed:
        return None
    return f"{'team' if len(failed) == 1 else 'teams'} {', '.join(failed)} failed"

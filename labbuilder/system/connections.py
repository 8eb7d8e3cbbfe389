"""libvirt connections, one per thread and host, and jobs run in parallel threads that
hand theirs back when they end."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from labbuilder.system import virt

if TYPE_CHECKING:
    from labbuilder.lab.hosts import Host


_holding = threading.local()  # .owners: the Connections this thread holds a connection of


class Connections:
    """libvirt connections per host URI, opened on first use, one per thread: a job of
    `parallel` hands its connections back when it ends, for the next job.

    Not one connection shared by threads: libvirtd serves at most max_client_requests
    calls of a connection at once (5 by default) and stops reading it beyond that, so
    the 8 threads of an `up` of 8 waited on each other there (and one such `up` hung,
    waiting for a reply, right after the daemon logged that limit). Opening one takes
    about 1 ms.
    """

    def __init__(self) -> None:
        self._held: dict[tuple[int, str], object] = {}  # (thread, URI) → its connection
        self._idle: dict[str, list] = {}  # URI → connections no thread holds
        self._lock = threading.Lock()

    def __call__(self, host: Host):
        key = (threading.get_ident(), host.uri)
        with self._lock:
            conn = self._held.get(key)
            if conn is None and self._idle.get(host.uri):
                conn = self._held[key] = self._idle[host.uri].pop()
            if conn is not None and not virt.alive(conn):
                # Closed under us: by keepalive on a host too busy to answer for a while (a
                # config stage's role runs for minutes), or the daemon restarted. A new one.
                del self._held[key]
                conn = None
        if conn is None:
            conn = virt.connect(host.uri)
            with self._lock:
                self._held[key] = conn
        _holding.__dict__.setdefault("owners", set()).add(self)
        return conn

    def give_back(self) -> None:
        """The calling thread is done with its connections: the next job may take them."""
        me = threading.get_ident()
        with self._lock:
            for key in [k for k in self._held if k[0] == me]:
                self._idle.setdefault(key[1], []).append(self._held.pop(key))

    def close(self) -> None:
        with self._lock:
            conns = [*self._held.values(), *(c for idle in self._idle.values() for c in idle)]
            self._held.clear()
            self._idle.clear()
        for conn in conns:
            conn.close()


def parallel(jobs: list) -> list:
    """Run `jobs` (callables) in up to 8 threads; their results in order, or the error of
    the first job that failed, once every job has ended. Each job's libvirt connections
    go back to their Connections when it ends. Plain threads: concurrent.futures imports
    logging, and `down` starts while booting guests take every CPU."""
    results: list = [None] * len(jobs)
    errors: list[BaseException | None] = [None] * len(jobs)
    todo = iter(range(len(jobs)))
    lock = threading.Lock()

    def worker() -> None:
        while (i := _next(todo, lock)) is not None:
            try:
                results[i] = jobs[i]()
            except BaseException as e:  # handed to the caller below
                errors[i] = e
            finally:
                for conns in _holding.__dict__.pop("owners", ()):
                    conns.give_back()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(min(8, len(jobs)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    failed = next((e for e in errors if e is not None), None)
    if failed is not None:
        raise failed
    return results


def _next(todo, lock: threading.Lock) -> int | None:
    with lock:
        return next(todo, None)

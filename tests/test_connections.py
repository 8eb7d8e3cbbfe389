"""system/connections.parallel: the threads every per-node step runs in. Jobs wait for each other
through events and a barrier, not sleeps, so the order the tests rely on is the order
that happens, however busy the machine (a wait that ends only by its timeout fails)."""

from __future__ import annotations

import threading

import pytest

from labbuilder.system.connections import Connections, parallel

WAIT = 30  # s: only a broken parallel() waits this long


def test_results_come_back_in_job_order():
    ended, done = [], [threading.Event() for _ in range(5)]

    def job(i: int):
        if i < 4:  # job i ends only after job i+1: the last job ends first
            assert done[i + 1].wait(WAIT), f"job {i + 1} never ended"
        ended.append(i)
        done[i].set()
        return i * i

    assert parallel([lambda i=i: job(i) for i in range(5)]) == [0, 1, 4, 9, 16]
    assert ended == [4, 3, 2, 1, 0]


def test_eight_jobs_run_at_once_and_no_more(monkeypatch):
    """Each job is held until eight run at once (a barrier of eight: with fewer threads a
    round never fills and the barrier breaks); the threads are counted as they start."""
    threads, running, peak, lock = [], 0, 0, threading.Lock()
    rounds = threading.Barrier(8, timeout=WAIT)

    class Counted(threading.Thread):
        def start(self):
            threads.append(self)
            super().start()

    def job() -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        rounds.wait()
        with lock:
            running -= 1

    monkeypatch.setattr(threading, "Thread", Counted)
    parallel([job] * 16)
    assert len(threads) == 8 and peak == 8


def test_the_first_failing_job_in_job_order_raises_after_every_job_ended():
    """Job 5 fails before job 2 does: the error raised is job 2's, the first in order."""
    ended, five_failed = [], threading.Event()

    def job(i: int) -> None:
        if i == 2:
            assert five_failed.wait(WAIT), "job 5 never failed"
        ended.append(i)
        if i == 5:
            five_failed.set()
        if i in (2, 5):
            raise ValueError(f"job {i}")

    with pytest.raises(ValueError, match="job 2"):
        parallel([lambda i=i: job(i) for i in range(10)])
    assert sorted(ended) == list(range(10))


def test_no_jobs_no_threads():
    assert parallel([]) == []


def test_a_connection_closed_under_a_thread_is_replaced_on_its_next_use(test_host):
    """A long role keeps a thread away from libvirt for minutes; keepalive may close its
    connection meanwhile (a busy host): the next call gets a new one, not the dead one."""
    from labbuilder.lab.hosts import Host
    from labbuilder.system import virt

    conns = Connections()
    host = Host(test_host)
    first = conns(host)
    assert conns(host) is first and virt.alive(first)
    first.close()
    second = conns(host)
    assert second is not first and virt.alive(second)
    assert second.getHostname()  # it answers
    conns.close()

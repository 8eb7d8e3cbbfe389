"""conns.parallel: the threads every per-node step runs in."""

from __future__ import annotations

import threading
import time

import pytest

from labbuilder.system.connections import parallel


def test_results_come_back_in_job_order():
    def job(i: int):
        time.sleep(0.01 * (5 - i))  # the last job ends first
        return i * i

    assert parallel([lambda i=i: job(i) for i in range(5)]) == [0, 1, 4, 9, 16]


def test_at_most_eight_jobs_run_at_once():
    running, peak, lock = 0, 0, threading.Lock()

    def job() -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)
        with lock:
            running -= 1

    parallel([job] * 20)
    assert peak == 8


def test_the_first_failing_job_raises_after_every_job_ended():
    ended = []

    def job(i: int) -> None:
        time.sleep(0.01 * i)
        ended.append(i)
        if i in (2, 5):
            raise ValueError(f"job {i}")

    with pytest.raises(ValueError, match="job 2"):
        parallel([lambda i=i: job(i) for i in range(10)])
    assert sorted(ended) == list(range(10))


def test_no_jobs_no_threads():
    assert parallel([]) == []

"""Boot events through libvirt's event loop (test:/// driver: fast, no guests)."""

import threading
import time

import pytest

from labbuilder import virt
from labbuilder.errors import HostError


def test_a_domain_that_stops_ends_the_wait_at_once():
    conn = virt.connect("test:///default")
    with virt.GuestWatch(conn, "test") as watch:
        threading.Timer(0.3, lambda: conn.lookupByName("test").destroy()).start()
        start = time.monotonic()
        with pytest.raises(HostError, match="^domain test stopped before it answered$"):
            watch.wait(30)
        assert time.monotonic() - start < 5
    conn.close()


def test_a_domain_that_is_not_running_fails_the_first_wait():
    conn = virt.connect("test:///default")
    conn.lookupByName("test").destroy()
    with virt.GuestWatch(conn, "test") as watch, pytest.raises(HostError, match="is not running"):
        watch.wait(30)
    conn.close()


def test_a_running_domain_sleeps_the_whole_interval():
    conn = virt.connect("test:///default")
    with virt.GuestWatch(conn, "test") as watch:
        start = time.monotonic()
        watch.wait(0.5)
        assert 0.45 < time.monotonic() - start < 3
        assert not watch.agent
    conn.close()

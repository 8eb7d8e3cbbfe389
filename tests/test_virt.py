"""system/virt.GuestWatch: boot events through libvirt's event loop (test:/// driver: fast,
no guests). Each test gets a host of its own (the `test_host` fixture): `test:///default`
is one in-memory host per process, so a domain one test shut off would still be off in
the next."""

import threading

import pytest

from labbuilder.model.errors import HostError
from labbuilder.system import virt


@pytest.fixture
def conn(test_host):
    """A connection to a fresh in-memory libvirt host with one running domain, `test`."""
    conn = virt.connect(test_host)
    assert conn.lookupByName("test").isActive()
    yield conn
    conn.close()


def test_a_domain_that_stops_ends_the_wait_at_once(conn):
    with virt.GuestWatch(conn, "test") as watch:
        threading.Timer(0.3, lambda: conn.lookupByName("test").destroy()).start()
        with pytest.raises(HostError, match="^domain test stopped before it answered$"):
            watch.wait(30)


def test_a_domain_that_is_not_running_fails_the_first_wait(conn):
    conn.lookupByName("test").destroy()
    with virt.GuestWatch(conn, "test") as watch, pytest.raises(HostError, match="is not running"):
        watch.wait(30)


def test_a_running_domain_waits_without_an_event(conn):
    with virt.GuestWatch(conn, "test") as watch:
        watch.wait(0.5)
        assert not watch.agent

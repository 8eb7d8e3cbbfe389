"""The guests' package cache: apt-cacher-ng on 127.0.0.1, relayed into a network namespace.

The tests that run processes start a real apt-cacher-ng on a free port (never 3142) in a
temporary state dir, and a real network namespace with a bridge at 192.168.250.1 as a
lab's NAT gateway would be; a client inside it fetches a real .deb from the host's
mirror through the relay. Every process is stopped by its pid, the namespace removed.
"""

from __future__ import annotations

import hashlib
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labbuilder.model.errors import HostError
from labbuilder.system import aptcache, aptprocs, procs
from labbuilder.system.run import run

GATEWAY = "192.168.250.1"
GUEST_MIRROR = "http://deb.debian.org/debian"  # what a Debian cloud image's sources.list names

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
needs_acng = pytest.mark.skipif(not aptcache.BINARY.exists(), reason="apt-cacher-ng is not installed")
# What the tests with a real cache and namespace run (tests/conftest.py guards unit tests).
runs_cache = pytest.mark.subprocess(str(aptcache.BINARY), sys.executable, "ip", "apt-cache")


# --- the host's mirrors and the configuration (no processes) ------------------------------


def write_sources(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text(
        "# the host's mirror, one-line format\n"
        "deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
        "http://ftp.example.org/debian/ bookworm main\n"
        "deb-src http://ftp.example.org/debian bookworm main\n"
        "deb https://packages.cloud.example/apt cloud-sdk-bookworm main\n")
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\n"
        "# a comment inside the stanza\n"
        "URIs: http://ftp.example.org/debian\n"
        "  http://mirror2.example.org/debian\n"
        "Suites: bookworm-updates\n"
        "Components: main\n"
        "\n"
        "Types: deb\n"
        "URIs: http://security.example.org/debian-security\n"
        "Suites: bookworm-security\n"
        "\n"
        "Types: deb\n"
        "URIs: http://off.example.org/debian\n"
        "Suites: bookworm\n"
        "Enabled: no\n")
    (tmp_path / "sources.list.d" / "nodesource.sources").write_text(
        "Types: deb\nURIs: https://deb.nodesource.example/node_20.x\nSuites: nodistro\n")
    (tmp_path / "sources.list.d" / "old.list.disabled").write_text(
        "deb http://disabled.example.org/debian bookworm main\n")
    (tmp_path / "os-release").write_text('ID=debian\nVERSION_CODENAME="bookworm"\n')
    return tmp_path / "sources.list", tmp_path / "sources.list.d"


def test_host_mirrors_are_the_hosts_own_debian_entries(tmp_path):
    mirrors = aptcache.host_mirrors(write_sources(tmp_path), tmp_path / "os-release")
    assert mirrors == aptcache.Mirrors(
        debian=("http://ftp.example.org/debian", "http://mirror2.example.org/debian"),
        security=("http://security.example.org/debian-security",))


def test_host_without_a_debian_mirror_is_one_line(tmp_path):
    (tmp_path / "sources.list").write_text("deb https://packages.cloud.example/apt cloud-sdk main\n")
    (tmp_path / "os-release").write_text("VERSION_CODENAME=bookworm\n")
    with pytest.raises(HostError) as err:
        aptcache.host_mirrors([tmp_path / "sources.list"], tmp_path / "os-release")
    assert str(err.value).startswith("no http(s) Debian mirror for bookworm")
    assert "\n" not in str(err.value)


def test_config_listens_on_localhost_and_fetches_only_from_the_hosts_mirror(tmp_path):
    mirrors = aptcache.Mirrors(("http://ftp.example.org/debian",),
                               ("http://security.example.org/debian-security",))
    conf = dict(line.split(": ", 1) for line in
                aptcache.render_config(tmp_path, 3142, mirrors).splitlines())
    assert conf["BindAddress"] == "127.0.0.1"
    assert conf["ForceManaged"] == "1"
    assert conf["Remap-debrep"].split(" ; ")[1] == "http://ftp.example.org/debian"
    assert conf["Remap-secdeb"].split(" ; ")[1] == "http://security.example.org/debian-security"
    assert conf["PidFile"] == str(tmp_path / "acng.pid")


def test_proxy_url_is_the_gateway_on_3142():
    assert aptcache.proxy_url("192.168.122.1") == "http://192.168.122.1:3142"
    with pytest.raises(ValueError):
        aptcache.proxy_url("192.168.122.1; rm -rf /")


# --- a real cache, relayed into a network namespace ----------------------------------------


def free_port() -> int:
    """A free port on 127.0.0.1 below the kernel's ephemeral range (apt-cacher-ng cannot
    listen above 32767), never 3142."""
    for port in random.sample(range(20000, aptcache.MAX_PORT + 1), 200):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port below 32768")


def alive(pid: int) -> bool:
    return procs.alive(pid)


@pytest.fixture
def cache(tmp_path):
    """An apt-cacher-ng of our own on a free port; stopped (by pid) afterwards."""
    started = aptcache.ensure_running(tmp_path / "aptcache", port=free_port())
    yield started
    aptprocs.stop(started.state_dir)
    assert not alive(started.pid)


@pytest.fixture
def netns():
    """A network namespace with lo and a bridge at GATEWAY, as a lab's NAT network has."""
    name = f"lbtest-acng-{os.getpid()}"
    run(["ip", "netns", "add", name])
    try:
        for argv in (["link", "set", "lo", "up"], ["link", "add", "lbgw0", "type", "bridge"],
                     ["addr", "add", f"{GATEWAY}/24", "dev", "lbgw0"], ["link", "set", "lbgw0", "up"]):
            run(["ip", "-n", name, *argv])
        yield name
    finally:
        run(["ip", "netns", "del", name], check=False)


def in_netns(name: str, argv: list[str], check: bool = True) -> str:
    return run(["ip", "netns", "exec", name, *argv], check=check, timeout=60).stdout


def fetch(name: str, url: str, out: Path) -> str:
    """Fetch `url` from inside namespace `name` through the relay; the HTTP status."""
    return in_netns(name, ["curl", "-s", "-o", str(out), "-w", "%{http_code}",
                           "-x", aptcache.proxy_url(GATEWAY), url])


def indexed_deb(package: str) -> tuple[str, str]:
    """(Filename, SHA256) of `package` in the host's apt lists."""
    fields = dict(line.split(": ", 1) for line in
                  run(["apt-cache", "show", "--no-all-versions", package]).stdout.splitlines()
                  if ": " in line and not line.startswith(" "))
    return fields["Filename"], fields["SHA256"]


def log_lines(cache: aptcache.PackageCache, path: str, kind: str | None = None) -> int:
    """apt-cacher-ng's log lines about `path` (of one kind: I fetched from the mirror, O served)."""
    log = cache.state_dir / "log" / "apt-cacher.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return sum(1 for line in lines if line.endswith(path) and (kind is None or line.split("|")[1] == kind))


def fetched_upstream(cache: aptcache.PackageCache, path: str, served: int) -> int:
    """How often the log says it fetched `path` from the mirror, once it has logged the
    `served`-th delivery (the log is written after the reply: wait for it, up to 20 s)."""
    deadline = time.monotonic() + 20
    while log_lines(cache, path, "O") < served and time.monotonic() < deadline:
        time.sleep(0.1)
    return log_lines(cache, path, "I")


@needs_root
@needs_acng
@runs_cache
def test_guest_gets_a_deb_through_the_relay_then_from_the_cache(cache, netns, tmp_path):
    filename, sha256 = indexed_deb("hello")
    relay = aptcache.relay_into_namespace(cache, f"/run/netns/{netns}", GATEWAY)
    assert aptcache.relay_into_namespace(cache, f"/run/netns/{netns}", GATEWAY) == relay
    assert aptprocs.relay_pids(cache.state_dir) == {relay.pidfile: relay.pid}

    assert fetch(netns, f"{GUEST_MIRROR}/{filename}", tmp_path / "first.deb") == "200"
    assert hashlib.sha256((tmp_path / "first.deb").read_bytes()).hexdigest() == sha256
    assert fetched_upstream(cache, filename, served=1) == 1
    assert (cache.state_dir / "cache" / "debrep" / filename).is_file()

    assert fetch(netns, f"{GUEST_MIRROR}/{filename}", tmp_path / "second.deb") == "200"
    assert (tmp_path / "second.deb").read_bytes() == (tmp_path / "first.deb").read_bytes()
    assert fetched_upstream(cache, filename, served=2) == 1  # served from the cache


@needs_root
@needs_acng
@runs_cache
def test_guest_reaches_nothing_but_debian_through_the_cache(cache, netns, tmp_path):
    aptcache.relay_into_namespace(cache, f"/run/netns/{netns}", GATEWAY)
    assert fetch(netns, "http://example.com/index.html", tmp_path / "x") == "403"
    tunnel = in_netns(netns, ["curl", "-s", "-p", "-o", "/dev/null", "-w", "%{http_connect}",
                              "-x", aptcache.proxy_url(GATEWAY), "https://bugs.debian.org/"],
                     check=False)  # curl exits 56 when the proxy refuses the tunnel
    assert tunnel == "403"


@needs_root
@needs_acng
@runs_cache
def test_a_running_cache_is_used_and_only_the_owner_stops_it(cache, netns, tmp_path):
    assert aptcache.ensure_running(cache.state_dir, port=cache.port) == cache
    foreign = aptcache.ensure_running(tmp_path / "other", port=cache.port)
    assert foreign.pid is None and not foreign.owned
    assert not aptprocs.stop(foreign.state_dir)
    assert alive(cache.pid)

    # The other state's lab reaches our cache through a relay of its own.
    relay = aptcache.relay_into_namespace(foreign, f"/run/netns/{netns}", GATEWAY)
    assert not aptprocs.stop(cache.state_dir)  # a lab still uses it
    assert alive(cache.pid)
    aptprocs.stop_relay(relay.pidfile, relay.pid)
    assert not alive(relay.pid) and not relay.pidfile.exists()
    assert aptprocs.stop(cache.state_dir)
    assert not alive(cache.pid)

    again = aptcache.ensure_running(cache.state_dir, port=cache.port)  # the cache dir is reused
    assert again.owned and again.pid != cache.pid
    aptprocs.stop(again.state_dir)
    assert not alive(again.pid)


@needs_root
@needs_acng
@runs_cache
def test_a_relay_ends_with_its_namespace(cache, netns):
    relay = aptcache.relay_into_namespace(cache, f"/run/netns/{netns}", GATEWAY)
    run(["ip", "netns", "del", netns])
    deadline = time.monotonic() + 10
    while alive(relay.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(relay.pid)
    assert not relay.pidfile.exists()


@needs_acng
def test_port_taken_by_another_program_is_one_line(tmp_path):
    with socket.socket() as taken:
        port = free_port()
        taken.bind(("127.0.0.1", port))
        taken.listen()
        with pytest.raises(HostError) as err:
            aptcache.ensure_running(tmp_path / "aptcache", port=port)
    assert str(err.value) == (f"127.0.0.1:{port} is taken by a program that is not apt-cacher-ng; "
                              "the guests' package cache needs that port")
    assert not (tmp_path / "aptcache" / "acng.pid").exists()


def test_a_port_apt_cacher_ng_cannot_listen_on_is_one_line(tmp_path):
    with pytest.raises(HostError, match="^port 40000 for the guests' package cache: .* 1 to 32767$"):
        aptcache.ensure_running(tmp_path / "aptcache", port=40000)


def test_missing_package_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(aptcache, "BINARY", tmp_path / "apt-cacher-ng")
    with pytest.raises(HostError) as err:
        aptcache.ensure_running(tmp_path / "aptcache", port=free_port())
    assert "apt-get install apt-cacher-ng" in str(err.value)
    assert "\n" not in str(err.value)


def test_relay_into_a_missing_namespace_is_one_line(tmp_path):
    cache = aptcache.PackageCache(tmp_path, free_port(), None)
    with pytest.raises(HostError, match="^network namespace .*/no-such-netns does not exist$"):
        aptcache.relay_into_namespace(cache, tmp_path / "no-such-netns", GATEWAY)


@pytest.mark.subprocess(sys.executable)
def test_a_relay_started_from_another_checkout_is_still_ours(tmp_path):
    """`down` from one checkout stops the relays `up` started from another: a relay is
    known by its script's name and its pid file, not by the path of the code."""
    script = tmp_path / "other-checkout" / "aptrelay.py"
    script.parent.mkdir()
    script.write_text("import time\ntime.sleep(60)\n")
    pidfile = tmp_path / "relays" / "x.pid"
    pidfile.parent.mkdir()
    proc = subprocess.Popen([sys.executable, str(script), "--pidfile", str(pidfile), "--upstream", "3142"])
    try:
        pidfile.write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + 10
        while aptprocs.relay_pid(pidfile) is None and time.monotonic() < deadline:  # until exec shows the argv
            time.sleep(0.05)
        assert aptprocs.relay_pid(pidfile) == proc.pid
        assert proc.pid in aptprocs._relays_to(3142)
    finally:
        proc.kill()
        proc.wait()

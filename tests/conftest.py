"""Fixtures shared by the test suite.

Markers (pyproject.toml) say what a test does: `vm` boots QEMU, `image` builds an image or
needs a built one, `libvirtd` starts a private libvirtd and boots no guest. A test with
none of them is a unit test (`make unit`), and `unit_test_guard` fails it if it

- starts a process (subprocess.Popen, os.system, os.fork/forkpty, os.posix_spawn[p],
  os.exec*) other than the programs its `subprocess` mark names, exactly as it runs them:
  `@pytest.mark.subprocess(sys.executable)` for `python -m labbuilder.cli`,
  `@pytest.mark.subprocess("virt-xml-validate")`; nothing else is allowed by default;
- opens a libvirt connection other than libvirt's test driver on a file of its own
  (the `test_host` fixture): `test:///default` is shared by every test in the process,
  anything else is a real host.

A unit test that uses private_libvirtd (for vm or libvirtd tests), base_image or
gridka_image (image tests) fails too. What an allowed program starts in turn is not
guarded (another process).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import libvirt
import pytest

from labbuilder.system import privatelibvirtd

NOT_UNIT = {"vm", "image", "libvirtd"}
FIXTURE_MARKS = {"private_libvirtd": {"vm", "libvirtd"}, "base_image": {"image"}, "gridka_image": {"image"},
                 "gridka_openstack_image": {"image"}, "vagrant_box": {"image"}}
PROCESS_CALLS = ("system", "fork", "forkpty", "posix_spawn", "posix_spawnp", "execv", "execve")


@pytest.fixture(autouse=True)
def unit_test_guard(request, monkeypatch):
    """Fail a unit test that starts a process its `subprocess` mark does not name, or opens a
    libvirt connection other than a test:// host of its own (see the module docstring)."""
    marks = {m.name for m in request.node.iter_markers()}
    if marks & NOT_UNIT:
        yield
        return
    for fixture, wanted in FIXTURE_MARKS.items():
        if fixture in request.fixturenames:
            pytest.fail(f"a test that uses {fixture} is marked {' or '.join(sorted(wanted))}", pytrace=False)
    allowed = {program for m in request.node.iter_markers("subprocess") for program in m.args}
    refused: list[tuple[str, bool]] = []  # (what, in the test's own thread)

    def refuse(what: str):
        refused.append((what, threading.current_thread() is threading.main_thread()))
        # pytest.fail raises a BaseException: an `except Exception` in the code under test
        # cannot swallow it.
        pytest.fail(f"a unit test {what} (tests/conftest.py: unit_test_guard)", pytrace=False)

    popen_init = subprocess.Popen.__init__

    def guarded_popen(self, args, *rest, **kwargs):
        argv = [args] if isinstance(args, (str, bytes, os.PathLike)) else list(args)
        program = "/bin/sh" if kwargs.get("shell") else os.fsdecode(argv[0]) if argv else ""
        if program not in allowed:
            refuse(f"started {program!r}; allowed by its subprocess mark: {sorted(allowed)}")
        popen_init(self, args, *rest, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", guarded_popen)
    for name in PROCESS_CALLS:
        if hasattr(os, name):
            monkeypatch.setattr(os, name, lambda *a, _name=name, **k: refuse(f"called os.{_name}"))
    for name in ("open", "openAuth", "openReadOnly"):
        monkeypatch.setattr(libvirt, name, _guarded_libvirt_open(getattr(libvirt, name), name, refuse))
    yield
    missed = [what for what, in_test_thread in refused if not in_test_thread]
    if missed:  # refused in a thread whose error may not have reached the test
        pytest.fail(f"a unit test {missed[0]} (in a thread; tests/conftest.py: unit_test_guard)", pytrace=False)


def _guarded_libvirt_open(real, name, refuse):
    def guarded(uri=None, *rest, **kwargs):
        if not (uri or "").startswith("test://") or uri == "test:///default":
            refuse(f"opened libvirt connection {uri!r} (libvirt.{name}; a unit test uses the test_host fixture)")
        return real(uri, *rest, **kwargs)

    return guarded


@pytest.fixture(scope="session", autouse=True)
def lab_state():
    """labbuilder's state directory for this session ($LABBUILDER_STATE), so every
    `labbuilder` run in the tests finds the session's private libvirtd there. Not under
    pytest's basetemp: another pytest run may rotate that away while VMs use it."""
    root = Path(tempfile.mkdtemp(prefix="lbtest-"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LABBUILDER_STATE", str(root))
        yield root
    stop_package_cache(root)
    shutil.rmtree(root, ignore_errors=True)


def stop_package_cache(state: Path) -> None:
    """Stop the package cache (and its relays) an `up` started under state directory `state`."""
    if (state / "aptcache").exists():
        from labbuilder.system import aptprocs

        aptprocs.stop(state / "aptcache")


def package_caches(state: Path) -> list[dict[str, str]]:
    """The settings (acng.conf) of the package caches a guest may have used: the one an
    `up` under state directory `state` started, and any apt-cacher-ng already running."""
    confs = [state / "aptcache" / "conf" / "acng.conf"]
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"apt-cacher-ng") and b"-c" in argv[:-1]:
            confs.append(Path(argv[argv.index(b"-c") + 1].decode()) / "acng.conf")
    return [dict((k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in conf.read_text().splitlines()))
            for conf in dict.fromkeys(confs) if conf.is_file()]


def install_through_cache(ssh, state: Path, package: str) -> None:
    """`apt-get update` and `apt-get install PACKAGE` on a node (`ssh(*argv)` runs a command
    there), then assert that the transfer went through the host's package cache: the
    cache's log has a line for the package's .deb written meanwhile, and the .deb is kept
    in its CacheDir."""
    logs = [Path(c["LogDir"]) / "apt-cacher.log" for c in package_caches(state) if "LogDir" in c]
    before = {log: log.stat().st_size if log.exists() else 0 for log in logs}
    ssh("apt-get", "update", "-q")
    ssh("env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q", "--no-install-recommends", package)
    logged = [line for log, size in before.items() if log.exists()
              for line in log.read_bytes()[size:].decode(errors="replace").splitlines()
              if f"/{package}_" in line and line.endswith(".deb")]
    assert logged, f"the package cache logged no transfer of {package}'s .deb during the install"
    cached = [deb for c in package_caches(state) if "CacheDir" in c
              for deb in Path(c["CacheDir"]).rglob(f"{package}_*.deb")]
    assert cached, "the package did not go through the host's package cache"


@pytest.fixture(scope="session")
def private_libvirtd(lab_state):
    """A private libvirtd in its own mount and network namespace, for the whole session,
    at the place `labbuilder --private` looks for it."""
    if os.geteuid() != 0:
        pytest.skip("a private libvirtd needs root (unshare, mounts, bridges)")
    if shutil.which("libvirtd") is None:
        pytest.skip("libvirtd is not installed")
    daemon = privatelibvirtd.start(lab_state / "libvirtd")
    yield daemon
    privatelibvirtd.stop(daemon)


REPO = Path(__file__).resolve().parent.parent


def lab_argv(*args) -> list[str]:
    """`labbuilder` arguments on the session's private libvirtd: --private after the
    command's name (two words for `image upload`)."""
    words = 2 if args[0] == "image" else 1
    return [*args[:words], "--private", *args[words:]]


def lb(*args, check=True, timeout=3600, env=None) -> subprocess.CompletedProcess:
    """Run `labbuilder ARGS` as a user does (`python -m labbuilder.cli` in a subprocess,
    from the checkout) on the session's private libvirtd; fail the test if it exits
    non-zero and `check`. `env`: variables added to the test's environment."""
    proc = subprocess.run([sys.executable, "-m", "labbuilder.cli", *lab_argv(*map(str, args))], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "300", **(env or {})})
    if check and proc.returncode != 0:
        pytest.fail(f"labbuilder {' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


# libvirt's test driver reads a host from a file: 64 GiB of memory, one running domain,
# `test`, and nothing else (no `default` network: a topology's subnets clash with nothing
# there). Without <memory> the driver's host has 3 GiB, less than `test` takes.
TEST_HOST = """<node>
  <cpu><mhz>2000</mhz><nodes>1</nodes><sockets>1</sockets><cores>2</cores><threads>1</threads><active>2</active></cpu>
  <memory>67108864</memory>
  <domain type="test">
    <name>test</name>
    <memory>8388608</memory>
    <vcpu>2</vcpu>
    <os><type>hvm</type></os>
  </domain>
</node>
"""


@contextmanager
def kept_daemon(daemon: privatelibvirtd.PrivateDaemon, name: str):
    """A connection to the session's private libvirtd, kept busy meanwhile by an inert
    network `name` of the test's own: `down` stops a private libvirtd it finds idle, and
    the session's must outlive the module that uses it."""
    from labbuilder.system import virt

    conn = virt.connect(daemon.uri)
    virt.define_network(conn, f"<network><name>{name}</name></network>")
    try:
        yield conn
    finally:
        virt.remove_network(conn, name)
        conn.close()


STOCK_DEFAULT_XML = Path("/usr/share/libvirt/networks/default.xml")  # libvirt's own `default` network


@dataclass(frozen=True)
class StockHost:
    """A private libvirtd of a test module's own, with libvirt's stock `default` network
    defined and started as a Debian host has it, plus someone else's host entry in it."""

    daemon: privatelibvirtd.PrivateDaemon
    state: Path  # its LABBUILDER_STATE
    dhcp_host: str  # the foreign static DHCP host entry
    dns_host: str  # the foreign DNS host entry

    def virsh(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["virsh", "-c", self.daemon.uri, *args], capture_output=True, text=True, check=True,
                              timeout=60)

    def default_hosts(self) -> tuple[list[dict], list[tuple]]:
        """The `default` network's static DHCP hosts and DNS hosts (address, hostnames), sorted,
        as `virsh net-dumpxml` shows them: live and defined must agree (nodes' entries are
        added in parallel, so their order is not the lab's)."""
        from lxml import etree

        found = []
        for flags in ((), ("--inactive",)):
            doc = etree.fromstring(self.virsh("net-dumpxml", "default", *flags).stdout.encode())
            found.append((sorted((dict(h.attrib) for h in doc.findall("ip/dhcp/host")), key=lambda h: sorted(h.items())),
                          sorted((h.get("ip"), tuple(n.text for n in h.findall("hostname")))
                                 for h in doc.findall("dns/host"))))
        assert found[0] == found[1], f"live and defined differ: {found}"
        return found[0]

    def lb(self, *args, check=True):
        """`labbuilder ARGS` on this host (its own state directory and private libvirtd)."""
        return lb(*args, check=check, env={"LABBUILDER_STATE": str(self.state)})


@contextmanager
def stock_host(prefix: str):
    """A StockHost, stopped and removed at the end (network, guests and all)."""
    if os.geteuid() != 0:
        pytest.skip("a private libvirtd needs root (unshare, mounts, bridges)")
    if shutil.which("libvirtd") is None or not STOCK_DEFAULT_XML.exists():
        pytest.skip("libvirtd (and its stock default network) is not installed")
    state = Path(tempfile.mkdtemp(prefix=prefix))
    daemon = privatelibvirtd.start(state / "libvirtd")
    try:
        host = StockHost(daemon, state, "<host mac='52:54:00:aa:bb:cc' name='web' ip='192.168.122.50'/>",
                         "<host ip='192.168.122.60'><hostname>printer</hostname></host>")
        if subprocess.run(["virsh", "-c", daemon.uri, "net-info", "default"], capture_output=True).returncode == 0:
            host.virsh("net-undefine", "default")  # the host's copy, which a private libvirtd starts with
        host.virsh("net-define", str(STOCK_DEFAULT_XML))
        host.virsh("net-start", "default")
        host.virsh("net-update", "default", "add", "ip-dhcp-host", host.dhcp_host, "--live", "--config")
        host.virsh("net-update", "default", "add", "dns-host", host.dns_host, "--live", "--config")
        yield host
    finally:
        privatelibvirtd.stop(daemon)
        stop_package_cache(state)
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def test_host(tmp_path) -> str:
    """The URI of a fresh in-memory libvirt host of this test's own (`test://FILE`): every
    connection to it starts from TEST_HOST. `test:///default` is one host shared by every
    test in the process, so what one test changed there another would see."""
    driver = tmp_path / "test-host.xml"
    driver.write_text(TEST_HOST)
    return f"test://{driver}"


# The images the image fixtures hand out, by fixture name.
IMAGE_FIXTURES = {"base_image": "debian-12", "gridka_openstack_image": "gridka-openstack",
                  "gridka_image": "gridka-openstack", "vagrant_box": "debian-12-vagrant"}


@pytest.fixture(scope="session", autouse=True)
def images_built_ahead(request):
    """Every image this session's tests use, built one after another by `labbuilder image
    build` in the background from the start, in the order the tests first need them: a
    cold build is mostly downloads and one busy core, while the first tests boot a node
    or two. A fixture that needs an image meanwhile waits on that build's lock and then
    takes it from the cache; if the background build failed, the fixture builds it again
    itself and its test shows the error. A build still running at the end is stopped."""
    wanted = []
    for item in request.session.items:
        for fixture in item.fixturenames:
            if IMAGE_FIXTURES.get(fixture) and IMAGE_FIXTURES[fixture] not in wanted:
                wanted.append(IMAGE_FIXTURES[fixture])
    if not wanted:
        yield
        return
    # One process for all (started before any unit test's guard could refuse it), in a
    # process group of its own, so that what it runs at the end goes with it.
    ahead = subprocess.Popen(["sh", "-c", 'py=$1; shift; for r; do "$py" -m labbuilder.cli image build "$r"; done',
                              "sh", sys.executable, *(str(REPO / "images" / f"{n}.yaml") for n in wanted)],
                             cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    yield
    if ahead.poll() is None:
        os.killpg(ahead.pid, signal.SIGTERM)
        ahead.wait(timeout=120)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    """The tests that use no image fixture run first, each group in the order it had: in
    the VM stage they run while the first image builds in the background (a build keeps
    one core busy), not after it. (Unit tests use no image: their order stays.)"""
    items.sort(key=lambda item: not IMAGE_FIXTURES.keys().isdisjoint(item.fixturenames))


def _built_image(name: str):
    """images/NAME.yaml built by our own pipeline (cached: instant once built)."""
    from labbuilder import reporting
    from labbuilder.image import build, cache
    from labbuilder.model import recipe

    rec = recipe.load_recipe(REPO / "images" / f"{name}.yaml")
    return build.build(rec, cache.default_cache_dir(), reporting.Progress())


@pytest.fixture(scope="session")
def base_image():
    """The debian-12 base image."""
    return _built_image(IMAGE_FIXTURES["base_image"])


@pytest.fixture(scope="session")
def gridka_openstack_image():
    """The gridka-openstack image (gridka-base + Debian 12's OpenStack, extends gridka-base)."""
    return _built_image(IMAGE_FIXTURES["gridka_openstack_image"])


@pytest.fixture(scope="session")
def vagrant_box():
    """The debian-12-vagrant image, with its vagrant-libvirt box (output `vagrant`)."""
    return _built_image(IMAGE_FIXTURES["vagrant_box"])


@pytest.fixture(scope="session")
def gridka_image():
    """The GridKa course image the infrastructure tests boot: gridka-openstack, which holds
    all of gridka-base (it extends it) — one course image built in CI, not two."""
    return _built_image(IMAGE_FIXTURES["gridka_image"])


GOLDEN = Path(__file__).parent / "golden"


def pytest_addoption(parser):
    parser.addoption("--regen-golden", action="store_true",
                     help="rewrite tests/golden/* from what the code produces now (refused when CI is set)")


def pytest_configure(config):
    """In CI a golden file is a fixed expectation: rewriting it would pass any change."""
    asked = config.getoption("--regen-golden") or os.environ.get("LABBUILDER_REGEN_GOLDEN")
    if asked and os.environ.get("CI"):
        raise pytest.UsageError("golden files are not rewritten in CI (CI is set): "
                                "regenerate them with --regen-golden on a work machine and commit them")


@pytest.fixture
def golden(request):
    """Compare text with tests/golden/NAME (rewritten with --regen-golden; a missing one
    written with LABBUILDER_REGEN_GOLDEN=1; neither when CI is set)."""
    regen = request.config.getoption("--regen-golden")

    def check(name: str, text: str) -> None:
        path = GOLDEN / name
        if regen or not path.exists() and os.environ.get("LABBUILDER_REGEN_GOLDEN"):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        assert path.exists(), f"no golden file {path}: run pytest --regen-golden"
        assert text == path.read_text()

    return check


def fake_image_entry(cache: Path, name: str, size: int = 256 << 20) -> Path:
    """A complete-looking image cache entry `name` in `cache` for tests that plan without
    building: its manifest, and a sparse image file of the manifest's size (no disk used)."""
    import json

    entry = cache / f"{name}-000000000000"
    entry.mkdir(parents=True)
    (entry / "manifest.json").write_text(json.dumps({"name": name, "image": {
        "file": f"{name}.qcow2", "sha256": "ab" * 32, "size": size, "virtual_size": 4 << 30}}))
    with open(entry / f"{name}.qcow2", "wb") as f:
        f.truncate(size)
    return entry

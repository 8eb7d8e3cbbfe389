"""The lab host's package cache for the guests: apt-cacher-ng, and relays to it.

One apt-cacher-ng serves every team and lab on a host, on 127.0.0.1:3142 only. If one
already answers there (the host's own, or another labbuilder state's), it is used as it
is; otherwise labbuilder starts one with its own configuration in `state_dir` and owns
it. Its only upstream is the mirror the host's own apt uses: Debian (and Debian
security) requests are remapped to exactly those URLs, and any other request is refused
(ForceManaged, no CONNECT), so nothing but the host's mirror is ever contacted.

Guests reach it at their NAT network's gateway, port 3142, through a relay
(`aptrelay.py`) that listens on the gateway address, in a private libvirtd's network
namespace or in the host's, and forwards to 127.0.0.1 here. A relay into a namespace
ends by itself when the namespace does; the others, and the daemon we own, are stopped
by the `down` that leaves no lab on this machine (system/aptprocs.py, which finds and
stops these processes); its cache dir stays, and the next start takes a few
milliseconds. Everything is stopped by pid.

Layout of `state_dir` (say $LABBUILDER_STATE/aptcache):

    conf/acng.conf        written at each start
    cache/ log/           apt-cacher-ng's cache and logs (log/apt-cacher.log: I = fetched, O = served)
    acng.pid socket       the daemon's pidfile and admin socket
    relays/NETNS-IP-PORT.pid, .log   one per relay this state started
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from labbuilder.model.errors import HostError, ToolError
from labbuilder.system import procs
from labbuilder.system.aptprocs import BINARY, RELAY_SCRIPT, STOP_TIMEOUT, daemon_pid, host_lock, relay_pid
from labbuilder.system.run import run

PORT = 3142
MAX_PORT = 32767  # apt-cacher-ng 3.7.4 fails to bind above ("Error resolving address for binding")
SUPPORT_DIR = Path("/usr/lib/apt-cacher-ng")
APT_SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))
OS_RELEASE = Path("/etc/os-release")
START_TIMEOUT = 10.0
PROBE_TIMEOUT = 3.0
_POLL = 0.05
_SOCKET_PATH_MAX = 107
# Requests for these are Debian's, whatever mirror a guest names (apt-cacher-ng's lists).
DEBIAN_KEYS = ("file:deb_mirror*.gz", "/debian")
SECURITY_KEYS = ("security.debian.org", "security.debian.org/debian-security",
                 "deb.debian.org/debian-security", "/debian-security",
                 "cdn-fastly.deb.debian.org/debian-security")
SUITE_ALIASES = {"stable", "oldstable", "testing", "unstable", "sid"}
# A URI goes into acng.conf as is: nothing that could end or comment out its line.
_URI_RE = re.compile(r"https?://[A-Za-z0-9._~:/@%+-]+")


@dataclass(frozen=True)
class Mirrors:
    """The host's own Debian mirrors, in the order its apt lists them."""

    debian: tuple[str, ...]
    security: tuple[str, ...]


@dataclass(frozen=True)
class PackageCache:
    """A package cache answering on 127.0.0.1:`port`; `pid` is set if this state owns it."""

    state_dir: Path
    port: int
    pid: int | None

    @property
    def owned(self) -> bool:
        return self.pid is not None


@dataclass(frozen=True)
class Relay:
    """A relay process listening on `listen_ip`:`port` in a network namespace."""

    pidfile: Path
    pid: int
    listen_ip: str
    port: int


def proxy_url(gateway: str, port: int = PORT) -> str:
    """The apt proxy a guest behind `gateway` uses: http://GATEWAY:3142."""
    return f"http://{ipaddress.IPv4Address(gateway)}:{port}"


def ensure_running(state_dir: Path, port: int = PORT) -> PackageCache:
    """The package cache on 127.0.0.1:`port`: ours if it runs, else one that answers
    there already, else a new one started (and owned) with its state in `state_dir`.
    HostError (one line) if none can run: not installed, port taken, no host mirror."""
    state_dir = Path(state_dir).resolve()
    if not 0 < port <= MAX_PORT:
        raise HostError(f"port {port} for the guests' package cache: apt-cacher-ng listens "
                        f"only on ports 1 to {MAX_PORT}")
    with host_lock():
        return _ensure(state_dir, port)


def relay_into_namespace(cache: PackageCache, netns: str | Path | None, listen_ip: str,
                         port: int = PORT) -> Relay:
    """A relay listening on `listen_ip`:`port` inside network namespace `netns` (a path:
    PrivateDaemon.netns, /run/netns/NAME; None: the host's own) to `cache`. Started
    once and recorded in the cache's state dir; a second call returns the running one.
    The cache is started again if it went away meanwhile."""
    listen_ip = str(ipaddress.IPv4Address(listen_ip))
    pidfile = _relay_pidfile(cache.state_dir, netns, listen_ip, port)
    with host_lock():
        cache = _ensure(cache.state_dir, cache.port)
        pid = relay_pid(pidfile) or _start_relay(cache, netns, listen_ip, port, pidfile)
    return Relay(pidfile, pid, listen_ip, port)


def host_mirrors(sources: Iterable[Path] = APT_SOURCES, os_release: Path = OS_RELEASE) -> Mirrors:
    """The http(s) mirrors of the host's own Debian release, from its apt sources (one-line
    .list and deb822 .sources). HostError if there is no Debian mirror among them."""
    codename = _codename(os_release)
    debian: list[str] = []
    security: list[str] = []
    for uri, suites in _source_entries(sources):
        ours = [s for s in suites if _suite_base(s) in {codename} | SUITE_ALIASES]
        if ours and _URI_RE.fullmatch(uri):
            target = security if any(_is_security(s) for s in ours) else debian
            if uri.rstrip("/") not in target:
                target.append(uri.rstrip("/"))
    if not debian:
        raise HostError(f"no http(s) Debian mirror for {codename or 'this release'} in the host's "
                        "apt sources; the guests' package cache fetches only from that mirror")
    return Mirrors(tuple(debian), tuple(security))


def render_config(state_dir: Path, port: int, mirrors: Mirrors) -> str:
    """acng.conf for a cache in `state_dir`: 127.0.0.1 only, the host's mirrors only."""
    settings = [
        ("CacheDir", str(state_dir / "cache")),
        ("LogDir", str(state_dir / "log")),
        ("SupportDir", str(SUPPORT_DIR)),
        ("Port", str(port)),
        ("BindAddress", "127.0.0.1"),
        ("SocketPath", str(state_dir / "socket")),
        ("PidFile", str(state_dir / "acng.pid")),
        ("ForeGround", "0"),
        ("UnbufferLogs", "1"),
        ("ExThreshold", "4"),
        # Only remapped requests, fetched from the targets below; no tunnels, no redirects.
        ("ForceManaged", "1"),
        ("PassThroughPattern", "^labbuilder-passes-nothing-through$"),
        ("ForwardBtsSoap", "0"),
        ("RedirMax", "0"),
        ("Remap-debrep", _remap(DEBIAN_KEYS, mirrors.debian)),
    ]
    if mirrors.security:
        settings.append(("Remap-secdeb", _remap(SECURITY_KEYS, mirrors.security)))
    return "".join(f"{key}: {value}\n" for key, value in settings)


# --- the daemon -------------------------------------------------------------------------


def _ensure(state_dir: Path, port: int) -> PackageCache:
    pid = daemon_pid(state_dir)
    if pid is not None and _serves(pid, port):
        return PackageCache(state_dir, port, pid)
    if pid is not None:
        procs.terminate([pid], STOP_TIMEOUT)  # ours, but not listening: start afresh
    listener = _probe(port)
    if listener == "apt-cacher-ng":
        return PackageCache(state_dir, port, None)
    if listener == "other":
        raise HostError(f"127.0.0.1:{port} is taken by a program that is not apt-cacher-ng; "
                        "the guests' package cache needs that port")
    return _start(state_dir, port)


def _start(state_dir: Path, port: int) -> PackageCache:
    if not BINARY.exists():
        raise HostError(f"{BINARY} is missing: the guests' package cache needs the "
                        "apt-cacher-ng package (apt-get install apt-cacher-ng)")
    _prepare(state_dir, port, host_mirrors())
    try:
        said = run([str(BINARY), "-c", str(state_dir / "conf")], log=state_dir / "start.log",
                   timeout=START_TIMEOUT)
    except ToolError as e:
        raise HostError(f"apt-cacher-ng did not start: {_last_line(e.stderr or e.stdout)}") from None
    return PackageCache(state_dir, port, _wait_serving(state_dir, port, said.stdout + said.stderr))


def _prepare(state_dir: Path, port: int, mirrors: Mirrors) -> None:
    socket_path = state_dir / "socket"
    if len(os.fsencode(socket_path)) > _SOCKET_PATH_MAX:
        raise HostError(f"state dir {state_dir} is too long for apt-cacher-ng's socket {socket_path}")
    for name in ("conf", "cache", "log", "relays"):
        (state_dir / name).mkdir(parents=True, exist_ok=True)
    (state_dir / "conf" / "acng.conf").write_text(render_config(state_dir, port, mirrors))


def _wait_serving(state_dir: Path, port: int, said: str) -> int:
    """The new daemon's pid once it listens on `port`; else stop it and raise HostError
    with the last thing it said (it exits 0 even when it cannot listen)."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        pid = daemon_pid(state_dir)
        if pid is not None and _serves(pid, port) and _probe(port) == "apt-cacher-ng":
            return pid
        time.sleep(_POLL)
    pid = daemon_pid(state_dir)
    if pid is not None:
        procs.terminate([pid], STOP_TIMEOUT)
    why = _last_line(_read(state_dir / "log" / "apt-cacher.err")) or _last_line(said) or "no answer"
    raise HostError(f"apt-cacher-ng did not start on 127.0.0.1:{port}: {why} "
                    f"(see {state_dir / 'log'})")


def _probe(port: int) -> str:
    """What listens on 127.0.0.1:`port`: 'free', 'apt-cacher-ng' or 'other'.

    Asks for "/": apt-cacher-ng answers with its usage page and contacts nothing."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=PROBE_TIMEOUT) as sock:
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
            answer = _read_some(sock, 65536)
    except ConnectionRefusedError:
        return "free"
    except OSError:
        return "other"
    return "apt-cacher-ng" if b"Apt-Cacher NG" in answer else "other"


def _read_some(sock: socket.socket, limit: int) -> bytes:
    data = b""
    while len(data) < limit and (chunk := sock.recv(limit - len(data))):
        data += chunk
    return data


def _serves(pid: int, port: int) -> bool:
    """True if `pid` holds the socket listening on 127.0.0.1:`port` (not another process)."""
    listening = _listening_inodes(port)
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False
    return any(_readlink(fd) in listening for fd in fds)


def _listening_inodes(port: int) -> set[str]:
    """socket:[INODE] of each TCP socket listening on 127.0.0.1:`port` in our namespace."""
    local = f"0100007F:{port:04X}"
    found = set()
    for line in _read(Path("/proc/net/tcp")).splitlines()[1:]:
        fields = line.split()
        if fields[1] == local and fields[3] == "0A":
            found.add(f"socket:[{fields[9]}]")
    return found


# --- relays ---------------------------------------------------------------------------


def _relay_pidfile(state_dir: Path, netns: str | Path | None, ip: str, port: int) -> Path:
    """relays/NETNS-IP-PORT.pid, NETNS being the namespace's inode (a path may change)."""
    path = str(netns) if netns else "/proc/self/ns/net"
    try:
        inode = os.stat(path).st_ino
    except OSError:
        raise HostError(f"network namespace {path} does not exist") from None
    return state_dir / "relays" / f"{inode}-{ip}-{port}.pid"


def _start_relay(cache: PackageCache, netns: str | Path | None, ip: str, port: int, pidfile: Path) -> int:
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    pidfile.unlink(missing_ok=True)  # a dead relay's
    argv = [sys.executable, str(RELAY_SCRIPT), "--pidfile", str(pidfile)]
    argv += ["--netns", str(netns)] if netns else []
    argv += ["--listen", ip, str(port), "--upstream", str(cache.port)]
    try:
        run(argv, timeout=START_TIMEOUT)
    except ToolError as e:
        raise HostError(_last_line(e.stderr or e.stdout) or f"the package cache relay to {ip}:{port} did not start") from None
    pid = relay_pid(pidfile)
    if pid is None:
        raise HostError(f"the package cache relay to {ip}:{port} exited at once")
    return pid


# --- the host's apt sources ------------------------------------------------------------


def _codename(os_release: Path) -> str:
    for line in _read(os_release).splitlines():
        key, _, value = line.partition("=")
        if key == "VERSION_CODENAME":
            return value.strip().strip('"')
    return ""


def _suite_base(suite: str) -> str:
    """bookworm-security, bookworm-updates, bookworm/updates → bookworm."""
    return re.split(r"[-/]", suite, maxsplit=1)[0]


def _is_security(suite: str) -> bool:
    return suite.endswith("-security") or suite.endswith("/updates")


def _source_entries(sources: Iterable[Path]) -> Iterator[tuple[str, list[str]]]:
    """(URI, suites) of every enabled deb/deb-src entry in the given files or directories."""
    for path in _source_files(sources):
        if path.suffix == ".sources":
            yield from _deb822_entries(_read(path))
        else:
            yield from _one_line_entries(_read(path))


def _source_files(sources: Iterable[Path]) -> Iterator[Path]:
    for source in sources:
        if source.is_dir():
            yield from sorted(p for p in source.iterdir() if p.suffix in (".list", ".sources"))
        elif source.is_file():
            yield source


def _one_line_entries(text: str) -> Iterator[tuple[str, list[str]]]:
    for line in text.splitlines():
        words = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
        if len(words) >= 3 and words[0] in ("deb", "deb-src"):
            yield words[1], [words[2]]


def _deb822_entries(text: str) -> Iterator[tuple[str, list[str]]]:
    for stanza in _deb822_stanzas(text):
        types = stanza.get("types", "").split()
        if stanza.get("enabled", "yes").strip().lower() == "no" or not {"deb", "deb-src"} & set(types):
            continue
        suites = stanza.get("suites", "").split()
        for uri in stanza.get("uris", "").split():
            yield uri, suites


def _deb822_stanzas(text: str) -> Iterator[dict[str, str]]:
    """Each paragraph as {lowercased field: value}; continuation lines joined."""
    stanza: dict[str, str] = {}
    key = ""
    for line in text.splitlines() + [""]:
        if line.startswith("#"):
            continue
        if not line.strip():
            if stanza:
                yield stanza
            stanza, key = {}, ""
        elif line[0].isspace() and key:
            stanza[key] += " " + line.strip()
        else:
            key, _, value = line.partition(":")
            key = key.strip().lower()
            stanza[key] = value.strip()


def _remap(keys: Iterable[str], targets: Iterable[str]) -> str:
    """A Remap- value: requests for `keys` (and the targets themselves) go to `targets`."""
    targets = list(targets)
    return f"{' '.join([*keys, *targets])} ; {' '.join(targets)}"


# --- processes and files ----------------------------------------------------------------


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _readlink(path: Path) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""

"""A private libvirtd in its own mount and network namespace.

`start()` runs libvirtd and virtlogd under `unshare --mount --net`, with private
directories from `state_dir` bind-mounted over libvirt's own, so the host's libvirt,
bridges and firewall are never touched; `reaper.py` stays behind to reap the daemons'
processes at once, as a host's init would. The daemons keep the namespaces alive; a later
process finds them again with `attach()`, and `stop()` tears everything down.

Layout of `state_dir`:

    run/    -> /run/libvirt        (run/libvirt-sock is the socket clients use)
    lib/    -> /var/lib/libvirt
    log/    -> /var/log/libvirt    (log/libvirtd.log, log/virtlogd.log, log/qemu/)
    cache/  -> /var/cache/libvirt
    etc/    -> /etc/libvirt        (a copy of the host's, with our settings)
    libvirtd.pid, virtlogd.pid, start.log
    .labbuilder-libvirtd   (MARKER: labbuilder made this directory)

Only a directory labbuilder made, or a new or empty one, becomes a state dir (see
unfit_state_dir): starting a daemon there rewrites etc/ and removes autostart links.
"""

from __future__ import annotations

import json
import os
import pwd
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from labbuilder.model.errors import HostError
from labbuilder.system import procs, virt
from labbuilder.system.run import run

HOST_CONFIG = Path("/etc/libvirt")
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
_POLL = 0.1
_SOCKET_PATH_MAX = 107  # sun_path is 108 bytes with the terminating NUL
MARKER = ".labbuilder-libvirtd"
# What a state dir holds (before MARKER existed, too): a directory with nothing else was made here.
_OWN_ENTRIES = {"run", "lib", "log", "cache", "etc", "libvirtd.pid", "virtlogd.pid", "start.log", MARKER}
# Never a state dir: these trees and what is in them; these directories and their children.
_SYSTEM_TREES = tuple(Path(p) for p in ("/etc", "/usr", "/bin", "/sbin", "/boot", "/dev", "/proc", "/sys",
                                        "/lib", "/lib32", "/lib64", "/libx32"))
_SYSTEM_PARENTS = tuple(Path(p) for p in ("/", "/var", "/run", "/home", "/srv", "/opt", "/mnt", "/media", "/tmp"))

# Runs inside the new namespaces; $1 is the state dir. Fixed text: no path is pasted in.
# A fresh sysfs makes /sys/class/net show this namespace's links (libvirt looks for its
# bridges there); unmounting the old /sys first drops the host's cgroup mounts under it,
# which libvirt would otherwise find in /proc/mounts and fail to use.
_SCRIPT = """\
set -e
ip link set lo up
umount -l /sys
mount -t sysfs sysfs /sys
mkdir -p /run/libvirt /var/lib/libvirt /var/log/libvirt /var/cache/libvirt
mount --bind "$1/run" /run/libvirt
mount --bind "$1/lib" /var/lib/libvirt
mount --bind "$1/log" /var/log/libvirt
mount --bind "$1/cache" /var/cache/libvirt
mount --bind "$1/etc" /etc/libvirt
mkdir -p /var/log/libvirt/qemu
virtlogd -d -p "$1/virtlogd.pid"
libvirtd -d -p "$1/libvirtd.pid"
"""

LIBVIRTD_CONF = {
    "unix_sock_group": "root",
    "unix_sock_ro_perms": "0700",
    "unix_sock_rw_perms": "0700",
    "auth_unix_ro": "none",
    "auth_unix_rw": "none",
    "log_outputs": "3:file:/var/log/libvirt/libvirtd.log",
    # max_client_requests keeps libvirtd's default of 5, as on a lab host: labbuilder's
    # connection per thread stays under it.
}
VIRTLOGD_CONF = {
    "log_outputs": "3:file:/var/log/libvirt/virtlogd.log",
}
QEMU_CONF = {
    "user": "root",
    "group": "root",
    "security_driver": "none",
    # No cgroups are mounted in the namespace: libvirt must not try to place guests in any.
    "cgroup_controllers": [],
}


@dataclass(frozen=True)
class PrivateDaemon:
    """A running private libvirtd: its state dir and its pid."""

    state_dir: Path
    pid: int

    @property
    def socket(self) -> Path:
        """The read-write socket, as seen from outside the namespace."""
        return self.state_dir / "run" / "libvirt-sock"

    @property
    def uri(self) -> str:
        """The libvirt URI that reaches this daemon."""
        return f"qemu+unix:///system?socket={self.socket}"

    @property
    def netns(self) -> str:
        """The network namespace the daemon, its networks and its guests live in."""
        return f"/proc/{self.pid}/ns/net"

    def nsenter_argv(self) -> list[str]:
        """A prefix that runs a command (ssh, ip, ping) inside the network namespace."""
        return ["nsenter", f"--net={self.netns}", "--"]

    def nsenter_files_argv(self) -> list[str]:
        """A prefix that runs a command (qemu-img) where the daemon's files are visible."""
        return ["nsenter", f"--mount=/proc/{self.pid}/ns/mnt", "--"]


def ensure(state_dir: Path) -> PrivateDaemon:
    """Return the private libvirtd running in `state_dir`, starting one if there is none."""
    return attach(state_dir) or start(state_dir)


def attach(state_dir: Path) -> PrivateDaemon | None:
    """Find the private libvirtd still running in `state_dir`; None if there is none."""
    state_dir = Path(state_dir).resolve()
    pid = _daemon_pid(state_dir / "libvirtd.pid", "libvirtd")
    if pid is None:
        return None
    daemon = PrivateDaemon(state_dir, pid)
    return daemon if daemon.socket.is_socket() else None


def start(state_dir: Path) -> PrivateDaemon:
    """Start libvirtd and virtlogd in new namespaces with their state in `state_dir`.

    Returns once the daemon answers on its socket. Raises HostError if one
    already runs there or it does not come up, ToolError if unshare fails.
    """
    state_dir = Path(state_dir).resolve()
    _check_socket_path(state_dir)
    unfit = unfit_state_dir(state_dir)
    if unfit:
        raise HostError(f"no private libvirtd in {state_dir}: it {unfit}")
    if attach(state_dir) is not None:
        raise HostError(f"a private libvirtd already runs in {state_dir}")
    _prepare_state_dir(state_dir)
    try:
        _launch(state_dir)
        daemon = PrivateDaemon(state_dir, procs.read_pid(state_dir / "libvirtd.pid") or 0)
        _wait_until_answering(daemon)
    except BaseException:
        procs.terminate(_pidfile_pids(state_dir), STOP_TIMEOUT)
        raise
    return daemon


def stop(daemon: PrivateDaemon) -> None:
    """Remove every domain and network, stop the daemons, and kill what they leave behind."""
    daemons = _pidfile_pids(daemon.state_dir)
    netns = _netns_id(daemons[0]) if daemons else None
    reapers = _reapers(daemons)
    try:
        if daemon.pid in daemons:
            _remove_everything(daemon.uri)
    finally:
        procs.terminate(daemons, STOP_TIMEOUT)
        # dnsmasq and qemu are daemonized by libvirt: the namespace is what ties them to it.
        if netns is not None and netns != _netns_id(os.getpid()):
            procs.terminate(_netns_members(netns), STOP_TIMEOUT)
        # The reaper ends by itself once its last child is reaped; wait for that, so
        # nothing started for this state dir runs when stop() returns.
        procs.wait_gone(reapers, STOP_TIMEOUT)
        procs.terminate(reapers, STOP_TIMEOUT)


def _reapers(daemons: list[int]) -> list[int]:
    """The reaper.py processes that adopted `daemons` (their parent, when it is one)."""
    found = set()
    for pid in daemons:
        parent = procs.parent(pid)
        if parent is not None and any(arg.endswith("/reaper.py") for arg in procs.cmdline(parent)[:2]):
            found.add(parent)
    return sorted(found)


def _remove_everything(uri: str) -> None:
    """Destroy and undefine every domain and network of the daemon at `uri`."""
    conn = virt.connect(uri)
    try:
        virt.destroy_all(conn)
    finally:
        conn.close()


def unfit_state_dir(state_dir: Path) -> str | None:
    """Why `state_dir` (absolute, resolved) must not hold a private libvirtd; None if it may:
    a directory labbuilder made (MARKER in it, or nothing but what a state dir holds), or
    a new or empty one; never `/`, a system directory, or a home directory itself."""
    if state_dir in _home_dirs():
        return "is a home directory"
    if any(state_dir.is_relative_to(t) for t in _SYSTEM_TREES) \
            or state_dir in _SYSTEM_PARENTS or state_dir.parent in _SYSTEM_PARENTS[:4]:
        return "is a system directory"
    try:
        entries = set(os.listdir(state_dir))
    except FileNotFoundError:
        return None
    except OSError as e:
        return f"cannot be read: {e.strerror}"
    if MARKER in entries or entries <= _OWN_ENTRIES:
        return None
    strange = sorted(entries - _OWN_ENTRIES)
    return f"holds files labbuilder did not put there ({', '.join(strange[:3])}{' …' if len(strange) > 3 else ''})"


def _home_dirs() -> set[Path]:
    return {Path(p.pw_dir) for p in pwd.getpwall() if p.pw_dir not in ("/", "")}


def _check_socket_path(state_dir: Path) -> None:
    """Fail early if the socket path would not fit in a unix socket address."""
    path = state_dir / "run" / "libvirt-sock"
    if len(os.fsencode(path)) > _SOCKET_PATH_MAX:
        raise HostError(f"state dir {state_dir} is too long: {path} exceeds {_SOCKET_PATH_MAX} bytes")


def _prepare_state_dir(state_dir: Path) -> None:
    """Create the private directories and write the daemons' configuration."""
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / MARKER).write_text("a private libvirtd's state, made by labbuilder\n")
    # Modes as on a real host: dnsmasq drops to its own user and must still read
    # /var/lib/libvirt/dnsmasq/*.hostsfile, or static DHCP host entries are ignored.
    for name, mode in (("run", 0o755), ("lib", 0o755), ("log", 0o700), ("cache", 0o755)):
        (state_dir / name).mkdir(parents=True, exist_ok=True)
        (state_dir / name).chmod(mode)
    etc = state_dir / "etc"
    if not etc.exists():
        _copy_host_config(etc)
    _drop_autostart(etc)
    _write_conf(etc / "libvirtd.conf", LIBVIRTD_CONF)
    _write_conf(etc / "virtlogd.conf", VIRTLOGD_CONF)
    _write_conf(etc / "qemu.conf", QEMU_CONF)


def _copy_host_config(etc: Path) -> None:
    """Copy the host's libvirt configuration, without its domains: the daemon starts empty."""
    if not HOST_CONFIG.is_dir():
        raise HostError(f"{HOST_CONFIG} is missing: is libvirt-daemon-system installed?")
    # cp, not shutil.copytree: shutil (with bz2 and lzma) would cost every `down` its import.
    run(["cp", "-a", "-T", "--", str(HOST_CONFIG), str(etc)])
    for xml in (etc / "qemu").glob("*.xml"):
        xml.unlink()


def _drop_autostart(etc: Path) -> None:
    """Remove every autostart link (the stock `default` network's among them)."""
    for link in etc.glob("**/autostart/*"):
        link.unlink()


def _write_conf(path: Path, settings: dict[str, str | list[str]]) -> None:
    """Write a libvirt config file; its strings and lists use JSON's quoting."""
    path.write_text("".join(f"{key} = {json.dumps(value)}\n" for key, value in settings.items()))


def _launch(state_dir: Path) -> None:
    """Run the namespace script; it returns once both daemons have forked into the
    background, leaving a reaper behind that collects them and their QEMUs as they exit."""
    argv = [sys.executable, str(Path(__file__).with_name("reaper.py"))]
    argv += ["unshare", "--mount", "--net", "--propagation", "private"]
    argv += ["sh", "-c", _SCRIPT, "sh", str(state_dir)]
    run(argv, log=state_dir / "start.log", timeout=START_TIMEOUT)


def _wait_until_answering(daemon: PrivateDaemon) -> None:
    """Poll until the daemon answers on its socket; HostError with its log if it does not."""
    deadline = time.monotonic() + START_TIMEOUT
    while not _answers(daemon):
        if not procs.alive(daemon.pid):
            raise HostError(_startup_failure(daemon, "libvirtd exited during startup"))
        if time.monotonic() > deadline:
            raise HostError(_startup_failure(daemon, f"no answer after {START_TIMEOUT:.0f} s"))
        time.sleep(_POLL)


def _answers(daemon: PrivateDaemon) -> bool:
    """True if the socket exists and a libvirt connection through it opens.

    A real libvirt handshake, not a bare connect(): that would log an error in libvirtd.
    """
    if not daemon.socket.is_socket():
        return False
    try:
        virt.connect(daemon.uri).close()
    except HostError:
        return False
    return True


def _startup_failure(daemon: PrivateDaemon, what: str) -> str:
    """A message naming the failure, with the tail of libvirtd's log."""
    log = daemon.state_dir / "log" / "libvirtd.log"
    try:
        tail = log.read_text(errors="replace").splitlines()[-5:]
    except OSError:
        tail = ["(no log written)"]
    return "\n".join([f"private libvirtd in {daemon.state_dir}: {what}; {log}:", *tail])


def _pidfile_pids(state_dir: Path) -> list[int]:
    """The pids of the daemons started in `state_dir` that still run, libvirtd first."""
    pids = [_daemon_pid(state_dir / f"{name}.pid", name) for name in ("libvirtd", "virtlogd")]
    return [pid for pid in pids if pid is not None]


def _daemon_pid(pidfile: Path, program: str) -> int | None:
    """The pid in `pidfile` if it is a running `program` started with that pidfile.

    Checking the command line guards against a stale pidfile whose pid was reused.
    """
    pid = procs.read_pid(pidfile)
    if pid is None:
        return None
    argv = procs.cmdline(pid)
    return pid if argv and Path(argv[0]).name == program and str(pidfile) in argv else None


def _netns_id(pid: int) -> str | None:
    """The network namespace of `pid` (like ``net:[4026532291]``), None if it is gone."""
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return None


def _netns_members(netns: str) -> list[int]:
    """Every process in network namespace `netns`, except this one and its ancestors."""
    spared = _ancestors(os.getpid())
    pids = (int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit())
    return [pid for pid in pids if pid not in spared and _netns_id(pid) == netns]


def _ancestors(pid: int) -> set[int]:
    """`pid` and every process above it up to init."""
    chain = set()
    while pid > 0 and pid not in chain:
        chain.add(pid)
        pid = procs.parent(pid) or 0
    return chain

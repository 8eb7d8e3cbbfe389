"""The one module that runs ssh and ssh-keygen."""

from __future__ import annotations

import shlex
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from labbuilder.model.errors import HostError
from labbuilder.system.run import run

_OPTIONS = ["-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10"]
_UNCHECKED = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
# What ssh says (at LogLevel ERROR) when a host key is not the one in known_hosts.
_HOST_KEY_FAILED = "Host key verification failed"


def ensure_keypair(path: Path) -> str:
    """An ed25519 key at `path` (private, 0600) and `path`.pub; returns the public key."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"labbuilder {path.parent.name}",
             "-f", str(path)])
    path.chmod(0o600)
    return path.with_suffix(".pub").read_text().strip()


def ensure_host_key(path: Path) -> tuple[str, str]:
    """A node's SSH host key (ed25519) at `path` (0600) and `path`.pub, made once and kept
    (a reset gives the node the same key); returns (private key text, public key line
    without comment) for its seed and for known_hosts."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)])
    path.chmod(0o600)
    kind, blob = path.with_suffix(".pub").read_text().split()[:2]
    return path.read_text(), f"{kind} {blob}"


def known_hosts(entries: list[tuple[str, str]]) -> str:
    """known_hosts text: one line per (alias, public key line)."""
    return "".join(f"{alias} {public}\n" for alias, public in entries)


@dataclass(frozen=True)
class Access:
    """How labbuilder logs in to a team's nodes: its key, and the team's known_hosts
    (the host keys it gave the nodes), checked strictly with each node's libvirt name as
    the host key alias, so an address that moves to another guest is never trusted.
    Without `known_hosts` (a lab made before labbuilder gave host keys) keys are not checked."""

    key: Path
    known_hosts: Path | None = None

    def target(self, address: str, alias: str, prefix: tuple[str, ...] = ()) -> SshTarget:
        return SshTarget(address, self.key, prefix=prefix, known_hosts=self.known_hosts,
                         alias=alias if self.known_hosts else None)


@dataclass(frozen=True)
class SshTarget:
    address: str
    key: Path
    user: str = "root"
    prefix: tuple[str, ...] = ()  # e.g. nsenter into a private libvirtd's network namespace
    known_hosts: Path | None = None  # None: host keys not checked
    alias: str | None = None  # the name the host key is listed under in known_hosts

    @property
    def options(self) -> list[str]:
        if self.known_hosts is None:
            return [*_OPTIONS, *_UNCHECKED]
        return [*_OPTIONS, "-o", "StrictHostKeyChecking=accept-new", "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-o", "GlobalKnownHostsFile=/dev/null", "-o", f"HostKeyAlias={self.alias or self.address}"]

    def argv(self, command: list[str], interactive: bool = False, shell: bool = False,
             control: Path | None = None) -> list[str]:
        """ssh command line running `command` as an exact argument list (quoted for the
        remote shell), or with `shell` as ssh itself would (words joined, shell syntax
        allowed); `interactive` gets a terminal and may prompt; with `control` (a
        directory), connections are shared through a ControlMaster socket there."""
        mode = ["-t"] if interactive else ["-o", "BatchMode=yes"]
        remote = command if shell else [shlex.join(command)] if command else []
        return [*self.prefix, "ssh", "-i", str(self.key), *self.options, *mode, *self._control(control),
                f"{self.user}@{self.address}", "--", *remote]

    def control_exit(self, control: Path) -> list[str]:
        """ssh command line that ends the ControlMaster for this target, if one runs."""
        return [*self.prefix, "ssh", *self._control(control), "-O", "exit", f"{self.user}@{self.address}"]

    @staticmethod
    def _control(control: Path | None) -> list[str]:
        if control is None:
            return []
        control.mkdir(parents=True, exist_ok=True, mode=0o700)
        return ["-o", "ControlMaster=auto", "-o", f"ControlPath={control}/%C", "-o", "ControlPersist=120"]


def copy_to(target: SshTarget, path: Path, remote: str, timeout: float = 3600):
    """Copy the local file `path` to `remote` on the target (scp, same options as ssh)."""
    return run([*target.prefix, "scp", "-q", "-i", str(target.key), *target.options, str(path),
                f"{target.user}@{target.address}:{remote}"], timeout=timeout)


def ssh_run(target: SshTarget, command: list[str], check: bool = True, timeout: float = 120):
    """Run `command` on the target; return the CompletedProcess (text stdout/stderr)."""
    return run(target.argv(command), check=check, timeout=timeout)


def answers(target: SshTarget) -> bool:
    """True if the target accepts our key and runs a command now. HostError if it
    answers with a host key other than the one labbuilder gave it."""
    try:
        proc = ssh_run(target, ["true"], check=False, timeout=15)
    except Exception:
        return False
    if proc.returncode != 0 and _HOST_KEY_FAILED in (proc.stderr or ""):
        raise host_key_error(target)
    if proc.returncode != 0 and target.prefix and "nsenter: cannot open" in (proc.stderr or ""):
        # The namespace is named by its libvirtd's pid: that daemon is gone, the guests live on.
        raise HostError(f"the private libvirtd that {target.alias or target.address} runs under has gone "
                        f"(restarted or stopped: {proc.stderr.strip().splitlines()[-1]}); run the command "
                        "again: it carries on from where the lab is")
    return proc.returncode == 0


def host_key_error(target: SshTarget) -> HostError:
    return HostError(f"{target.alias or target.address} ({target.address}) answers with a host key other "
                     f"than the one labbuilder gave it (listed in {target.known_hosts}); if the node was "
                     "made before labbuilder gave host keys, or its state directory was lost, "
                     "`labbuilder reset` gives it its key again")


def wait_for_ssh(target: SshTarget, timeout: float, interval: float = 3.0, sleep=time.sleep) -> float:
    """Probe gently (a booting guest under TCG needs the CPU more than we do) until the
    target answers; return seconds waited. `sleep(seconds)` waits between probes (it may
    wake early, or raise to give up). HostError on timeout."""
    start = time.monotonic()
    while not answers(target):
        if time.monotonic() - start > timeout:
            raise HostError(f"{target.address} did not answer on SSH within {timeout:.0f}s")
        sleep(interval)
    return time.monotonic() - start


# Run by the remote login shell: says when it runs, then sets the clock to the time it
# is sent. Builtins but one `date`: a guest just restored under TCG runs cold code slowly.
_CLOCK_SCRIPT = 'echo ready; read -r t && date -u -s "@$t" >/dev/null && echo set'


def sync_clock(target: SshTarget, timeout: float, interval: float = 0.5, sleep=time.sleep) -> None:
    """Wait until the target answers on SSH and set its clock to ours, in one login (a
    guest restored from saved memory runs behind). Our time is sent only once the
    guest's command runs, so the clock is off by one message's latency, not by the
    connection time. `sleep` as for wait_for_ssh. HostError on timeout."""
    start = time.monotonic()
    while not _set_clock(target):
        if time.monotonic() - start > timeout:
            raise HostError(f"{target.address} did not answer on SSH within {timeout:.0f}s")
        sleep(interval)


def _set_clock(target: SshTarget, limit: float = 60) -> bool:
    proc = subprocess.Popen(target.argv([_CLOCK_SCRIPT], shell=True), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    watchdog = threading.Timer(limit, proc.kill)  # a session that hangs is a failed attempt
    watchdog.start()
    try:
        if proc.stdout.readline().strip() != "ready":
            return False
        proc.stdin.write(f"{time.time():.6f}\n")
        proc.stdin.flush()
        return proc.stdout.readline().strip() == "set"
    except OSError:  # ssh went away between the two lines
        return False
    finally:
        watchdog.cancel()
        for stream in (proc.stdin, proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        proc.wait()


def ssh_config(entries: list[tuple[str, str, str, tuple[str, ...]]], access: Access) -> str:
    """An ssh_config with one Host block per (name, address, host key alias, namespace
    prefix), matching the name and the address (Ansible's inventory reaches a node by its
    address); the host key is looked up under the alias either way."""
    blocks = []
    for name, address, alias, prefix in entries:
        lines = [f"Host {name} {address}", f"  HostName {address}", "  User root", f"  IdentityFile {access.key}"]
        if access.known_hosts is None:
            lines += ["  StrictHostKeyChecking no", "  UserKnownHostsFile /dev/null"]
        else:
            lines += ["  StrictHostKeyChecking accept-new", f"  UserKnownHostsFile {access.known_hosts}",
                      "  GlobalKnownHostsFile /dev/null", f"  HostKeyAlias {alias}"]
        lines.append("  LogLevel ERROR")
        if prefix:
            proxy = [*prefix, sys.executable, "-m", "labbuilder.system.netcat", "%h", "%p"]
            lines.append("  ProxyCommand " + shlex.join(proxy).replace("'%h'", "%h").replace("'%p'", "%p"))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"

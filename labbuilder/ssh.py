"""The one module that runs ssh and ssh-keygen."""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import HostError
from .run import run

_OPTIONS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10"]


def ensure_keypair(path: Path) -> str:
    """An ed25519 key at `path` (private, 0600) and `path`.pub; returns the public key."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"labbuilder {path.parent.name}",
             "-f", str(path)])
    path.chmod(0o600)
    return path.with_suffix(".pub").read_text().strip()


@dataclass(frozen=True)
class SshTarget:
    address: str
    key: Path
    user: str = "root"
    prefix: tuple[str, ...] = ()  # e.g. nsenter into a private libvirtd's network namespace

    def argv(self, command: list[str], interactive: bool = False, shell: bool = False,
             control: Path | None = None) -> list[str]:
        """ssh command line running `command` as an exact argument list (quoted for the
        remote shell), or with `shell` as ssh itself would (words joined, shell syntax
        allowed); `interactive` gets a terminal and may prompt; with `control` (a
        directory), connections are shared through a ControlMaster socket there."""
        mode = ["-t"] if interactive else ["-o", "BatchMode=yes"]
        remote = command if shell else [shlex.join(command)] if command else []
        return [*self.prefix, "ssh", "-i", str(self.key), *_OPTIONS, *mode, *self._control(control),
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


def ssh_run(target: SshTarget, command: list[str], check: bool = True, timeout: float = 120):
    """Run `command` on the target; return the CompletedProcess (text stdout/stderr)."""
    return run(target.argv(command), check=check, timeout=timeout)


def answers(target: SshTarget) -> bool:
    """True if the target accepts our key and runs a command now."""
    try:
        return ssh_run(target, ["true"], check=False, timeout=15).returncode == 0
    except Exception:
        return False


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


def sync_clock(target: SshTarget, timeout: float, interval: float = 0.5) -> None:
    """Set the target's clock to ours (a guest restored from saved memory runs behind);
    retried until it answers, which also makes it the readiness probe. HostError on timeout."""
    start = time.monotonic()
    while True:
        try:
            if ssh_run(target, ["date", "-u", "-s", f"@{time.time():.3f}"], check=False, timeout=15).returncode == 0:
                return
        except Exception:
            pass
        if time.monotonic() - start > timeout:
            raise HostError(f"{target.address} did not answer on SSH within {timeout:.0f}s")
        time.sleep(interval)


def ssh_config(entries: list[tuple[str, str, tuple[str, ...]]], key: Path) -> str:
    """An ssh_config with one Host block per (name, address, namespace prefix)."""
    import sys

    blocks = []
    for name, address, prefix in entries:
        lines = [f"Host {name}", f"  HostName {address}", "  User root", f"  IdentityFile {key}",
                 "  StrictHostKeyChecking no", "  UserKnownHostsFile /dev/null", "  LogLevel ERROR"]
        if prefix:
            proxy = [*prefix, sys.executable, "-m", "labbuilder.netcat", "%h", "%p"]
            lines.append("  ProxyCommand " + shlex.join(proxy).replace("'%h'", "%h").replace("'%p'", "%p"))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"

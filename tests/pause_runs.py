"""Running `labbuilder` as a user does, and holding a run at a step (labbuilder.system.pause)
to kill it there or to run another command beside it. Shared by the kill and concurrency
tests; not a test module."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import REPO

from labbuilder.system import virt
from labbuilder.system.pause import AT_ENV, FILE_ENV

DEMO = "topologies/demo.yaml"


@dataclass
class PausedRun:
    proc: subprocess.Popen
    log: Path
    left: list[int] = field(default_factory=list)  # its processes still alive after it was killed

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def paused(argv: list[str], step: str, tmp_path: Path, timeout: float = 900):
    """Start `labbuilder <argv>` with the pause at `step`; yield once it has reached the step
    and is alive there (checked); SIGKILL it at the end of the with-block (its PID only,
    as a kill -9 of it would), then note in `left` every process it had started that is
    still alive 10 s later."""
    tag = uuid.uuid4().hex[:8]
    pause_file, log = tmp_path / f"pause-{step}-{tag}", tmp_path / f"run-{step}-{tag}.log"
    env = {**os.environ, AT_ENV: step, FILE_ENV: str(pause_file), "COLUMNS": "300"}
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "labbuilder.cli", *argv], cwd=REPO, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    run = PausedRun(proc, log)
    children: set[int] = set()
    try:
        deadline = time.monotonic() + timeout
        while not pause_file.exists():
            if proc.poll() is not None:
                pytest.fail(f"labbuilder {' '.join(argv)} ended (exit {proc.returncode}) before step "
                            f"{step}:\n{run.output()}")
            if time.monotonic() > deadline:
                pytest.fail(f"labbuilder {' '.join(argv)} did not reach step {step} in {timeout:.0f}s:\n{run.output()}")
            time.sleep(0.2)
        assert int(pause_file.read_text()) == proc.pid
        time.sleep(0.5)  # it stays there
        assert proc.poll() is None and process_state(proc.pid) not in (None, "Z"), \
            f"labbuilder {' '.join(argv)} is not alive at step {step}"
        children = descendants(proc.pid)
        yield run
    finally:
        children |= descendants(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 10
        while (alive := [p for p in children if process_state(p) not in (None, "Z")]) and time.monotonic() < deadline:
            time.sleep(0.2)
        run.left = alive


def process_state(pid: int) -> str | None:
    """The state letter of process `pid` (R, S, Z …); None if there is no such process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _parents() -> dict[int, int]:
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                found[int(entry)] = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    return found


def descendants(pid: int) -> set[int]:
    """Every process started by `pid`, and by those, now alive."""
    parents, found, todo = _parents(), set(), [pid]
    while todo:
        parent = todo.pop()
        kids = [p for p, pp in parents.items() if pp == parent and p not in found]
        found.update(kids)
        todo += kids
    return found


def cmdlines(*fragments: str) -> list[str]:
    """Command lines of running processes that contain every one of `fragments`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or process_state(int(entry)) in (None, "Z"):
            continue
        try:
            line = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if all(f in line for f in fragments):
            found.append(line)
    return found


def team_processes(team: int) -> list[str]:
    """QEMU and dnsmasq processes of the demo lab's team."""
    return cmdlines("qemu-system", f"guest=demo-t{team}-") + cmdlines("dnsmasq", f"/demo-t{team}-")


def pool_dir(lab_state: Path, pool: str) -> Path:
    """A lab pool's directory in the session's private libvirtd, seen from here."""
    return lab_state / "libvirtd" / "lib" / "images" / "labbuilder" / pool


def assert_nothing_left(conn, team: int, lab_state: Path) -> None:
    """No libvirt object, pool, volume, QEMU or dnsmasq of the demo lab's team."""
    assert virt.owned_objects(conn, "demo", team) == []
    assert f"demo-t{team}-pool" not in virt.pool_names(conn)
    assert not pool_dir(lab_state, f"demo-t{team}-pool").exists()
    deadline = time.monotonic() + 15  # libvirt ends them as it removes their domain or network
    while team_processes(team) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert team_processes(team) == []


def temp_dirs() -> set[str]:
    """labbuilder's and mmdebstrap's temporary directories in /tmp."""
    return {p.name for p in Path("/tmp").iterdir() if p.name.startswith(("labbuilder-", "mmdebstrap."))}


def domain_states(conn, team: int, nodes=("alpha", "beta")) -> dict[str, str]:
    return {n: virt.domain_state(conn, f"demo-t{team}-{n}") for n in nodes}

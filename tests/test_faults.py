"""Faults of the lab host under a running command: libvirtd restarted during `up`. The
command stops with one line (no traceback), and the next `up` converges. The lab lives in
a private libvirtd of this test's own (its own LABBUILDER_STATE), which the test restarts
as a host's init would: the daemon goes, the guests and networks stay, a new daemon
starts in the same namespaces."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO

from labbuilder.system import privatelibvirtd, virt

pytestmark = pytest.mark.vm

DEMO = "topologies/demo.yaml"


def _env(state: Path) -> dict:
    return {**os.environ, "LABBUILDER_STATE": str(state), "COLUMNS": "300"}


def lb(state, *args, check=True, timeout=1800):
    proc = subprocess.run([sys.executable, "-m", "labbuilder.cli", args[0], "--private", *args[1:]],
                          cwd=REPO, env=_env(state), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        pytest.fail(f"labbuilder {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def _restart_libvirtd(daemon_dir: Path) -> int:
    """SIGTERM the daemon (its guests and dnsmasq live on), then start a new one in the
    same mount and network namespaces (entered through virtlogd, which stays)."""
    old = privatelibvirtd.attach(daemon_dir)
    assert old is not None
    os.kill(old.pid, signal.SIGTERM)
    for _ in range(300):
        if not Path(f"/proc/{old.pid}").exists():
            break
        time.sleep(0.1)
    else:
        pytest.fail("libvirtd did not stop on SIGTERM")
    virtlogd = int((daemon_dir / "virtlogd.pid").read_text())
    subprocess.run(["nsenter", f"--mount=/proc/{virtlogd}/ns/mnt", f"--net=/proc/{virtlogd}/ns/net", "--",
                    "libvirtd", "-d", "-p", str(daemon_dir / "libvirtd.pid")], check=True, timeout=60)
    for _ in range(300):
        new = privatelibvirtd.attach(daemon_dir)
        if new is not None and new.pid != old.pid:
            return new.pid
        time.sleep(0.1)
    pytest.fail("the restarted libvirtd did not come up")


@pytest.fixture
def state(tmp_path_factory, base_image):
    state = tmp_path_factory.mktemp("faults-state")
    yield state
    lb(state, "down", DEMO, "--all-teams", check=False)  # and, with nothing left, the private libvirtd
    daemon = privatelibvirtd.attach(state / "libvirtd")
    if daemon is not None:
        privatelibvirtd.stop(daemon)


def test_libvirtd_restarted_during_up_fails_in_one_line_and_the_next_up_converges(state):
    proc = subprocess.Popen([sys.executable, "-m", "labbuilder.cli", "up", DEMO, "--private", "--no-config"],
                            cwd=REPO, env=_env(state), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:  # both guests started: `up` waits for them on SSH now
            daemon = privatelibvirtd.attach(state / "libvirtd")
            if daemon is not None:
                conn = virt.connect(daemon.uri)
                try:
                    states = {virt.domain_state(conn, f"demo-t1-{n}") for n in ("alpha", "beta")}
                finally:
                    conn.close()
                if states == {"running"}:
                    break
            assert proc.poll() is None, proc.communicate()
            time.sleep(1)
        else:
            pytest.fail("the guests did not start")
        assert proc.poll() is None, "up ended before libvirtd could be restarted under it"
        _restart_libvirtd(state / "libvirtd")
        out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, out + err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "libvirtd" in errors[0], err

    lb(state, "up", DEMO, "--no-config")
    status = json.loads(lb(state, "status", DEMO, "--json").stdout)
    assert [(n["node"], n["state"], n["ssh"]) for n in status["nodes"]] == \
        [("alpha", "running", True), ("beta", "running", True)]


def test_a_base_pool_without_room_is_refused_by_name_and_up_mends_once_there_is(state):
    """The base pool's filesystem has 64 MiB (a tmpfs mounted on it in the private
    libvirtd's mount namespace) and the base image needs more: `up` stops with one line
    naming the pool and the sizes, having made no network or domain; once there is room,
    the next `up` converges."""
    from labbuilder.model.names import POOL_ROOT

    daemon = privatelibvirtd.start(state / "libvirtd")
    base = f"{POOL_ROOT}/base"
    inside = ["nsenter", f"--mount=/proc/{daemon.pid}/ns/mnt", "--"]
    subprocess.run([*inside, "mkdir", "-p", base], check=True, timeout=30)
    subprocess.run([*inside, "mount", "-t", "tmpfs", "-o", "size=64m", "lbtest-full", base], check=True, timeout=30)
    try:
        proc = lb(state, "up", DEMO, "--no-wait", check=False)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "Traceback" not in proc.stderr
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "pool labbuilder-base" in errors[0] and "MiB free" in errors[0], proc.stderr
        conn = virt.connect(daemon.uri)
        try:
            assert virt.owned_objects(conn, "demo", 1) == []  # no network, no domain made before it
        finally:
            conn.close()
    finally:
        subprocess.run([*inside, "umount", base], check=True, timeout=30)
    lb(state, "up", DEMO, "--no-wait")
    conn = virt.connect(privatelibvirtd.attach(state / "libvirtd").uri)
    try:
        assert {virt.domain_state(conn, f"demo-t1-{n}") for n in ("alpha", "beta")} == {"running"}
    finally:
        conn.close()

"""Every kill leaves nothing the next run cannot mend (issue 17 point 4, issue 20 point 2).

Each command is held at a named step (labbuilder.system.pause), checked to be alive
there, SIGKILLed, and run again (or `up`): the lab converges (`plan` has nothing to do,
every node runs and answers on SSH) and nothing leaks (after `down`: no libvirt object,
pool or volume of the team, no QEMU or dnsmasq of it, no process of the killed run, no
temporary directory). Few guests boot: the kills that need answering guests share one
booted team; the kills before any guest starts each use a team of their own with
`--no-wait`, whose guests are removed before they have booted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, kept_daemon, lab_argv, lb
from pause_runs import DEMO, assert_nothing_left, cmdlines, domain_states, paused, temp_dirs

from labbuilder.image import build as image_build
from labbuilder.image import cache as image_cache
from labbuilder.lab import diff
from labbuilder.lab.hosts import Host
from labbuilder.lab.observe import HostState
from labbuilder.lab.plan import BaseImage, plan_lab
from labbuilder.model.names import POOL_MARK
from labbuilder.model.topology import load_topology
from labbuilder.reporting import Progress
from labbuilder.system import pause, virt

BOOTED = 21  # the team the kills that need answering guests share

# ---- the pause hook itself, and what the next run plans after a kill (no hypervisor) ----


def test_without_the_variables_a_pause_point_returns(monkeypatch):
    monkeypatch.delenv(pause.AT_ENV, raising=False)
    for step in pause.STEPS:
        pause.pause_point(step)


def _held_at_define(code: str, pid_file: Path) -> subprocess.Popen:
    """`python -c code` with the pause at step `define`, once it has written its PID and stays."""
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, pause.AT_ENV: "define", pause.FILE_ENV: str(pid_file)})
    for _ in range(300):
        if pid_file.exists() or proc.poll() is not None:
            break
        time.sleep(0.1)
    assert pid_file.read_text() == f"{proc.pid}\n"
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(timeout=1)
    return proc


@pytest.mark.subprocess(sys.executable)
def test_a_run_at_its_pause_step_writes_its_pid_and_stays(tmp_path):
    pid_file = tmp_path / "pid"
    code = "from labbuilder.system.pause import pause_point\npause_point('define')\nprint('went on')\n"
    proc = _held_at_define(code, pid_file)
    proc.kill()
    assert proc.communicate()[0] == ""


@pytest.mark.subprocess(sys.executable)
def test_a_run_held_at_its_pause_step_goes_on_once_its_pid_file_is_removed(tmp_path):
    """Every thread that reaches the step waits there, and all go on when the file goes."""
    pid_file = tmp_path / "pid"
    code = ("import threading\nfrom labbuilder.system.pause import pause_point\n"
            "def held(): pause_point('define'); print('thread went on', flush=True)\n"
            "t = threading.Thread(target=held); t.start()\n"
            "pause_point('define')\nt.join()\nprint('went on')\n")
    proc = _held_at_define(code, pid_file)
    try:
        pid_file.unlink()
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert sorted(out.splitlines()) == ["thread went on", "went on"]


def test_every_pause_step_is_one_call_in_the_code():
    source = "".join(p.read_text() for p in (REPO / "labbuilder").rglob("*.py") if p.name != "pause.py")
    assert {step: source.count(f'pause_point("{step}")') for step in pause.STEPS} == {s: 1 for s in pause.STEPS}


def _demo_state(pool_volumes, domain_state=dict(active=False, starting=False, paused=False)):
    """The demo plan, its rendering, and what observe would find: both domains defined
    by labbuilder as planned, in `domain_state`, and the pool holding `pool_volumes`."""
    topo = load_topology(REPO / DEMO)
    plan = plan_lab(topo, 1, {h.name: Host("qemu:///system") for h in topo.hosts},
                    {"debian-12": BaseImage("debian-12", "/cache/d.qcow2", "ab" * 32, 1 << 28, 3 << 30)})
    want = diff.render_plan(plan, "qemu", now=0)
    owned = [virt.HostObject("domain", r.libvirt_name, {"lab": "demo", "team": "1", "plan": r.digest}, **domain_state)
             for r in want.domains.values()]
    owned += [virt.HostObject("network", r.libvirt_name, {"lab": "demo", "team": "1", "plan": r.digest}, True)
              for r in want.networks.values()]
    volumes = frozenset(v for n in plan.nodes for v in (n.vda, n.seed_volume, *(d.volume for d in n.disks)))
    state = HostState(tuple(owned), frozenset({plan.nodes[0].image.volume + ".complete"}), True,
                      None if pool_volumes is None else frozenset(pool_volumes(volumes)) | {POOL_MARK})
    return plan, want, {"qemu:///system": state}


def _actions(plan, want, states):
    return [(a.verb.value, a.name, a.detail) for a in diff.diff(plan, want, states)]


def test_a_domain_whose_overlay_and_seed_are_gone_gets_them_back():
    """What a `reset` killed after deleting a node's overlay and seed leaves: the next `up`
    makes them again and starts the domain (it planned only a start before)."""
    plan, want, states = _demo_state(lambda v: v - {"alpha-vda.qcow2", "alpha-seed.iso"})
    assert _actions(plan, want, states) == [
        ("change", "demo-t1-alpha", "volumes missing: alpha-vda.qcow2, alpha-seed.iso"),
        ("start", "demo-t1-beta", "")]


def test_volumes_are_not_judged_while_the_pool_is_not_started():
    plan, want, states = _demo_state(None)
    assert _actions(plan, want, states) == [("start", "demo-t1-alpha", ""), ("start", "demo-t1-beta", "")]


def test_a_domain_left_paused_is_resumed():
    """A checkpoint or `reset --to` killed while every node is paused leaves them paused."""
    plan, want, states = _demo_state(lambda v: v, dict(active=True, starting=False, paused=True))
    assert _actions(plan, want, states) == [("start", "demo-t1-alpha", "paused; it is resumed"),
                                            ("start", "demo-t1-beta", "paused; it is resumed")]


def _entry(cache: Path, name: str, with_image=True) -> Path:
    entry = cache / name
    entry.mkdir(parents=True)
    (entry / "manifest.json").write_text(json.dumps({"name": "tiny", "built_at": "x",
                                                     "image": {"file": "tiny.qcow2", "size": 4}}))
    if with_image:
        (entry / "tiny.qcow2").write_bytes(b"qcow")
    return entry


def test_a_build_cut_short_leaves_nothing_the_next_build_keeps(tmp_path, monkeypatch):
    """Its work directory (holding a manifest, in the moment before the rename) is no
    image, and the next build of the recipe removes it, and an entry whose image is gone."""
    from labbuilder.model.recipe import load_recipe

    recipe_file = tmp_path / "tiny.yaml"
    recipe_file.write_text(TINY)
    recipe = load_recipe(recipe_file)
    cache = tmp_path / "cache"
    final = image_cache.entry_dir(cache, recipe)
    work = _entry(cache, f".build-{final.name}-4242")
    broken = _entry(cache, final.name, with_image=False)
    assert image_cache.list_images(cache) == []  # neither is an image: `image list` shows none
    assert image_cache.cached(cache, recipe) is None
    seen = []
    monkeypatch.setattr(image_build, "_build", lambda *a: seen.append((work.exists(), broken.exists())) or "built")
    assert image_build.build(recipe, cache, Progress(), accel=object()) == "built"
    assert seen == [(False, False)]


# ---- kills on real guests ----

@pytest.fixture(scope="module")
def conn(private_libvirtd, base_image):
    """The session's libvirtd (tests/conftest.py: kept_daemon)."""
    with kept_daemon(private_libvirtd, "keep-kills") as c:
        yield c


@pytest.fixture(scope="module")
def booted(conn, tmp_path_factory):
    """Team BOOTED, brought up by an `up` killed after defining its domains, then by one
    killed while waiting for SSH, then by one that ends: what each kill found is returned."""
    tmp = tmp_path_factory.mktemp("booted")
    found = {}
    for step in ("define", "wait"):
        with paused(lab_argv("up", DEMO, "--team", str(BOOTED), "--no-config"), step, tmp) as run:
            found[step] = domain_states(conn, BOOTED)
        found[f"{step} left"] = run.left
    lb("up", DEMO, "--team", str(BOOTED), "--no-config")
    yield found
    lb("down", DEMO, "--team", str(BOOTED), check=False)


def on(node, *command, team=BOOTED, check=True):
    proc = lb("ssh", DEMO, node, "--team", str(team), "--", *command, check=check)
    return proc.stdout.strip()


def assert_converged(team: int) -> None:
    """`plan` has nothing to do; every node runs and answers on SSH."""
    plan = json.loads(lb("plan", DEMO, "--team", str(team), "--json").stdout)
    assert plan["actions"] == []
    status = json.loads(lb("status", DEMO, "--team", str(team), "--json").stdout)
    assert [(n["node"], n["state"], n["ssh"]) for n in status["nodes"]] == \
        [("alpha", "running", True), ("beta", "running", True)]
    assert all(n["active"] for n in status["networks"])


def _plan_actions(team: int) -> list[tuple[str, str, str]]:
    plan = json.loads(lb("plan", DEMO, "--team", str(team), "--json").stdout)
    return [(a["verb"], a["name"], a["detail"]) for a in plan["actions"]]


@pytest.mark.vm
def test_up_killed_after_define_and_while_waiting_converges(booted):
    assert booted["define"] == {"alpha": "shut off", "beta": "shut off"}  # defined, not started
    assert booted["wait"] == {"alpha": "running", "beta": "running"}
    assert booted["define left"] == booted["wait left"] == []
    assert_converged(BOOTED)


@pytest.mark.vm
@pytest.mark.parametrize("step,team", [("networks", 22), ("volumes", 23), ("define", 24)])
def test_up_killed_before_any_guest_starts_converges_and_down_leaves_nothing(conn, lab_state, tmp_path, step, team):
    """The next `up` makes what the killed one had not, and `down` leaves nothing. (Their
    guests are not waited for: none started from what the killed run made; the booted
    team's guests answer after a kill at `define`.)"""
    before = temp_dirs()
    with paused(lab_argv("up", DEMO, "--team", str(team), "--no-wait"), step, tmp_path) as run:
        networks = {n: virt.network_info(conn, f"demo-t{team}-{n}") for n in ("lan", "backend")}
        assert all(info is not None and info[0] for info in networks.values()), networks
        states = domain_states(conn, team)
        pool = virt.lookup_pool(conn, f"demo-t{team}-pool")
        volumes = virt.volume_names(pool) if pool is not None else set()
    assert run.left == []
    if step == "networks":
        assert states == {"alpha": "absent", "beta": "absent"} and not volumes
    elif step == "volumes":  # every node stops there: its volumes made, no domain yet
        assert states == {"alpha": "absent", "beta": "absent"}
        assert POOL_MARK in volumes and {"alpha-vda.qcow2", "alpha-seed.iso"} <= volumes \
            or {"beta-vda.qcow2", "beta-seed.iso"} <= volumes, volumes
    else:  # every node stops after its definition, before its start
        assert "shut off" in states.values() and "running" not in states.values(), states
    lb("up", DEMO, "--team", str(team), "--no-wait")
    assert _plan_actions(team) == []
    assert domain_states(conn, team) == {"alpha": "running", "beta": "running"}
    pool = virt.require_pool(conn, f"demo-t{team}-pool")
    assert {"alpha-vda.qcow2", "alpha-seed.iso", "alpha-vdb.qcow2", "beta-vda.qcow2",
            "beta-seed.iso"} <= virt.volume_names(pool)
    lb("down", DEMO, "--team", str(team))
    assert_nothing_left(conn, team, lab_state)
    assert _new_temp_dirs(before) == set()


@pytest.mark.vm
def test_reset_killed_after_deleting_the_overlay_is_mended_by_up(booted, conn, tmp_path):
    on("alpha", "echo dirty > /root/kill-marker && sync")
    with paused(lab_argv("reset", DEMO, "--team", str(BOOTED), "--node", "alpha"), "reset-deleted", tmp_path) as run:
        state = virt.domain_state(conn, f"demo-t{BOOTED}-alpha")
        volumes = virt.volume_names(virt.require_pool(conn, f"demo-t{BOOTED}-pool"))
    assert run.left == []
    assert state == "shut off" and not {"alpha-vda.qcow2", "alpha-seed.iso"} & volumes, volumes
    assert _plan_actions(BOOTED) == [("change", f"demo-t{BOOTED}-alpha", "volumes missing: alpha-vda.qcow2, "
                                      "alpha-seed.iso")]
    lb("up", DEMO, "--team", str(BOOTED), "--no-config")
    assert_converged(BOOTED)
    assert lb("ssh", DEMO, "alpha", "--team", str(BOOTED), "--", "test", "-e", "/root/kill-marker",
              check=False).returncode == 1  # a fresh overlay


@pytest.mark.vm
def test_checkpoint_killed_between_nodes_is_mended_by_taking_it_again(booted, conn, tmp_path):
    with paused(lab_argv("checkpoint", DEMO, "--team", str(BOOTED), "--name", "cut"), "checkpoint-node",
                tmp_path) as run:
        states = domain_states(conn, BOOTED)
    assert run.left == []
    assert states == {"alpha": "paused", "beta": "paused"}  # the run paused them all, and died
    assert _plan_actions(BOOTED) == [(verb, f"demo-t{BOOTED}-{n}", "paused; it is resumed")
                                     for verb, n in (("start", "alpha"), ("start", "beta"))]
    lb("checkpoint", DEMO, "--team", str(BOOTED), "--name", "cut")
    listed = json.loads(lb("checkpoints", DEMO, "--team", str(BOOTED), "--json").stdout)
    assert [(c["name"], c["nodes"], c["missing"]) for c in listed if c["name"] == "cut"] == \
        [("cut", ["alpha", "beta"], [])]
    assert_converged(BOOTED)


@pytest.mark.vm
def test_reset_to_killed_between_nodes_is_mended_by_running_it_again(booted, conn, tmp_path):
    lb("checkpoint", DEMO, "--team", str(BOOTED), "--name", "back")
    for node in ("alpha", "beta"):
        on(node, "echo after > /root/after-checkpoint && sync")
    with paused(lab_argv("reset", DEMO, "--team", str(BOOTED), "--to", "back"), "revert-node", tmp_path) as run:
        states = domain_states(conn, BOOTED)
    assert run.left == []
    assert set(states.values()) <= {"running", "paused"}, states
    lb("reset", DEMO, "--team", str(BOOTED), "--to", "back")
    for node in ("alpha", "beta"):
        assert lb("ssh", DEMO, node, "--team", str(BOOTED), "--", "test", "-e", "/root/after-checkpoint",
                  check=False).returncode == 1
    assert_converged(BOOTED)


@pytest.mark.vm
def test_down_killed_after_removing_the_domains_is_mended_by_down(conn, lab_state, tmp_path):
    team = 25
    lb("up", DEMO, "--team", str(team), "--no-wait")
    with paused(lab_argv("down", DEMO, "--team", str(team)), "down-domains", tmp_path) as run:
        states = domain_states(conn, team)
        networks = [virt.network_info(conn, f"demo-t{team}-{n}") for n in ("lan", "backend")]
        pool = virt.lookup_pool(conn, f"demo-t{team}-pool")
    assert run.left == []
    assert states == {"alpha": "absent", "beta": "absent"}
    assert None not in networks and pool is not None
    removed = lb("down", DEMO, "--team", str(team), "--json").stdout
    assert set(json.loads(removed)["removed"]) >= {f"network demo-t{team}-lan", f"network demo-t{team}-backend",
                                                   f"pool demo-t{team}-pool"}
    assert_nothing_left(conn, team, lab_state)


def _new_temp_dirs(before: set[str]) -> set[str]:
    """Temporary directories made since `before` that stay (another run's probe, seconds
    long, is let go)."""
    for _ in range(3):
        new = temp_dirs() - before
        if not new:
            return new
        time.sleep(5)
    return new


# ---- image build ----

TINY = """\
name: tiny
description: the smallest image the pipeline builds, GRUB and no kernel, for kill tests
source:
  mmdebstrap:
    suite: bookworm
    variant: minbase
packages: [grub-pc]
size: 1G
"""


def _mmdebstrap_mounted(cache: Path) -> bool:
    """Whether an mmdebstrap of a build in `cache` has mounted /proc in its chroot (the
    mounts a killed build used to leave on the host), seen from inside its namespace."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            if b"mmdebstrap" not in cmdline or str(cache).encode() not in cmdline:
                continue
            mounts = Path(f"/proc/{entry}/mounts").read_text()
        except OSError:
            continue
        if any(line.split()[1].startswith(str(cache)) and line.split()[1].endswith("/proc")
               for line in mounts.splitlines()):
            return True
    return False


def _image_list(cache: Path) -> list[str]:
    proc = subprocess.run([sys.executable, "-m", "labbuilder.cli", "image", "list", "--json", "--cache", str(cache)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return [i["name"] for i in json.loads(proc.stdout)]


@pytest.mark.image
def test_image_build_killed_leaves_no_mount_and_the_next_build_mends_it(tmp_path):
    """Killed once with its work directory made, once while mmdebstrap runs with its
    chroot mounted: no mount and no process outlives it, `image list` shows no half
    entry, and the next build removes the leftovers and succeeds."""
    if os.geteuid() != 0:
        pytest.skip("mmdebstrap --mode=root needs root")
    recipe, cache = tmp_path / "tiny.yaml", tmp_path / "cache"
    recipe.write_text(TINY)
    build = ["image", "build", str(recipe), "--cache", str(cache)]
    before = temp_dirs()
    with paused(build, "build-work", tmp_path) as first:
        leftovers = sorted(p.name for p in cache.glob(".build-*"))
    assert first.left == [] and len(leftovers) == 1

    proc = subprocess.Popen([sys.executable, "-m", "labbuilder.cli", *build], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600
        while not _mmdebstrap_mounted(cache):
            assert proc.poll() is None and time.monotonic() < deadline, "mmdebstrap never mounted its chroot"
            time.sleep(0.2)
        assert proc.poll() is None
        assert not (cache / leftovers[0]).exists()  # the first build's, removed by this one
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 15
    while cmdlines("mmdebstrap", str(cache)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert cmdlines(str(cache)) == []  # mmdebstrap and everything it ran died with the build
    assert [line for line in Path("/proc/mounts").read_text().splitlines()
            if str(cache) in line or "mmdebstrap" in line] == []
    assert len(list(cache.glob(".build-*"))) == 1 and _image_list(cache) == []

    proc = subprocess.run([sys.executable, "-m", "labbuilder.cli", *build], cwd=REPO, capture_output=True,
                          text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr
    assert list(cache.glob(".build-*")) == [] and _image_list(cache) == ["tiny"]
    assert [line for line in Path("/proc/mounts").read_text().splitlines() if "mmdebstrap" in line] == []
    assert _new_temp_dirs(before) == set()

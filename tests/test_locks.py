"""The per-team locks: one run per lab and team, teams in parallel, and `down
--all-teams` alone on the lab."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import REPO

from labbuilder.model.errors import LockedError
from labbuilder.system.locks import team_lock


def test_teams_run_in_parallel_and_a_second_run_on_a_team_fails(tmp_path):
    with team_lock(tmp_path / "demo-t1", "demo", 1), team_lock(tmp_path / "demo-t2", "demo", 2):
        with pytest.raises(LockedError, match=r"^another labbuilder run is working on demo team 1 \(lock "):
            with team_lock(tmp_path / "demo-t1", "demo", 1):
                pass
        with team_lock(tmp_path / "other-t1", "other", 1):  # another lab: its own locks
            pass
    with team_lock(tmp_path / "demo-t1", "demo", 1):  # released at the end of the block
        pass


def test_every_team_waits_for_no_run_and_holds_off_every_team(tmp_path):
    with team_lock(tmp_path / "demo-t2", "demo", 2):
        with pytest.raises(LockedError, match="^another labbuilder run is working on a team of demo "):
            with team_lock(tmp_path / "demo-t1", "demo", 1, every_team=True):
                pass
    with team_lock(tmp_path / "demo-t1", "demo", 1, every_team=True):
        for team in (1, 5):
            with pytest.raises(LockedError, match="^another labbuilder run is removing every team of demo "):
                with team_lock(tmp_path / f"demo-t{team}", "demo", team):
                    pass
        with team_lock(tmp_path / "other-t1", "other", 1):
            pass


@pytest.mark.subprocess(sys.executable)
def test_down_all_teams_fails_at_once_while_a_team_runs(tmp_path, test_host):
    env = {**os.environ, "LABBUILDER_STATE": str(tmp_path)}
    argv = [sys.executable, "-m", "labbuilder.cli", "down", "topologies/demo.yaml", "--connect", test_host]
    with team_lock(tmp_path / "demo-t3", "demo", 3):
        proc = subprocess.run([*argv, "--all-teams"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 1
        assert "another labbuilder run is working on a team of demo" in proc.stderr
        assert "Traceback" not in proc.stderr
        # a run on another team is not held off
        assert subprocess.run([*argv, "--team", "4"], cwd=REPO, env=env, capture_output=True,
                              timeout=60).returncode == 0
    proc = subprocess.run([*argv, "--all-teams"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "Nothing to remove." in proc.stdout, proc.stderr
    assert proc.stderr.startswith("demo every team on "), proc.stderr


def test_locks_held_for_several_holders_go_with_the_last_one_done(tmp_path):
    from labbuilder.system.locks import HeldFor, exclusive

    paths = [tmp_path / "b.lock", tmp_path / "a.lock"]

    def taken(path):
        try:
            with exclusive(path, lambda: (_ for _ in ()).throw(LockedError("held"))):
                return False
        except LockedError:
            return True

    held = HeldFor(paths, [1, 2], lambda path: pytest.fail(f"{path} was free"))
    held.done(1)
    held.done(1)  # again: nothing
    assert all(taken(p) for p in paths)
    held.done(2)
    assert not any(taken(p) for p in paths)
    waited = []
    with exclusive(tmp_path / "b.lock", lambda: None):
        with pytest.raises(LockedError):  # a.lock is taken first, then b.lock blocks; a.lock goes again
            HeldFor(paths, [1], lambda path: waited.append(path) or (_ for _ in ()).throw(LockedError("busy")))
    assert waited == [tmp_path / "b.lock"] and not taken(tmp_path / "a.lock")

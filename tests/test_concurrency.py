"""Real runs side by side (issue 20 point 3): one run is held at a known step with the
pause hook (labbuilder.system.pause) while the lock holds, instead of racing; the other
is a real command. No guest is waited for: the held run is killed, and its team removed.

Two teams' `up` started at once on one host are in test_lab.py (the base image upload
race): both converge; here a second team's `up` runs while the first's is held."""

from __future__ import annotations

import json

import pytest
from conftest import kept_daemon, lab_argv, lb
from pause_runs import DEMO, assert_nothing_left, domain_states, paused

pytestmark = pytest.mark.vm


@pytest.fixture(scope="module")
def conn(private_libvirtd, base_image):
    """The session's libvirtd (tests/conftest.py: kept_daemon)."""
    with kept_daemon(private_libvirtd, "keep-concurrency") as c:
        yield c


def test_while_up_runs_on_a_team_other_runs_on_it_fail_at_once_and_another_team_goes_on(conn, lab_state, tmp_path):
    """A second `up` and a `down` of the team, and `down --all-teams`, fail at once (the
    subprocess timeout is only a guard against a hang) naming the lock that holds them;
    another team's `up` runs beside it."""
    team, other = 31, 32
    with paused(lab_argv("up", DEMO, "--team", str(team), "--no-wait"), "networks", tmp_path) as first:
        second = lb("up", DEMO, "--team", str(team), "--no-wait", check=False, timeout=120)
        down = lb("down", DEMO, "--team", str(team), check=False, timeout=120)
        every = lb("down", DEMO, "--all-teams", check=False, timeout=120)
        beside = lb("up", DEMO, "--team", str(other), "--no-wait", check=False, timeout=900)
        held = domain_states(conn, team)
    assert first.left == []
    team_lock = f"another labbuilder run is working on demo team {team} (lock {lab_state / f'demo-t{team}' / 'lock'}); " \
                "try again when it ends"
    for proc in (second, down):
        assert proc.returncode == 1 and team_lock in " ".join(proc.stderr.split()), proc.stderr
    lab_lock = f"another labbuilder run is working on a team of demo (lock {lab_state / 'locks' / 'lab-demo.lock'})"
    assert every.returncode == 1 and lab_lock in " ".join(every.stderr.split()), every.stderr
    assert beside.returncode == 0, beside.stderr
    assert held == {"alpha": "absent", "beta": "absent"}  # the second up changed nothing
    assert domain_states(conn, other) == {"alpha": "running", "beta": "running"}
    for t in (team, other):
        lb("down", DEMO, "--team", str(t))
        assert_nothing_left(conn, t, lab_state)


def test_while_down_all_teams_runs_no_team_starts(conn, lab_state, tmp_path):
    """`down --all-teams` holds the lab's lock: an `up` of any team fails at once, naming it."""
    team = 33
    lb("up", DEMO, "--team", str(team), "--no-wait")
    with paused(lab_argv("down", DEMO, "--all-teams"), "down-domains", tmp_path) as held:
        up = lb("up", DEMO, "--team", "34", "--no-wait", check=False, timeout=120)
    assert held.left == []
    lab_lock = f"another labbuilder run is removing every team of demo (lock {lab_state / 'locks' / 'lab-demo.lock'})"
    assert up.returncode == 1 and lab_lock in " ".join(up.stderr.split()), up.stderr
    assert domain_states(conn, 34) == {"alpha": "absent", "beta": "absent"}
    removed = json.loads(lb("down", DEMO, "--all-teams", "--json").stdout)["removed"]
    assert f"pool demo-t{team}-pool" in removed
    for t in (team, 34):
        assert_nothing_left(conn, t, lab_state)

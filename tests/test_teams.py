"""A class of teams: ranges, and running teams in parallel bounded per host, where one
team's failure leaves the others going."""

from __future__ import annotations

import threading

import pytest

from labbuilder.lab import teams
from labbuilder.model.errors import HostError


@pytest.mark.parametrize("text, expected", [
    ("3", [3]), ("1-4", [1, 2, 3, 4]), ("1,3,5-7", [1, 3, 5, 6, 7]), ("5-7,1,6", [1, 5, 6, 7]),
    (" 1 - 2 , 9", [1, 2, 9]), ("99", [99]),
])
def test_team_ranges(text, expected):
    assert teams.parse_teams(text) == expected


@pytest.mark.parametrize("text, says", [
    ("0", "1 to 99"), ("98-100", "1 to 99"), ("7-3", "backwards"), ("a", "not a team"), ("1,,2", "not a team"),
    ("", "not a team"), ("1-2-3", "not a team"), ("3\n", "not a team"),
])
def test_bad_team_ranges_say_why(text, says):
    with pytest.raises(ValueError, match=says):
        teams.parse_teams(text)


def test_a_failing_team_does_not_stop_the_others_and_results_keep_team_order():
    ended = []

    def work(team, slots):
        with slots.hold(["qemu:///system"]):
            if team == 2:
                raise HostError("host lab1 refused\nsecond line")
            if team == 3:
                raise KeyError("bug")
            return team * 10

    results = teams.run_teams([1, 2, 3, 4], work, parallel=2, done=ended.append)
    assert [(r.team, r.ok, r.value) for r in results] == [(1, True, 10), (2, False, None), (3, False, None),
                                                          (4, True, 40)]
    assert results[1].first_line == "host lab1 refused"
    assert results[2].error == "KeyError: 'bug'"
    assert sorted(r.team for r in ended) == [1, 2, 3, 4]
    assert teams.failed_summary(results) == "teams 2, 3 failed"
    assert teams.failed_summary(results[:1]) is None


def test_at_most_parallel_teams_act_at_once_on_a_host_and_other_hosts_are_not_held_up():
    """Four teams on host A with a bound of 2, one on host B: when two A teams are in,
    the third waits, and B's team still gets in."""
    lock = threading.Lock()
    entered = []  # A teams in the order they got in
    inside = {"A": 0, "B": 0}
    peak = {"A": 0, "B": 0}
    a_full = threading.Barrier(2, timeout=30)  # the first two A teams meet inside
    b_in = threading.Event()

    def work(team, slots):
        host = "B" if team == 5 else "A"
        with slots.hold([host]):
            with lock:
                inside[host] += 1
                peak[host] = max(peak[host], inside[host])
                if host == "A":
                    entered.append(team)
                first_two = host == "A" and len(entered) <= 2
            if host == "B":
                b_in.set()
            elif first_two:
                a_full.wait()  # both are in at once: the bound lets two in
                assert b_in.wait(30)  # and B's team got in while A was full
            with lock:
                inside[host] -= 1
        return host

    results = teams.run_teams([1, 2, 3, 4, 5], work, parallel=2)
    assert all(r.ok for r in results), [r.error for r in results]
    assert peak == {"A": 2, "B": 1}


def test_a_team_on_two_hosts_holds_a_slot_on_each():
    slots = teams.HostSlots(1)
    with slots.hold(["b", "a", "a"]):
        assert not slots._sem("a").acquire(blocking=False)
        assert not slots._sem("b").acquire(blocking=False)
    assert slots._sem("a").acquire(blocking=False) and slots._sem("b").acquire(blocking=False)

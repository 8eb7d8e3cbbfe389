"""run(): a failed command's error keeps both of its streams."""

from __future__ import annotations

import pytest

from labbuilder.model.errors import ToolError
from labbuilder.system.run import once_more_on, run

pytestmark = pytest.mark.subprocess("sh")
# The reason on stdout, a warning on stderr: as ansible-playbook and dpkg under mmdebstrap say it.
SAYS_BOTH = ["sh", "-c", "echo 'fatal: the reason'; echo 'warning: noise' >&2; exit 3"]


def test_a_failed_command_shows_the_last_lines_of_stderr_and_of_stdout(tmp_path):
    with pytest.raises(ToolError) as e:
        run(SAYS_BOTH, log=tmp_path / "log")
    first, *rest = e.value.lines()
    assert first.startswith("sh failed (exit status 3): sh -c")
    assert rest == ["  warning: noise", "  fatal: the reason", f"full log: {tmp_path / 'log'}"]
    assert (e.value.stderr.strip(), e.value.stdout.strip()) == ("warning: noise", "fatal: the reason")


def test_a_known_failure_is_found_on_stdout_too():
    tries = []

    def attempt():
        tries.append(1)
        if len(tries) == 1:
            run(SAYS_BOTH)
        return "second try"

    assert once_more_on("the reason", attempt, lambda e: None) == "second try"
    assert len(tries) == 2

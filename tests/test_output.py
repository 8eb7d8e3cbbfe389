"""The CLI's progress lines (labbuilder/cli/output.py)."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from labbuilder.cli.output import RichProgress


def test_a_stage_that_fails_ends_with_a_cross_and_one_that_passes_with_a_tick():
    """A role whose step fails must not be shown done: the line the stage leaves says ✗."""
    out = io.StringIO()
    progress = RichProgress(Console(file=out, width=200, color_system=None))
    with progress.stage("role common on db-node"):
        pass
    with pytest.raises(RuntimeError), progress.stage("role network on network-node"):
        raise RuntimeError("step 50-neutron-agents.sh failed")
    lines = [re.sub(r" [0-9.]+s$", "", line.strip()) for line in out.getvalue().splitlines() if line.strip()]
    assert lines == ["✓ role common on db-node", "✗ role network on network-node"], out.getvalue()
    assert set(progress.timings) == {"role common on db-node", "role network on network-node"}

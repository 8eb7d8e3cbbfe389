"""Progress for long stages. Library code reports through a Progress; the CLI picks rich."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator


class Progress:
    """Silent base: records stage timings only (tests and --json use it)."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        failed = True
        try:
            self._begin(name)
            yield
            failed = False
        finally:
            self.timings[name] = round(time.monotonic() - start, 1)
            self._end(name, failed)

    def step(self, text: str) -> None:
        """A sub-step of the current stage (shown next to it)."""

    def info(self, text: str) -> None:
        """A line for the user."""

    def _begin(self, name: str) -> None: ...

    def _end(self, name: str, failed: bool) -> None:
        """The stage ended; `failed`: by an exception (its error is the caller's to report)."""

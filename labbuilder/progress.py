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
        try:
            self._begin(name)
            yield
        finally:
            self.timings[name] = round(time.monotonic() - start, 1)
            self._end(name)

    def step(self, text: str) -> None:
        """A sub-step of the current stage (shown next to it)."""

    def info(self, text: str) -> None:
        """A line for the user."""

    def _begin(self, name: str) -> None: ...

    def _end(self, name: str) -> None: ...


class RichProgress(Progress):
    """One spinner line per stage with elapsed time, then a ✓ line with its duration."""

    def __init__(self, console) -> None:
        super().__init__()
        from rich.progress import Progress as Bar
        from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

        self.console = console
        self.bar = Bar(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                       console=console, transient=True)
        self.task = None
        self.name = ""

    def _begin(self, name: str) -> None:
        self.name = name
        self.bar.start()
        self.task = self.bar.add_task(name)

    def _end(self, name: str) -> None:
        self.bar.remove_task(self.task)
        self.bar.stop()
        self.console.print(f"[green]✓[/green] {name} [dim]{self.timings[name]:.1f}s[/dim]")

    def step(self, text: str) -> None:
        if self.task is not None:
            self.bar.update(self.task, description=f"{self.name}: {text}")

    def info(self, text: str) -> None:
        self.console.print(text)

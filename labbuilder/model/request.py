"""What the user asked of a lab, as parsed by the CLI."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LabRequest:
    """A lab command's shared options."""

    topology: Path
    team: int = 1
    connect: str | None = None
    inventory: Path | None = None
    private: bool | None = None  # None: private libvirtd only if no system libvirtd runs
    memory_scale: float = 1.0
    image_cache: Path | None = None

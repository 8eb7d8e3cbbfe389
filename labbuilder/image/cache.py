"""Where built images live: the cache directory, its `<name>-<recipe hash>/` entries,
reading their manifests, listing them and finding one by name."""

from __future__ import annotations

import datetime
import json
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from labbuilder.model.errors import ImageError, LabError

if TYPE_CHECKING:
    from labbuilder.model.recipe import Recipe

CACHE_ENV = "LABBUILDER_IMAGE_CACHE"


def default_cache_dir() -> Path:
    """$LABBUILDER_IMAGE_CACHE, else ~/.cache/labbuilder/images."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "labbuilder" / "images"


@dataclass(frozen=True)
class BuiltImage:
    name: str
    dir: Path
    manifest: dict
    cached: bool = False

    @property
    def image(self) -> Path:
        return self.dir / self.manifest["image"]["file"]


def entry_dir(cache: Path, recipe: Recipe) -> Path:
    """The cache entry a build of `recipe` goes into: named after the recipe and its hash."""
    return cache / f"{recipe.name}-{recipe.hash()[:12]}"


def cached(cache: Path, recipe: Recipe) -> BuiltImage | None:
    """The complete cache entry of `recipe`, if there is one."""
    return read_entry(entry_dir(cache, recipe))


def read_entry(d: Path) -> BuiltImage | None:
    """The cache entry in `d`: an image only if its manifest reads and its file is there
    with the size the manifest gives."""
    try:
        manifest = json.loads((d / "manifest.json").read_text())
        built = BuiltImage(manifest["name"], d, manifest, cached=True)
        complete = built.image.stat().st_size == manifest["image"]["size"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return built if complete else None


def list_images(cache: Path) -> list[BuiltImage]:
    """Every complete cache entry (read_entry: its image file there, of the manifest's
    size), newest first; never a build's work directory (.build-*), which holds a manifest
    in the moment before it is renamed into place."""
    found = [read_entry(manifest.parent) for manifest in cache.glob("*/manifest.json")
             if not manifest.parent.name.startswith(".")]
    return sorted((b for b in found if b is not None), key=lambda b: b.manifest.get("built_at", ""), reverse=True)


def find_image(cache: Path, name: str) -> BuiltImage:
    """The newest entry whose recipe name or directory name is `name`."""
    for built in list_images(cache):
        if name in (built.name, built.dir.name):
            return built
    known = ", ".join(sorted({b.name for b in list_images(cache)})) or "none"
    raise ImageError(f"no built image named {name!r} in {cache} (built: {known}); "
                     f"build it with: labbuilder image build images/{name}.yaml")


@contextmanager
def work_entry(cache: Path, work_name: str, log_name: str) -> Iterator[tuple[Path, Path]]:
    """An entry in the making: a new work directory `work_name` in `cache` (the caller
    renames it into place once complete; whatever is left of it goes at the end) and a
    log `log_name-<time>.log` under cache/logs, which a LabError raised meanwhile names."""
    work = cache / work_name
    log = cache / "logs" / f"{log_name}-{datetime.datetime.now():%Y%m%d-%H%M%S}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        yield work, log
    except LabError as e:
        if e.log is None:
            e.log = str(log)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)

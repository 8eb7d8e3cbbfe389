"""Image pipeline benchmark: time of each stage of a cold build of images/debian-12.yaml,
then the time of a cached rebuild (the baseline a cache hit is measured against is the
cold build itself).

    .venv/bin/python bench/image_build.py [--recipe images/debian-12.yaml]

Builds into a fresh temporary cache, so the cold figures are real; removes it afterwards.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from labbuilder import reporting
from labbuilder.image import build as image
from labbuilder.model import recipe


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipe", default=str(Path(__file__).resolve().parent.parent / "images" / "debian-12.yaml"))
    args = parser.parse_args()
    rec = recipe.load_recipe(Path(args.recipe))
    cache = Path(tempfile.mkdtemp(prefix="lb-bench-"))
    try:
        p = reporting.Progress()
        t0 = time.monotonic()
        built = image.build(rec, cache, p)
        cold = time.monotonic() - t0
        t0 = time.monotonic()
        image.build(rec, cache, reporting.Progress())
        warm = time.monotonic() - t0
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    print(f"recipe {rec.name} ({rec.hash()[:12]})")
    for stage, seconds in p.timings.items():
        print(f"  {stage:<12} {seconds:8.1f} s")
    m = built.manifest["image"]
    size, virtual = m["size"] / 2**20, m["virtual_size"] / 2**30
    print(f"  {'cold total':<12} {cold:8.1f} s   image {size:.0f} MiB of {virtual:.0f} GiB virtual")
    print(f"  {'cached':<12} {warm:8.3f} s   ({cold / warm:,.0f}x faster than the cold build)")


if __name__ == "__main__":
    main()

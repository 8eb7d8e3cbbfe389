"""What a labbuilder command pays before it does anything: the imports of `down` and of
the other lab commands, next to the imports of bench/floor.py and a bare Python start,
each a new process, on an idle host and while N nodes boot (the condition `down` runs
in, in bench/lifecycle.py). Wall time, and the CPU time the process used: under load it
waits for its share of the CPU in proportion to that.

    .venv/bin/python bench/cli_start.py [--nodes 8] [--repeat 5] [--from-source]

Medians of --repeat runs. Runs against a private libvirtd in its own namespaces and the
cached debian-12 image, like bench/lifecycle.py.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lifecycle import REPO, bench_libvirtd, lb, topology  # noqa: E402

# What each imports before its first libvirt call (virt.observe imports lxml then).
IMPORTS = {"labbuilder down": "import labbuilder.cli, labbuilder.lab.teardown, lxml.etree",
           "labbuilder up": "import labbuilder.cli, labbuilder.lab.pipeline, lxml.etree",
           "floor": "import argparse, concurrent.futures, json, shlex, "
                    "labbuilder.lab.render, labbuilder.lab.seed, labbuilder.system.ssh, labbuilder.system.virt",
           "bare python": "pass"}


def timed(code: str) -> tuple[float, float]:
    """(wall, CPU) seconds of a new Python process running `code`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def medians(repeat: int) -> dict[str, tuple[float, float]]:
    runs = {name: [] for name in IMPORTS}
    order = list(IMPORTS)
    for i in range(repeat):
        for name in order[i % len(order):] + order[:i % len(order)]:  # each goes first in turn
            runs[name].append(timed(IMPORTS[name]))
    return {name: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v))
            for name, v in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--from-source", action="store_true",
                        help="without labbuilder's bytecode (as before `make compile`, PYTHONDONTWRITEBYTECODE set)")
    args = parser.parse_args()
    if args.from_source:
        shutil.rmtree(REPO / "labbuilder" / "__pycache__", ignore_errors=True)
    else:
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "labbuilder")], check=True)
    idle = medians(args.repeat)
    with bench_libvirtd() as (state, _daemon, _conn):
        topo = state / "bench.yaml"
        topo.write_text(yaml.safe_dump(topology(args.nodes)))
        lb(state, "up", str(topo), "--no-wait")
        busy = medians(args.repeat)
        lb(state, "down", str(topo))
    for name in IMPORTS:
        print(f"{name:16} idle {idle[name][0]:.3f}s (CPU {idle[name][1]:.3f}s)   "
              f"while {args.nodes} nodes boot {busy[name][0]:.3f}s (CPU {busy[name][1]:.3f}s)")


if __name__ == "__main__":
    main()

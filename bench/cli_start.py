"""What a labbuilder command pays before it does anything: the imports of `down` and of
the other lab commands, next to the imports of bench/floor.py and a bare Python start,
each a new process, on an idle host and while N nodes boot (the condition `down` runs
in, in bench/lifecycle.py). Wall time, and the CPU time the process used: under load it
waits for its share of the CPU in proportion to that.

    .venv/bin/python bench/cli_start.py [--nodes 8] [--repeat 5] [--from-source]
    .venv/bin/python bench/cli_start.py --idle [--trees DIR DIR …] [--instructions]

Medians of --repeat runs. Runs against a private libvirtd in its own namespaces and the
cached debian-12 image, like bench/lifecycle.py. `--idle` measures only without nodes
(no libvirtd is started, nothing boots). `--trees` compares checkouts (e.g. one made by
`git worktree add` of an older commit): the same imports with PYTHONPATH set to each,
the trees taking turns run by run; their bytecode is compiled first, as `make compile`
does. `--instructions` adds the instructions each import set runs, counted once by
valgrind's callgrind: the same count whatever else the machine does (PYTHONHASHSEED 0).
"""

from __future__ import annotations

import argparse
import os
import re
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


def _env(tree: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(tree)}


def timed(code: str, tree: Path = REPO) -> tuple[float, float]:
    """(wall, CPU) seconds of a new Python process running `code` with `tree`'s labbuilder."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    subprocess.run([sys.executable, "-c", code], cwd=tree, env=_env(tree), check=True)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def instructions(code: str, tree: Path = REPO) -> int:
    """The instructions a new Python process running `code` executes (callgrind)."""
    said = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                           sys.executable, "-c", code], cwd=tree, env={**_env(tree), "PYTHONHASHSEED": "0"},
                          capture_output=True, text=True, check=True).stderr
    return int(re.search(r"Collected : (\d+)", said)[1])


def medians(repeat: int, trees: list[Path]) -> dict[tuple[Path, str], tuple[float, float]]:
    """(tree, import set) → median (wall, CPU); each tree and import set goes first in turn."""
    cases = [(tree, name) for tree in trees for name in IMPORTS]
    runs: dict[tuple[Path, str], list[tuple[float, float]]] = {case: [] for case in cases}
    for i in range(repeat):
        for tree, name in cases[i % len(cases):] + cases[:i % len(cases)]:
            runs[tree, name].append(timed(IMPORTS[name], tree))
    return {case: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v))
            for case, v in runs.items()}


def compile_trees(trees: list[Path], from_source: bool) -> None:
    """Each tree's bytecode compiled first, or (`from_source`) removed and, since the
    measured processes inherit this environment, not written again by the first of them."""
    if from_source:
        os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
    for tree in trees:
        if from_source:
            for cached in (tree / "labbuilder").rglob("__pycache__"):
                shutil.rmtree(cached, ignore_errors=True)
        else:
            subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree / "labbuilder")], check=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--from-source", action="store_true",
                        help="without labbuilder's bytecode (as before `make compile`, PYTHONDONTWRITEBYTECODE set)")
    parser.add_argument("--idle", action="store_true", help="only on an idle host: no libvirtd, no nodes")
    parser.add_argument("--trees", type=Path, nargs="+", default=[REPO], metavar="DIR",
                        help="checkouts to compare, taking turns (default: this one)")
    parser.add_argument("--instructions", action="store_true", help="also count instructions (valgrind)")
    args = parser.parse_args()
    trees = [t.resolve() for t in args.trees]
    compile_trees(trees, args.from_source)
    idle = medians(args.repeat, trees)
    busy = None
    if not args.idle:
        with bench_libvirtd() as (state, _daemon, _conn):
            topo = state / "bench.yaml"
            topo.write_text(yaml.safe_dump(topology(args.nodes)))
            lb(state, "up", str(topo), "--no-wait")
            busy = medians(args.repeat, trees)
            lb(state, "down", str(topo))
    for tree in trees:
        if len(trees) > 1:
            print(tree)
        for name in IMPORTS:
            line = f"{name:16} idle {idle[tree, name][0]:.3f}s (CPU {idle[tree, name][1]:.3f}s)"
            if busy:
                line += f"   while {args.nodes} nodes boot {busy[tree, name][0]:.3f}s (CPU {busy[tree, name][1]:.3f}s)"
            if args.instructions:
                line += f"   {instructions(IMPORTS[name], tree) / 1e6:.1f} M instructions"
            print(line)


if __name__ == "__main__":
    main()

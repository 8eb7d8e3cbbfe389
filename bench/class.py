"""Class benchmark: `labbuilder up --teams 1-N --no-wait` — the teams in parallel, placed
by capacity on a pool of K lab hosts — against its baseline, the same N teams brought up
one after another (`up --team T --no-wait` for T = 1 … N, as an instructor did before
`--teams`); then `status --all-teams` and `down --all-teams`.

    .venv/bin/python bench/class.py [--sizes 1,5,10,20] [--hosts 4] [--repeat 1] [--parallel P]

The teams: topologies/demo.yaml (two nodes, a NAT LAN and an isolated backend) at its
smallest memory (--memory-scale 0.5: 256 MiB a node) with `packages: none`, so no package
cache is started or used. The K lab hosts are private libvirtds in their own namespaces,
listed as the inventory's pool (nothing on the host is touched); the teams spread over
them. "up" is the time until every domain of the N teams runs (`--no-wait` returns then);
the guests go on booting after it and take the CPUs from what follows, as in a class, so
"status" (which probes SSH on every node) and "down" are measured under that load.

Printed per N: both ups (medians of --repeat runs, with their range), their ratio, each
one's ratio to its N = 1 figure, and status and down. The parallel and the one-after-
another runs take turns, the parallel first on even repeats. A first `up --teams 1-K`
uploads the base image to every host (a warm-up, not counted).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from labbuilder import reporting  # noqa: E402
from labbuilder.image import build, cache  # noqa: E402
from labbuilder.lab.teams import default_parallel  # noqa: E402
from labbuilder.model import recipe  # noqa: E402
from labbuilder.system import privatelibvirtd  # noqa: E402


class Class:
    """The bench's state directory, its K private libvirtds and its files."""

    def __init__(self, state: Path, hosts: int, parallel: int | None) -> None:
        self.state, self.parallel = state, parallel
        demo = yaml.safe_load((REPO / "topologies" / "demo.yaml").read_text())
        demo["packages"] = "none"  # `--no-wait` runs no role: the roles need not be beside it
        (state / "demo.yaml").write_text(yaml.safe_dump(demo, sort_keys=False))
        (state / "pool.yaml").write_text(yaml.safe_dump(
            {"pool": {f"host{k}": {"private": f"host{k}"} for k in range(1, hosts + 1)}}, sort_keys=False))
        self.daemons = [privatelibvirtd.start(state / f"host{k}") for k in range(1, hosts + 1)]

    def lb(self, *args: str) -> float:
        """Seconds `labbuilder ARGS` takes on the pool (a failure ends the bench)."""
        argv = [sys.executable, "-m", "labbuilder.cli", args[0], str(self.state / "demo.yaml"), "--hosts",
                str(self.state / "pool.yaml"), "--memory-scale", "0.5", *args[1:]]
        if self.parallel and ("--teams" in args or "--all-teams" in args) and args[0] != "down":
            argv += ["--parallel", str(self.parallel)]
        start = time.monotonic()
        proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True,
                              env={**os.environ, "LABBUILDER_STATE": str(self.state)})
        if proc.returncode:
            raise SystemExit(f"labbuilder {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
        return time.monotonic() - start

    def stop(self) -> None:
        for daemon in self.daemons:
            privatelibvirtd.stop(daemon)


@contextmanager
def lab_hosts(hosts: int, parallel: int | None) -> Iterator[Class]:
    state = Path(tempfile.mkdtemp(prefix="lbclass-"))
    found = None
    try:
        found = Class(state, hosts, parallel)
        yield found
    finally:
        if found is not None:
            found.stop()
        shutil.rmtree(state, ignore_errors=True)


def at_once(lab: Class, n: int) -> tuple[float, float, float]:
    """(up --teams 1-N, status --all-teams, down --all-teams)."""
    up = lab.lb("up", "--teams", f"1-{n}", "--no-wait")
    status = lab.lb("status", "--all-teams")
    return up, status, lab.lb("down", "--all-teams")


def one_after_another(lab: Class, n: int) -> float:
    """N `up --team T` in a row; then the teams are removed (not counted)."""
    start = time.monotonic()
    for team in range(1, n + 1):
        lab.lb("up", "--team", str(team), "--no-wait")
    took = time.monotonic() - start
    lab.lb("down", "--all-teams")
    return took


def spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.1f}s (1 run)"
    return f"{statistics.median(values):.1f}s (median of {len(values)}, {min(values):.1f}–{max(values):.1f})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1,5,10,20", help="class sizes N")
    parser.add_argument("--hosts", type=int, default=4, help="lab hosts K in the pool (private libvirtds)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per size and way (medians)")
    parser.add_argument("--parallel", type=int, default=None,
                        help=f"teams at once per host (labbuilder's default: one per CPU, here {default_parallel()})")
    args = parser.parse_args()
    build.build(recipe.load_recipe(REPO / "images" / "debian-12.yaml"), cache.default_cache_dir(), reporting.Progress())
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "labbuilder")], check=True)
    print(f"{os.cpu_count()} CPUs; {args.hosts} lab hosts (private libvirtds); teams at once per host: "
          f"{args.parallel or default_parallel()}; baseline: the same teams by `up --team T`, one after another",
          flush=True)
    first: dict[str, float] = {}
    with lab_hosts(args.hosts, args.parallel) as lab:
        lab.lb("up", "--teams", f"1-{args.hosts}", "--no-wait")  # warm-up: the base image onto every host
        lab.lb("down", "--all-teams")
        for n in [int(x) for x in args.sizes.split(",")]:
            runs: dict[str, list[float]] = {"parallel": [], "status": [], "down": [], "sequential": []}
            for i in range(args.repeat):
                for way in (("parallel", "sequential") if i % 2 == 0 else ("sequential", "parallel")):
                    if way == "sequential":
                        runs["sequential"].append(one_after_another(lab, n))
                        continue
                    up, status, down = at_once(lab, n)
                    runs["parallel"].append(up)
                    runs["status"].append(status)
                    runs["down"].append(down)
            med = {k: statistics.median(v) for k, v in runs.items()}
            first = first or med
            print(f"N={n}: up --teams 1-{n} {spread(runs['parallel'])} ({med['parallel'] / first['parallel']:.2f}x "
                  f"N={args.sizes.split(',')[0]}); one after another {spread(runs['sequential'])} "
                  f"({med['sequential'] / first['sequential']:.2f}x); one after another / parallel "
                  f"{med['sequential'] / med['parallel']:.2f}; status --all-teams {spread(runs['status'])}; "
                  f"down --all-teams {spread(runs['down'])}", flush=True)


if __name__ == "__main__":
    main()

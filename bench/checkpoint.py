"""Checkpoint benchmark: for N nodes of a minimal topology, how long `labbuilder
checkpoint` takes, and how long `labbuilder reset --to` takes until every node answers
on SSH again (clocks set), next to

  - a plain loop of `virsh snapshot-create-as` (internal snapshot with memory) and of
    `virsh snapshot-revert --running` to the same snapshots as ours, over the same nodes
    one by one (what kcli does), then the same SSH check (with clock set); and
  - a cold reset (`reset --to NAME --cold`: the checkpoint's disks, then a boot).

    .venv/bin/python bench/checkpoint.py [--sizes 1,4,8] [--no-cold] [--settle 0]

The checkpoint is taken --settle seconds after `up` returns (default 0: at once, as a user
would; `checkpoint` itself waits until every node has finished booting); labbuilder's
reset is run three times, the median is compared.

Runs against a private libvirtd it starts in its own namespaces (nothing on the host is
touched) and the cached debian-12 image. Goal: 8 nodes back and answering in <= 15 s.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from labbuilder import reporting  # noqa: E402
from labbuilder.image import build, cache  # noqa: E402
from labbuilder.model import recipe  # noqa: E402
from labbuilder.system import ssh  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
from lifecycle import bench_libvirtd, lb, topology  # noqa: E402


def virsh_snapshots(daemon, n: int) -> float:
    """kcli's checkpoint: an internal snapshot with memory of each domain in turn."""
    start = time.monotonic()
    for i in range(n):
        subprocess.run(["virsh", "-c", daemon.uri, "snapshot-create-as", f"bench-t1-n{i}", "kcli"],
                       check=True, capture_output=True)
    return time.monotonic() - start


def virsh_loop(daemon, key: Path, n: int) -> float:
    """kcli's reset: revert each domain in turn with virsh (to the same snapshots as
    ours, so both resume the same guest state), then wait for SSH on all."""
    start = time.monotonic()
    for i in range(n):
        subprocess.run(["virsh", "-c", daemon.uri, "snapshot-revert", f"bench-t1-n{i}", "bench", "--running"],
                       check=True, capture_output=True)
    with ThreadPoolExecutor(8) as ex:
        list(ex.map(lambda i: ssh.sync_clock(ssh.SshTarget(f"192.168.150.{10 + i}", key,
                                                           prefix=tuple(daemon.nsenter_argv())), 600), range(n)))
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1,4,8")
    parser.add_argument("--no-cold", action="store_true", help="skip the cold reset (a full boot under TCG)")
    parser.add_argument("--settle", type=float, default=0, help="seconds between up and checkpoint")
    args = parser.parse_args()
    build.build(recipe.load_recipe(REPO / "images" / "debian-12.yaml"), cache.default_cache_dir(), reporting.Progress())
    with bench_libvirtd() as (state, daemon, _conn):
        key = state / "bench-t1" / "id_ed25519"
        for n in [int(x) for x in args.sizes.split(",")]:
            topo = state / f"bench{n}.yaml"
            topo.write_text(yaml.safe_dump(topology(n)))
            boot = lb(state, "up", str(topo))
            # As an instructor would take one after a role: with the guests' own post-boot
            # work (cloud-init's last stage, timers) done, not while it still runs.
            time.sleep(args.settle)
            row = {"boot": boot, "checkpoint": lb(state, "checkpoint", str(topo), "--name", "bench")}
            row["reset"] = lb(state, "reset", str(topo), "--to", "bench")
            row["reset2"] = lb(state, "reset", str(topo), "--to", "bench")
            row["virsh_snap"] = virsh_snapshots(daemon, n)
            row["virsh"] = virsh_loop(daemon, key, n)
            row["reset3"] = lb(state, "reset", str(topo), "--to", "bench")
            if not args.no_cold:
                row["cold"] = lb(state, "reset", str(topo), "--to", "bench", "--cold")
            lb(state, "down", str(topo))
            warm = sorted([row["reset"], row["reset2"], row["reset3"]])[1]  # the median
            print(f"N={n}: boot to SSH {row['boot']:.1f}s  checkpoint {row['checkpoint']:.1f}s  "
                  f"reset --to {row['reset']:.1f}s / {row['reset2']:.1f}s / {row['reset3']:.1f}s  "
                  f"virsh snapshot-create-as loop {row['virsh_snap']:.1f}s  "
                  f"virsh snapshot-revert loop {row['virsh']:.1f}s ({row['virsh'] / warm:.2f}x our median)"
                  + (f"  cold reset {row['cold']:.1f}s ({row['cold'] / warm:.1f}x our median)" if "cold" in row else ""),
                  flush=True)
    print("labbuilder's figures are whole CLI runs (Python start, planning, locks) until every node "
          "answers on SSH with its clock set; the virsh loop is timed the same way.")


if __name__ == "__main__":
    main()

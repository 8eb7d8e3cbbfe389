"""Lifecycle benchmark: labbuilder up / all-SSH / reset / down for N nodes of a minimal
topology, next to a plain libvirt-python script doing the same work with threads (the
floor, bench/floor.py), and the ratios. Both run as their own processes, as a user runs
them, so both figures include a Python start; the floor's in-process time is printed
too. "reset" is the cold reset to the base image: destroy, fresh overlays, boot, SSH.

    .venv/bin/python bench/lifecycle.py [--sizes 1,4,8] [--no-ssh] [--repeat 5] [--ssh-repeat 3]

Runs against a private libvirtd it starts in its own namespaces (nothing on the host is
touched) and the cached debian-12 image. "up" is the orchestration time until every
domain runs (`up --no-wait`), "down" until all is removed, medians of --repeat runs;
"ssh" the time from the start of `up` until every node answers on SSH, and "reset",
medians of --ssh-repeat runs. Each figure is printed with the number of runs and their
range; labbuilder and the floor take turns, labbuilder first on even runs and the floor
first on odd ones. The first up's base image upload is a warm-up, not counted.

vagrant-libvirt (Debian's `vagrant` and `vagrant-libvirt`) is measured too if it is
installed and SSH is waited for (`vagrant up` always waits for it): the same guests from
the same image, as a box (`images/debian-12-vagrant.yaml`, output `vagrant`), in the
same private libvirtd (vagrant runs in its namespaces), with no synced folder and no key
swap (`insert_key = false`). Its "up" is the time until all its domains run (watched
through libvirt while `vagrant up` goes on), its "all-SSH" the time `vagrant up` takes,
its "down" `vagrant destroy -f`.

The guests' CPU model is each tool's own choice by default (`--vagrant-cpu default`), as
a user gets it: vagrant-libvirt asks for host-model, which libvirt makes an EPYC-based
model under TCG (AVX2, 5-level paging: slower to emulate); labbuilder's TCG domains name
no model and get QEMU's default, qemu64. `--vagrant-cpu qemu64` gives vagrant's guests
that model too, so that only the orchestration differs.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import libvirt
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from labbuilder import reporting  # noqa: E402
from labbuilder.image import build, cache  # noqa: E402
from labbuilder.lab import render  # noqa: E402
from labbuilder.model import recipe  # noqa: E402
from labbuilder.system import privatelibvirtd, virt  # noqa: E402


def topology(n: int) -> dict:
    return {"lab": "bench", "image": "debian-12",
            "networks": {"lan": {"mode": "nat", "subnet": "192.168.150.0/24", "dhcp": ["192.168.150.100", "192.168.150.250"]}},
            "nodes": {f"n{i}": {"memory": 256, "nics": [{"network": "lan", "ip": f"192.168.150.{10 + i}"}]}
                      for i in range(n)}}


def lb(state: Path, *args: str) -> float:
    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "labbuilder.cli", *args, "--private"], cwd=REPO, check=True,
                   env={**os.environ, "LABBUILDER_STATE": str(state)}, capture_output=True)
    return time.monotonic() - start


@contextmanager
def bench_libvirtd() -> Iterator[tuple[Path, object, object]]:
    """(state directory, private libvirtd, connection) for one bench run; all removed after.
    Like a real host with other work on it, the daemon has one active network that is not
    ours, so `labbuilder down` does not also stop the (then idle) private libvirtd."""
    state = Path(tempfile.mkdtemp(prefix="lbbench-"))
    daemon = privatelibvirtd.start(state / "libvirtd")
    conn = virt.connect(daemon.uri)
    try:
        virt.define_network(conn, "<network><name>bench-keep</name><bridge name='benchkeep0'/></network>")
        yield state, daemon, conn
    finally:
        conn.close()
        privatelibvirtd.stop(daemon)
        shutil.rmtree(state, ignore_errors=True)  # overlays, pools, keys, vagrant's box copy


def floor(action: str, daemon, base, n: int, state: Path, wait_ssh: bool = False) -> tuple[float, float]:
    """bench/floor.py run as its own process: (wall time with its Python start, in-process time)."""
    argv = [sys.executable, str(REPO / "bench" / "floor.py"), action, daemon.uri, str(n), str(state),
            str(base.image), str(base.manifest["image"]["virtual_size"])]
    if wait_ssh:
        argv.append("--ssh")
    argv.append("--ssh-prefix=" + shlex.join(daemon.nsenter_argv()))
    start = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True)
    wall = time.monotonic() - start
    if proc.returncode:
        raise SystemExit(f"bench/floor.py {action} failed:\n{proc.stderr[-3000:]}")
    return wall, json.loads(proc.stdout.splitlines()[-1])["inprocess"]


VAGRANTFILE = """\
Vagrant.configure("2") do |config|
  config.vm.box = "labbuilder/debian-12"
  config.ssh.username = "root"
  config.ssh.insert_key = false
  config.vm.boot_timeout = {boot_timeout}
  {n}.times do |i|
    config.vm.define "v#{{i}}"
  end
  config.vm.provider :libvirt do |lv|
    lv.uri = "qemu:///system"
    lv.driver = "{driver}"
    lv.memory = 256
    lv.cpus = 1
    lv.default_prefix = "vg-"
    lv.storage_pool_name = "vagrant"
    {cpu}
  end
end
"""


def vagrant_installed() -> bool:
    if not shutil.which("vagrant"):
        return False
    out = subprocess.run(["vagrant", "plugin", "list"], capture_output=True, text=True).stdout
    return "vagrant-libvirt" in out


class VagrantFailed(Exception):
    """A vagrant command failed; `reason` is the line of its output that says why."""

    def __init__(self, command: str, output: str) -> None:
        lines = [line.strip() for line in output.splitlines() if line.strip()]
        self.reason = next((line for line in lines if line.startswith("Timed out")), lines[-1] if lines else "")
        super().__init__(f"vagrant {command} failed: {self.reason}\n{output[-3000:]}")


class Vagrant:
    """vagrant + vagrant-libvirt run inside the private libvirtd's namespaces (its
    management network and the guests live there), with its own VAGRANT_HOME."""

    def __init__(self, daemon, state: Path, conn, driver: str, cpu: str, boot_timeout: int):
        self.daemon, self.state, self.conn, self.driver, self.cpu = daemon, state, conn, driver, cpu
        self.boot_timeout = boot_timeout
        self.env = {**os.environ, "VAGRANT_HOME": str(state / "vagrant-home"), "VAGRANT_CHECKPOINT_DISABLE": "1"}
        virt.ensure_pool(conn, "vagrant", render.pool_xml("vagrant", str(state / "vagrant-pool")))
        box = build.build(recipe.load_recipe(REPO / "images" / "debian-12-vagrant.yaml"), cache.default_cache_dir(),
                          reporting.Progress())
        self.run(state, "box", "add", "--force", "--name", "labbuilder/debian-12", str(box.dir / "debian-12-vagrant.box"))

    def run(self, cwd: Path, *args: str) -> None:
        argv = ["nsenter", f"--net={self.daemon.netns}", f"--mount=/proc/{self.daemon.pid}/ns/mnt", "--",
                "vagrant", *args]
        # nsenter --mount starts it in the namespace's root directory: name the project.
        proc = subprocess.run(argv, env={**self.env, "VAGRANT_CWD": str(cwd)}, capture_output=True, text=True)
        if proc.returncode:
            raise VagrantFailed(args[0], proc.stdout + proc.stderr)

    def up(self, n: int) -> tuple[float, float]:
        """(until all n domains run, until `vagrant up` returns: all answer on SSH)."""
        project = self.state / f"vagrant{n}"
        project.mkdir(exist_ok=True)
        # --vagrant-cpu qemu64: the model labbuilder's TCG domains get, not vagrant-libvirt's host-model.
        cpu = f'lv.cpu_mode = "custom"; lv.cpu_model = "{self.cpu}"' if self.cpu != "default" else ""
        (project / "Vagrantfile").write_text(VAGRANTFILE.format(n=n, driver=self.driver, cpu=cpu,
                                                                boot_timeout=self.boot_timeout))
        started: set[str] = set()
        running: list[float] = []

        def on_lifecycle(_conn, dom, event: int, _detail: int, _opaque) -> None:
            if event == libvirt.VIR_DOMAIN_EVENT_STARTED and dom.name().startswith("vg-"):
                started.add(dom.name())
                if len(started) == n:
                    running.append(time.monotonic() - start)

        # libvirt's events (virt.connect runs the event loop), not polling: a poll would
        # take CPU from vagrant and the booting guests.
        start = time.monotonic()
        cb = self.conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, on_lifecycle, None)
        try:
            self.run(project, "up")
        finally:
            self.conn.domainEventDeregisterAny(cb)
        total = time.monotonic() - start
        return (running[0] if running else total), total

    def destroy(self, n: int) -> float:
        start = time.monotonic()
        self.run(self.state / f"vagrant{n}", "destroy", "-f")
        return time.monotonic() - start


def median_pair(pairs: list[tuple[float, float]]) -> tuple[float, float]:
    """The (wall, in-process) pair of the median wall time."""
    return sorted(pairs)[(len(pairs) - 1) // 2]


def in_turn(k: int, ours, theirs) -> None:
    """Run labbuilder's part and the floor's; labbuilder first on even runs, the floor
    first on odd ones, so neither always gets the machine as the other left it."""
    for part in ((ours, theirs) if k % 2 == 0 else (theirs, ours)):
        part()


def measure(n: int, state: Path, daemon, base, wait_ssh: bool, repeat: int, ssh_repeat: int) -> dict:
    """One size: ours and the floor's, every figure a whole process run, `repeat` (up,
    down) and `ssh_repeat` (all-SSH, reset) runs of each, in alternating order. Returns
    {"n": n, "runs": {figure: (our seconds, the floor's (wall, in-process) pairs)}} and
    our medians under each figure's name."""
    topo = state / f"bench{n}.yaml"
    topo.write_text(yaml.safe_dump(topology(n)))
    runs: dict[str, tuple[list, list]] = {k: ([], []) for k in ("up", "down") + (("ssh", "reset") if wait_ssh else ())}

    def ours_orchestration() -> None:
        runs["up"][0].append(lb(state, "up", str(topo), "--no-wait"))
        runs["down"][0].append(lb(state, "down", str(topo)))

    def floor_orchestration() -> None:
        runs["up"][1].append(floor("up", daemon, base, n, state))
        runs["down"][1].append(floor("down", daemon, base, n, state))

    def ours_boot() -> None:
        runs["ssh"][0].append(lb(state, "up", str(topo)))
        runs["reset"][0].append(lb(state, "reset", str(topo)))
        lb(state, "down", str(topo))

    def floor_boot() -> None:
        runs["ssh"][1].append(floor("up", daemon, base, n, state, wait_ssh=True))
        runs["reset"][1].append(floor("reset", daemon, base, n, state))
        floor("down", daemon, base, n, state)

    for k in range(repeat):
        in_turn(k, ours_orchestration, floor_orchestration)
    for k in range(ssh_repeat if wait_ssh else 0):
        in_turn(k, ours_boot, floor_boot)
    return {"n": n, "runs": runs, **{key: statistics.median(ours) for key, (ours, _) in runs.items()}}


def measure_vagrant(vagrant: Vagrant, row: dict) -> None:
    """Vagrant's figures for the size of `row`, added to it; a `vagrant up` that fails (a
    guest not on SSH within its boot_timeout) is a result too, reported with its time."""
    n = row["n"]
    start = time.monotonic()
    try:
        row["vagrant_up"], row["vagrant_ssh"] = vagrant.up(n)
    except VagrantFailed as e:
        row["vagrant_failed"] = (time.monotonic() - start, e.reason)
        try:
            vagrant.destroy(n)  # what it made before it failed
        except VagrantFailed as cleanup:
            print(f"      vagrant destroy after the failed up: {cleanup.reason}", flush=True)
        return
    row["vagrant_down"] = vagrant.destroy(n)


def spread(values: list[float]) -> str:
    """A median with what it is the median of, or a single run said to be one."""
    if len(values) == 1:
        return f"{values[0]:.1f}s (a single run)"
    return f"{statistics.median(values):.1f}s (median of {len(values)}, {min(values):.1f}-{max(values):.1f})"


def report(row: dict) -> None:
    """One line per figure: ours, the floor's (wall; in-process in brackets), the ratio of
    the medians; a ratio from fewer than 3 runs is labelled so."""
    print(f"N={row['n']}:", flush=True)
    for key, (ours, theirs) in row["runs"].items():
        walls = [w for w, _ in theirs]
        inproc = median_pair(theirs)[1]
        single = "  (fewer than 3 runs each: not a median)" if min(len(ours), len(walls)) < 3 else ""
        ratio = statistics.median(ours) / statistics.median(walls)
        name = "all-SSH" if key == "ssh" else key
        print(f"  {name:8} ours {spread(ours)}  floor {spread(walls)} [{inproc:.1f}s]  ratio {ratio:.2f}x{single}",
              flush=True)


def report_vagrant(row: dict) -> None:
    if "vagrant_failed" in row:
        elapsed, reason = row["vagrant_failed"]
        print(f"      vagrant-libvirt, a single run: `vagrant up` failed after {elapsed:.1f}s ({elapsed / row['ssh']:.2f}x "
              f"our all-SSH): {reason}", flush=True)
    else:
        print("      vagrant-libvirt, a single run against our medians: "
              f"up {row['vagrant_up']:.1f}s ({row['vagrant_up'] / row['up']:.2f}x ours)  "
              f"down {row['vagrant_down']:.1f}s ({row['vagrant_down'] / row['down']:.2f}x ours)  "
              f"all-SSH {row['vagrant_ssh']:.1f}s ({row['vagrant_ssh'] / row['ssh']:.2f}x ours)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1,4,8")
    parser.add_argument("--no-ssh", action="store_true", help="skip the (slow, TCG) boot-to-SSH figures")
    parser.add_argument("--repeat", type=int, default=5, help="runs of up/down per size (medians)")
    parser.add_argument("--ssh-repeat", type=int, default=3,
                        help="runs of all-SSH and cold reset per size (medians; each boots N nodes twice; "
                             "below 3 the figures are labelled as single runs or pairs, not medians)")
    parser.add_argument("--no-vagrant", action="store_true", help="leave vagrant-libvirt out even if installed")
    parser.add_argument("--vagrant-cpu", default="default",
                        help="vagrant's guest CPU model: 'default' (vagrant-libvirt's host-model, as a user gets it) "
                             "or a model name such as qemu64 (labbuilder's under TCG)")
    parser.add_argument("--vagrant-boot-timeout", type=int, default=300,
                        help="vagrant's config.vm.boot_timeout in seconds (its own default: 300, which 8 TCG "
                             "guests on 2 cores can pass: `vagrant up` then fails)")
    args = parser.parse_args()
    base = build.build(recipe.load_recipe(REPO / "images" / "debian-12.yaml"), cache.default_cache_dir(),
                       reporting.Progress())
    # Bytecode as an installed package has it (`make compile`): PYTHONDONTWRITEBYTECODE,
    # set on these machines, would make every labbuilder and floor run compile from source.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "labbuilder")], check=True)
    rows = []
    vagrant = None
    with bench_libvirtd() as (state, daemon, conn):
        if args.no_ssh:
            print("vagrant-libvirt: not run (--no-ssh: `vagrant up` always waits for SSH)", flush=True)
        elif args.no_vagrant:
            print("vagrant-libvirt: not run (--no-vagrant)", flush=True)
        elif not vagrant_installed():
            print("vagrant-libvirt: not installed (apt-get install vagrant vagrant-libvirt), not compared", flush=True)
        else:
            from labbuilder.system import accel
            vagrant = Vagrant(daemon, state, conn, accel.detect().domain_type, args.vagrant_cpu,
                              args.vagrant_boot_timeout)
            print(f"vagrant-libvirt guest CPU: {args.vagrant_cpu}, boot_timeout {args.vagrant_boot_timeout}s",
                  flush=True)
            try:
                vagrant.up(1)  # warm-up: uploads the box into its pool, like our first up
            except VagrantFailed as e:
                raise SystemExit(str(e)) from None
            vagrant.destroy(1)
        # Warm-up: the first up uploads the base image to the host's pool; not counted.
        warm = state / "warm.yaml"
        warm.write_text(yaml.safe_dump(topology(1)))
        lb(state, "up", str(warm), "--no-wait")
        lb(state, "down", str(warm))
        for n in [int(x) for x in args.sizes.split(",")]:
            rows.append(measure(n, state, daemon, base, not args.no_ssh, args.repeat, args.ssh_repeat))
            report(rows[-1])  # before vagrant's run, which takes longest and may fail
            if vagrant is not None:
                measure_vagrant(vagrant, rows[-1])
                report_vagrant(rows[-1])
    print("Both labbuilder and the floor run as processes: their figures include a Python start"
          " (the floor's in-process time is in brackets).")


if __name__ == "__main__":
    main()

"""Lifecycle benchmark: labbuilder up / all-SSH / reset / down for N nodes of a minimal
topology, next to a plain libvirt-python script doing the same work with threads (the
floor, bench/floor.py), and the ratios. Both run as their own processes, as a user runs
them, so both figures include a Python start; the floor's in-process time is printed
too. "reset" is the cold reset to the base image: destroy, fresh overlays, boot, SSH.

    .venv/bin/python bench/lifecycle.py [--sizes 1,4,8] [--no-ssh] [--repeat 5] [--ssh-repeat 1]

Runs against a private libvirtd it starts in its own namespaces (nothing on the host is
touched) and the cached debian-12 image. "up" is the orchestration time until every
domain runs (`up --no-wait`), "down" until all is removed, medians of --repeat runs;
"ssh" the time from the start of `up` until every node
answers on SSH, and "reset", medians of --ssh-repeat runs. The first up's base image upload is a warm-up, not counted.

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


def measure(n: int, state: Path, daemon, base, wait_ssh: bool, repeat: int, ssh_repeat: int = 1) -> dict:
    """One size: ours and the floor's; every figure a whole process run."""
    topo = state / f"bench{n}.yaml"
    topo.write_text(yaml.safe_dump(topology(n)))
    # Orchestration figures are short and shaken by the booting guests: medians of `repeat`
    # runs, ours and the floor's taking turns.
    ups, downs, floor_ups, floor_downs = [], [], [], []
    for _ in range(repeat):
        ups.append(lb(state, "up", str(topo), "--no-wait"))
        downs.append(lb(state, "down", str(topo)))
        floor_ups.append(floor("up", daemon, base, n, state))
        floor_downs.append(floor("down", daemon, base, n, state))
    row = {"n": n, "up": statistics.median(ups), "down": statistics.median(downs),
           "floor_up": median_pair(floor_ups), "floor_down": median_pair(floor_downs)}
    if wait_ssh:
        # Boots vary from run to run (one node: 61-82 s to SSH on one machine): medians of
        # `ssh_repeat` runs, ours and the floor's taking turns.
        sshs, resets, floor_sshs, floor_resets = [], [], [], []
        for _ in range(ssh_repeat):
            sshs.append(lb(state, "up", str(topo)))
            resets.append(lb(state, "reset", str(topo)))
            lb(state, "down", str(topo))
            floor_sshs.append(floor("up", daemon, base, n, state, wait_ssh=True))
            floor_resets.append(floor("reset", daemon, base, n, state))
            floor("down", daemon, base, n, state)
        row.update(ssh=statistics.median(sshs), reset=statistics.median(resets),
                   floor_ssh=median_pair(floor_sshs), floor_reset=median_pair(floor_resets))
        if ssh_repeat > 1:  # a median of a few boots: show what it is the median of
            row["runs"] = {"all-SSH": (sshs, [w for w, _ in floor_sshs]),
                           "reset": (resets, [w for w, _ in floor_resets])}
    return row


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


def report(row: dict) -> None:
    def vs(key: str) -> str:
        wall, inproc = row[f"floor_{key}"]
        return f"{key} {row[key]:.1f}s (floor {wall:.1f}s [{inproc:.1f}s], {row[key] / wall:.2f}x)"

    keys = ["up", "down"] + (["ssh", "reset"] if "ssh" in row else [])
    print(f"N={row['n']}: " + "  ".join(vs(k) for k in keys).replace("ssh ", "all-SSH "), flush=True)
    for key, (ours, theirs) in row.get("runs", {}).items():
        print(f"      {key} runs in turn: ours " + " ".join(f"{t:.1f}" for t in ours)
              + "s, floor " + " ".join(f"{t:.1f}" for t in theirs) + "s", flush=True)


def report_vagrant(row: dict) -> None:
    if "vagrant_failed" in row:
        elapsed, reason = row["vagrant_failed"]
        print(f"      vagrant-libvirt: `vagrant up` failed after {elapsed:.1f}s ({elapsed / row['ssh']:.2f}x "
              f"our all-SSH): {reason}", flush=True)
    else:
        print(f"      vagrant-libvirt: up {row['vagrant_up']:.1f}s ({row['vagrant_up'] / row['up']:.2f}x ours)  "
              f"down {row['vagrant_down']:.1f}s ({row['vagrant_down'] / row['down']:.2f}x ours)  "
              f"all-SSH {row['vagrant_ssh']:.1f}s ({row['vagrant_ssh'] / row['ssh']:.2f}x ours)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1,4,8")
    parser.add_argument("--no-ssh", action="store_true", help="skip the (slow, TCG) boot-to-SSH figures")
    parser.add_argument("--repeat", type=int, default=5, help="runs of up/down per size (medians)")
    parser.add_argument("--ssh-repeat", type=int, default=1,
                        help="runs of all-SSH and cold reset per size (medians; each boots N nodes twice)")
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

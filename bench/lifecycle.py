"""Lifecycle benchmark: labbuilder up / all-SSH / reset / down for N nodes of a minimal
topology, next to a plain libvirt-python script doing the same work with threads (the
floor), and the ratios.

    .venv/bin/python bench/lifecycle.py [--sizes 1,4,8] [--no-ssh]

Runs against a private libvirtd it starts in its own namespaces (nothing on the host is
touched) and the cached debian-12 image. "up" is the orchestration time until every
domain runs (`up --no-wait`); "ssh" the time from the start of `up` until every node
answers on SSH. The first up's base image upload is a warm-up, not counted.

vagrant-libvirt (Debian's `vagrant` and `vagrant-libvirt`) is measured too if it is
installed and SSH is waited for (`vagrant up` always waits for it): the same guests from
the same image, as a box (`images/debian-12-vagrant.yaml`, output `vagrant`), in the
same private libvirtd (vagrant runs in its namespaces), with no synced folder and no key
swap (`insert_key = false`). Its "up" is the time until all its domains run (watched
through libvirt while `vagrant up` goes on), its "all-SSH" the time `vagrant up` takes,
its "down" `vagrant destroy -f`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import threading
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from labbuilder import image, privatelibvirtd, progress, recipe, render, seed, ssh, virt  # noqa: E402


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


def floor_up(conn, base, n: int, pool_dir: Path, key: Path, prefix: list[str], wait_ssh: bool) -> tuple[float, float | None]:
    """Plain libvirt-python, threaded: network, overlays, seeds, define + start every
    domain; then (wait_ssh) poll SSH as gently as labbuilder does. Returns (up, all-SSH)."""
    start = time.monotonic()
    pubkey = ssh.ensure_keypair(key)
    macs = {i: f"52:54:00:fe:00:{i:02x}" for i in range(n)}
    virt.define_network(conn, render.render_xml(
        "network.xml.j2", name="floor-lan", owner={"lab": "floor", "team": 1, "network": "lan", "plan": ""},
        mode="nat", bridge="floor0", domain="", gateway="192.168.151.1", prefix=24,
        dhcp_start="192.168.151.100", dhcp_end="192.168.151.250",
        hosts=[{"mac": macs[i], "name": f"f{i}", "ip": f"192.168.151.{10 + i}"} for i in range(n)]))
    pool = virt.ensure_pool(conn, "floor", render.pool_xml("floor", str(pool_dir)))

    def one(i: int) -> None:
        virt.create_volume(pool, render.volume_xml(f"f{i}.qcow2", base.manifest["image"]["virtual_size"],
                                                   "qcow2", str(base.image)))
        iso = seed.seed_iso(seed.Seed(f"floor-{i}", f"f{i}", f"f{i}", (pubkey,),
                                      (seed.SeedNic("eth0", macs[i], dhcp=True),)))
        virt.upload_volume(conn, virt.create_volume(pool, render.volume_xml(f"f{i}.iso", len(iso), "raw")), iso)
        xml = render.render_xml("domain.xml.j2", domain_type="qemu", name=f"floor-{i}",
                                owner={"lab": "floor", "team": 1, "node": str(i), "plan": "", "created": 0},
                                memory_mib=256, vcpus=1, disks=[{"pool": "floor", "volume": f"f{i}.qcow2",
                                                                 "target": "vda", "format": "qcow2", "bus": "virtio"}],
                                seed={"pool": "floor", "volume": f"f{i}.iso"},
                                nics=[{"network": "floor-lan", "mac": macs[i]}],
                                serial_log=f"/var/log/libvirt/qemu/floor-{i}-serial.log")
        virt.start_domain(virt.define_domain(conn, xml))

    with ThreadPoolExecutor(8) as ex:
        list(ex.map(one, range(n)))
    up = time.monotonic() - start
    if not wait_ssh:
        return up, None
    with ThreadPoolExecutor(8) as ex:
        list(ex.map(lambda i: ssh.wait_for_ssh(ssh.SshTarget(f"192.168.151.{10 + i}", key, prefix=tuple(prefix)), 1800),
                    range(n)))
    return up, time.monotonic() - start


def floor_down(conn) -> float:
    start = time.monotonic()
    with ThreadPoolExecutor(8) as ex:
        list(ex.map(lambda o: virt.remove_domain(conn, o.name),
                    [o for o in virt.owned_objects(conn, "floor") if o.kind == "domain"]))
    virt.remove_network(conn, "floor-lan")
    virt.remove_pool(conn, "floor")
    return time.monotonic() - start


VAGRANTFILE = """\
Vagrant.configure("2") do |config|
  config.vm.box = "labbuilder/debian-12"
  config.ssh.username = "root"
  config.ssh.insert_key = false
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


class Vagrant:
    """vagrant + vagrant-libvirt run inside the private libvirtd's namespaces (its
    management network and the guests live there), with its own VAGRANT_HOME."""

    def __init__(self, daemon, state: Path, conn, driver: str):
        self.daemon, self.state, self.conn, self.driver = daemon, state, conn, driver
        self.env = {**os.environ, "VAGRANT_HOME": str(state / "vagrant-home"), "VAGRANT_CHECKPOINT_DISABLE": "1"}
        virt.ensure_pool(conn, "vagrant", render.pool_xml("vagrant", str(state / "vagrant-pool")))
        box = image.build(recipe.load_recipe(REPO / "images" / "debian-12-vagrant.yaml"), image.default_cache_dir(),
                          progress.Progress())
        self.run(state, "box", "add", "--force", "--name", "labbuilder/debian-12", str(box.dir / "debian-12-vagrant.box"))

    def run(self, cwd: Path, *args: str) -> None:
        argv = ["nsenter", f"--net={self.daemon.netns}", f"--mount=/proc/{self.daemon.pid}/ns/mnt", "--",
                "vagrant", *args]
        # nsenter --mount starts it in the namespace's root directory: name the project.
        proc = subprocess.run(argv, env={**self.env, "VAGRANT_CWD": str(cwd)}, capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(f"vagrant {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")

    def up(self, n: int) -> tuple[float, float]:
        """(until all n domains run, until `vagrant up` returns: all answer on SSH)."""
        project = self.state / f"vagrant{n}"
        project.mkdir(exist_ok=True)
        # Under TCG, the CPU model labbuilder's domains get (qemu64), not vagrant-libvirt's host-model.
        cpu = 'lv.cpu_mode = "custom"; lv.cpu_model = "qemu64"' if self.driver == "qemu" else ""
        (project / "Vagrantfile").write_text(VAGRANTFILE.format(n=n, driver=self.driver, cpu=cpu))
        running: list[float] = []
        done = threading.Event()

        def watch(start: float) -> None:
            while not done.is_set():
                active = [d for d in self.conn.listAllDomains(1) if d.name().startswith("vg-")]  # 1: active
                if len(active) >= n:
                    running.append(time.monotonic() - start)
                    return
                time.sleep(0.1)

        start = time.monotonic()
        watcher = threading.Thread(target=watch, args=(start,), daemon=True)
        watcher.start()
        try:
            self.run(project, "up")
        finally:
            done.set()
        total = time.monotonic() - start
        watcher.join()
        return (running[0] if running else total), total

    def destroy(self, n: int) -> float:
        start = time.monotonic()
        self.run(self.state / f"vagrant{n}", "destroy", "-f")
        return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1,4,8")
    parser.add_argument("--no-ssh", action="store_true", help="skip the (slow, TCG) boot-to-SSH figures")
    args = parser.parse_args()
    base = image.build(recipe.load_recipe(REPO / "images" / "debian-12.yaml"), image.default_cache_dir(),
                       progress.Progress())
    state = Path(tempfile.mkdtemp(prefix="lbbench-"))
    daemon = privatelibvirtd.start(state / "libvirtd")
    conn = virt.connect(daemon.uri)
    # Like a real host with other work on it: one active network that is not ours, so
    # `labbuilder down` does not also stop the (then idle) private libvirtd.
    virt.define_network(conn, "<network><name>bench-keep</name><bridge name='benchkeep0'/></network>")
    rows = []
    vagrant = None
    try:
        if args.no_ssh:
            print("vagrant-libvirt: not run (--no-ssh: `vagrant up` always waits for SSH)", flush=True)
        elif not vagrant_installed():
            print("vagrant-libvirt: not installed (apt-get install vagrant vagrant-libvirt), not compared", flush=True)
        else:
            from labbuilder import accel
            vagrant = Vagrant(daemon, state, conn, accel.detect().domain_type)
            vagrant.up(1)  # warm-up: uploads the box into its pool, like our first up
            vagrant.destroy(1)
        # Warm-up: the first up uploads the base image to the host's pool; not counted.
        warm = state / "warm.yaml"
        warm.write_text(yaml.safe_dump(topology(1)))
        lb(state, "up", str(warm), "--no-wait")
        lb(state, "down", str(warm))
        for n in [int(x) for x in args.sizes.split(",")]:
            topo = state / f"bench{n}.yaml"
            topo.write_text(yaml.safe_dump(topology(n)))
            row = {"n": n, "up": lb(state, "up", str(topo), "--no-wait")}
            row["down"] = lb(state, "down", str(topo))
            if not args.no_ssh:
                row["ssh"] = lb(state, "up", str(topo))
                row["reset"] = lb(state, "reset", str(topo))
                lb(state, "down", str(topo))
            pool_dir = state / f"floor{n}"
            row["floor_up"], floor_ssh = floor_up(conn, base, n, pool_dir, state / "floor-key",
                                                  daemon.nsenter_argv(), not args.no_ssh)
            if floor_ssh is not None:
                row["floor_ssh"] = floor_ssh
            row["floor_down"] = floor_down(conn)
            if vagrant is not None:
                row["vagrant_up"], row["vagrant_ssh"] = vagrant.up(n)
                row["vagrant_down"] = vagrant.destroy(n)
            rows.append(row)
            print(f"N={n}: up {row['up']:.1f}s (floor {row['floor_up']:.1f}s, {row['up'] / row['floor_up']:.2f}x)  "
                  f"down {row['down']:.1f}s (floor {row['floor_down']:.1f}s, {row['down'] / row['floor_down']:.2f}x)"
                  + (f"  all-SSH {row['ssh']:.1f}s (floor {row['floor_ssh']:.1f}s, {row['ssh'] / row['floor_ssh']:.2f}x)"
                     f"  reset {row['reset']:.1f}s" if "ssh" in row else ""),
                  flush=True)
            if "vagrant_up" in row:
                print(f"      vagrant-libvirt: up {row['vagrant_up']:.1f}s ({row['vagrant_up'] / row['up']:.2f}x ours)  "
                      f"down {row['vagrant_down']:.1f}s ({row['vagrant_down'] / row['down']:.2f}x ours)  "
                      f"all-SSH {row['vagrant_ssh']:.1f}s ({row['vagrant_ssh'] / row['ssh']:.2f}x ours)", flush=True)
    finally:
        conn.close()
        privatelibvirtd.stop(daemon)
    print("labbuilder's figures include the CLI's own start (Python, imports, planning);"
          " the floor is in-process.")


if __name__ == "__main__":
    main()

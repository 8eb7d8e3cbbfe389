"""`make acceptance`: a course lab for one team, as an instructor runs it, on this machine
(a private libvirtd, TCG where KVM does not work). Not in CI: Debian 12's OpenStack on
these guests takes far longer than CI's budget on two cores.

    .venv/bin/python bench/acceptance.py [--lab gridka|diablo-aio|rdo-course] [--team 1] [--keep]

Steps, each timed: build the images (cached), `up --checkpoints --check` (every role, each
role's checks right after it: `labbuilder check`'s checks, so a second full `check`, 24
minutes here, would prove nothing new), `image upload debian-12` into the lab's Glance, an
instance of it on a compute node with a volume, and a floating IP where the lab has a
public network (bench/acceptance_instance.py), `reset --to after-auth`, `check --role
auth`, then `down` (unless --keep). Prints each role's time as `up` reported it, and
exits non-zero at the first step that fails.

gridka (default): the 8-node GridKa course. diablo-aio: every service on one node.
rdo-course: four nodes on libvirt's stock `default` network, which this script defines
in the private libvirtd (as a stock Debian host has it) when it is missing there, and
removes again at the end if it defined it.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from labbuilder.lab.hosts import state_root
from labbuilder.system import privatelibvirtd

REPO = Path(__file__).resolve().parent.parent
STOCK_DEFAULT = "/usr/share/libvirt/networks/default.xml"


@dataclass(frozen=True)
class Lab:
    topology: str
    controller: str  # where the instance step runs (admin-openrc, the openstack client)
    volume: str  # the node that runs cinder-volume
    computes: tuple[str, ...]
    public: bool  # a public network: a router's gateway and a floating IP for the instance
    stock_default: bool = False  # joins libvirt's stock `default` network


LABS = {
    "gridka": Lab("topologies/gridka.yaml", "auth-node", "volume-node", ("compute-1", "compute-2"), public=True),
    "diablo-aio": Lab("topologies/diablo-aio.yaml", "aio", "aio", ("aio",), public=False),
    "rdo-course": Lab("topologies/rdo-course.yaml", "node1", "node2", ("node3", "node4"), public=False,
                      stock_default=True),
}
INSTANCE = REPO / "bench" / "acceptance_instance.py"
ROLE_TIME = re.compile(r"✓ (role \S+|checks of role \S+) on .*? ([0-9.]+)s")


def step(name: str, *args: str, stdin: str | None = None) -> str:
    start = time.monotonic()
    said: list[str] = []
    with subprocess.Popen([sys.executable, "-m", "labbuilder.cli", *args], cwd=REPO, text=True,
                          stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
        if stdin is not None:
            proc.stdin.write(stdin)
            proc.stdin.close()
        for line in proc.stdout:  # the command's own progress, as it comes, for whoever watches the log
            said.append(line)
            print(f"{'':6} {'':8}  | {line}", end="", flush=True)
    took = time.monotonic() - start
    print(f"{'ok' if proc.returncode == 0 else 'FAILED':6} {took:8.1f} s  {name}", flush=True)
    if proc.returncode != 0:
        raise SystemExit(1)
    return "".join(said)


def diagnose(lab: Lab, team: list[str]) -> None:
    """What the instance step's failure needs read next: the server's and the volume's state
    as the cloud sees them, and the logs of the services that attach a volume."""
    commands = [
        (lab.controller, ". /root/admin-openrc; openstack server show lab-vm -c status -c fault "
                         "-c OS-EXT-SRV-ATTR:host; openstack server event list lab-vm; "
                         "openstack volume show lab-vol -c status -c attachments"),
        (lab.volume, "tail -n 40 /var/log/cinder/cinder-volume.log; tgtadm --mode target --op show | head -40"),
        *((node, "tail -n 60 /var/log/nova/nova-compute.log; iscsiadm -m session || true") for node in lab.computes),
    ]
    for node, command in commands:
        print(f"--- {node}: {command}", flush=True)
        subprocess.run([sys.executable, "-m", "labbuilder.cli", "ssh", lab.topology, *team, node, "--",
                        "bash", "-c", command], cwd=REPO, stdin=subprocess.DEVNULL, check=False)


def private_daemon() -> privatelibvirtd.PrivateDaemon | None:
    """The private libvirtd `labbuilder --private` uses (the first `up` starts it), or None."""
    return privatelibvirtd.attach(state_root() / "libvirtd")


def private_virsh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["virsh", "-c", private_daemon().uri, *args], capture_output=True, text=True, check=check,
                          timeout=120)


def remove_stock_default() -> None:
    """Undo stock_default_network(); stop the private libvirtd when nothing else is left in it
    (`down` leaves it running while the network is there)."""
    private_virsh("net-destroy", "default", check=False)
    private_virsh("net-undefine", "default", check=False)
    left = private_virsh("list", "--all", "--name").stdout.split() + private_virsh("net-list", "--all", "--name").stdout.split()
    if not left:
        privatelibvirtd.stop(private_daemon())


def stock_default_network(team: list[str], lab: Lab) -> bool:
    """libvirt's stock `default` network in the private libvirtd, defined and started as on
    a stock Debian host when it is missing (started when it is only defined, as the private
    libvirtd has the host's definitions without their autostart); True when this defined
    it. The first `up` starts the daemon and stops at the network before it changes anything."""
    first = subprocess.run([sys.executable, "-m", "labbuilder.cli", "up", lab.topology, *team, "--no-config"],
                           cwd=REPO, capture_output=True, text=True)
    if first.returncode == 0:
        return False  # the network was there: up brought the lab up already
    if "networks.default.existing: network 'default'" not in first.stderr:  # missing, or defined and not active
        print(first.stdout + first.stderr, end="", flush=True)
        raise SystemExit(1)
    if private_virsh("net-info", "default", check=False).returncode == 0:
        private_virsh("net-start", "default", check=False)
        return False
    private_virsh("net-define", STOCK_DEFAULT)
    private_virsh("net-start", "default")
    return True


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lab", choices=sorted(LABS), default="gridka")
    parser.add_argument("--team", default="1")
    parser.add_argument("--keep", action="store_true", help="leave the lab up at the end")
    args = parser.parse_args()
    lab, team = LABS[args.lab], ["--team", args.team, "--private"]
    start = time.monotonic()
    for recipe in ("debian-12", "gridka-openstack"):  # the image uploaded into Glance, and the labs' nodes'
        step(f"image build {recipe}", "image", "build", f"images/{recipe}.yaml")
    made_default = False
    try:
        if lab.stock_default:
            made_default = stock_default_network(team, lab)
        said = step("up --checkpoints --check", "up", lab.topology, *team, "--checkpoints", "--check")
        for what, seconds in ROLE_TIME.findall(said):
            print(f"{'':6} {float(seconds):8.1f} s    {what}")
        step("image upload debian-12", "image", "upload", "debian-12", lab.topology, *team, "--as", "debian-12")
        try:
            step(f"instance: boot, volume{', floating IP' if lab.public else ''}", "ssh", lab.topology, *team,
                 lab.controller, "--", "python3", "-", "/root/admin-openrc", "debian-12",
                 "public" if lab.public else "no-public", stdin=INSTANCE.read_text())
        except SystemExit:
            diagnose(lab, team)
            raise
        step("reset --to after-auth", "reset", lab.topology, *team, "--to", "after-auth")
        step("check --role auth", "check", lab.topology, *team, "--role", "auth")
    finally:
        if not args.keep:
            step("down", "down", lab.topology, *team)
            if made_default:
                remove_stock_default()
    print(f"acceptance of {args.lab} passed in {time.monotonic() - start:.0f} s")


if __name__ == "__main__":
    main()

"""`make acceptance`: the whole GridKa course for one team, as an instructor runs it, on
this machine (a private libvirtd, TCG where KVM does not work). Not in CI: 8 nodes and
Debian 12's OpenStack take far longer than CI's budget on two cores.

    .venv/bin/python bench/acceptance.py [--team 1] [--keep]

Steps, each timed: build the images (cached), `up --checkpoints --check` (every role, each
role's checks after it), `check`, `image upload debian-12` into the lab's Glance, an
instance of it on a compute node with a volume and a floating IP
(bench/acceptance_instance.sh), `reset --to after-auth`, `check --role auth`, then `down`
(unless --keep). Prints each role's time as `up` reported it, and exits non-zero at the
first step that fails.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TOPOLOGY = "topologies/gridka.yaml"
INSTANCE = REPO / "bench" / "acceptance_instance.sh"
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


# What the instance step's failure needs read next: the server's and the volume's state
# as the cloud sees them, and the logs of the services that attach a volume.
DIAGNOSE = {
    "auth-node": ". /root/admin-openrc; openstack server show lab-vm -c status -c fault "
                 "-c OS-EXT-SRV-ATTR:host; openstack server event list lab-vm; "
                 "openstack volume show lab-vol -c status -c attachments",
    "volume-node": "tail -n 40 /var/log/cinder/cinder-volume.log; tgtadm --mode target --op show | head -40",
    **dict.fromkeys(("compute-1", "compute-2"), "tail -n 60 /var/log/nova/nova-compute.log; iscsiadm -m session || true"),
}


def diagnose(team: list[str]) -> None:
    for node, command in DIAGNOSE.items():
        print(f"--- {node}: {command}", flush=True)
        subprocess.run([sys.executable, "-m", "labbuilder.cli", "ssh", TOPOLOGY, *team, node, "--",
                        "bash", "-c", command], cwd=REPO, stdin=subprocess.DEVNULL, check=False)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--team", default="1")
    parser.add_argument("--keep", action="store_true", help="leave the lab up at the end")
    args = parser.parse_args()
    team = ["--team", args.team, "--private"]
    start = time.monotonic()
    for recipe in ("debian-12", "gridka-base", "gridka-openstack"):
        step(f"image build {recipe}", "image", "build", f"images/{recipe}.yaml")
    try:
        said = step("up --checkpoints --check", "up", TOPOLOGY, *team, "--checkpoints", "--check")
        for what, seconds in ROLE_TIME.findall(said):
            print(f"{'':6} {float(seconds):8.1f} s    {what}")
        step("check", "check", TOPOLOGY, *team)
        step("image upload debian-12", "image", "upload", "debian-12", TOPOLOGY, *team, "--as", "debian-12")
        try:
            step("instance: boot, volume, floating IP", "ssh", TOPOLOGY, *team, "auth-node", "--",
                 "bash", "-s", "debian-12", stdin=INSTANCE.read_text())
        except SystemExit:
            diagnose(team)
            raise
        step("reset --to after-auth", "reset", TOPOLOGY, *team, "--to", "after-auth")
        step("check --role auth", "check", TOPOLOGY, *team, "--role", "auth")
    finally:
        if not args.keep:
            step("down", "down", TOPOLOGY, *team)
    print(f"acceptance passed in {time.monotonic() - start:.0f} s")


if __name__ == "__main__":
    main()

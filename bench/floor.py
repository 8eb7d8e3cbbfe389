"""The floor of bench/lifecycle.py: a plain libvirt-python script, threaded, doing the
work `labbuilder up`, `down` and `reset` do for N nodes, with no validation, planning,
locking or state. Run as its own process, like the CLI it is compared with, so both
figures include a Python start; it prints its own in-process time too.

    python bench/floor.py up|down|reset URI N STATE BASE_IMAGE VIRTUAL_SIZE [--ssh] [--ssh-prefix 'ARGV']

up: network with static DHCP hosts, pool, overlays and seeds, define + start every
domain (and with --ssh wait until every node answers on SSH). down: every domain, the
network and the pool removed. reset: destroy every domain, fresh overlays from the base
image, start, wait for SSH.

Fair to labbuilder where it does the same work: its domains have the domain type
labbuilder's accelerator probe gives (kvm, or qemu under TCG), and it waits as `up`
does, through the same function (labbuilder.lab.wait.wait_guest: boot events, leases
every 10 s until the guest agent connects and every 2 s after, then SSH every 2 s), from
the same point (every domain started).
Prints one JSON line: {"inprocess": seconds after the imports}.
"""

from __future__ import annotations

import time

_t0 = time.monotonic()

import argparse  # noqa: E402
import json  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from labbuilder.lab import render, seed  # noqa: E402
from labbuilder.lab.wait import wait_guest  # noqa: E402
from labbuilder.system import accel, ssh, virt  # noqa: E402
from labbuilder.system.connections import parallel  # noqa: E402

NET = "192.168.151"


def mac(i: int) -> str:
    return f"52:54:00:fe:00:{i:02x}"


_local = threading.local()
_opened: list = []  # every thread's connection, closed at the end


def thread_conn(uri: str):
    """A connection per thread, as labbuilder does: libvirtd serves at most 5 calls of
    one connection at once by default, so 8 threads sharing one would wait on each other."""
    if not hasattr(_local, "conn"):
        _local.conn = virt.connect(uri)
        _opened.append(_local.conn)
    return _local.conn


def overlay(pool, args, i: int):
    return virt.create_volume(pool, render.volume_xml(f"f{i}.qcow2", args.virtual_size, "qcow2", args.base))


def ip(i: int) -> str:
    return f"{NET}.{10 + i}"


def define_one(args, pubkey: str, domain_type: str, i: int) -> None:
    conn = thread_conn(args.uri)
    pool = conn.storagePoolLookupByName("floor")
    overlay(pool, args, i)
    iso = seed.seed_iso(seed.NodeIdentity(f"floor-{i}", f"f{i}", f"f{i}", (pubkey,),
                                  (seed.SeedNic("eth0", mac(i), dhcp=True),)))
    virt.upload_volume(conn, virt.create_volume(pool, render.volume_xml(f"f{i}.iso", len(iso), "raw")), iso)
    xml = render.render_xml("domain.xml.j2", domain_type=domain_type, name=f"floor-{i}",
                            entries=[],
                            owner={"lab": "floor", "team": 1, "host": None, "node": str(i), "plan": "", "created": 0},
                            memory_mib=256, vcpus=1, disks=[{"pool": "floor", "volume": f"f{i}.qcow2",
                                                             "target": "vda", "format": "qcow2", "bus": "virtio"}],
                            seed={"pool": "floor", "volume": f"f{i}.iso"},
                            nics=[{"network": "floor-lan", "mac": mac(i)}],
                            serial_log=f"/var/log/libvirt/qemu/floor-{i}-serial.log")
    virt.start_domain(virt.define_domain(conn, xml))


def up(conn, args) -> None:
    pubkey = ssh.ensure_keypair(args.state / "floor-key")
    virt.define_network(conn, render.render_xml(
        "network.xml.j2", name="floor-lan", owner={"lab": "floor", "team": 1, "network": "lan", "host": None, "plan": ""},
        mode="nat", bridge="floor0", domain="", gateway=f"{NET}.1", prefix=24,
        dhcp_start=f"{NET}.100", dhcp_end=f"{NET}.250",
        hosts=[{"mac": mac(i), "name": f"f{i}", "ip": ip(i)} for i in range(args.n)]))
    virt.ensure_pool(conn, "floor", render.pool_xml("floor", str(args.state / "floor-pool")))
    domain_type = accel.detect().domain_type  # as labbuilder's `up` chooses it
    with ThreadPoolExecutor(8) as ex:
        list(ex.map(lambda i: define_one(args, pubkey, domain_type, i), range(args.n)))


def wait_ssh(args) -> None:
    """Every node answering on SSH, waited for as labbuilder's `up` waits."""
    key = args.state / "floor-key"

    def one(i: int) -> None:
        conn = thread_conn(args.uri)

        def leased() -> str | None:
            return ip(i) if virt.network_leases(conn, "floor-lan").get(mac(i)) == ip(i) else None

        wait_guest(conn, f"floor-{i}", leased, lambda a: ssh.SshTarget(a, key, prefix=tuple(args.ssh_prefix)),
                   1800, lambda: f"floor-{i}: no lease within 1800s")

    parallel([lambda i=i: one(i) for i in range(args.n)])  # labbuilder's own: up to 8 threads


def domains(conn) -> list[str]:
    return [o.name for o in virt.owned_objects(conn, "floor") if o.kind == "domain"]


def down(conn, args) -> None:
    with ThreadPoolExecutor(8) as ex:
        list(ex.map(lambda name: virt.remove_domain(thread_conn(args.uri), name), domains(conn)))
        # With the domains gone, the network and the pool at once, as labbuilder does.
        list(ex.map(lambda remove: remove(thread_conn(args.uri)),
                    [lambda c: virt.remove_network(c, "floor-lan"), lambda c: virt.remove_pool(c, "floor")]))


def reset(conn, args) -> None:
    def one(i: int) -> None:
        conn = thread_conn(args.uri)
        pool = conn.storagePoolLookupByName("floor")
        dom = conn.lookupByName(f"floor-{i}")
        if dom.isActive():
            dom.destroy()
        pool.storageVolLookupByName(f"f{i}.qcow2").delete()
        overlay(pool, args, i)
        dom.create()

    with ThreadPoolExecutor(8) as ex:
        list(ex.map(one, range(args.n)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("action", choices=("up", "down", "reset"))
    parser.add_argument("uri")
    parser.add_argument("n", type=int)
    parser.add_argument("state", type=Path)
    parser.add_argument("base")
    parser.add_argument("virtual_size", type=int)
    parser.add_argument("--ssh", action="store_true")
    parser.add_argument("--ssh-prefix", type=shlex.split, default=[], help="one string, e.g. 'nsenter --net=X --'")
    args = parser.parse_args()
    start = time.monotonic()
    conn = virt.connect(args.uri)
    {"up": up, "down": down, "reset": reset}[args.action](conn, args)
    if args.ssh or args.action == "reset":
        wait_ssh(args)
    for c in [conn, *_opened]:
        c.close()
    print(json.dumps({"inprocess": time.monotonic() - start, "imports": start - _t0}))


if __name__ == "__main__":
    main()

"""Run on a node of a course lab (bench/acceptance.py feeds it to `labbuilder ssh … python3 -`):
the course's first instance, through openstacksdk in one Python process (the `openstack`
client takes about a minute to start on a TCG guest, and this step needs some fifty
calls). A flavor, a tenant network routed to the public network, the uploaded image
booted on a compute node until ACTIVE and its console shows the guest's kernel (nested
TCG: the guest need not finish booting), a 1 GiB volume attached, and a floating IP.
Idempotent: a second run reuses what the first made.

    python3 - OPENRC IMAGE public|no-public

OPENRC: the admin credentials file (`export OS_…=…` lines), IMAGE: the image's name in
Glance, `no-public` where the lab has no public network (no router gateway, no floating IP).
"""

from __future__ import annotations

import os
import shlex
import sys
import time

import openstack

FLAVOR, NETWORK, SUBNET, ROUTER, SERVER, VOLUME = "lab.small", "lab-net", "lab-subnet", "lab-router", "lab-vm", "lab-vol"
KERNEL_SAYS = ("Linux version", "Booting the kernel")


def say(text: str) -> None:
    print(text, flush=True)


def load_openrc(path: str) -> dict[str, str]:
    env = {}
    for line in open(path, encoding="utf-8"):
        words = shlex.split(line, comments=True)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            key, value = words[1].split("=", 1)
            env[key] = value
    return env


def wait(what: str, seconds: int, probe, interval: float = 5):
    """probe() until it returns something true; its last answer is shown on timeout. (A
    server's or volume's status: openstacksdk's own wait_for_server / wait_for_status.)"""
    deadline, last = time.monotonic() + seconds, None
    while time.monotonic() < deadline:
        found, last = probe()
        if found:
            return found
        time.sleep(interval)
    sys.exit(f"{what}: not after {seconds} s (last seen: {last})")


def main() -> None:
    openrc, image_name, public = sys.argv[1], sys.argv[2], (sys.argv[3] if len(sys.argv) > 3 else "public")
    os.environ.update(load_openrc(openrc))
    conn = openstack.connect()

    image = conn.image.find_image(image_name, ignore_missing=False)
    ram = max(image.min_ram or 0, 256)  # nova refuses less memory than the image's min_ram
    flavor = conn.compute.find_flavor(FLAVOR)
    if flavor is not None and flavor.ram != ram:
        server = conn.compute.find_server(SERVER)
        if server is not None:
            conn.compute.delete_server(server)
            conn.compute.wait_for_delete(server, wait=600)
        conn.compute.delete_flavor(flavor)
        flavor = None
    flavor = flavor or conn.compute.create_flavor(name=FLAVOR, ram=ram, vcpus=1, disk=4)

    net = conn.network.find_network(NETWORK) or conn.network.create_network(name=NETWORK)
    subnet = conn.network.find_subnet(SUBNET) or conn.network.create_subnet(
        name=SUBNET, network_id=net.id, ip_version=4, cidr="192.168.50.0/24")
    if public == "public" and conn.network.find_router(ROUTER) is None:
        outside = conn.network.find_network("public", ignore_missing=False)
        router = conn.network.create_router(name=ROUTER, external_gateway_info={"network_id": outside.id})
        conn.network.add_interface_to_router(router, subnet.id)  # subnet_id= until openstacksdk 1.0, subnet= since
    say(f"network {NETWORK}: {subnet.cidr}{', routed to public' if public == 'public' else ''}")

    server = conn.compute.find_server(SERVER) or conn.compute.create_server(
        name=SERVER, flavor_id=flavor.id, image_id=image.id, networks=[{"uuid": net.id}])
    server = conn.compute.wait_for_server(server, status="ACTIVE", failures=["ERROR"], interval=5, wait=3600)
    say(f"server {SERVER}: ACTIVE on {server.compute_host}")
    console = wait("the guest's kernel on the console", 1200, lambda: (
        next((line for line in (conn.compute.get_server_console_output(server)["output"] or "").splitlines()
              if any(s in line for s in KERNEL_SAYS)), None), "no kernel line yet"), interval=10)
    say(f"console: {console.strip()}")

    volume = conn.block_storage.find_volume(VOLUME) or conn.block_storage.create_volume(name=VOLUME, size=1)
    if conn.block_storage.get_volume(volume.id).status != "in-use":
        volume = conn.block_storage.wait_for_status(volume, "available", failures=["error"], interval=5, wait=600)
        conn.attach_volume(server, volume, wait=False)
    conn.block_storage.wait_for_status(volume, "in-use", failures=["error", "error_attaching"], interval=5, wait=600)
    say(f"volume {VOLUME}: in-use")

    if public != "public":
        return
    port = next(conn.network.ports(device_id=server.id))
    fip = next(conn.network.ips(port_id=port.id), None)
    if fip is None:
        outside = conn.network.find_network("public", ignore_missing=False)
        fip = conn.network.create_ip(floating_network_id=outside.id, port_id=port.id)
    address = fip.floating_ip_address
    def addresses():
        found = conn.compute.get_server(server.id).addresses
        return address in str(found), found
    wait(f"floating IP {address} in {SERVER}'s addresses", 600, addresses)
    say(f"floating IP: {address}")


if __name__ == "__main__":
    main()

"""The GridKa course's cloud core on a real guest (topologies/gridka-cloud.yaml: db, auth
and image roles on one node, on the gridka-openstack image, through the package cache):
every role's checks pass after it (keystone issues a token, glance lists images), and a
built image goes into that Glance with checksums that match its manifest.

CI (`make test`) runs the lab's `up --check` and the upload of a built image; the tests
marked `cloud` (a second `check`, an upload through openstacksdk) only `make acceptance`,
which runs the whole file."""

from __future__ import annotations

import json

import pytest
from conftest import REPO, lb

from labbuilder.system import virt

pytestmark = [pytest.mark.vm, pytest.mark.image]
TOPO = REPO / "topologies" / "gridka-cloud.yaml"
TEAM = "33"


@pytest.fixture(scope="module")
def cloud(private_libvirtd, gridka_openstack_image, base_image):
    conn = virt.connect(private_libvirtd.uri)  # a network labbuilder does not own keeps the daemon
    virt.define_network(conn, "<network><name>keep-cloud</name><bridge name='keepcl0'/></network>")
    up = lb("up", TOPO, "--team", TEAM, "--check", check=False)
    yield up
    lb("down", TOPO, "--team", TEAM, check=False)
    virt.remove_network(conn, "keep-cloud")
    conn.close()


def test_up_runs_every_role_and_its_checks(cloud):
    assert cloud.returncode == 0, cloud.stdout + cloud.stderr
    said = cloud.stderr + cloud.stdout
    assert "ran common, db, auth, image" in said
    # --check: each role's checks ran after it (auth's: `openstack token issue`, the catalog)
    assert all(f"checks of role {role} on controller" in said for role in ("db", "auth", "image")), said


@pytest.mark.cloud
def test_check_says_keystone_and_glance_work(cloud):
    results = json.loads(lb("check", TOPO, "--team", TEAM, "--json").stdout)
    assert all(r["passed"] for r in results), results
    ran = {(r["role"], r["check"]) for r in results}
    assert {("auth", "10-token.sh"), ("auth", "20-catalog.sh"), ("image", "10-images.sh"),
            ("db", "10-databases.sh")} <= ran


def test_a_built_image_goes_into_glance_with_matching_checksums(cloud, base_image):
    done = json.loads(lb("image", "upload", "debian-12", TOPO, "--team", TEAM, "--as", "debian-12-test",
                         "--json").stdout)
    image = base_image.manifest["image"]
    assert (done["checksum"], done["os_hash_algo"], done["os_hash_value"]) == (image["md5"], "sha256", image["sha256"])
    # `labbuilder ssh` joins the words after -- into one remote shell command, as ssh does
    listed = lb("ssh", TOPO, "controller", "--team", TEAM, "--",
                ". /root/admin-openrc && openstack image show debian-12-test -f json").stdout
    shown = json.loads(listed)
    assert shown["status"] == "active" and shown["disk_format"] == "qcow2"
    assert shown["min_ram"] == base_image.manifest["glance"]["min_ram"]


@pytest.mark.cloud
def test_a_built_image_goes_into_any_cloud_through_openstacksdk(cloud, base_image, private_libvirtd, tmp_path):
    """`image upload --os-cloud`: the lab's cloud as any cloud of a clouds.yaml, reached
    from inside the private libvirtd's network namespace (where its address routes);
    Glance's endpoint given by address, as the catalog names it by the node's hostname."""
    import os
    import subprocess
    import sys

    import yaml

    status = json.loads(lb("status", TOPO, "--team", TEAM, "--json").stdout)
    address = status["nodes"][0]["addresses"]["eth0"]
    password = yaml.safe_load(TOPO.read_text())["vars"]["admin_password"]
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text(yaml.safe_dump({"clouds": {"lab": {
        "auth": {"auth_url": f"http://{address}:5000/v3", "username": "admin", "password": password,
                 "project_name": "admin", "user_domain_name": "Default", "project_domain_name": "Default"},
        "region_name": "RegionOne", "identity_api_version": 3,
        "image_endpoint_override": f"http://{address}:9292"}}}))
    proc = subprocess.run([*private_libvirtd.nsenter_argv(), sys.executable, "-m", "labbuilder.cli", "image",
                           "upload", "debian-12", "--os-cloud", "lab", "--as", "debian-12-sdk", "--json"],
                          cwd=REPO, env={**os.environ, "OS_CLIENT_CONFIG_FILE": str(clouds)},
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    done = json.loads(proc.stdout)
    image = base_image.manifest["image"]
    assert (done["checksum"], done["os_hash_algo"], done["os_hash_value"]) == (image["md5"], "sha256", image["sha256"])
    shown = json.loads(lb("ssh", TOPO, "controller", "--team", TEAM, "--",
                          ". /root/admin-openrc && openstack image show debian-12-sdk -f json").stdout)
    assert shown["status"] == "active" and shown["id"] == done["id"]
    assert shown["min_ram"] == base_image.manifest["glance"]["min_ram"]

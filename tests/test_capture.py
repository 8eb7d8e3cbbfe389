"""`image capture` on a real guest: node alpha of a one-node copy of the demo lab,
marked, refused while it runs, shut down and captured; a new lab boots the captured
image with the mark and an identity of its own."""

from __future__ import annotations

import json
import shutil
import time

import pytest
import yaml
from conftest import REPO, lb

from labbuilder.image import cache as image_cache
from labbuilder.system import virt

pytestmark = [pytest.mark.vm, pytest.mark.image]

NAME = "test-capture-alpha"


def _one_node(path, image="debian-12"):
    data = yaml.safe_load((REPO / "topologies" / "demo.yaml").read_text())
    data["nodes"] = {"alpha": data["nodes"]["alpha"]}
    data["image"] = image
    data.pop("roles", None)
    path.write_text(yaml.safe_dump(data))
    return path


def _run(topo, team, command):
    return lb("ssh", topo, "--team", team, "alpha", "--", command).stdout.strip()


@pytest.fixture(scope="module")
def captured(tmp_path_factory, private_libvirtd, base_image):
    """Team 32 of the one-node lab up and marked; `image capture` refused while alpha runs,
    then alpha shut down and captured. Yields (topology, its machine-id, the refusal, the
    capture's JSON); removes the lab and the image."""
    root = tmp_path_factory.mktemp("capture")
    topo = _one_node(root / "demo.yaml")
    conn = virt.connect(private_libvirtd.uri)  # a network labbuilder does not own keeps the daemon
    virt.define_network(conn, "<network><name>keep-capture</name><bridge name='keepcap0'/></network>")
    try:
        lb("up", topo, "--team", "32", "--no-config")
        _run(topo, 32, "echo captured-mark > /etc/labbuilder-mark")
        machine_id = _run(topo, 32, "cat /etc/machine-id")
        refused = lb("image", "capture", topo, "alpha", "--team", "32", "--name", NAME, check=False)
        lb("ssh", topo, "--team", "32", "alpha", "--", "systemctl poweroff", check=False)
        deadline = time.monotonic() + 300
        while virt.domain_state(conn, "demo-t32-alpha") != "shut off":
            assert time.monotonic() < deadline, "alpha did not shut down"
            time.sleep(2)
        made = json.loads(lb("image", "capture", topo, "alpha", "--team", "32", "--name", NAME, "--json").stdout)
        yield topo, machine_id, refused, made
    finally:
        lb("down", topo, "--team", "32", check=False)
        for built in image_cache.list_images(image_cache.default_cache_dir()):
            if built.name == NAME:
                shutil.rmtree(built.dir)
        virt.remove_network(conn, "keep-capture")
        conn.close()


def test_a_running_node_is_refused_in_one_line_and_nothing_is_made(captured):
    _, _, refused, made = captured
    assert refused.returncode != 0 and refused.stdout == ""
    assert refused.stderr.splitlines() == [
        "error: demo team 32 node alpha is running: capture reads a shut-off node's disk, or a checkpoint's "
        "(--checkpoint NAME); shut it down first (labbuilder ssh TOPOLOGY alpha --team 32 -- poweroff)"]


def test_the_capture_is_a_compressed_qcow2_with_a_manifest_for_glance(captured):
    _, _, _, made = captured
    m = made["manifest"]
    assert (m["name"], m["extends"], m["recipe_hash"]) == (NAME, "debian-12", None)
    assert m["captured"]["node"] == "alpha" and m["captured"]["team"] == 32
    assert m["image"]["format"] == "qcow2" and m["image"]["size"] < m["image"]["virtual_size"] / 4
    g = m["glance"]
    assert (g["disk_format"], g["container_format"], g["os_hash_value"], g["checksum"]) == (
        "qcow2", "bare", m["image"]["sha256"], m["image"]["md5"])
    info = json.loads(lb("image", "info", NAME, "--json").stdout)
    assert info["qemu_img_info"]["format"] == "qcow2" and "backing-filename" not in info["qemu_img_info"]


def test_a_new_lab_boots_the_captured_image_with_the_mark_and_its_own_identity(captured, tmp_path):
    topo, machine_id, _, _ = captured
    again = _one_node(tmp_path / "demo.yaml", image=NAME)
    try:
        lb("up", again, "--team", "33", "--no-config")
        # SSH reaching it at all: team 33's key, which cloud-init installed from its own seed
        # (sysprep removed team 32's with the .ssh directories and cloud-init's record).
        assert _run(again, 33, "cat /etc/labbuilder-mark") == "captured-mark"
        assert _run(again, 33, "cat /etc/machine-id") not in ("", machine_id)
    finally:
        lb("down", again, "--team", "33", check=False)

"""`image capture` on a real guest: node alpha of a one-node copy of the demo lab,
marked, checkpointed, marked again; captured at the checkpoint while it runs, refused
without one, shut down and captured; a new lab boots the capture with the second mark
and an identity of its own, and the checkpoint's capture holds the first."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest
import yaml
from conftest import REPO, lb

from labbuilder.image import cache as image_cache
from labbuilder.system import accel, virt

pytestmark = [pytest.mark.vm, pytest.mark.image]

NAME = "test-capture-alpha"
AT_CHECKPOINT = "test-capture-alpha-c1"


def _one_node(path, image="debian-12"):
    data = yaml.safe_load((REPO / "topologies" / "demo.yaml").read_text())
    data["nodes"] = {"alpha": {k: v for k, v in data["nodes"]["alpha"].items() if k != "roles"}}
    data["image"] = image
    data.pop("roles", None)
    data.pop("role_dir", None)
    data["packages"] = "none"  # no package cache: the guests install nothing
    path.write_text(yaml.safe_dump(data))
    return path


def _run(topo, team, command):
    return lb("ssh", topo, "--team", team, "alpha", "--", command).stdout.strip()


@pytest.fixture(scope="module")
def captured(tmp_path_factory, private_libvirtd, base_image):
    """Team 32 of the one-node lab up, marked "one", checkpointed as c1, marked "two";
    captured at c1 while it runs; `image capture` without a checkpoint refused; alpha shut
    down and captured. Yields what each step gave; removes the lab and the images."""
    root = tmp_path_factory.mktemp("capture")
    topo = _one_node(root / "demo.yaml")
    conn = virt.connect(private_libvirtd.uri)  # a network labbuilder does not own keeps the daemon
    virt.define_network(conn, "<network><name>keep-capture</name><bridge name='keepcap0'/></network>")
    try:
        lb("up", topo, "--team", "32", "--no-config")
        _run(topo, 32, "echo one > /etc/labbuilder-mark && sync")
        lb("checkpoint", topo, "--team", "32", "--name", "c1")
        _run(topo, 32, "echo two > /etc/labbuilder-mark && sync")
        machine_id = _run(topo, 32, "cat /etc/machine-id")
        at_c1 = json.loads(lb("image", "capture", topo, "alpha", "--team", "32", "--name", AT_CHECKPOINT,
                              "--checkpoint", "c1", "--json").stdout)
        refused = lb("image", "capture", topo, "alpha", "--team", "32", "--name", NAME, check=False)
        cache = image_cache.default_cache_dir()
        after_refusal = sorted(p.name for p in cache.iterdir() if NAME in p.name and AT_CHECKPOINT not in p.name)
        lb("ssh", topo, "--team", "32", "alpha", "--", "systemctl poweroff", check=False)
        deadline = time.monotonic() + 300
        while virt.domain_state(conn, "demo-t32-alpha") != "shut off":
            assert time.monotonic() < deadline, "alpha did not shut down"
            time.sleep(2)
        made = json.loads(lb("image", "capture", topo, "alpha", "--team", "32", "--name", NAME, "--json").stdout)
        yield {"topology": topo, "machine_id": machine_id, "refused": refused, "after_refusal": after_refusal,
               "made": made, "at_c1": at_c1}
    finally:
        lb("down", topo, "--team", "32", check=False)
        for built in image_cache.list_images(image_cache.default_cache_dir()):
            if built.name in (NAME, AT_CHECKPOINT):
                shutil.rmtree(built.dir)
        for lock in image_cache.default_cache_dir().glob(".lock-capture-test-capture-*"):
            lock.unlink()
        virt.remove_network(conn, "keep-capture")
        conn.close()


def test_a_running_node_is_refused_in_one_line_and_nothing_is_made(captured):
    refused = captured["refused"]
    assert refused.returncode != 0 and refused.stdout == ""
    assert captured["after_refusal"] == []  # no entry, work directory, lock or log
    # Before it: where the lab lives, as every lab command says; then the error, in one line.
    assert refused.stderr.splitlines()[-1] == (
        "error: demo team 32 node alpha is running: capture reads a shut-off node's disk, or a checkpoint's "
        "(--checkpoint NAME); shut it down first (labbuilder ssh TOPOLOGY alpha --team 32 -- poweroff)")
    assert [line for line in refused.stderr.splitlines() if "error" in line] == refused.stderr.splitlines()[-1:]


def test_the_capture_is_a_compressed_qcow2_with_a_manifest_for_glance(captured):
    m = captured["made"]["manifest"]
    assert (m["name"], m["extends"], m["recipe_hash"]) == (NAME, "debian-12", None)
    assert m["captured"]["node"] == "alpha" and m["captured"]["team"] == 32
    assert m["image"]["format"] == "qcow2" and m["image"]["size"] < m["image"]["virtual_size"] / 4
    g = m["glance"]
    assert (g["disk_format"], g["container_format"], g["os_hash_value"], g["checksum"]) == (
        "qcow2", "bare", m["image"]["sha256"], m["image"]["md5"])
    info = json.loads(subprocess.run([sys.executable, "-m", "labbuilder.cli", "image", "info", NAME, "--json"],
                                     cwd=REPO, capture_output=True, text=True, check=True, timeout=120).stdout)
    assert info["qemu_img_info"]["format"] == "qcow2" and "backing-filename" not in info["qemu_img_info"]


def test_a_new_lab_boots_the_captured_image_with_the_mark_and_its_own_identity(captured, tmp_path):
    machine_id = captured["machine_id"]
    again = _one_node(tmp_path / "demo.yaml", image=NAME)
    try:
        lb("up", again, "--team", "33", "--no-config")
        # SSH reaching it at all: team 33's key, which cloud-init installed from its own seed
        # (sysprep removed team 32's with the .ssh directories and cloud-init's record).
        assert _run(again, 33, "cat /etc/labbuilder-mark") == "two"
        assert _run(again, 33, "cat /etc/machine-id") not in ("", machine_id)
    finally:
        lb("down", again, "--team", "33", check=False)


def test_a_checkpoints_capture_holds_the_node_as_it_was_then(captured):
    """Read with libguestfs (virt-cat): the file as it was at checkpoint c1, though the
    node wrote it again before it was captured."""
    at_c1 = captured["at_c1"]
    assert at_c1["manifest"]["captured"]["checkpoint"] == "c1"
    proc = subprocess.run(["virt-cat", "-a", at_c1["path"], "/etc/labbuilder-mark"], capture_output=True, text=True,
                          env={**os.environ, "LIBGUESTFS_BACKEND": "direct",
                               **accel.detect().guestfs_env()}, timeout=600)
    assert (proc.returncode, proc.stdout) == (0, "one\n"), proc.stderr

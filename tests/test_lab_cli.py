"""The lab commands as a user runs them (`python -m labbuilder.cli`): `plan` changes nothing
(where no libvirtd runs it plans against the private one `up` would start, without
starting it); `down` and `status` need no built image and `down` loads only what removing
needs (libvirt's test driver, a host of the test's own)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO, fake_image_entry


# plan needs the built image; accelerator detection (a local host) may boot the host kernel in QEMU
@pytest.mark.image
@pytest.mark.vm
def test_plan_without_a_running_libvirtd_starts_nothing(tmp_path, base_image):
    state = tmp_path / "state"
    env = {**os.environ, "LABBUILDER_STATE": str(state)}
    proc = subprocess.run([sys.executable, "-m", "labbuilder.cli", "plan", "topologies/demo.yaml", "--private",
                           "--json"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    actions = {(a["verb"], a["kind"], a["name"]) for a in json.loads(proc.stdout)["actions"]}
    assert ("create", "domain", "demo-t1-alpha") in actions and ("create", "pool", "demo-t1-pool") in actions
    assert "not started yet" in proc.stderr
    assert not state.exists(), "plan created labbuilder state (a private libvirtd?)"
    # A team that is not up is a state, not an error (as `vagrant status` says "not created").
    proc = subprocess.run([sys.executable, "-m", "labbuilder.cli", "status", "topologies/demo.yaml", "--private"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert [line.split("│")[3].strip() for line in proc.stdout.splitlines() if "│ alpha" in line or "│ beta" in line] \
        == ["not created", "not created"], proc.stdout
    assert not state.exists(), "status created labbuilder state"


@pytest.mark.subprocess(sys.executable)
def test_down_and_status_work_without_the_base_image_in_the_cache(tmp_path, test_host):
    """Only up and reset to the base need the image: a cleared cache, or another machine
    with just the topology, can still see and remove a lab (test driver: nothing there)."""
    import shutil

    env = {**os.environ, "LABBUILDER_STATE": str(tmp_path / "state")}
    empty = tmp_path / "empty-cache"
    empty.mkdir()
    project = tmp_path / "course"  # the topology without the project's images/ recipes
    (project / "topologies").mkdir(parents=True)
    shutil.copy(REPO / "topologies" / "demo.yaml", project / "topologies")
    shutil.copytree(REPO / "topologies" / "roles", project / "topologies" / "roles")

    def lb(*args):
        return subprocess.run([sys.executable, "-m", "labbuilder.cli", *args, "topologies/demo.yaml",
                               "--connect", test_host, "--cache", str(empty)],
                              cwd=project, env=env, capture_output=True, text=True, timeout=120)

    down = lb("down")
    assert down.returncode == 0 and "Nothing to remove." in down.stdout, down.stderr
    status = lb("status", "--json")
    assert status.returncode == 0, status.stderr
    assert {n["node"]: n["state"] for n in json.loads(status.stdout)["nodes"]} == {
        "alpha": "absent", "beta": "absent"}
    up = lb("up")
    assert up.returncode == 2 and "base image 'debian-12' is not built" in up.stderr


@pytest.mark.subprocess(sys.executable)
def test_down_imports_only_what_removing_needs(tmp_path, test_host):
    """`down` runs while the lab's guests take every CPU: it plans, renders and reaches
    no guest, so it loads none of the modules that do (and no rich), nor the image
    commands, what starts a package cache, the class runner or the socket module."""
    code = ("import sys\nfrom labbuilder.cli import main\n"
            f"try:\n    main(['down', 'topologies/demo.yaml', '--connect', {test_host!r}])\n"
            "except SystemExit as e:\n    assert not e.code, e.code\n"
            "print(' '.join(sorted(sys.modules)))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "LABBUILDER_STATE": str(tmp_path)}, check=True)
    said, modules = proc.stdout.rstrip().rsplit("\n", 1)
    assert said == "Nothing to remove.", proc.stdout
    loaded = set(modules.split())
    assert "labbuilder.lab.teardown" in loaded
    assert loaded & {"labbuilder.lab.pipeline", "labbuilder.lab.plan", "labbuilder.lab.apply",
                     "labbuilder.lab.diff", "labbuilder.lab.wait",
                     "labbuilder.lab.render", "labbuilder.system.ssh", "labbuilder.lab.seed",
                     "labbuilder.system.accel", "labbuilder.system.hostnet",
                     "jinja2", "rich", "concurrent.futures", "labbuilder.cli.image",
                     "labbuilder.system.aptcache", "labbuilder.lab.teams", "socket"} == set()


@pytest.mark.subprocess(sys.executable)
def test_class_commands_take_team_ranges_and_refuse_bad_ones(tmp_path, test_host):
    """--teams and --all-teams as an instructor types them (test driver: no lab there)."""
    env = {**os.environ, "LABBUILDER_STATE": str(tmp_path / "state")}

    def lb(*args):
        return subprocess.run([sys.executable, "-m", "labbuilder.cli", args[0], "topologies/demo.yaml",
                               "--connect", test_host, *args[1:]],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=120)

    status = lb("status", "--teams", "1-2,5", "--json")
    assert status.returncode == 0, status.stderr
    teams = json.loads(status.stdout)
    assert [(t["team"], t["ok"], t["result"]["running"], t["result"]["nodes"]) for t in teams] == \
        [(1, True, 0, 2), (2, True, 0, 2), (5, True, 0, 2)]
    assert all(f"✓ team {t}" in status.stderr for t in (1, 2, 5)), status.stderr
    for args, says in [(("--teams", "0-3"), "teams run from 1 to 99"), (("--teams", "4-2"), "backwards"),
                       (("--teams", "1", "--all-teams"), "exclude each other")]:
        proc = lb("status", *args)
        assert proc.returncode == 2 and says in proc.stderr, (args, proc.stderr)
    none = lb("status", "--all-teams", "--json")  # no team is a state, not an error
    assert none.returncode == 0 and json.loads(none.stdout) == [] and "No team of" in none.stderr, none.stderr
    none = lb("reset", "--all-teams")
    assert none.returncode == 1 and "no team of" in none.stderr, none.stderr
    inventory = lb("inventory", "--teams", "1-2")
    assert inventory.returncode == 0, inventory.stderr
    for team in (1, 2):
        config = tmp_path / "state" / f"demo-t{team}" / "ssh_config"
        assert f"demo-t{team}" in inventory.stdout and oct(config.stat().st_mode & 0o777) == "0o600"
    down = lb("down", "--teams", "1-3")
    assert down.returncode == 0, down.stderr
    assert [line.split("│")[1].strip() for line in down.stdout.splitlines() if line.startswith("│")] == \
        ["1", "2", "3"]


@pytest.mark.subprocess(sys.executable)
def test_plan_lists_an_image_it_would_build_from_its_recipe(tmp_path, test_host):
    """A fresh machine: the cache is empty, the recipe is in the project's images/. `plan`
    says `up` builds it first instead of failing; without a recipe it names what is missing."""
    import shutil

    project = tmp_path / "course"
    (project / "topologies").mkdir(parents=True)
    shutil.copy(REPO / "topologies" / "demo.yaml", project / "topologies")
    shutil.copytree(REPO / "topologies" / "roles", project / "topologies" / "roles")
    env = {**os.environ, "LABBUILDER_STATE": str(tmp_path / "state")}

    def plan():
        return subprocess.run([sys.executable, "-m", "labbuilder.cli", "plan", "topologies/demo.yaml", "--connect",
                               test_host, "--cache", str(tmp_path / "cache"), "--json"],
                              cwd=project, env=env, capture_output=True, text=True, timeout=120)

    missing = plan()
    assert missing.returncode == 2 and "base image 'debian-12' is not built" in missing.stderr
    assert "no recipe images/debian-12.yaml" in missing.stderr
    (project / "images").mkdir()
    shutil.copy(REPO / "images" / "debian-12.yaml", project / "images")
    planned = plan()
    assert planned.returncode == 0, planned.stderr
    data = json.loads(planned.stdout)
    assert data["images_to_build"] == {"debian-12": "images/debian-12.yaml"}  # as typed from here
    assert ("upload", "image", "debian-12") in {(a["verb"], a["kind"], a["name"]) for a in data["actions"]}
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())  # plan built nothing


def _rdo_on_its_own_network() -> str:
    """rdo-course with its fixed MACs, on a network of the lab's own (per team) instead of
    the host's `default`."""
    return (REPO / "topologies" / "rdo-course.yaml").read_text().replace("192.168.122.", "192.168.123.").replace(
        "    existing: default\n", "    mode: nat\n    subnet: 192.168.123.0/24\n    dhcp: [192.168.123.2, 192.168.123.99]\n")


@pytest.mark.subprocess(sys.executable)
def test_a_class_of_a_lab_with_fixed_macs_on_one_host_is_refused_before_any_change(tmp_path, test_host):
    """rdo-course's MACs are the course's own: two teams on one host would clash halfway
    (here on a network of the lab's own, per team, instead of the host's `default`)."""
    topo = tmp_path / "rdo.yaml"
    topo.write_text(_rdo_on_its_own_network())
    # Its image as if built: `up` finds the images before it checks the class, and on a
    # machine that never built gridka-openstack would refuse for that instead.
    fake_image_entry(tmp_path / "cache", "gridka-openstack")
    env = {**os.environ, "LABBUILDER_STATE": str(tmp_path / "state"), "LABBUILDER_IMAGE_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "labbuilder.cli", "up", str(topo), "--connect", test_host,
                           "--teams", "1-2", "--no-wait"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "nodes.node1.nics.0.mac: fixed MACs allow one team per host" in proc.stderr
    status = subprocess.run([sys.executable, "-m", "labbuilder.cli", "status", str(topo), "--connect", test_host,
                             "--teams", "1-2", "--json"], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=120)
    assert [t["result"]["running"] for t in json.loads(status.stdout)] == [0, 0]  # nothing was made


@pytest.mark.subprocess(sys.executable)
def test_a_refused_class_is_refused_before_its_image_is_built(tmp_path, test_host):
    """A fresh machine, the recipes beside the topology: `up` of a class that cannot run
    (fixed MACs, two teams on one host) says so at once, instead of building
    gridka-openstack for minutes first and refusing after."""
    import shutil

    project = tmp_path / "course"
    (project / "topologies").mkdir(parents=True)
    shutil.copytree(REPO / "images", project / "images")
    (project / "topologies" / "rdo.yaml").write_text(_rdo_on_its_own_network())
    shutil.copytree(REPO / "topologies" / "roles", project / "topologies" / "roles")
    cache = tmp_path / "cache"
    env = {**os.environ, "LABBUILDER_STATE": str(tmp_path / "state"), "LABBUILDER_IMAGE_CACHE": str(cache)}
    proc = subprocess.run([sys.executable, "-m", "labbuilder.cli", "up", "topologies/rdo.yaml", "--connect", test_host,
                           "--teams", "1-2", "--no-wait"], cwd=project, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "nodes.node1.nics.0.mac: fixed MACs allow one team per host" in proc.stderr
    assert "building it" not in proc.stderr + proc.stdout
    assert not cache.exists() or not any(cache.iterdir())  # no build began

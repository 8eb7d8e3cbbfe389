"""Hostile and mistyped inputs (issue 17): the bounded YAML reader, per-team overlaps for
every pair of teams, the libvirt URIs and private directories labbuilder accepts, the
quote filter of step templates, mmdebstrap's argument order, and every hostile file in
tests/data through the CLI: exit 2, one line per problem, no traceback, nothing run.
(Their exact messages are golden files: test_topology, test_recipe, test_hosts.)"""

from __future__ import annotations

import shlex
import subprocess
import sys
import tracemalloc
from ipaddress import IPv4Network
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from conftest import REPO, fake_image_entry

from labbuilder.cli import main
from labbuilder.lab import config_stage
from labbuilder.model import yamlnodes
from labbuilder.model.errors import HostError, InputError, Problem, TopologyError
from labbuilder.model.names import MAX_TEAM
from labbuilder.model.topology import load_topology
from labbuilder.model.uri import uri_problem
from labbuilder.model.yamlread import load_with_marks
from labbuilder.system import privatelibvirtd

DATA = Path("tests/data")


def _load(tmp_path, text: str | bytes):
    path = tmp_path / "input.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return load_with_marks(path)


def _problems(tmp_path, text: str | bytes) -> list[str]:
    with pytest.raises(InputError) as e:
        _load(tmp_path, text)
    return [line.replace(str(tmp_path / "input.yaml"), "F") for line in e.value.lines()]


# ---------------------------------------------------------------------------- the reader

def _bomb(levels: int) -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_stops_at_the_bound_before_anything_is_expanded(tmp_path):
    tracemalloc.start()
    try:
        problems = _problems(tmp_path, _bomb(9))  # 10^9 values if expanded
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert problems == [f"F:6: a5.0: more than {yamlnodes.MAX_NODES} values, each alias counted as what it repeats "
                        "(hint: aliases multiply what their anchors hold; a lab needs far fewer values)"]
    assert peak < 20 << 20  # bytes: the nodes of a 700-byte file, never its expansion


def test_aliases_under_the_bound_are_expanded(tmp_path):
    data, marks = _load(tmp_path, _bomb(4))  # 7381 values
    assert len(data["a3"]) == 9 and data["a3"][8][8][8] == ["lol"] * 9
    assert marks[("a3", 8, 8, 8)] == 1  # a repeated value is marked where it is written: its anchor


def test_nesting_up_to_the_bound_is_read_and_one_more_level_is_refused(tmp_path):
    deep = yamlnodes.MAX_DEPTH - 1  # the top-level mapping is one level
    data, _ = _load(tmp_path, "a: " + "[" * deep + "]" * deep + "\n")
    assert data["a"] == eval("[" * deep + "]" * deep)
    assert _problems(tmp_path, "a: " + "[" * (deep + 1) + "]" * (deep + 1) + "\n") == [
        f"F:1: a.0.0.0.0.…: nested more than {yamlnodes.MAX_DEPTH} deep"]
    assert _problems(tmp_path, "a: " + "[" * 1000 + "]" * 1000 + "\n")[0].endswith(
        f"nested more than {yamlnodes.MAX_DEPTH} deep")


def test_aliases_cannot_nest_values_past_the_bound(tmp_path):
    chain = "a0: &a0 [1]\n" + "".join(f"a{i}: &a{i} [*a{i - 1}]\n" for i in range(1, 60))
    assert _problems(tmp_path, chain) == [f"F:50: a49.0: alias *a48 nests values more than {yamlnodes.MAX_DEPTH} deep"]


MERGES = [
    "base: &b {x: 1, y: 2}\nnode:\n  <<: *b\n  y: 3\n",
    "one: &o {x: 1, y: 1}\ntwo: &t {x: 2, z: 2}\nnode:\n  <<: [*o, *t]\n  w: 0\n",
    "one: &o {x: 1}\ntwo: &t {<<: *o, y: 2}\nnode: {<<: *t, z: 3}\n",
    "node:\n  <<: {x: 1, y: 1}\n  x: 2\n",
    "a: &x {b: 1, c: [1, 2]}\nd: *x\ne:\n  <<: *x\n  b: 2\n",
]


@pytest.mark.parametrize("text", MERGES)
def test_merge_keys_give_what_pyyaml_gives(tmp_path, text):
    data, marks = _load(tmp_path, text)
    assert data == yaml.safe_load(text)
    assert list(data) == list(yaml.safe_load(text))  # and in its order


def test_a_merged_key_is_marked_where_it_is_written_and_an_override_where_it_is(tmp_path):
    _, marks = _load(tmp_path, "base: &b\n  x: 1\n  y: 2\nnode:\n  <<: *b\n  y: 3\n")
    assert marks[("node", "x")] == 2 and marks[("node", "y")] == 6
    assert marks.duplicates == []  # overriding a merged key is not a repeat


def test_tags_non_scalar_keys_and_self_aliases_are_refused_all_at_once(tmp_path):
    text = "a: !!python/object/apply:os.system ['true']\nb: !local x\n? [k]\n: 1\nc: &c [*c]\n"
    assert _problems(tmp_path, text) == [
        "F:1: a: YAML tag !!python/object/apply:os.system is not allowed "
        "(hint: labbuilder reads plain YAML: remove the tag (quote a value to make it a string))",
        "F:2: b: YAML tag !local is not allowed "
        "(hint: labbuilder reads plain YAML: remove the tag (quote a value to make it a string))",
        "F:3: a mapping key must be a plain value, not a list",
        "F:5: c.0: alias *c inside its own anchor (hint: an alias repeats a value defined earlier in the file)"]


def test_anchors_twice_and_aliases_before_their_anchor_are_refused(tmp_path):
    assert _problems(tmp_path, "a: &x 1\nb: &x 2\nc: *y\n") == [
        "F:2: b: anchor &x is defined twice (first at line 1) (hint: give each anchor its own name)",
        "F:3: c: alias *y with no anchor &y before it (hint: an alias repeats a value defined earlier in the file)"]


def test_what_yaml_1_1_cannot_construct_stays_text(tmp_path):
    data, _ = _load(tmp_path, f"d: 2024-02-30\ne: 2024-02-28\nn: {'9' * 5000}\nv: =\n")
    assert data == {"d": "2024-02-30", "e": "2024-02-28", "n": "9" * 5000, "v": "="}


@pytest.mark.parametrize("text, problem", [
    (b"a: caf\xe9\n", "F:1: not UTF-8 text (byte 0xe9 at offset 6) (hint: save the file as UTF-8)"),
    (b"\xff\xfea\x00:\x00", "F:1: not UTF-8 text (byte 0xff at offset 0) (hint: save the file as UTF-8)"),
    (b"a: 1\nb: x\x00y\n", "F:2: a NUL byte at column 5 (hint: YAML holds text only: tab, newline and printable characters)"),
    (b"a: \x1b[31m\n", "F:1: control character U+001B at column 4 "
                       "(hint: YAML holds text only: tab, newline and printable characters)"),
    (b'a: "x\\ey"\n', "F:1: a: control character U+001B in a value "
                      "(hint: values are text: tab and newline are the only control characters they may hold)"),
    (b'a: "x\\0y"\n', "F:1: a: control character U+0000 in a value "
                      "(hint: values are text: tab and newline are the only control characters they may hold)"),
])
def test_bytes_that_are_not_yaml_text_are_refused_with_line_and_offset(tmp_path, text, problem):
    assert _problems(tmp_path, text) == [problem]


def test_a_file_over_the_size_bound_is_refused_unread(tmp_path):
    big = b"# " + b"x" * yamlnodes.MAX_FILE_BYTES + b"\n"
    assert _problems(tmp_path, big) == [
        f"F: larger than {yamlnodes.MAX_FILE_BYTES >> 10} KiB (hint: a topology, host inventory or recipe is a few KiB of YAML)"]


def test_a_problem_prints_control_characters_escaped():
    line = str(Problem("t.yaml", 3, "nodes.'a\\n'", "'a\n' is not a valid node name\x1b]0;x\x07", "h\x9bi"))
    assert line == "t.yaml:3: nodes.'a\\n': 'a\\x0a' is not a valid node name\\x1b]0;x\\x07 (hint: h\\x9bi)"


# ---------------------------------------------------------------------------- per-team overlaps

OVERLAPS = [  # (subnet, per_team) of two networks
    (("10.0.0.0/24", True), ("10.0.1.0/24", False)),  # team 2's first is the second
    (("10.0.0.0/24", True), ("10.0.99.0/24", False)),  # clear: teams 1-99 end at 10.0.98.255
    (("10.0.0.0/24", True), ("10.0.98.0/24", True)),  # team 99's first is team 1's second
    (("10.1.0.0/25", True), ("10.1.2.0/23", True)),  # team 5's small lands in team 1's big
    (("10.2.0.0/24", True), ("10.3.0.0/24", True)),  # clear
    (("10.4.0.0/24", False), ("10.4.0.0/25", False)),  # team 1 already
    (("192.168.0.0/24", True), ("192.168.200.0/24", False)),  # clear
    (("172.16.0.0/20", True), ("172.17.0.0/24", True)),  # team 17's first holds the second
]


def _topology(tmp_path, a, b) -> Path:
    path = tmp_path / "two.yaml"
    path.write_text(f"lab: t\nimage: debian-12\nnetworks:\n"
                    f"  a: {{mode: isolated, subnet: {a[0]}, per_team: {str(a[1]).lower()}}}\n"
                    f"  b: {{mode: isolated, subnet: {b[0]}, per_team: {str(b[1]).lower()}}}\n"
                    "nodes:\n  n: {memory: 256, nics: [{network: a, configure: false}]}\n")
    return path


def _teams_overlap(a, b) -> bool:
    subnets = []
    for subnet, per_team in (a, b):
        net = IPv4Network(subnet)
        subnets.append([IPv4Network((int(net.network_address) + (t - 1) * net.num_addresses * per_team, net.prefixlen))
                        for t in range(1, MAX_TEAM + 1)])
    return any(x.overlaps(y) for x in subnets[0] for y in subnets[1])


@pytest.mark.parametrize("a, b", OVERLAPS)
def test_overlaps_are_refused_exactly_when_two_teams_subnets_meet(tmp_path, a, b):
    """Checked against every pair of teams 1..99, one subnet at a time."""
    try:
        load_topology(_topology(tmp_path, a, b))
        refused = False
    except TopologyError as e:
        assert len(e.problems) == 1 and e.problems[0].key == "networks.b.subnet", e.lines()
        refused = True
    assert refused == _teams_overlap(a, b)


# ---------------------------------------------------------------------------- libvirt URIs

GOOD_URIS = ["qemu:///system", "qemu:///session", "qemu+ssh://root@host-b/system", "qemu+ssh://host-b.example.org/system",
             "qemu+ssh://root@host-b:2222/system?no_tty=1&sshauth=privkey,agent", "qemu+tls://host-b/system?no_verify=1",
             "qemu+tcp://10.0.0.1/system?mode=direct", "qemu+ssh://[2001:db8::1]/system", "qemu+unix:///system",
             "qemu://host-b/system", "xen:///system", "xen+ssh://root@dom0/system", "test:///default",
             "test:///tmp/pytest-of-root/test_x0/test-host.xml"]
BAD_URIS = {
    "qemu+ext:///system?command=/tmp/x": "transport 'qemu+ext'",
    "qemu+ssh://root@lab/system?command=/tmp/x": "parameter command=",
    "qemu+ssh://root@lab/system?netcat=/tmp/x": "parameter netcat=",
    "qemu+ssh://root@lab/system?keyfile=/root/.ssh/id_rsa": "parameter keyfile=",
    "qemu+ssh://root@lab/system?known_hosts=/dev/null": "parameter known_hosts=",
    "qemu+tls://lab/system?pkipath=/tmp": "parameter pkipath=",
    "qemu+ssh://lab/system?proxy=netcat": "parameter proxy=",
    "qemu+unix:///system?socket=/tmp/evil.sock": "parameter socket=",
    "qemu+ssh://lab/system?comm%61nd=/tmp/x": "parameter command=",
    "qemu+ssh://lab/system?no_tty=1;command=/tmp/x": "is not a plain word",
    "qemu+ssh://lab/system?no_tty=$(id)": "is not a plain word",
    "qemu+ssh://-oProxyCommand=x/system": "is not a host name",
    "qemu+ssh://%2DoProxyCommand=x/system": "is not a host name",
    "qemu+ssh://user:secret@lab/system": "is not a user name",
    "qemu+ssh:///system": "no host",
    "qemu+unix://lab/system": "a host with transport qemu+unix",
    "qemu+ssh://lab/system#x": "fragment",
    "qemu+ssh://lab/etc/passwd": "neither /system nor /session",
    "test:///../../etc/passwd": "is not /default",
    "xen+ssh://root@dom0/system?command=/tmp/x": "parameter command=",
    "xen+unix:///system?socket=/tmp/evil.sock": "parameter socket=",
    "vbox+ssh://lab/system": "transport 'vbox+ssh'",
    "lxc:///": "transport 'lxc'",
    "host-b.example": "not a libvirt URI",
    "qemu+ssh://lab/system extra": "not a libvirt URI",
    "qemu+ssh://lab/system\n": "not a libvirt URI",
    "": "not a libvirt URI",
}


@pytest.mark.parametrize("uri", GOOD_URIS)
def test_the_uris_a_lab_uses_are_accepted(uri):
    assert uri_problem(uri) is None


@pytest.mark.parametrize("uri, why", BAD_URIS.items(), ids=list(BAD_URIS))
def test_a_uri_that_could_run_open_or_reach_something_else_is_refused(uri, why):
    assert why in (uri_problem(uri) or "accepted")


def _canary(tmp_path) -> tuple[Path, Path]:
    """A program that leaves a file behind if anything runs it."""
    ran, script = tmp_path / "ran", tmp_path / "canary.sh"
    script.write_text(f"#!/bin/sh\ntouch {ran}\n")
    script.chmod(0o755)
    return script, ran


@pytest.mark.subprocess(sys.executable)
@pytest.mark.parametrize("verb", ["plan", "down"])
def test_an_inventory_or_connect_uri_naming_a_program_exits_2_and_runs_nothing(tmp_path, test_host, verb):
    script, ran = _canary(tmp_path)
    inventory = tmp_path / "hosts.yaml"
    inventory.write_text(f"hosts:\n  host-a: qemu+ext:///system?command={script}\n"
                         f"  host-b: qemu+ssh://root@lab/system?command={script}\n")
    runs = [["--hosts", str(inventory), "--connect", test_host],
            ["--connect", f"qemu+ext:///system?command={script}"],
            ["--connect", f"qemu+ssh://root@lab/system?netcat={script}"]]
    for extra in runs:
        proc = subprocess.run([sys.executable, "-m", "labbuilder.cli", verb, "tests/data/two-hosts.yaml", *extra],
                              cwd=REPO, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "Traceback" not in proc.stderr and proc.stderr.startswith("error: ")
    assert not ran.exists()


HOSTILE_TOPOLOGIES = sorted(p.name for p in (REPO / DATA / "topologies").glob("hostile-*.yaml"))
HOSTILE_INVENTORIES = sorted(p.name for p in (REPO / DATA / "inventories").glob("hostile-*.yaml"))


def _cli_refuses(args: list[str], name: str) -> None:
    result = CliRunner().invoke(main, args)
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert lines[0].startswith(f"error: {DATA}/") and all(name in line for line in lines), lines


@pytest.mark.parametrize("verb", ["plan", "down", "status"])
@pytest.mark.parametrize("name", HOSTILE_TOPOLOGIES)
def test_every_hostile_topology_is_refused_in_one_line_per_problem(name, verb, test_host, monkeypatch):
    monkeypatch.chdir(REPO)
    _cli_refuses([verb, str(DATA / "topologies" / name), "--connect", test_host], name)


@pytest.mark.parametrize("verb", ["plan", "down"])
@pytest.mark.parametrize("name", HOSTILE_INVENTORIES)
def test_every_hostile_inventory_is_refused_in_one_line_per_problem(name, verb, test_host, monkeypatch, tmp_path):
    monkeypatch.chdir(REPO)
    # plan looks for the base image first: a cache that has it (its manifest is all plan reads),
    # so that what refuses the run is the inventory, on a machine with no image built too
    fake_image_entry(tmp_path / "cache", "debian-12", 1 << 20)
    monkeypatch.setenv("LABBUILDER_IMAGE_CACHE", str(tmp_path / "cache"))
    _cli_refuses([verb, str(DATA / "two-hosts.yaml"), "--hosts", str(DATA / "inventories" / name),
                  "--connect", test_host], name)


# ---------------------------------------------------------------------------- private directories

@pytest.mark.parametrize("path, why", [
    ("/", "is a system directory"), ("/etc", "is a system directory"), ("/etc/libvirt", "is a system directory"),
    ("/usr/local/lab", "is a system directory"), ("/var", "is a system directory"),
    ("/var/lib", "is a system directory"), ("/run", "is a system directory"), ("/home", "is a system directory"),
    ("/srv", "is a system directory"), ("/tmp", "is a system directory"), ("/root", "is a home directory"),
    ("/boot/x", "is a system directory"), ("/proc/1", "is a system directory"),
])
def test_a_private_libvirtd_never_owns_a_system_or_home_directory(path, why):
    assert privatelibvirtd.unfit_state_dir(Path(path)) == why


def test_a_private_libvirtd_owns_a_new_an_empty_or_its_own_directory_only(tmp_path):
    unfit = privatelibvirtd.unfit_state_dir
    assert unfit(tmp_path / "new") is None
    (tmp_path / "empty").mkdir()
    assert unfit(tmp_path / "empty") is None
    older = tmp_path / "older"  # made before the marker file: nothing but a state dir's entries
    for name in ("run", "lib", "etc"):
        (older / name).mkdir(parents=True)
    (older / "libvirtd.pid").write_text("1\n")
    assert unfit(older) is None
    (older / "notes.txt").write_text("mine\n")
    assert unfit(older) == "holds files labbuilder did not put there (notes.txt)"
    (older / privatelibvirtd.MARKER).write_text("")
    assert unfit(older) is None


def test_start_refuses_a_directory_that_is_not_its_own_before_running_anything(tmp_path):
    (tmp_path / "precious").write_text("keep\n")
    with pytest.raises(HostError, match="holds files labbuilder did not put there"):
        privatelibvirtd.start(tmp_path)  # the unit-test guard fails this test if it ran unshare


# ---------------------------------------------------------------------------- step templates

NASTY = "it's \"$HOME\"; rm -rf / `id` $(id) \\ * \n\ttab"


@pytest.mark.subprocess("sh")
def test_quote_makes_any_value_one_shell_word(tmp_path):
    (tmp_path / "step.sh").write_text("printf '%s' {{ vars.pw | quote }} {{ vars.n | quote }}\n")
    env = config_stage.step_env(tmp_path)
    script = env.get_template("step.sh").render(vars={"pw": NASTY, "n": 3})
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert out.stdout == NASTY + "3"
    assert script == f"printf '%s' {shlex.quote(NASTY)} 3\n"


@pytest.mark.subprocess("sh")
def test_the_demo_role_steps_are_shell_for_every_node():
    from labbuilder.lab.hosts import Host
    from labbuilder.lab.pipeline import inventory
    from labbuilder.lab.plan import BaseImage, plan_lab

    topo = load_topology(REPO / "topologies" / "demo.yaml")
    plan = plan_lab(topo, 1, {h.name: Host("qemu:///system") for h in topo.hosts},
                    {topo.image: BaseImage("debian-12", "/x.qcow2", "ab" * 32, 1, 1)})
    role_dir = Path(topo.role_dir)
    env, inv = config_stage.step_env(role_dir), inventory(plan, {})
    steps = sorted((role_dir / "common").rglob("[0-9]*.sh"))
    assert len(steps) == 3
    for step in steps:
        for node in ("alpha", "beta"):
            text = config_stage.render_step(env, step, role_dir, config_stage.template_context(inv, node, "common", {}))
            subprocess.run(["sh", "-n", "-c", text], check=True)


# ---------------------------------------------------------------------------- mmdebstrap

def test_mmdebstraps_suite_target_and_mirror_come_after_the_options_end(tmp_path, monkeypatch):
    from labbuilder.image import build
    from labbuilder.model.recipe import load_recipe

    seen = []
    monkeypatch.setattr(build, "run", lambda argv, **kw: seen.append(argv))
    recipe = load_recipe(REPO / "images" / "debian-12.yaml")
    build.bootstrap(recipe, tmp_path / "rootfs", tmp_path / "log")
    argv = seen[0]
    tail = argv[argv.index("mmdebstrap"):]
    assert tail[-4:] == ["--", recipe.suite, str(tmp_path / "rootfs"), recipe.mirror]
    assert all(a.startswith("--") for a in tail[1:-4])

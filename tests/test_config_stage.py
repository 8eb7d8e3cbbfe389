"""The config stage without guests: which roles run (resume, --from/--until/--only), the
step templates of the shipped roles rendered for every node, template and role errors
with file and line, and the host-side record (libvirt's test driver, a host of its own)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from labbuilder.lab import config_stage
from labbuilder.lab.hosts import Host
from labbuilder.lab.pipeline import inventory
from labbuilder.lab.plan import BaseImage, plan_lab
from labbuilder.model.errors import ConfigError, TopologyError
from labbuilder.model.topology import load_topology
from labbuilder.system import virt
from labbuilder.system.run import run

IMAGE = BaseImage("gridka-base", "/cache/gridka-base.qcow2", "cd" * 32, 300 << 20, 3 << 30)
# libvirt's stock `default` network as a host has it (rdo-course joins it: `existing:`)
STOCK_DEFAULT = {("qemu:///system", "default"): virt.NetworkFacts(
    "default", True, "nat", "virbr0", "192.168.122.1", 24, ("192.168.122.2", "192.168.122.254"))}


def _lab(path):
    topo = load_topology(path)
    hosts = {h.name: Host("qemu:///system") for h in topo.hosts}
    return topo, plan_lab(topo, 1, hosts, {topo.image: IMAGE}, existing=STOCK_DEFAULT)


def _roles(*spec):
    return [config_stage.Role(name, (), tuple(nodes)) for name, nodes in spec]


ROLES = _roles(("common", ["a", "b", "c"]), ("db", ["a"]), ("network", ["b"]), ("compute", ["c"]))


def _picked(selection):
    return [(role.name, list(nodes)) for role, nodes in selection]


def test_a_fresh_lab_runs_every_role_in_order():
    records = {n: config_stage.Record() for n in "abc"}
    assert _picked(config_stage.select(ROLES, records)) == [
        ("common", ["a", "b", "c"]), ("db", ["a"]), ("network", ["b"]), ("compute", ["c"])]


def test_resume_skips_finished_roles_and_finished_nodes():
    records = {"a": config_stage.Record(("common", "db")), "b": config_stage.Record(("common",)), "c": config_stage.Record()}
    assert _picked(config_stage.select(ROLES, records)) == [
        ("common", ["c"]), ("network", ["b"]), ("compute", ["c"])]


def test_from_until_and_only_run_roles_again_even_if_done():
    done = {n: config_stage.Record(("common", "db", "network", "compute")) for n in "abc"}
    assert config_stage.select(ROLES, done) == []
    assert _picked(config_stage.select(ROLES, done, start="db", until="network")) == [("db", ["a"]), ("network", ["b"])]
    assert _picked(config_stage.select(ROLES, done, only="network")) == [("network", ["b"])]


def test_an_unknown_role_is_a_clear_error():
    with pytest.raises(ConfigError) as e:
        config_stage.select(ROLES, {n: config_stage.Record() for n in "abc"}, start="dbnode")
    assert e.value.lines() == ["no role 'dbnode' in this lab", "roles in order: common, db, network, compute"]


# The body of a `python3 - <<'PY'` here-document in a rendered step.
PYTHON_HEREDOC = re.compile(r"python3 - <<'PY'\n(.*?)^PY$", re.S | re.M)


@pytest.mark.parametrize("lab", ["gridka", "gridka-mini", "gridka-neutron", "gridka-cloud", "rdo-course", "diablo-aio",
                                 "demo"])
@pytest.mark.subprocess("bash", sys.executable)
def test_every_step_and_check_of_the_shipped_roles_renders_for_every_node(lab):
    """Each renders to a script bash can parse, and the Python each feeds to `python3 -`
    has no syntax error and no undefined name (pyflakes' checks, by ruff)."""
    topo, plan = _lab(REPO / "topologies" / f"{lab}.yaml")
    inv = inventory(plan, {})
    roles = config_stage.load_roles(topo, plan)  # what `up` checks before any change: every role has steps
    env = config_stage.step_env(Path(topo.role_dir))
    for role in roles:
        checks = sorted((Path(topo.role_dir) / role.name / "checks").glob("*.sh"))
        for node in role.nodes:
            for step in role.steps + tuple(checks):
                text = config_stage.render_step(env, step, Path(topo.role_dir),
                                          config_stage.template_context(inv, node, role.name, dict(topo.vars)))
                assert text.strip(), f"{step} renders empty for {node}"
                syntax = subprocess.run(["bash", "-n"], input=text, capture_output=True, text=True)
                assert syntax.returncode == 0, f"{step} for {node}: {syntax.stderr}"
                for script in PYTHON_HEREDOC.findall(text):
                    # F401 aside: lib.keystone_py() imports json for the scripts that use it.
                    found = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--isolated",
                                            "--select", "F,E9", "--ignore", "F401", "--stdin-filename",
                                            f"{step.name}.py", "-"], input=script, capture_output=True, text=True)
                    assert found.returncode == 0, f"{step} for {node}: {found.stdout}{found.stderr}"


def _render(lab, role, step, node):
    topo, plan = _lab(REPO / "topologies" / f"{lab}.yaml")
    role_dir = Path(topo.role_dir)
    ctx = config_stage.template_context(inventory(plan, {}), node, role, dict(topo.vars))
    return config_stage.render_step(config_stage.step_env(role_dir), role_dir / role / step, role_dir, ctx)


def test_gridka_steps_carry_the_course_values():
    sql = _render("gridka", "db", "20-databases.sh", "db-node")
    assert "CREATE USER IF NOT EXISTS 'keystoneUser'@'%' IDENTIFIED BY 'keystonePass';" in sql
    assert "GRANT ALL PRIVILEGES ON cinder.* TO 'cinderUser'@'%';" in sql
    compute = _render("gridka", "compute", "10-br100.sh", "compute-2")
    assert "nic=eth1" in compute and "Address=10.0.0.21/24" in compute
    assert "flat=eth3" in _render("gridka", "network", "20-br100.sh", "network-node")
    assert "disk=/dev/vdb" in _render("gridka", "volume", "10-lvm.sh", "volume-node")
    hosts = _render("gridka", "common", "10-hosts.sh", "auth-node")
    assert 'echo "10.0.0.3 db-node"' in hosts and 'echo "10.0.0.21 compute-2"' in hosts
    assert "server 192.168.130.1 iburst" in _render("gridka", "common", "20-ntp.sh", "db-node")
    keystone = _render("gridka", "auth", "10-keystone.sh", "auth-node")
    assert "mysql+pymysql://keystoneUser:keystonePass@10.0.0.3/keystone" in keystone


def test_the_later_edition_reuses_the_gridka_roles_with_its_own_names_and_accounts():
    hosts = _render("gridka-neutron", "common", "10-hosts.sh", "hypervisor-1")
    assert 'echo "10.1.0.3 db-node.example.org db-node"' in hosts
    assert 'echo "10.1.0.6 compute-node.example.org compute-node"' in hosts
    rabbit = _render("gridka-neutron", "db", "30-rabbitmq.sh", "db-node")
    assert "rabbitmqctl add_user openstack RABBIT_PASS" in rabbit and "loopback_users" not in rabbit
    assert "rabbitmqctl change_password guest" not in rabbit
    assert "authenticate_user openstack RABBIT_PASS" in _render("gridka-neutron", "db", "checks/20-rabbitmq.sh", "db-node")
    nova = _render("gridka-neutron", "api", "20-nova.sh", "compute-node")
    assert "rabbit://openstack:RABBIT_PASS@10.1.0.3:5672/" in nova
    assert "mysql+pymysql://nova:NOVA_DBPASS@10.1.0.3/nova_api" in nova
    assert "auth_url http://auth-node:5000" in nova
    compute = _render("gridka-neutron", "compute", "20-nova-compute.sh", "hypervisor-2")
    assert "my_ip 10.1.0.21" in compute and "http://10.1.0.6:6080/vnc_auto.html" in compute
    # The 2013 course keeps the guest account, open to the other nodes.
    rabbit = _render("gridka", "db", "30-rabbitmq.sh", "db-node")
    assert "loopback_users = none" in rabbit and "rabbitmqctl change_password guest gridka" in rabbit
    assert 'echo "10.0.0.3 db-node"' in _render("gridka", "common", "10-hosts.sh", "db-node")


def test_the_course_labs_run_the_gridka_roles_in_the_courses_layout():
    layout = {}
    for lab in ("rdo-course", "diablo-aio"):
        topo, plan = _lab(REPO / "topologies" / f"{lab}.yaml")
        assert topo.role_dir == str(REPO / "topologies" / "roles" / "gridka")
        layout[lab] = {r.name: list(r.nodes) for r in config_stage.load_roles(topo, plan)}
    assert layout["rdo-course"] == {
        "common": ["node1", "node2", "node3", "node4"], "db": ["node1"], "auth": ["node1"], "image": ["node1"],
        "api": ["node1"], "network": ["node1"], "volume": ["node2"], "compute": ["node3", "node4"]}
    assert layout["diablo-aio"] == {role: ["aio"] for role in layout["rdo-course"]}


def test_the_volume_group_is_on_a_loop_file_for_rdo_and_on_vdb_for_gridka():
    loop = _render("rdo-course", "volume", "10-lvm.sh", "node2")
    assert '[ -e "$file" ] || truncate -s 20G "$file"' in loop and "file=/var/lib/cinder/cinder-volumes" in loop
    assert "systemctl enable gridka-cinder-loop.service" in loop and "WantedBy=multi-user.target" in loop
    assert 'vgcreate cinder-volumes "$disk"' in loop and "/dev/vdb" not in loop
    assert "losetup -j /var/lib/cinder/cinder-volumes" in _render("rdo-course", "volume", "checks/05-lvm.sh", "node2")
    assert "/dev/loop" in _render("rdo-course", "volume", "checks/20-volume.sh", "node2")
    disk = _render("gridka", "volume", "10-lvm.sh", "volume-node")
    assert "disk=/dev/vdb" in disk and "losetup" not in disk
    assert "/dev/vdb +cinder-volumes" in _render("gridka", "volume", "checks/05-lvm.sh", "volume-node")


def test_the_single_nic_course_labs_keep_their_nic_unbridged_and_have_no_external_network():
    assert "server 192.168.122.1 iburst" in _render("rdo-course", "common", "20-ntp.sh", "node3")
    assert 'echo "192.168.122.102 node2"' in _render("rdo-course", "common", "10-hosts.sh", "node1")
    for lab, node, role, step in [("rdo-course", "node3", "compute", "10-br100.sh"),
                                  ("rdo-course", "node1", "network", "20-br100.sh"),
                                  ("rdo-course", "node1", "network", "30-public-bridge.sh"),
                                  ("diablo-aio", "aio", "network", "60-public-network.sh")]:
        text = _render(lab, role, step, node)
        assert "skipped:" in text and "networkctl" not in text and "openstack network create" not in text, step
    agents = _render("rdo-course", "network", "50-neutron-agents.sh", "node1")
    assert "crudini --del \"$lb\" linux_bridge bridge_mappings" in agents and "br-public" not in agents
    assert "flat_networks" not in _render("rdo-course", "network", "40-neutron-server.sh", "node1")
    assert "default_floating_pool" not in _render("rdo-course", "api", "20-nova.sh", "node1")
    # the GridKa lab keeps its bridges and its external network
    assert "networkctl reconfigure" in _render("gridka", "compute", "10-br100.sh", "compute-1")
    assert "bridge_mappings public:br-public" in _render("gridka", "network", "50-neutron-agents.sh", "network-node")
    assert "default_floating_pool public" in _render("gridka", "api", "20-nova.sh", "api-node")


def test_roles_sharing_a_node_leave_each_others_settings():
    """The all-in-one node runs api and compute (one nova.conf), network and compute (one
    linuxbridge agent): the compute role neither drops nova's database nor rewrites the agent."""
    aio = _render("diablo-aio", "compute", "20-nova-compute.sh", "aio")
    assert 'crudini --del "$conf" database connection' not in aio
    assert 'crudini --del "$conf" database connection' in _render("rdo-course", "compute", "20-nova-compute.sh", "node3")
    agent = _render("diablo-aio", "compute", "30-neutron-agent.sh", "aio")
    assert "linuxbridge_agent.ini" not in agent and "systemctl restart" not in agent
    assert "neutron-linuxbridge-agent$" in agent  # it still waits for the agent to report
    assert "systemctl restart neutron-linuxbridge-agent" in _render("rdo-course", "compute", "30-neutron-agent.sh", "node4")


def _copy_lab(tmp_path, lab="gridka-mini"):
    shutil.copytree(REPO / "topologies" / "roles", tmp_path / "roles")
    text = (REPO / "topologies" / f"{lab}.yaml").read_text()
    (tmp_path / f"{lab}.yaml").write_text(text)
    return tmp_path / f"{lab}.yaml"


def test_a_role_without_steps_is_reported_at_its_line(tmp_path):
    path = _copy_lab(tmp_path)
    shutil.rmtree(tmp_path / "roles" / "gridka" / "volume")
    topo, plan = _lab(path)
    with pytest.raises(TopologyError) as e:
        config_stage.load_roles(topo, plan)
    line = next(i for i, l in enumerate(path.read_text().splitlines(), 1) if l.startswith("roles:"))
    assert e.value.lines() == [
        f"{path}:{line}: roles.3: role 'volume' has no step scripts in {tmp_path}/roles/gridka/volume "
        "(hint: add files named like 10-install.sh there, or use --no-config)"]


def test_an_undefined_template_name_names_the_file_and_line(tmp_path):
    path = _copy_lab(tmp_path)
    step = tmp_path / "roles" / "gridka" / "db" / "15-typo.sh"
    step.write_text("set -eu\n# two lines down\necho {{ vars.rabbit_pasword }}\n")
    topo, plan = _lab(path)
    role_dir = Path(topo.role_dir)
    ctx = config_stage.template_context(inventory(plan, {}), "db-node", "db", dict(topo.vars))
    with pytest.raises(ConfigError) as e:
        config_stage.render_step(config_stage.step_env(role_dir), step, role_dir, ctx)
    assert e.value.lines()[0] == f"{step}:3: 'dict object' has no attribute 'rabbit_pasword' (node db-node)"


def test_the_record_of_finished_roles_lives_in_the_domain_metadata(test_host):
    conn = virt.connect(test_host)
    assert config_stage.read_record(conn, "test") == config_stage.Record()
    failed = {"role": "network", "step": "20-br100.sh", "node": "network-node", "status": "1"}
    config_stage.write_record(conn, "test", config_stage.Record(("common", "db"), failed))
    assert config_stage.read_record(conn, "test") == config_stage.Record(("common", "db"), failed)
    config_stage.write_record(conn, "test", config_stage.Record(("common", "db", "network")))
    assert config_stage.read_record(conn, "test") == config_stage.Record(("common", "db", "network"))
    conn.close()


@pytest.mark.subprocess("bash")
@pytest.mark.parametrize("installed,calls", [
    ("glance", ""),  # the gridka-openstack image: apt does not run at all
    ("", "apt-get update -q\napt-get install -y -q glance\n"),
])
def test_a_step_installs_only_what_is_missing(tmp_path, installed, calls):
    """The image role's install line, run with stand-ins for dpkg-query and apt-get."""
    lines = _render("gridka-cloud", "image", "10-glance.sh", "controller").splitlines()
    first = lines.index('missing=""')
    snippet = "\n".join(lines[first:lines.index("fi", first) + 1])  # what lib.install wrote
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "dpkg-query").write_text(f'#!/bin/sh\nfor p in {installed or "-"}; do [ "$p" = "$3" ] && '
                                        'echo "install ok installed" && exit 0; done\nexit 1\n')
    (bin_dir / "apt-get").write_text(f'#!/bin/sh\necho "apt-get $*" >> {tmp_path}/calls\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    subprocess.run(["bash", "-euo", "pipefail", "-c", snippet], check=True,
                   env={"PATH": f"{bin_dir}:/usr/bin:/bin"})
    assert ((tmp_path / "calls").read_text() if (tmp_path / "calls").exists() else "") == calls


ANSIBLE_PLAYBOOK = shutil.which("ansible-playbook", path=str(Path(sys.executable).parent)) or "ansible-playbook"


@pytest.mark.subprocess(ANSIBLE_PLAYBOOK)
def test_a_failed_playbook_is_reported_by_ansibles_own_failure_lines(tmp_path):
    """ansible-playbook prints why a task failed on stdout and its warnings on stderr: the
    error shows the `fatal:` line (the node and ansible's message), not the warnings."""
    if not Path(ANSIBLE_PLAYBOOK).is_file():
        pytest.skip("ansible-core is not installed beside labbuilder")
    (tmp_path / "inventory").write_text(f"[marker]\nalpha ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    (tmp_path / "marker.yml").write_text(
        "- hosts: marker, nowhere\n  gather_facts: false\n  tasks:\n"
        "    - ansible.builtin.fail: {msg: the disk is full on purpose}\n")
    log = tmp_path / "ansible-marker.log"
    proc = run([ANSIBLE_PLAYBOOK, "-i", str(tmp_path / "inventory"), str(tmp_path / "marker.yml")], log=log, check=False,
               timeout=300, env={"ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp"), "ANSIBLE_HOME": str(tmp_path / "home")})
    assert proc.returncode == 2 and "nowhere" in proc.stderr, proc  # a warning on stderr …
    lines = config_stage.ansible_failure("marker", proc.returncode, proc.stdout + proc.stderr, log)
    assert lines[0] == "role marker: ansible-playbook failed (exit status 2)"
    assert len(lines) == 3 and lines[1].startswith("  fatal: [alpha]: FAILED!"), lines  # … and not in the error
    assert "the disk is full on purpose" in lines[1] and lines[2] == f"full log: {log}"

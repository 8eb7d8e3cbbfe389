"""The config stage: the topology's roles in order, each a directory of step scripts
(Jinja2 templates rendered against the inventory) run as root over OpenSSH on every
node with that role — nodes of one role in parallel, roles strictly one after another.

What finished is recorded on the libvirt host, in each node's domain metadata, so a
lost local state directory does not lose it, a reset to the base image clears it, and
a checkpoint brings back the record it was taken with.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import jinja2
from lxml import etree

from labbuilder.lab import render
from labbuilder.lab.plan import LabPlan, NodePlan
from labbuilder.model.errors import ConfigError, TopologyError
from labbuilder.model.topology import Topology
from labbuilder.reporting import Progress
from labbuilder.system import ssh, virt
from labbuilder.system.connections import parallel
from labbuilder.system.run import run

CONFIG_NS = "urn:labbuilder:config:1"
STEP_RE = re.compile(r"[0-9][0-9A-Za-z_.-]*")  # fullmatch; steps run in file-name order: 10-…, 20-…
REMOTE_DIR = "/var/lib/labbuilder/steps"
STEP_TIMEOUT = 1800.0
TAIL_LINES = 12


@dataclass(frozen=True)
class Role:
    name: str
    steps: tuple[Path, ...]  # templates, in order
    nodes: tuple[str, ...]  # node names that have this role, in topology order


@dataclass(frozen=True)
class Record:
    """What the config stage finished on one node, as kept in its domain metadata."""

    done: tuple[str, ...] = ()
    failed: dict = field(default_factory=dict)  # role, step, status, at


# ---- roles on disk ----

def load_roles(topo: Topology, plan: LabPlan) -> list[Role]:
    """Every role of the topology with nodes, and its step templates; TopologyError if a
    role has no directory or no steps (checked before anything changes)."""
    roles, problems = [], []
    for i, name in enumerate(topo.roles):
        nodes = tuple(n.name for n in plan.nodes if name in n.roles)
        if not nodes:
            continue
        folder = Path(topo.role_dir) / name
        steps = tuple(sorted(p for p in folder.iterdir() if p.is_file() and STEP_RE.fullmatch(p.name))) \
            if folder.is_dir() else ()
        if not steps:
            problems.append(topo.problem(("roles", i), f"role {name!r} has no step scripts in {folder}",
                                         "add files named like 10-install.sh there, or use --no-config"))
        roles.append(Role(name, steps, nodes))
    if problems:
        raise TopologyError(problems)
    return roles


def select(roles: list[Role], records: dict[str, Record], start: str | None = None,
           until: str | None = None, only: str | None = None) -> list[tuple[Role, tuple[str, ...]]]:
    """(role, nodes to run it on) in order. Without `start`/`only`, roles every node has
    finished are skipped and a role finished on some nodes runs on the others only."""
    names = [r.name for r in roles]
    for given in (start, until, only):
        if given is not None and given not in names:
            raise ConfigError([f"no role {given!r} in this lab", f"roles in order: {', '.join(names)}"])
    if only is not None:
        return [(r, r.nodes) for r in roles if r.name == only]
    first = names.index(start) if start else 0
    last = names.index(until) if until else len(roles) - 1
    picked = []
    for role in roles[first:last + 1]:
        todo = role.nodes if start else tuple(n for n in role.nodes if role.name not in records[n].done)
        if todo:
            picked.append((role, todo))
    return picked


# ---- the host-side record ----

def read_record(conn, domain: str) -> Record:
    xml = virt.domain_metadata(conn, domain, CONFIG_NS)
    if not xml:
        return Record()
    doc = etree.fromstring(xml.encode())
    failed = doc.find("failed")
    return Record(tuple(r.get("name") for r in doc.findall("role")),
                  dict(failed.attrib) if failed is not None else {})


def write_record(conn, domain: str, record: Record) -> None:
    doc = etree.Element("config")
    for name in record.done:
        etree.SubElement(doc, "role", name=name)
    if record.failed:
        etree.SubElement(doc, "failed", {k: str(v) for k, v in record.failed.items()})
    virt.set_domain_metadata(conn, domain, CONFIG_NS, "lbc", etree.tostring(doc, encoding="unicode"))


# ---- rendering ----

def step_env(role_dir: Path) -> jinja2.Environment:
    """Templates under `role_dir`, strict about undefined names, with the filter `quote`:
    `{{ vars.db_pass | quote }}` is one shell word whatever the value holds (shlex.quote)."""
    return render.shell_env(jinja2.FileSystemLoader(str(role_dir)))


def template_context(inventory: dict, node: str, role: str, role_vars: dict) -> dict:
    """What a step template sees: `node` (its host vars + name), `hostvars`, `groups`
    (role → node names), `networks` (subnet, gateway), `vars` (the topology's role
    variables), `lab`, `team`, `role`."""
    hosts = inventory["all"]["hosts"]
    groups = {g: list(v["hosts"]) for g, v in inventory["all"]["children"].items()}
    return {"node": {"name": node, **hosts[node]}, "hostvars": hosts, "groups": groups,
            "networks": inventory["all"]["vars"]["lab_networks"],
            "vars": role_vars, "lab": hosts[node]["lab_name"], "team": hosts[node]["lab_team"], "role": role}


def render_step(env: jinja2.Environment, template: Path, role_dir: Path, context: dict) -> str:
    """The step's script for one node; errors name the template file and line."""
    rel = template.relative_to(role_dir).as_posix()
    try:
        return env.get_template(rel).render(context)
    except jinja2.TemplateSyntaxError as e:
        raise ConfigError([f"{template}:{e.lineno}: {e.message}"]) from None
    except jinja2.UndefinedError as e:
        line = _template_line(e, str(template))
        raise ConfigError([f"{template}{f':{line}' if line else ''}: {e.message} (node {context['node']['name']})",
                           "the names a step can use: node, hostvars, groups, networks, vars, lab, team, role"]) from None


def _template_line(error: Exception, filename: str) -> int | None:
    tb = error.__traceback__
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


# ---- running ----

@dataclass
class Stage:
    """Everything the config stage needs: the plan, how to reach each node, where logs go."""

    topology: Topology
    plan: LabPlan
    conns: Callable  # Host → libvirt connection
    targets: dict[str, ssh.SshTarget]  # node name → SSH target
    inventory: dict
    logs: Path  # <state>/config
    progress: Progress
    after_role: Callable[[str], None] | None = None  # e.g. take a checkpoint


def run_stage(stage: Stage, start: str | None = None, until: str | None = None,
              only: str | None = None) -> list[str]:
    """Run the selected roles in order; return the names of the roles run. On the first
    failing step: record it, stop, raise ConfigError with node, role, step and log tail."""
    roles = load_roles(stage.topology, stage.plan)
    records = {n.name: read_record(stage.conns(n.host), n.domain) for n in stage.plan.nodes}
    picked = select(roles, records, start, until, only)
    if not start and not only:
        _say_resume(stage, records, picked)
    for role, nodes in picked:
        with stage.progress.stage(f"role {role.name} on {', '.join(nodes)}"):
            _run_role(stage, role, nodes, records)
        if stage.after_role:
            stage.after_role(role.name)
    return [r.name for r, _ in picked]


def _say_resume(stage: Stage, records: dict[str, Record], picked: list) -> None:
    failed = next((r.failed for r in records.values() if r.failed), None)
    if failed and picked:
        stage.progress.info(f"Resuming at role {picked[0][0].name} (the last run stopped at step "
                            f"{failed.get('step')} of role {failed.get('role')} on {failed.get('node')}).")
    done = sorted({r for rec in records.values() for r in rec.done})
    if done and picked:
        stage.progress.info(f"Already done, skipped: {', '.join(done)}")


def _run_role(stage: Stage, role: Role, nodes: tuple[str, ...], records: dict[str, Record]) -> None:
    role_dir = Path(stage.topology.role_dir)
    env = step_env(role_dir)
    scripts = {n: [(t.name, render_step(env, t, role_dir, template_context(
        stage.inventory, n, role.name, dict(stage.topology.vars)))) for t in role.steps] for n in nodes}
    stop = threading.Event()
    failures: list[tuple[str, str, int, Path]] = []

    def one(node_name: str) -> None:
        node = stage.plan.node(node_name)
        for i, (step, script) in enumerate(scripts[node_name], 1):
            if stop.is_set():
                return
            stage.progress.step(f"{node_name}: {step} ({i}/{len(scripts[node_name])})")
            rc, log = run_step(stage, node_name, role.name, step, script)
            if rc != 0:
                failures.append((node_name, step, rc, log))
                stop.set()
                _record(stage, node, records, failed={"role": role.name, "step": step, "node": node_name,
                                                      "status": rc, "at": int(time.time())})
                return
        _record(stage, node, records, done=role.name)

    parallel([lambda n=n: one(n) for n in nodes])
    if failures:
        node_name, step, rc, log = failures[0]
        raise ConfigError(_failure_lines(stage, role.name, node_name, step, rc, log))


def _record(stage: Stage, node: NodePlan, records: dict[str, Record], done: str | None = None,
            failed: dict | None = None) -> None:
    old = records[node.name]
    new = Record(old.done + ((done,) if done and done not in old.done else ()), failed or {})
    records[node.name] = new
    write_record(stage.conns(node.host), node.domain, new)


def _failure_lines(stage: Stage, role: str, node: str, step: str, rc: int, log: Path) -> list[str]:
    tail = [l for l in log.read_text(errors="replace").splitlines() if l.strip()][-TAIL_LINES:]
    topo, team = stage.plan.topology_path, stage.plan.team
    return [f"role {role}, step {step} failed on {node} (exit status {rc})",
            *[f"  | {l}" for l in tail],
            f"full log: {log}",
            f"after fixing it, `labbuilder configure {topo} --team {team}` resumes at role {role}"]


def run_step(stage: Stage, node: str, role: str, step: str, script: str) -> tuple[int, Path]:
    """Copy the rendered script to the node and run it as root; its output goes to
    <logs>/<role>/<node>/<step>.log (the script itself beside it). Returns (exit status, log)."""
    folder = stage.logs / role / node
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{step}.script").write_text(script)
    log = folder / f"{step}.log"
    log.unlink(missing_ok=True)
    remote = f"{REMOTE_DIR}/{role}--{step}"
    runner = f"exec {remote}" if script.startswith("#!") else f"exec bash {remote}"
    command = ["sh", "-c", f"mkdir -p {REMOTE_DIR} && cat > {remote} && chmod 700 {remote} && {runner} </dev/null"]
    target = stage.targets[node]
    argv = target.argv(command, control=stage.logs.parent / "cm")
    started = time.monotonic()
    proc = run(argv, input=script.encode(), log=log, check=False, timeout=STEP_TIMEOUT)
    with open(log, "a") as f:
        f.write(f"[{node} {role} {step}: exit {proc.returncode} after {time.monotonic() - started:.1f}s]\n")
    return proc.returncode, log


def close_connections(stage: Stage) -> None:
    """End the ssh ControlMaster processes the stage opened."""
    for target in stage.targets.values():
        run(target.control_exit(stage.logs.parent / "cm"), check=False, timeout=10)


def ansible_stage(stage: Stage, inventory_file: Path, ssh_config: Path, start: str | None = None,
                  until: str | None = None, only: str | None = None) -> list[str]:
    """--driver ansible: `ansible-playbook -i <inventory> <role_dir>/<role>.yml` per role, in order."""
    # An ansible installed beside labbuilder (the same venv) is found without activating it.
    playbook_cmd = shutil.which("ansible-playbook", path=os.pathsep.join(
        [str(Path(sys.executable).parent), os.environ.get("PATH", os.defpath)]))
    if playbook_cmd is None:
        raise ConfigError(["ansible-playbook is not installed: the ansible driver needs it",
                           "install ansible (apt-get install ansible), or use the built-in runner (--driver builtin)"])
    roles = [Role(r, (), nodes) for r in stage.topology.roles
             if (nodes := tuple(n.name for n in stage.plan.nodes if r in n.roles))]
    if not roles:
        return []
    picked = select(roles, {n.name: Record() for n in stage.plan.nodes}, start or roles[0].name, until, only)
    missing = [Path(stage.topology.role_dir) / f"{r.name}.yml" for r, _ in picked
               if not (Path(stage.topology.role_dir) / f"{r.name}.yml").is_file()]
    if missing:
        raise ConfigError([f"no playbook {missing[0]}", "the ansible driver runs <role_dir>/<role>.yml per role"])
    # Host keys as ssh_config says (strict). A busy TCG guest can take longer than ansible's
    # 10 s to answer a new SSH connection (ansible opens one per task here, where the built-in
    # runner keeps one open): a minute, and three more tries when ssh itself fails (exit 255).
    env = {"ANSIBLE_SSH_ARGS": f"-F {ssh_config}", "ANSIBLE_TIMEOUT": "60", "ANSIBLE_SSH_RETRIES": "3"}
    for role, _ in picked:
        log = stage.logs / f"ansible-{role.name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with stage.progress.stage(f"ansible role {role.name}"):
            proc = run([playbook_cmd, "-i", str(inventory_file), str(Path(stage.topology.role_dir) / f"{role.name}.yml")],
                       env=env, log=log, timeout=STEP_TIMEOUT * 4, check=False)
            if proc.returncode != 0:  # inside the stage: its progress line shows ✗
                raise ConfigError(ansible_failure(role.name, proc.returncode, proc.stdout + proc.stderr, log))
    return [r.name for r, _ in picked]


ANSIBLE_FAILED = re.compile(r"^(fatal: |failed: |ERROR! |\S+ \| (FAILED|UNREACHABLE)!)")


def ansible_failure(role: str, rc: int, output: str, log: Path) -> list[str]:
    """What a failed ansible-playbook run tells the user: the role, then ansible's own
    failure lines (`fatal: [node]: UNREACHABLE! => …`, `ERROR! …`), which it prints on
    stdout while its warnings go to stderr; the output's last lines when it printed none."""
    lines = [line.rstrip() for line in output.splitlines() if line.strip()]
    failures = [line for line in lines if ANSIBLE_FAILED.match(line)] or lines[-3:]
    shown = [f"  {line[:300]}{' …' if len(line) > 300 else ''}" for line in failures[-TAIL_LINES:]]
    return [f"role {role}: ansible-playbook failed (exit status {rc})", *shown, f"full log: {log}"]

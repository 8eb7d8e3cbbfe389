"""Checks: each role's small scripts that prove it works (`<role_dir>/<role>/checks/NN-*.sh`,
Jinja2 templates like the steps), run as root over SSH on the role's nodes. Unlike the
steps, every check runs: the result says where a team stands, not only where it broke."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from labbuilder.lab.config_stage import STEP_RE, TAIL_LINES, Stage, render_step, run_step, step_env, template_context
from labbuilder.model.errors import ConfigError
from labbuilder.system.connections import parallel

CHECKS_DIR = "checks"


@dataclass(frozen=True)
class RoleChecks:
    role: str
    checks: tuple[Path, ...]  # templates, in order
    nodes: tuple[str, ...]  # node names with this role


@dataclass(frozen=True)
class CheckResult:
    role: str
    node: str
    check: str
    passed: bool
    status: int
    tail: tuple[str, ...]  # the output's last lines
    log: str


def load_checks(stage: Stage, only_role: str | None = None) -> list[RoleChecks]:
    """The checks of every role of the topology that has nodes (in role order), or of
    `only_role`; a role without checks has none (it is listed, with nothing to run)."""
    names = [r for r in stage.topology.roles if any(r in n.roles for n in stage.plan.nodes)]
    if only_role is not None and only_role not in names:
        raise ConfigError([f"no role {only_role!r} in this lab", f"roles in order: {', '.join(names)}"])
    found = []
    for name in names if only_role is None else [only_role]:
        folder = Path(stage.topology.role_dir) / name / CHECKS_DIR
        checks = tuple(sorted(p for p in folder.iterdir() if p.is_file() and STEP_RE.fullmatch(p.name))) \
            if folder.is_dir() else ()
        found.append(RoleChecks(name, checks, tuple(n.name for n in stage.plan.nodes if name in n.roles)))
    return found


def run_checks(stage: Stage, roles: list[RoleChecks]) -> list[CheckResult]:
    """Every check of `roles` on every node of its role (nodes in parallel, roles in order)."""
    results: list[CheckResult] = []
    lock = threading.Lock()
    role_dir = Path(stage.topology.role_dir)
    env = step_env(role_dir)
    for rc in roles:
        if not rc.checks:
            continue
        with stage.progress.stage(f"checks of role {rc.role} on {', '.join(rc.nodes)}"):
            parallel([lambda n=n, rc=rc: _check_node(stage, env, role_dir, rc, n, results, lock) for n in rc.nodes])
    order = {(r.role, n): i for i, r in enumerate(roles) for n in r.nodes}
    return sorted(results, key=lambda r: (order[(r.role, r.node)], r.check))


def _check_node(stage: Stage, env, role_dir: Path, rc: RoleChecks, node: str, results: list, lock) -> None:
    context = template_context(stage.inventory, node, rc.role, dict(stage.topology.vars))
    for template in rc.checks:
        script = render_step(env, template, role_dir, context)
        status, log = run_step(stage, node, f"{rc.role}.{CHECKS_DIR}", template.name, script)
        lines = [l for l in log.read_text(errors="replace").splitlines()
                 if l.strip() and not l.startswith("$ ")]  # not the ssh command line run() logs
        tail = tuple(lines[-TAIL_LINES - 1:-1])  # the last line is the runner's own exit note
        with lock:
            results.append(CheckResult(rc.role, node, template.name, status == 0, status, tail, str(log)))

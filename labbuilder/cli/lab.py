"""The lab commands: plan, up, configure, checkpoint(s), status, down, reset, ssh, inventory."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click

from labbuilder.cli import cache_option, main
from labbuilder.cli.output import RichProgress, age, console, new_table, out, print_actions, print_checks, print_status, size_text
from labbuilder.model.request import LabRequest


class _LazyPipeline:
    """labbuilder.lab.pipeline, imported on first use: `down` (lab/teardown) needs none of
    its planning, rendering and SSH while the guests it stops take the CPU."""

    def __getattr__(self, name: str):
        from labbuilder.lab import pipeline as module

        return getattr(module, name)


pipeline = _LazyPipeline()


def lab_options(f):
    """Options every lab command shares."""
    for opt in reversed([
        click.argument("topology", type=click.Path(path_type=Path)),
        click.option("--team", type=click.IntRange(1, 99), default=1, show_default=True,
                     help="Team number: names, bridges, MACs and per-team subnets derive from it."),
        click.option("--connect", metavar="URI", help="libvirt URI for every host slot (default: "
                     "the local libvirtd, or a private one in its own namespaces if none runs)."),
        click.option("--hosts", "inventory", type=click.Path(path_type=Path),
                     help="Host inventory YAML: per host slot a libvirt URI, or {uri|private, bridges} (README)."),
        click.option("--private/--system", "private", default=None,
                     help="Force a private libvirtd in its own namespaces, or the system one."),
        click.option("--memory-scale", type=click.FloatRange(0.1, 4), default=1.0,
                     help="Scale every node's memory (e.g. 0.5 on small machines)."),
        cache_option,
    ]):
        f = opt(f)
    return f


def _request(topology, team, connect, inventory, private, memory_scale, cache, **_):
    return LabRequest(topology, team, connect, inventory, private, memory_scale, cache)


def _open(kwargs, start_private=True, check=True):
    return _open_teams(kwargs, [kwargs["team"]], start_private, check)[0]


def _open_teams(kwargs, teams, start_private=True, check=True):
    labs = pipeline.open_labs([_request(**{**kwargs, "team": t}) for t in teams], start_private, check)
    for lab in labs:
        _describe(lab)
    return labs


def _describe(lab) -> None:
    """Where the lab lives, to stderr."""
    where = ", ".join(sorted({h.name for h in lab.plan.hosts}))
    click.secho(f"{lab.plan.lab} team {lab.plan.team} on {where}; "
                f"domain type {lab.domain_type} ({lab.accel_reason})", dim=True, err=True)
    if any(h.runtime.ssh_prefix for h in lab.plan.hosts):
        click.secho(f"No system libvirtd is used here: the lab lives in a private libvirtd in its own "
                    f"mount and network namespaces ({pipeline.state_root() / 'libvirtd'}); reach guests "
                    f"with `labbuilder ssh` or the lab's ssh_config.", dim=True, err=True)
    if lab.plan.memory_note:
        click.echo(click.style("note:", fg="yellow") + f" {lab.plan.memory_note}", err=True)


def _node_rows(lab):
    table = new_table("node", "domain", "host", "roles", "memory", "NICs", "disks")
    for n in lab.plan.nodes:
        nics = "\n".join(f"{x.guest_name} {x.network_key} {x.ip or ('dhcp' if x.dhcp else '-')} {x.mac}"
                          + ("" if x.configure else " (unconfigured)") for x in n.nics)
        disks = ", ".join(f"{d.target} {size_text(d.size_bytes)}" for d in n.disks) or "-"
        table.add_row(n.key, n.name, n.host.name, ",".join(n.roles), f"{n.memory_mib} MiB", nics, disks)
    return table


def _network_rows(lab):
    table = new_table("network", "name", "host", "mode", "bridge", "subnet")
    for n in lab.plan.networks:
        table.add_row(n.key, n.name, n.host.name, n.mode, n.bridge, str(n.subnet) if n.subnet else "-")
    return table


def _plan_json(lab, actions):
    return {
        "lab": lab.plan.lab, "team": lab.plan.team,
        "actions": [{"verb": a.verb, "kind": a.kind, "name": a.name, "host": a.host.uri, "detail": a.detail}
                    for a in actions],
        "networks": [{"network": n.key, "name": n.name, "host": n.host.uri, "mode": n.mode,
                      "bridge": n.bridge, "subnet": str(n.subnet) if n.subnet else None,
                      "static_hosts": [list(h) for h in n.static_hosts]} for n in lab.plan.networks],
        "nodes": pipeline.inventory(lab.plan, {})["all"]["hosts"],
        "packages": {"source": lab.plan.packages,
                     "proxies": {n.key: pipeline.node_proxy(lab, n) for n in lab.plan.nodes}},
    }


@main.command("plan")
@lab_options
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def plan_cmd(as_json, **kwargs):
    """Show what `up` would create, change or remove on each host; changes nothing
    (not even starting the private libvirtd `up` would start)."""
    lab = _open(kwargs, start_private=None)
    try:
        actions = pipeline.changes(lab)
    finally:
        lab.close()
    if as_json:
        out.print_json(json.dumps(_plan_json(lab, actions)))
        return
    out.print(_node_rows(lab))
    out.print(_network_rows(lab))
    for line in pipeline.package_source(lab):
        out.print(line, highlight=False)
    print_actions(actions)


def _team_range(ctx, param, value):
    if value is None:
        return None
    try:
        first, _, last = value.partition("-")
        teams = list(range(int(first), int(last or first) + 1))
    except ValueError:
        raise click.BadParameter("expected a range like 1-20") from None
    if not teams or teams[0] < 1 or teams[-1] > 99:
        raise click.BadParameter("teams run from 1 to 99")
    return teams


@main.command("up")
@lab_options
@click.option("--teams", callback=_team_range, metavar="FIRST-LAST",
              help="Bring up several teams (e.g. 1-20): all converge, then all are waited for.")
@click.option("--no-wait", is_flag=True, help="Do not wait for the nodes to answer on SSH (implies --no-config).")
@click.option("--no-config", is_flag=True, help="Stop after the physical layer: do not run the roles.")
@click.option("--checkpoints", is_flag=True, help="Checkpoint the team after each role (after-<role>).")
@click.option("--check", "checks", is_flag=True, help="Run each role's checks after it; a failing check stops.")
@click.option("--json", "as_json", is_flag=True, help="Print the resulting status as JSON.")
def up_cmd(teams, no_wait, no_config, checkpoints, checks, as_json, **kwargs):
    """Bring the lab up for a team: networks, volumes, seeds, domains; wait for SSH;
    then run the config stage (the topology's roles, in order)."""
    labs = _open_teams(kwargs, teams or [kwargs["team"]])
    run_config = not (no_wait or no_config) and bool(labs[0].topology.roles)
    progress = RichProgress(console.real)
    try:
        if run_config:
            pipeline.check_config(labs[0])  # before anything changes
        # Converge every team first, then wait for all of them: their guests boot together.
        changed = [pipeline.up(lab, progress) for lab in labs]
        for lab, actions in zip(labs, changed):
            ready = None if no_wait else pipeline.wait(lab, progress)
            if not actions:
                console.print(f"Nothing to do: {lab.plan.lab} team {lab.plan.team} already matches the topology.")
            if run_config:
                ran = pipeline.configure(lab, progress, ready, checkpoints_after=checkpoints, checks_after=checks)
                console.print(f"Config stage: {'ran ' + ', '.join(ran) if ran else 'every role already done'}.")
            print_status(pipeline.status(lab, ready if ready is not None else {}), as_json)
        _print_reach(labs[0])
    finally:
        for lab in labs:
            lab.close()


@main.command("check")
@lab_options
@click.option("--role", metavar="ROLE", help="Run the checks of ROLE only.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.pass_context
def check_cmd(ctx, role, as_json, **kwargs):
    """Run each role's checks (<role_dir>/<role>/checks/) on its nodes: pass or fail per
    role, node and check, with the failing output's tail. Exit status 1 if any fails."""
    lab = _open(kwargs, start_private=False, check=False)
    try:
        results = pipeline.check(lab, RichProgress(console.real), role)
    finally:
        lab.close()
    print_checks(results, as_json)
    if any(not r.passed for r in results):
        ctx.exit(1)


@main.command("configure")
@lab_options
@click.option("--from", "start", metavar="ROLE", help="Start at ROLE (run again even if done).")
@click.option("--until", metavar="ROLE", help="Stop after ROLE.")
@click.option("--only", metavar="ROLE", help="Run ROLE alone (again even if done).")
@click.option("--driver", type=click.Choice(["builtin", "ansible"]), default="builtin", show_default=True,
              help="builtin: roles/<role>/ step scripts over SSH; ansible: ansible-playbook <role>.yml.")
@click.option("--checkpoints", is_flag=True, help="Checkpoint the team after each role (after-<role>).")
@click.option("--check", "checks", is_flag=True, help="Run each role's checks after it; a failing check stops.")
def configure_cmd(start, until, only, driver, checkpoints, checks, **kwargs):
    """Run the config stage: the topology's roles in order, resuming after the last
    finished one (recorded on the libvirt host)."""
    if only and (start or until):
        raise click.UsageError("--only cannot be combined with --from or --until")
    lab = _open(kwargs, start_private=False, check=False)
    try:
        ran = pipeline.configure(lab, RichProgress(console.real), start=start, until=until, only=only,
                                driver=driver, checkpoints_after=checkpoints, checks_after=checks)
    finally:
        lab.close()
    console.print(f"Config stage: {'ran ' + ', '.join(ran) if ran else 'every role already done, nothing to run'}.")
    console.print(f"[dim]logs: {lab.state / 'config'}[/dim]", highlight=False)


def _checkpoint_name(ctx, param, value):
    import re

    if value is not None and not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", value):
        raise click.BadParameter(f"{value!r}: use lowercase letters, digits and '-'")
    return value


@main.command("checkpoint")
@lab_options
@click.option("--name", required=True, callback=_checkpoint_name, help="Checkpoint name (replaced if it exists).")
@click.option("--json", "as_json", is_flag=True, help="Print the checkpoint as JSON.")
def checkpoint_cmd(name, as_json, **kwargs):
    """Save every node of the team (disks and memory) as one consistent checkpoint."""
    lab = _open(kwargs, start_private=False, check=False)
    try:
        cp = pipeline.take_checkpoint(lab, name, RichProgress(console.real))
    finally:
        lab.close()
    if as_json:
        out.print_json(json.dumps(asdict(cp)))
    else:
        out.print(f"Checkpoint {cp.name} of {len(cp.nodes)} node(s) taken; back to it with "
                  f"`labbuilder reset {lab.plan.topology_path} --team {lab.plan.team} --to {cp.name}`.",
                  highlight=False)


@main.command("checkpoints")
@lab_options
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def checkpoints_cmd(as_json, **kwargs):
    """List the team's checkpoints with their role, age, nodes and size."""
    import time

    lab = _open(kwargs, start_private=False, check=False)
    try:
        found = pipeline.list_checkpoints(lab)
    finally:
        lab.close()
    if as_json:
        out.print_json(json.dumps([asdict(c) for c in found]))
        return
    table = new_table("checkpoint", "after role", "age", "nodes", "memory state", title=f"{lab.plan.lab} team {lab.plan.team}")
    for c in found:
        nodes = f"{len(c.nodes)}" + (f" [red](missing {', '.join(c.missing)})[/red]" if c.missing else "")
        table.add_row(c.name, c.role or "-", age(int(time.time()) - c.created), nodes,
                      size_text(c.memory_bytes) if c.memory_bytes is not None else "-")
    out.print(table if found else "No checkpoints.")


@main.command("status")
@lab_options
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def status_cmd(as_json, **kwargs):
    """Per node: host, libvirt state, addresses, SSH; per network: bridge, active."""
    lab = _open(kwargs, start_private=False, check=False)
    try:
        print_status(pipeline.status(lab), as_json)
    finally:
        lab.close()


@main.command("down")
@lab_options
@click.option("--all-teams", is_flag=True, help="Remove every team of this lab.")
@click.option("--json", "as_json", is_flag=True, help="Print what was removed as JSON.")
def down_cmd(all_teams, as_json, **kwargs):
    """Remove every object labbuilder owns for this lab and team, and nothing else."""
    from labbuilder.lab import teardown

    done = teardown.down(_request(**kwargs), all_teams)
    # Said once its guests are gone (until then every CPU-second is theirs or ours), with
    # click, not rich: nothing in down imports rich.
    click.secho(f"{done.lab} {'every team' if all_teams else f'team {done.team}'} on "
                f"{', '.join(sorted(h.name for h in done.hosts))}",
                dim=True, err=True)
    if as_json:
        click.echo(json.dumps({"removed": list(done.removed)}, indent=2))
    else:
        for r in done.removed:
            click.echo(click.style("-", fg="red") + f" {r}")
        click.echo(f"Removed {len(done.removed)} object(s)." if done.removed else "Nothing to remove.")


@main.command("reset")
@lab_options
@click.option("--node", "nodes", multiple=True, help="Reset only this node (repeatable).")
@click.option("--to", "to", callback=_checkpoint_name, metavar="NAME",
              help="Back to checkpoint NAME (running guests, no boot) instead of the base image.")
@click.option("--cold", is_flag=True, help="With --to: only the checkpoint's disks, then boot.")
def reset_cmd(nodes, to, cold, **kwargs):
    """Back to pristine (fresh overlays from the base image, boot) or to a checkpoint;
    nodes in parallel; wait until they answer on SSH."""
    if cold and not to:
        raise click.UsageError("--cold needs --to NAME")
    lab = _open(kwargs, check=not to)
    try:
        unknown = [n for n in nodes if n not in {x.key for x in lab.plan.nodes}]
        if unknown:
            raise click.BadParameter(f"no node {unknown[0]!r} in {lab.plan.lab}", param_hint="--node")
        progress = RichProgress(console.real)
        if to:
            ready = pipeline.reset_to(lab, to, list(nodes), progress, cold)
        else:
            ready = pipeline.reset(lab, list(nodes), progress)
        print_status(pipeline.status(lab, ready, probe_rest=True), False)
    finally:
        lab.close()


@main.command("ssh", context_settings={"ignore_unknown_options": True})
@lab_options
@click.argument("node")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def ssh_cmd(node, command, **kwargs):
    """Open a shell on NODE, or run COMMAND there (after --)."""
    import os

    lab = _open(kwargs, start_private=False, check=False)
    try:
        if node not in {n.key for n in lab.plan.nodes}:
            raise click.BadParameter(f"no node {node!r} in {lab.plan.lab}", param_hint="NODE")
        argv = pipeline.ssh_target(lab, node).argv(list(command), interactive=not command, shell=True)
    finally:
        lab.close()
    os.execvp(argv[0], argv)


@main.command("inventory")
@lab_options
def inventory_cmd(**kwargs):
    """Write ssh_config, hosts and an Ansible YAML inventory for the lab; print their paths."""
    lab = _open(kwargs, start_private=False, check=False)
    try:
        files = pipeline.write_handoff(lab, {})
    finally:
        lab.close()
    for kind, path in asdict(files).items():
        out.print(f"{kind}: {path}", highlight=False)


def _print_reach(lab) -> None:
    first = lab.plan.nodes[0].key
    topo = str(lab.plan.topology_path)
    team = f" --team {lab.plan.team}" if lab.plan.team != 1 else ""
    console.print(f"Reach a node:  labbuilder ssh {topo} {first}{team} [-- COMMAND]", highlight=False)
    console.print(f"ssh config:    ssh -F {lab.state / 'ssh_config'} {first}", highlight=False)


"""The lab commands: plan, up, configure, checkpoint(s), status, down, reset, ssh, inventory."""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import click

from labbuilder.cli import cache_option, main
from labbuilder.cli.output import RichProgress, age, console, new_table, out, print_actions, print_checks, print_status, size_text
from labbuilder.model.request import LabRequest

if TYPE_CHECKING:
    from labbuilder.lab.diff import Action
    from labbuilder.lab.pipeline import Lab


class _LazyPipeline:
    """labbuilder.lab.pipeline, imported on first use: `down` (lab/teardown) needs none of
    its planning, rendering and SSH while the guests it stops take the CPU."""

    def __getattr__(self, name: str):
        from labbuilder.lab import pipeline as module

        return getattr(module, name)


pipeline = _LazyPipeline()


def lab_options(f, topology_required: bool = True):
    """Options every lab command shares."""
    for opt in reversed([
        click.argument("topology", type=click.Path(path_type=Path), required=topology_required),
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
    """Each team's lab, every one checked before any is changed (sharing one reader of the
    local hosts' networks); where the first lives is said once."""
    labs = pipeline.open_labs([_request(**{**kwargs, "team": t}) for t in teams], start_private, check,
                              lambda message: click.secho(message, dim=True, err=True))
    _describe(labs[0])
    return labs


def _build_missing_images(kwargs, teams: list[int] | None = None) -> None:
    """Build the images the topology names that are not in the cache but have a recipe
    (beside the topology or above it), before `up` or `reset` plans with them; the
    teams (`teams`, else --team) are checked first (pipeline.images_to_build)."""
    todo = pipeline.images_to_build(_request(**kwargs), teams)
    if not todo:
        return
    from labbuilder.image import build as image_build
    from labbuilder.image import cache as image_cache
    from labbuilder.model.recipe import load_recipe

    progress = RichProgress(console.real)
    for path, name in todo.items():
        recipe = load_recipe(path)
        if recipe.name != name:
            raise click.ClickException(f"{path} builds image {recipe.name!r}, not {name!r}")
        progress.info(f"Image {name} is not built: building it from {path} first")
        image_build.build(recipe, kwargs["cache"] or image_cache.default_cache_dir(), progress)


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


def class_options(f):
    """Options of the commands that act on a class: several teams at once."""
    for opt in reversed([
        click.option("--teams", "team_range", metavar="RANGE",
                     help="Several teams (1-20, 1,3,5-7), in parallel: one table at the end."),
        click.option("--all-teams", is_flag=True, help="Every team of this lab that exists on its hosts."),
        click.option("--parallel", type=click.IntRange(1, 64), default=None,
                     help="With --teams/--all-teams: teams at once per lab host (default: one per CPU)."),
    ]):
        f = opt(f)
    return f


def _class_teams(kwargs, team_range, all_teams, none_ok=False) -> list[int] | None:
    """The teams of a class command; None: the one team of --team. With `none_ok`
    (status), --all-teams finding no team says so and gives []."""
    from labbuilder.lab import teams as teams_mod

    if team_range and all_teams:
        raise click.UsageError("--teams and --all-teams exclude each other")
    if team_range:
        try:
            return teams_mod.parse_teams(team_range)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--teams") from None
    if all_teams:
        found = pipeline.existing_teams(_request(**kwargs))
        if not found and not none_ok:
            raise click.ClickException(f"no team of {kwargs['topology']}'s lab exists on its hosts")
        if not found:
            console.print(f"No team of {kwargs['topology']}'s lab exists on its hosts.", highlight=False)
        return found
    return None


def _run_class(kwargs, teams, parallel, what, work, *, start_private=False, check=False, as_json=False,
               columns=(), row=None, value=None, before_exit=None, show_placement=False):
    """`work(lab, progress)` for each team, in parallel (bounded per host), each team on its
    own progress line; then one table (team, result, time, `columns` from `row(result)`)
    or JSON (`value(result)` per team); exit 1 naming the teams that failed. Every team's
    lab is opened (planned, placed on an inventory's pool, and with `check` its hosts
    checked) before any work starts; `show_placement` prints where they were placed."""
    from labbuilder.cli.output import ClassProgress, print_placement
    from labbuilder.lab import teams as teams_mod

    labs = dict(zip(teams, _open_teams(kwargs, teams, start_private, check)))
    placed = labs[teams[0]].placement
    if show_placement and placed:
        print_placement(placed, f"{labs[teams[0]].plan.lab}: where the teams run", to=console)
    try:
        if check:
            pipeline.check_class(list(labs.values()))
        shared = ClassProgress(console.real, len(teams), what)

        def one(team, slots):
            lab, progress = labs[team], shared.team(team)
            try:
                with slots.hold(h.uri for h in lab.plan.hosts):
                    result = work(lab, progress)
                return value(result) if value else result
            finally:
                progress.close()

        try:
            results = teams_mod.run_teams(teams, one, parallel or teams_mod.default_parallel(), shared.done)
        finally:
            shared.stop()
    finally:
        for lab in labs.values():
            lab.close()
    _class_end(results, as_json, f"{labs[teams[0]].plan.lab}: {what}", columns, row,
               before_exit and (lambda: before_exit(results, labs[teams[0]].plan)))
    return results


def _class_end(results, as_json, title, columns, row, before_exit=None) -> None:
    """One table (or JSON) for the class; exit 1 naming the teams that failed."""
    from labbuilder.cli.output import print_class
    from labbuilder.lab import teams as teams_mod
    from labbuilder.model.errors import ClassError

    print_class(results, as_json, title, columns, row)
    if before_exit:
        before_exit()
    failed = teams_mod.failed_summary(results)
    if failed:
        raise ClassError(failed)


def _node_rows(lab: Lab):
    table = new_table("node", "domain", "host", "roles", "memory", "NICs", "disks")
    for n in lab.plan.nodes:
        nics = "\n".join(f"{x.guest_name} {x.network} {x.ip or ('dhcp' if x.dhcp else '-')} {x.mac}"
                          + ("" if x.configure else " (unconfigured)") for x in n.nics)
        disks = ", ".join([*([f"vda {size_text(n.root_bytes)}"] if n.root_bytes else []),
                           *(f"{d.target} {size_text(d.size_bytes)}" for d in n.disks)]) or "-"
        table.add_row(n.name, n.domain, n.host.name, ",".join(n.roles), f"{n.memory_mib} MiB", nics, disks)
    return table


def _network_rows(lab: Lab):
    table = new_table("network", "name", "host", "mode", "bridge", "subnet")
    for n in lab.plan.networks:
        mode = f"existing ({n.mode or 'not there'})" if n.existing else n.mode
        table.add_row(n.name, n.libvirt_name, n.host.name, mode, n.bridge, str(n.subnet) if n.subnet else "-")
    return table


def _plan_json(lab: Lab, actions: list[Action]) -> dict:
    return {
        "lab": lab.plan.lab, "team": lab.plan.team,
        "actions": [{"verb": a.verb, "kind": a.kind, "name": a.name, "host": a.host.uri, "detail": a.detail}
                    for a in actions],
        "networks": [{"network": n.name, "name": n.libvirt_name, "host": n.host.uri, "mode": n.mode,
                      "bridge": n.bridge, "subnet": str(n.subnet) if n.subnet else None,
                      "static_hosts": [list(h) for h in n.static_hosts], "existing": n.existing}
                     for n in lab.plan.networks],
        "nodes": pipeline.inventory(lab.plan, {})["all"]["hosts"],
        "images_to_build": {name: str(recipe) for name, recipe in lab.images_to_build.items()},
        "packages": {"source": lab.plan.packages,
                     "proxies": {n.name: pipeline.node_proxy(lab, n) for n in lab.plan.nodes}},
    }


@main.command("plan")
@lab_options
@click.option("--teams", "team_range", metavar="RANGE",
              help="Several teams (1-20, 1,3,5-7): where each lands, and the hosts after them.")
@click.option("--all-teams", is_flag=True, help="Every team of this lab that exists on its hosts.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def plan_cmd(team_range, all_teams, as_json, **kwargs):
    """Show what `up` would create, change or remove on each host; changes nothing
    (not even starting the private libvirtd `up` would start). With --teams: the host of
    each team's slots (placed by capacity on an inventory's pool, refused if they do not
    fit) and each host's memory and pool space after them."""
    teams = _class_teams(kwargs, team_range, all_teams)
    if teams:
        return _plan_class(kwargs, teams, as_json)
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
    for name, recipe in lab.images_to_build.items():
        out.print(f"[green]+[/green] build image {name} from {recipe} (up builds it first)", highlight=False)
    print_actions(actions)


def _plan_class(kwargs, teams, as_json) -> None:
    from labbuilder.cli.output import placement_json, print_placement
    from labbuilder.lab.placement import team_list

    labs = _open_teams(kwargs, teams, start_private=None)
    for lab in labs:
        lab.close()
    placed, title = labs[0].placement, f"{labs[0].plan.lab}: {team_list(teams)}"
    if as_json:
        fixed = {"teams": [{"team": lab.plan.team, "slots": _slot_hosts(lab)} for lab in labs]}
        out.print_json(json.dumps({"lab": labs[0].plan.lab, **(placement_json(placed) if placed else fixed)}))
    elif placed:
        print_placement(placed, f"{title} on the pool of {kwargs['inventory']}")
    else:
        slots = list(_slot_hosts(labs[0]))
        out.print(f"{title}, where their slots land (an inventory's pool of hosts would place them by capacity)",
                  highlight=False)
        table = new_table("team", *(slots if len(slots) > 1 else ["host"]))
        for lab in labs:
            table.add_row(str(lab.plan.team), *_slot_hosts(lab).values())
        out.print(table)


def _slot_hosts(lab) -> dict[str, str]:
    """Slot → the name of the host it lands on."""
    return {slot.name: next((n.host.name for n in lab.plan.nodes if lab.topology.node(n.name).host == slot.name),
                            lab.plan.hosts[0].name) for slot in lab.topology.hosts}


@main.command("up")
@lab_options
@class_options
@click.option("--no-wait", is_flag=True, help="Do not wait for the nodes to answer on SSH (implies --no-config).")
@click.option("--no-config", is_flag=True, help="Stop after the physical layer: do not run the roles.")
@click.option("--checkpoints", is_flag=True, help="Checkpoint the team after each role (after-<role>).")
@click.option("--check", "checks", is_flag=True, help="Run each role's checks after it; a failing check stops.")
@click.option("--json", "as_json", is_flag=True, help="Print the resulting status as JSON.")
def up_cmd(team_range, all_teams, parallel, no_wait, no_config, checkpoints, checks, as_json, **kwargs):
    """Bring the lab up for a team: networks, volumes, seeds, domains; wait for SSH;
    then run the config stage (the topology's roles, in order)."""
    teams = _class_teams(kwargs, team_range, all_teams)
    _build_missing_images(kwargs, teams)  # once, before any team
    if teams:
        _run_class(kwargs, teams, parallel, "up",
                   lambda lab, progress: _up_team(lab, progress, no_wait, no_config, checkpoints, checks),
                   start_private=True, check=True, as_json=as_json, columns=("changes", "config stage"),
                   show_placement=True,
                   row=lambda r: [str(r["changes"]), ", ".join(r["roles_run"]) or "-"],
                   value=lambda r: {**r, "status": r["status"].to_json()})
        return
    lab = _open(kwargs)
    try:
        progress = RichProgress(console.real)
        result = _up_team(lab, progress, no_wait, no_config, checkpoints, checks)
        if not result["changes"]:
            console.print(f"Nothing to do: {lab.plan.lab} team {lab.plan.team} already matches the topology.")
        if result["configured"]:
            ran = result["roles_run"]
            console.print(f"Config stage: {'ran ' + ', '.join(ran) if ran else 'every role already done'}.")
        print_status(result["status"], as_json)
        _print_reach(lab)
    finally:
        lab.close()


def _up_team(lab, progress, no_wait, no_config, checkpoints, checks) -> dict:
    """One team's up: converge, wait for SSH, the config stage."""
    run_config = not (no_wait or no_config) and bool(lab.topology.roles)
    if run_config:
        pipeline.check_config(lab)  # before anything changes
        if checkpoints:
            pipeline.require_checkpoints(lab)
    actions = pipeline.up(lab, progress)
    ready = None if no_wait else pipeline.wait(lab, progress)
    ran = []
    if run_config:
        ran = pipeline.configure(lab, progress, ready, checkpoints_after=checkpoints, checks_after=checks)
    return {"changes": len(actions), "configured": run_config, "roles_run": ran,
            "status": pipeline.status(lab, ready if ready is not None else {})}


@main.command("check")
@lab_options
@class_options
@click.option("--role", metavar="ROLE", help="Run the checks of ROLE only.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.pass_context
def check_cmd(ctx, team_range, all_teams, parallel, role, as_json, **kwargs):
    """Run each role's checks (<role_dir>/<role>/checks/) on its nodes: pass or fail per
    role, node and check, with the failing output's tail. Exit status 1 if any fails."""
    teams = _class_teams(kwargs, team_range, all_teams)
    if teams:
        def work(lab, progress):
            results = pipeline.check(lab, progress, role)
            failed = [r for r in results if not r.passed]
            if failed:
                from labbuilder.model.errors import ConfigError

                f = failed[0]
                raise ConfigError([f"{len(failed)} of {len(results)} check(s) failed, first {f.role} / {f.node} / "
                                   f"{f.check} (exit status {f.status}): {(f.tail or [''])[-1]}"])
            return results

        _run_class(kwargs, teams, parallel, "check", work, as_json=as_json, columns=("checks",),
                   row=lambda r: [f"{r['passed']} passed"],
                   value=lambda results: {"passed": len(results), "checks": [
                       {"role": r.role, "node": r.node, "check": r.check} for r in results]})
        return
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
@class_options
def configure_cmd(team_range, all_teams, parallel, start, until, only, driver, checkpoints, checks, **kwargs):
    """Run the config stage: the topology's roles in order, resuming after the last
    finished one (recorded on the libvirt host)."""
    if only and (start or until):
        raise click.UsageError("--only cannot be combined with --from or --until")
    teams = _class_teams(kwargs, team_range, all_teams)
    if teams:
        _run_class(kwargs, teams, parallel, "configure",
                   lambda lab, progress: pipeline.configure(lab, progress, start=start, until=until, only=only,
                                                           driver=driver, checkpoints_after=checkpoints,
                                                           checks_after=checks),
                   columns=("roles run",), row=lambda ran: [", ".join(ran) or "every role already done"])
        return
    lab = _open(kwargs, start_private=False, check=False)
    try:
        ran = pipeline.configure(lab, RichProgress(console.real), start=start, until=until, only=only,
                                driver=driver, checkpoints_after=checkpoints, checks_after=checks)
    finally:
        lab.close()
    console.print(f"Config stage: {'ran ' + ', '.join(ran) if ran else 'every role already done, nothing to run'}.")
    console.print(f"[dim]logs: {lab.state / 'config'}[/dim]", highlight=False)


def _checkpoint_name(ctx, param, value):
    if value is not None and not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", value):
        raise click.BadParameter(f"{value!r}: use lowercase letters, digits and '-'")
    return value


@main.command("checkpoint")
@lab_options
@click.option("--name", required=True, callback=_checkpoint_name, help="Checkpoint name (replaced if it exists).")
@click.option("--json", "as_json", is_flag=True, help="Print the checkpoint as JSON.")
@class_options
def checkpoint_cmd(team_range, all_teams, parallel, name, as_json, **kwargs):
    """Save every node of the team (disks and memory) as one consistent checkpoint."""
    teams = _class_teams(kwargs, team_range, all_teams)
    if teams:
        _run_class(kwargs, teams, parallel, f"checkpoint {name}",
                   lambda lab, progress: asdict(pipeline.take_checkpoint(lab, name, progress)),
                   as_json=as_json, columns=("nodes",), row=lambda cp: [str(len(cp["nodes"]))])
        return
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
@class_options
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.option("--html", "html_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write a static page with the table and the lab's drawing.")
def status_cmd(team_range, all_teams, parallel, as_json, html_file, **kwargs):
    """Per node: host, libvirt state, addresses, SSH; per network: bridge, active. With
    --teams/--all-teams: a line per team (nodes running, SSH, roles done, last
    checkpoint, hosts, age)."""
    teams = _class_teams(kwargs, team_range, all_teams, none_ok=True)
    if teams == []:
        if as_json:
            out.print_json("[]")
        return
    if teams:
        def row(t):
            return [f"{t['running']}/{t['nodes']}", f"{t['ssh']}/{t['nodes']}", t["roles_done"],
                    t["last_checkpoint"] or "-", ", ".join(t["hosts"]), age(t["age_seconds"])]

        columns = ("running", "ssh", "roles done", "last checkpoint", "hosts", "age")
        def page(results, plan):
            _write_page(html_file, plan, "class status", ["team", "result", *columns, "error"],
                        [[r.team, "ok" if r.ok else "FAILED", *(row(r.value) if r.ok else ["-"] * len(columns)),
                          r.first_line] for r in results])

        _run_class(kwargs, teams, parallel, "status", _team_status, as_json=as_json, start_private=None,
                   columns=columns, row=row, before_exit=page if html_file else None)
        return
    lab = _open(kwargs, start_private=None, check=False)  # no private libvirtd yet: nothing created
    try:
        data = pipeline.status(lab)
    finally:
        lab.close()
    print_status(data, as_json)
    if html_file:
        _write_page(html_file, lab.plan, f"team {lab.plan.team} status",
                    ["node", "host", "state", "ssh", "roles done"],
                    [[n.node, n.host, "not created" if n.state == "absent" else n.state,
                      "yes" if n.ssh else "no", ", ".join(n.roles_finished) or "-"] for n in data.nodes])


def _write_page(path: Path, plan, what: str, columns, rows) -> None:
    import time

    from labbuilder.cli.output import html_page
    from labbuilder.lab import graph

    page = html_page(f"{plan.lab}: {what}", list(columns), rows, graph.svg(plan),
                     f"{time.strftime('%Y-%m-%d %H:%M:%S')} · {plan.topology_path}")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(page)
    tmp.replace(path)
    console.print(f"page: {path}", highlight=False)


@main.command("graph")
@lab_options
@click.option("--mermaid", is_flag=True, help="Mermaid text (for docs) instead of SVG.")
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path), help="Write to FILE, not stdout.")
def graph_cmd(mermaid, out_file, **kwargs):
    """Draw the lab for a team: nodes by host, their NICs and networks (SVG or Mermaid)."""
    from labbuilder.lab import graph

    lab = pipeline.open_lab(_request(**kwargs), None, False)
    lab.close()
    text = graph.mermaid(lab.plan) if mermaid else graph.svg(lab.plan)
    if out_file:
        out_file.write_text(text)
        console.print(f"{'Mermaid' if mermaid else 'SVG'}: {out_file}", highlight=False)
    else:
        click.echo(text, nl=False)


@main.command("down")
@lab_options
@click.option("--teams", "team_range", metavar="RANGE",
              help="Several teams (1-20, 1,3,5-7), in parallel: one table at the end.")
@click.option("--all-teams", is_flag=True, help="Remove every team of this lab (whatever its number).")
@click.option("--parallel", type=click.IntRange(1, 64), default=None,
              help="With --teams: teams at once per lab host (default: one per CPU).")
@click.option("--json", "as_json", is_flag=True, help="Print what was removed as JSON.")
def down_cmd(team_range, all_teams, parallel, as_json, **kwargs):
    """Remove every object labbuilder owns for this lab and team, and nothing else."""
    from labbuilder.lab import teardown

    if team_range:
        return _down_teams(kwargs, team_range, all_teams, parallel, as_json)
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
@class_options
@click.option("--node", "nodes", multiple=True, help="Reset only this node (repeatable).")
@click.option("--to", "to", callback=_checkpoint_name, metavar="NAME",
              help="Back to checkpoint NAME (running guests, no boot) instead of the base image.")
@click.option("--cold", is_flag=True, help="With --to: only the checkpoint's disks, then boot.")
def reset_cmd(team_range, all_teams, parallel, nodes, to, cold, **kwargs):
    """Back to pristine (fresh overlays from the base image, boot) or to a checkpoint;
    nodes in parallel; wait until they answer on SSH."""
    if cold and not to:
        raise click.UsageError("--cold needs --to NAME")
    teams = _class_teams(kwargs, team_range, all_teams)
    if not to:  # back to the base image: build it first if it is missing and has a recipe
        _build_missing_images(kwargs, teams)
    if teams:
        def work(lab, progress):
            unknown = [n for n in nodes if n not in {x.name for x in lab.plan.nodes}]
            if unknown:
                raise click.BadParameter(f"no node {unknown[0]!r} in {lab.plan.lab}", param_hint="--node")
            if to:
                return pipeline.reset_to(lab, to, list(nodes), progress, cold)
            return pipeline.reset(lab, list(nodes), progress)

        _run_class(kwargs, teams, parallel, f"reset --to {to}" if to else "reset", work,
                   start_private=not to, check=not to, columns=("answering",), row=lambda ready: [str(len(ready))])
        return
    lab = _open(kwargs, check=not to)
    try:
        unknown = [n for n in nodes if n not in {x.name for x in lab.plan.nodes}]
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
        if node not in {n.name for n in lab.plan.nodes}:
            raise click.BadParameter(f"no node {node!r} in {lab.plan.lab}", param_hint="NODE")
        argv = pipeline.ssh_target(lab, node).argv(list(command), interactive=not command, shell=True)
    finally:
        lab.close()
    os.execvp(argv[0], argv)


@main.command("console")
@lab_options
@click.argument("node")
@click.option("--log", "show_log", is_flag=True, help="Print what the console has shown so far, and return.")
def console_cmd(node, show_log, **kwargs):
    """Attach to NODE's serial console (as `virsh console`; leave with Ctrl+]), or print
    its log so far."""
    import os
    import shutil

    lab = _open(kwargs, start_private=False, check=False)
    try:
        if node not in {n.name for n in lab.plan.nodes}:
            raise click.BadParameter(f"no node {node!r} in {lab.plan.lab}", param_hint="NODE")
        if show_log:
            click.echo(pipeline.serial_log(lab, node), nl=False)
            return
        planned = lab.plan.node(node)
        uri, domain = planned.host.uri, planned.domain
    finally:
        lab.close()
    virsh = shutil.which("virsh")
    if virsh is None:
        raise click.ClickException("virsh is not installed (Debian: libvirt-clients)")
    os.execv(virsh, [virsh, "-c", uri, "console", domain])


@main.command("handout")
@lab_options
@class_options
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory for the handouts: <lab>-t<team>/ and <lab>-t<team>.zip per team.")
@click.option("--jump", metavar="USER@HOST", help="Students reach the nodes through this lab host (ProxyJump).")
def handout_cmd(team_range, all_teams, parallel, out_dir, jump, **kwargs):
    """Per team what its students need, and nothing of other teams: a key pair of the
    team's own installed for user `student` (sudo) on its nodes, an ssh_config, the node
    table, the course credentials and a README. The nodes must be up."""
    if jump is not None and not re.fullmatch(r"(?:[A-Za-z0-9._-]+@)?[A-Za-z0-9.-]+(?::[0-9]{1,5})?", jump):
        raise click.BadParameter(f"{jump!r} is not USER@HOST[:PORT]", param_hint="--jump")
    teams = _class_teams(kwargs, team_range, all_teams)
    if teams:
        _run_class(kwargs, teams, parallel, "handout",
                   lambda lab, progress: str(pipeline.write_handout(lab, out_dir, jump, progress)),
                   columns=("handout",), row=lambda d: [d])
        return
    lab = _open(kwargs, start_private=False, check=False)
    try:
        target = pipeline.write_handout(lab, out_dir, jump, RichProgress(console.real))
    finally:
        lab.close()
    out.print(f"{target}/ and {target}.zip", highlight=False)


@main.command("inventory")
@lab_options
@class_options
def inventory_cmd(team_range, all_teams, parallel, **kwargs):
    """Write ssh_config, hosts and an Ansible YAML inventory for the lab; print their paths."""
    teams = _class_teams(kwargs, team_range, all_teams)
    if teams:
        _run_class(kwargs, teams, parallel, "inventory",
                   lambda lab, progress: {k: str(v) for k, v in asdict(pipeline.handoff(lab, {})).items()},
                   columns=("ssh config",), row=lambda files: [files["ssh_config"]])
        return
    lab = _open(kwargs, start_private=False, check=False)
    try:
        files = pipeline.handoff(lab, {})
    finally:
        lab.close()
    for kind, path in asdict(files).items():
        out.print(f"{kind}: {path}", highlight=False)


def _team_status(lab, progress) -> dict:
    """A team's line of the class table (lab/status.TeamLine), with its whole status for --json."""
    with progress.stage("status"):
        data = pipeline.status(lab)
        found = pipeline.list_checkpoints(lab)
    return {**asdict(data.team_line(lab.topology.roles, found)), "status": data.to_json()}


def _down_teams(kwargs, team_range, all_teams, parallel, as_json) -> None:
    from labbuilder.cli.output import ClassProgress
    from labbuilder.lab import teams as teams_mod

    teams = _class_teams(kwargs, team_range, all_teams)
    shared = ClassProgress(console.real, len(teams), "down")
    try:
        results, also = teams_mod.down_teams(_request(**kwargs), teams, parallel or teams_mod.default_parallel(),
                                             shared.team, shared.done)
    finally:
        shared.stop()
    for r in also:
        console.print(f"[red]-[/red] {r}", highlight=False)
    _class_end(results, as_json, "down", ("removed",), lambda removed: [str(len(removed))])


def _print_reach(lab) -> None:
    first = lab.plan.nodes[0].name
    topo = str(lab.plan.topology_path)
    team = f" --team {lab.plan.team}" if lab.plan.team != 1 else ""
    console.print(f"Reach a node:  labbuilder ssh {topo} {first}{team} [-- COMMAND]", highlight=False)
    console.print(f"ssh config:    ssh -F {lab.state / 'ssh_config'} {first}", highlight=False)


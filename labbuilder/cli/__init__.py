"""The command line: parses options, calls the library, prints. Nothing else lives here."""

from __future__ import annotations

import json
from pathlib import Path

import click

from labbuilder import __version__
from labbuilder.model.errors import LabError
from labbuilder.model.request import LabRequest
from labbuilder.progress import RichProgress


class _LazyConsole:
    """rich's Console, imported on first use: importing rich costs ≈ 0.4 s on a host busy
    with booting guests, and `down` should have stopped them by then."""

    def __init__(self, **options) -> None:
        self._options = options
        self._console = None

    @property
    def real(self):
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return self._console

    def __getattr__(self, name: str):
        return getattr(self.real, name)


def _table(*columns, **options):
    from rich.table import Table

    return Table(*columns, **options)


console = _LazyConsole(stderr=True)
out = _LazyConsole()


class _LazyLab:
    """labbuilder.lab, imported on first use: `down` (labbuilder.teardown) needs none of
    its planning, rendering and SSH while the guests it stops take the CPU."""

    def __getattr__(self, name: str):
        from labbuilder.lab import pipeline as lab

        return getattr(lab, name)


lab_mod = _LazyLab()


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


class LabGroup(click.Group):
    """Turns LabError into one or two lines and an exit code (traceback with --debug)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except LabError as e:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            for i, line in enumerate(e.lines()):
                # Escaped: user text such as "[a-z0-9-]" in a message is not rich markup.
                text = "[red]error:[/red] " + _escape(line) if i == 0 else line
                console.print(text, highlight=False, markup=i == 0, soft_wrap=True)
            log = e.log
            if log and not any("full log" in l for l in e.lines()):
                console.print(f"full log: {log}", highlight=False)
            ctx.exit(e.exit_code)


@click.group(cls=LabGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="labbuilder")
@click.option("--debug", is_flag=True, help="Show the traceback of errors.")
@click.pass_context
def main(ctx, debug):
    """labbuilder builds the physical layer of hands-on training labs on libvirt hosts
    (networks, VMs, disks, addresses) and the guest images they run on."""
    ctx.obj = {"debug": debug}


cache_option = click.option(
    "--cache", type=click.Path(path_type=Path), default=None,
    help="Image cache directory (default: $LABBUILDER_IMAGE_CACHE or ~/.cache/labbuilder/images).")


@main.group()
def image():
    """Build base images from recipes in images/, list and inspect them."""


@image.command("build")
@click.argument("recipe", type=click.Path(path_type=Path))
@cache_option
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
def image_build(recipe, cache, as_json):
    """Build RECIPE (e.g. images/debian-12.yaml) into the cache; instant if already built."""
    from labbuilder.image import build as image_mod  # the image commands only: lab commands start without it
    from labbuilder.model.recipe import load_recipe

    rec = load_recipe(recipe)
    cache = cache or image_mod.default_cache_dir()
    built = image_mod.build(rec, cache, RichProgress(console.real))
    _print_image(built, as_json)


@image.command("list")
@cache_option
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def image_list(cache, as_json):
    """List the images in the cache."""
    from labbuilder.image import build as image_mod

    images = image_mod.list_images(cache or image_mod.default_cache_dir())
    if as_json:
        out.print_json(json.dumps([{"name": b.name, "path": str(b.image), **b.manifest["image"]}
                                   for b in images]))
        return
    table = _table("name", "recipe hash", "built", "virtual", "on disk", "path")
    for b in images:
        m = b.manifest
        table.add_row(b.name, m["recipe_hash"][:12], m["built_at"], _size(m["image"]["virtual_size"]),
                      _size(m["image"]["size"]), str(b.image))
    out.print(table)


@image.command("info")
@click.argument("name")
@cache_option
@click.option("--json", "as_json", is_flag=True, help="Print manifest and qemu-img info as JSON.")
def image_info(name, cache, as_json):
    """Show the manifest of image NAME and what qemu-img says about its file."""
    from labbuilder.image import build as image_mod
    from labbuilder.system import qemuimg

    built = image_mod.find_image(cache or image_mod.default_cache_dir(), name)
    _print_image(built, as_json, qemu_info=qemuimg.info(built.image))


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def _print_image(built, as_json: bool, qemu_info: dict | None = None) -> None:
    data = {"path": str(built.image), "cached": built.cached, "manifest": built.manifest}
    if qemu_info is not None:
        data["qemu_img_info"] = qemu_info
    if as_json:
        out.print_json(json.dumps(data))
        return
    m = built.manifest
    table = _table(show_header=False, box=None)
    rows = [("name", m["name"]), ("path", str(built.image)), ("recipe hash", m["recipe_hash"]),
            ("built", m["built_at"]), ("format", m["image"]["format"]),
            ("virtual size", _size(m["image"]["virtual_size"])), ("on disk", _size(m["image"]["size"])),
            ("sha256", m["image"]["sha256"]), ("md5", m["image"]["md5"])]
    rows += [(f"glance {k}", str(v)) for k, v in m["glance"].items() if k not in ("checksum", "os_hash_value")]
    if qemu_info is not None:
        rows += [("qemu-img format", qemu_info["format"]),
                 ("qemu-img compat", str(qemu_info.get("format-specific", {}).get("data", {}).get("compat", ""))),
                 ("backing file", qemu_info.get("backing-filename", "none"))]
    for k, v in rows:
        table.add_row(f"[bold]{k}[/bold]", v)
    out.print(table)


# ---- labs ----

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
    lab = lab_mod.open_lab(_request(**kwargs), start_private, check)
    _describe(lab)
    return lab


def _describe(lab) -> None:
    """Where the lab lives, to stderr."""
    where = ", ".join(sorted({h.name for h in lab.plan.hosts}))
    click.secho(f"{lab.plan.lab} team {lab.plan.team} on {where}; "
                f"domain type {lab.domain_type} ({lab.accel_reason})", dim=True, err=True)
    if any(h.ssh_prefix for h in lab.plan.hosts):
        click.secho(f"No system libvirtd is used here: the lab lives in a private libvirtd in its own "
                    f"mount and network namespaces ({lab_mod.state_root() / 'libvirtd'}); reach guests "
                    f"with `labbuilder ssh` or the lab's ssh_config.", dim=True, err=True)
    if lab.plan.memory_note:
        click.echo(click.style("note:", fg="yellow") + f" {lab.plan.memory_note}", err=True)


_SYMBOL = {"create": "[green]+[/green]", "upload": "[green]+[/green]", "change": "[yellow]~[/yellow]",
           "start": "[cyan]>[/cyan]", "remove": "[red]-[/red]"}


def _print_actions(actions) -> None:
    for a in actions:
        detail = f" [dim]({a.detail})[/dim]" if a.detail else ""
        out.print(f"{_SYMBOL[a.verb]} {a.verb} {a.kind} {a.name} on {a.host.name}{detail}", highlight=False)
    counts = {v: sum(a.verb == v for a in actions) for v in ("create", "upload", "change", "start", "remove")}
    out.print("Plan: " + ", ".join(f"{n} to {v}" for v, n in counts.items() if n) if actions
              else "No changes: the hosts match the topology.")


def _node_rows(lab):
    table = _table("node", "domain", "host", "roles", "memory", "NICs", "disks")
    for n in lab.plan.nodes:
        nics = "\n".join(f"{x.guest_name} {x.network_key} {x.ip or ('dhcp' if x.dhcp else '-')} {x.mac}"
                          + ("" if x.configure else " (unconfigured)") for x in n.nics)
        disks = ", ".join(f"{d.target} {_size(d.size_bytes)}" for d in n.disks) or "-"
        table.add_row(n.key, n.name, n.host.name, ",".join(n.roles), f"{n.memory_mib} MiB", nics, disks)
    return table


def _network_rows(lab):
    table = _table("network", "name", "host", "mode", "bridge", "subnet")
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
        "nodes": lab_mod.inventory(lab.plan, {})["all"]["hosts"],
    }


@main.command("plan")
@lab_options
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def plan_cmd(as_json, **kwargs):
    """Show what `up` would create, change or remove on each host; changes nothing
    (not even starting the private libvirtd `up` would start)."""
    lab = _open(kwargs, start_private=None)
    try:
        actions = lab_mod.changes(lab)
    finally:
        lab.close()
    if as_json:
        out.print_json(json.dumps(_plan_json(lab, actions)))
        return
    out.print(_node_rows(lab))
    out.print(_network_rows(lab))
    _print_actions(actions)


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
@click.option("--json", "as_json", is_flag=True, help="Print the resulting status as JSON.")
def up_cmd(teams, no_wait, no_config, checkpoints, as_json, **kwargs):
    """Bring the lab up for a team: networks, volumes, seeds, domains; wait for SSH;
    then run the config stage (the topology's roles, in order)."""
    labs = [_open({**kwargs, "team": t}) for t in (teams or [kwargs["team"]])]
    run_config = not (no_wait or no_config) and bool(labs[0].topology.roles)
    progress = RichProgress(console.real)
    try:
        if run_config:
            lab_mod.check_config(labs[0])  # before anything changes
        # Converge every team first, then wait for all of them: their guests boot together.
        changed = [lab_mod.up(lab, progress) for lab in labs]
        for lab, actions in zip(labs, changed):
            ready = None if no_wait else lab_mod.wait(lab, progress)
            if not actions:
                console.print(f"Nothing to do: {lab.plan.lab} team {lab.plan.team} already matches the topology.")
            if run_config:
                ran = lab_mod.configure(lab, progress, ready, checkpoints_after=checkpoints)
                console.print(f"Config stage: {'ran ' + ', '.join(ran) if ran else 'every role already done'}.")
            _print_status(lab_mod.status(lab, ready if ready is not None else {}), as_json)
        _print_reach(labs[0])
    finally:
        for lab in labs:
            lab.close()


@main.command("configure")
@lab_options
@click.option("--from", "start", metavar="ROLE", help="Start at ROLE (run again even if done).")
@click.option("--until", metavar="ROLE", help="Stop after ROLE.")
@click.option("--only", metavar="ROLE", help="Run ROLE alone (again even if done).")
@click.option("--driver", type=click.Choice(["builtin", "ansible"]), default="builtin", show_default=True,
              help="builtin: roles/<role>/ step scripts over SSH; ansible: ansible-playbook <role>.yml.")
@click.option("--checkpoints", is_flag=True, help="Checkpoint the team after each role (after-<role>).")
def configure_cmd(start, until, only, driver, checkpoints, **kwargs):
    """Run the config stage: the topology's roles in order, resuming after the last
    finished one (recorded on the libvirt host)."""
    if only and (start or until):
        raise click.UsageError("--only cannot be combined with --from or --until")
    lab = _open(kwargs, start_private=False, check=False)
    try:
        ran = lab_mod.configure(lab, RichProgress(console.real), start=start, until=until, only=only,
                                driver=driver, checkpoints_after=checkpoints)
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
        cp = lab_mod.take_checkpoint(lab, name, RichProgress(console.real))
    finally:
        lab.close()
    if as_json:
        out.print_json(json.dumps(_checkpoint_json(cp)))
    else:
        out.print(f"Checkpoint {cp.name} of {len(cp.nodes)} node(s) taken; back to it with "
                  f"`labbuilder reset {lab.plan.topology_path} --team {lab.plan.team} --to {cp.name}`.",
                  highlight=False)


def _checkpoint_json(cp) -> dict:
    return {"name": cp.name, "created": cp.created, "role": cp.role, "nodes": list(cp.nodes),
            "missing": list(cp.missing), "memory_bytes": cp.memory_bytes}


@main.command("checkpoints")
@lab_options
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def checkpoints_cmd(as_json, **kwargs):
    """List the team's checkpoints with their role, age, nodes and size."""
    import time

    lab = _open(kwargs, start_private=False, check=False)
    try:
        found = lab_mod.checkpoints(lab)
    finally:
        lab.close()
    if as_json:
        out.print_json(json.dumps([_checkpoint_json(c) for c in found]))
        return
    table = _table("checkpoint", "after role", "age", "nodes", "memory state", title=f"{lab.plan.lab} team {lab.plan.team}")
    for c in found:
        nodes = f"{len(c.nodes)}" + (f" [red](missing {', '.join(c.missing)})[/red]" if c.missing else "")
        table.add_row(c.name, c.role or "-", _age(int(time.time()) - c.created), nodes,
                      _size(c.memory_bytes) if c.memory_bytes is not None else "-")
    out.print(table if found else "No checkpoints.")


@main.command("status")
@lab_options
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def status_cmd(as_json, **kwargs):
    """Per node: host, libvirt state, addresses, SSH; per network: bridge, active."""
    lab = _open(kwargs, start_private=False, check=False)
    try:
        _print_status(lab_mod.status(lab), as_json)
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
            ready = lab_mod.reset_to(lab, to, list(nodes), progress, cold)
        else:
            ready = lab_mod.reset(lab, list(nodes), progress)
        _print_status(lab_mod.status(lab, ready, probe_rest=True), False)
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
        argv = lab_mod.ssh_target(lab, node).argv(list(command), interactive=not command, shell=True)
    finally:
        lab.close()
    os.execvp(argv[0], argv)


@main.command("inventory")
@lab_options
def inventory_cmd(**kwargs):
    """Write ssh_config, hosts and an Ansible YAML inventory for the lab; print their paths."""
    lab = _open(kwargs, start_private=False, check=False)
    try:
        files = lab_mod.write_handoff(lab, {})
    finally:
        lab.close()
    for kind, path in files.items():
        out.print(f"{kind}: {path}", highlight=False)


def _print_status(data: dict, as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps(data))
        return
    table = _table("node", "host", "state", "addresses", "ssh", "roles done", "age",
                  title=f"{data['lab']} team {data['team']}")
    for n in data["nodes"]:
        addrs = " ".join(f"{k}={v}" for k, v in n["addresses"].items() if v) or "-"
        done = [r for r in n["roles"] if r in n["roles_done"]]
        table.add_row(n["node"], n["host"], n["state"], addrs, "[green]yes[/green]" if n["ssh"] else "[red]no[/red]",
                      f"{len(done)}/{len(n['roles'])}" if n["roles"] else "-", _age(n["age_seconds"]))
    out.print(table)
    nets = _table("network", "name", "subnet", "bridge", "active")
    for n in data["networks"]:
        nets.add_row(n["network"], n["name"], n["subnet"] or "-", n["bridge"] or "-",
                     "yes" if n["active"] else ("no" if n["exists"] else "absent"))
    out.print(nets)


def _age(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _print_reach(lab) -> None:
    first = lab.plan.nodes[0].key
    topo = str(lab.plan.topology_path)
    team = f" --team {lab.plan.team}" if lab.plan.team != 1 else ""
    console.print(f"Reach a node:  labbuilder ssh {topo} {first}{team} [-- COMMAND]", highlight=False)
    console.print(f"ssh config:    ssh -F {lab.state / 'ssh_config'} {first}", highlight=False)


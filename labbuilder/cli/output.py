"""What the CLI prints: the consoles (rich, imported on first use), tables, the error
edge's lines, progress, actions and status."""

from __future__ import annotations

import json
from dataclasses import asdict

from labbuilder.reporting import Progress


class _LazyConsole:
    """rich's Console, imported on first use: importing rich costs ≈ 0.4 s on a host busy
    with booting guests, and `down` should have stopped them by then."""

    def __init__(self, **options) -> None:
        self._options = options
        self._console = None

    @property
    def real(self):
        if self._console is None:
            import os

            from rich.console import Console

            self._console = Console(**self._options)
            if not self._console.is_terminal and "COLUMNS" not in os.environ:
                # To a pipe or a log: tables keep every cell whole instead of fitting 80 columns.
                self._console = Console(**self._options, width=1000)
        return self._console

    def __getattr__(self, name: str):
        return getattr(self.real, name)


def new_table(*columns, **options):
    from rich.table import Table

    return Table(*columns, **options)


console = _LazyConsole(stderr=True)
out = _LazyConsole()


def size_text(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


SYMBOL = {"create": "[green]+[/green]", "upload": "[green]+[/green]", "add": "[green]+[/green]",
          "change": "[yellow]~[/yellow]", "start": "[cyan]>[/cyan]", "remove": "[red]-[/red]"}


def print_actions(actions) -> None:
    for a in actions:
        detail = f" [dim]({a.detail})[/dim]" if a.detail else ""
        out.print(f"{SYMBOL[a.verb]} {a.verb} {a.kind} {a.name} on {a.host.name}{detail}", highlight=False)
    counts = {v: sum(a.verb == v for a in actions) for v in ("create", "upload", "add", "change", "start", "remove")}
    out.print("Plan: " + ", ".join(f"{n} to {v}" for v, n in counts.items() if n) if actions
              else "No changes: the hosts match the topology.")


def print_status(status, as_json: bool) -> None:
    """A LabStatus (lab/status) as two tables, nodes and networks, or as JSON."""
    if as_json:
        out.print_json(json.dumps(status.to_json()))
        return
    table = new_table("node", "host", "state", "addresses", "ssh", "roles done", "age",
                      title=f"{status.lab} team {status.team}")
    for n in status.nodes:
        addrs = " ".join(f"{k}={v}" for k, v in n.addresses.items() if v) or "-"
        state = "not created" if n.state == "absent" else n.state
        table.add_row(n.node, n.host, state, addrs, "[green]yes[/green]" if n.ssh else "[red]no[/red]",
                      f"{len(n.roles_finished)}/{len(n.roles)}" if n.roles else "-", age(n.age_seconds))
    out.print(table)
    nets = new_table("network", "name", "subnet", "bridge", "active")
    for n in status.networks:
        nets.add_row(n.network, n.name, n.subnet or "-", n.bridge or "-",
                     "yes" if n.active else ("no" if n.exists else "absent"))
    out.print(nets)


def print_checks(results: list, as_json: bool) -> None:
    """A line per role, node and check; the failing ones' output tail after the table."""
    if as_json:
        out.print_json(json.dumps([asdict(r) for r in results]))
        return
    if not results:
        out.print("No checks: the lab's roles have no checks/ directory.")
        return
    table = new_table("role", "node", "check", "result")
    for r in results:
        table.add_row(r.role, r.node, r.check, "[green]pass[/green]" if r.passed else f"[red]FAIL ({r.status})[/red]")
    out.print(table)
    for r in results:
        if not r.passed:
            out.print(f"[red]{r.role} / {r.node} / {r.check}[/red] (log: {escape(r.log)})", highlight=False)
            for line in r.tail:
                out.print(f"  | {escape(line)}", highlight=False)
    failed = sum(not r.passed for r in results)
    out.print(f"{len(results) - failed} passed, {failed} failed")


def age(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


class RichProgress(Progress):
    """One spinner line per stage with elapsed time, then a ✓ line with its duration."""

    def __init__(self, console) -> None:
        super().__init__()
        from rich.progress import Progress as Bar
        from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

        self.console = console
        self.bar = Bar(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                       console=console, transient=True)
        self.task = None
        self.name = ""

    def _begin(self, name: str) -> None:
        self.name = name
        self.bar.start()
        self.task = self.bar.add_task(name)

    def _end(self, name: str, failed: bool) -> None:
        self.bar.remove_task(self.task)
        self.bar.stop()
        mark = "[red]✗[/red]" if failed else "[green]✓[/green]"
        self.console.print(f"{mark} {name} [dim]{self.timings[name]:.1f}s[/dim]")

    def step(self, text: str) -> None:
        if self.task is not None:
            self.bar.update(self.task, description=f"{self.name}: {text}")

    def info(self, text: str) -> None:
        self.console.print(text)


class ClassProgress:
    """Many teams at once: a line per team at work (its stage and step), a count of teams
    done, and a ✓/✗ line as each team ends."""

    def __init__(self, console, total: int, what: str) -> None:
        import threading

        from rich.progress import Progress as Bar
        from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

        self.console = console
        self.what = what
        self.lock = threading.Lock()
        self.bar = Bar(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                       console=console, transient=True)
        self.total_task = self.bar.add_task(f"{what}: 0/{total} teams done", total=total)
        self.total = total
        self.finished = 0
        self.bar.start()

    def team(self, team: int) -> Progress:
        return _TeamProgress(self, team)

    def done(self, result) -> None:
        with self.lock:
            self.finished += 1
            self.bar.update(self.total_task, advance=1,
                            description=f"{self.what}: {self.finished}/{self.total} teams done")
        if result.ok:
            self.console.print(f"[green]✓[/green] team {result.team} [dim]{result.seconds:.1f}s[/dim]")
        else:
            self.console.print(f"[red]✗[/red] team {result.team}: {escape(result.first_line)}", highlight=False)

    def stop(self) -> None:
        self.bar.stop()


class _TeamProgress(Progress):
    """One team's stages on its own line of a ClassProgress."""

    def __init__(self, shared: ClassProgress, team: int) -> None:
        super().__init__()
        self.shared, self.team, self.name = shared, team, ""
        self.task = None

    def _show(self, text: str) -> None:
        with self.shared.lock:
            if self.task is None:
                self.task = self.shared.bar.add_task(text)
            else:
                self.shared.bar.update(self.task, description=text)

    def _begin(self, name: str) -> None:
        self.name = name
        self._show(f"team {self.team}: {name}")

    def _end(self, name: str, failed: bool) -> None:
        self._show(f"team {self.team}: {name} {'✗' if failed else '✓'} {self.timings[name]:.1f}s")

    def step(self, text: str) -> None:
        self._show(f"team {self.team}: {self.name}: {text}")

    def info(self, text: str) -> None:
        self.shared.console.print(f"team {self.team}: {text}", highlight=False)

    def close(self) -> None:
        with self.shared.lock:
            if self.task is not None:
                self.shared.bar.remove_task(self.task)
                self.task = None


def print_class(results, as_json: bool, what: str, columns=(), row=None) -> None:
    """One table for the class: team, result, time, then `columns` from `row(value)`, and
    the first line of a failed team's error."""
    if as_json:
        out.print_json(json.dumps([{"team": r.team, "ok": r.ok, "seconds": r.seconds, "error": r.error or None,
                                    "result": r.value if r.ok else None} for r in results], default=str))
        return
    failed = any(not r.ok for r in results)
    table = new_table("team", "result", "time", *columns, *(["error"] if failed else []), title=what)
    for r in results:
        cells = row(r.value) if (row and r.ok) else ["-"] * len(columns)
        table.add_row(str(r.team), "[green]ok[/green]" if r.ok else "[red]FAILED[/red]", f"{r.seconds:.1f}s",
                      *cells, *([escape(r.first_line) if not r.ok else ""] if failed else []))
    out.print(table)


def print_placement(placement, title: str, to=None) -> None:
    """A class placed on the inventory's pool (lab/placement.Placement): team → host per
    slot, then each host's memory and pool space after it."""
    from labbuilder.lab.placement import amount, team_runs

    to = to or out
    slots = placement.slots if len(placement.slots) > 1 else ("host",)
    to.print(title, highlight=False)
    table = new_table("team", *slots, "placement")
    for team, where in placement.teams.items():
        state = ("runs there" if team in placement.running else
                 "[red]does not fit[/red]" if team in placement.unfit else "new")
        table.add_row(str(team), *where.values(), state)
    to.print(table)
    hosts = new_table("host", "teams", "memory promised", "memory left", "pool space left")
    for h in placement.hosts:
        hosts.add_row(h.name, team_runs(h.teams) or "-", f"{amount(h.promised)} of {amount(h.memory)}",
                      amount(h.memory_left), "not known yet" if h.disk_left is None else amount(h.disk_left))
    to.print(hosts)


def placement_json(placement) -> dict:
    """A Placement as JSON-ready dicts (`plan --teams --json`); sizes in bytes."""
    return {"teams": [{"team": team, "slots": where, "runs": team in placement.running,
                       "fits": team not in placement.unfit} for team, where in placement.teams.items()],
            "hosts": [{"host": h.name, "teams": list(h.teams), "memory": h.memory, "promised": h.promised,
                       "pool_space_left": h.disk_left} for h in placement.hosts]}


def html_page(title: str, columns: list[str], rows: list[list[str]], drawing: str, note: str = "") -> str:
    """A static page: a table (one row per team or node) and the lab's drawing (SVG)."""
    from html import escape as h

    head = "".join(f"<th>{h(c)}</th>" for c in columns)
    body = "\n".join("<tr>" + "".join(f"<td>{h(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{h(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #0f172a; }}
table {{ border-collapse: collapse; margin-bottom: 2em; }}
th, td {{ border: 1px solid #cbd5e1; padding: 4px 10px; text-align: left; }}
th {{ background: #e2e8f0; }}
tr.failed td {{ background: #fee2e2; }}
</style></head>
<body>
<h1>{h(title)}</h1>
<p>{h(note)}</p>
<table id="teams"><thead><tr>{head}</tr></thead>
<tbody>
{body}
</tbody></table>
<h2>Topology</h2>
{drawing}
</body></html>
"""

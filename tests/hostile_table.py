"""Every hostile input of issue 17 through the real CLI, as a table and a count.

    .venv/bin/python tests/hostile_table.py [--load-recipes]

Topologies go through `labbuilder plan FILE --connect test:///default` and `labbuilder
down FILE --connect test:///default`; inventories through the same two commands with
`tests/data/two-hosts.yaml --hosts FILE`; --connect URIs with topologies/demo.yaml;
recipes through `labbuilder image build FILE --cache DIR` (20 s, then the process group
is killed: an accepted recipe starts a real build), or with --load-recipes only loaded
(`python -c load_recipe(FILE)`), never built. Canaries: the programs the inputs name
create files under /tmp; any such file means a program ran.

Not a test (pytest does not collect it): tests/test_hostile_inputs.py holds the assertions.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLI = str(REPO / ".venv" / "bin" / "labbuilder")
PY = str(REPO / ".venv" / "bin" / "python")
DATA = Path("tests/data")
CONNECT = ["--connect", "test:///default"]
CANARY_SCRIPT = Path("/tmp/lb-canary.sh")
CANARIES = [Path(p) for p in ("/tmp/lb-canary-ran", "/tmp/lb-canary-mirror", "/tmp/lb-canary-tag")]
HOSTILE_CONNECT = [
    f"qemu+ext:///system?command={CANARY_SCRIPT}",
    f"qemu+ssh://root@lab/system?command={CANARY_SCRIPT}",
    f"qemu+ssh://root@lab/system?netcat={CANARY_SCRIPT}",
    "qemu+unix:///system?socket=/tmp/evil.sock",
    "qemu+ssh://-oProxyCommand=x/system",
    "lxc:///",
]


def commands(load_recipes: bool) -> list[tuple[str, list[str]]]:
    """(input, argv) for every hostile input and command it goes through."""
    runs = []
    for f in sorted((DATA / "topologies").glob("hostile-*.yaml")):
        runs += [(str(f), [CLI, verb, str(f), *CONNECT]) for verb in ("plan", "down")]
    for f in sorted((DATA / "inventories").glob("hostile-*.yaml")):
        runs += [(str(f), [CLI, verb, str(DATA / "two-hosts.yaml"), "--hosts", str(f), *CONNECT])
                 for verb in ("plan", "down")]
    for uri in HOSTILE_CONNECT:
        runs += [(f"--connect {uri}", [CLI, verb, "topologies/demo.yaml", "--connect", uri]) for verb in ("plan", "down")]
    for f in sorted((DATA / "recipes").glob("hostile-*.yaml")):
        if load_recipes:
            code = f"from labbuilder.model.recipe import load_recipe; load_recipe({str(f)!r})"
            runs.append((str(f), [PY, "-c", code]))
        else:
            runs.append((str(f), [CLI, "image", "build", str(f), "--cache", "/tmp/lb-hostile-cache"]))
    return runs


def run(argv: list[str]) -> tuple[int | None, str]:
    """Exit status (None: killed after 20 s) and output (stdout + stderr)."""
    p = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         start_new_session=True, env={**os.environ, "COLUMNS": "200"})
    try:
        out, _ = p.communicate(timeout=20)
        return p.returncode, out
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGTERM)
        out, _ = p.communicate()
        return None, out


def verdict(rc: int | None, out: str) -> str:
    if "Traceback" in out:
        return "TRACEBACK"
    if rc is None:
        return "killed after 20 s"
    if rc == 0:
        return "ACCEPTED"
    lines = out.strip().splitlines()
    return "refused" if rc == 2 and lines and lines[0].startswith("error:") else f"exit {rc}"


def main() -> int:
    CANARY_SCRIPT.write_text("#!/bin/sh\ntouch /tmp/lb-canary-ran\n")
    CANARY_SCRIPT.chmod(0o755)
    counts: dict[str, int] = {}
    ran = 0
    for name, argv in commands("--load-recipes" in sys.argv):
        for c in CANARIES:
            c.unlink(missing_ok=True)
        rc, out = run(argv)
        fired = [str(c) for c in CANARIES if c.exists()]
        ran += bool(fired)
        v = verdict(rc, out)
        counts[v] = counts.get(v, 0) + 1
        lines = out.strip().splitlines()
        first = lines[0] if lines else ""
        cmd = argv[1] if argv[0] == CLI else "load_recipe"
        print(f"| {name} | {cmd} | {v} | {rc} | {len(lines)} | {'RAN ' + ','.join(fired) if fired else '-'} | "
              f"{first[:150].replace('|', '/')} |")
    total = sum(counts.values())
    print(f"\n{total} runs: " + ", ".join(f"{k} {n}" for k, n in sorted(counts.items())) + f"; programs run: {ran}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A class placed on a pool of two lab hosts: two private libvirtds on this machine, an
inventory listing them as a pool with a memory limit each. Driven as a user drives it:
the `labbuilder` command in a subprocess.

The `libvirtd` tests boot no guest: `plan --teams` splits the class over both hosts
(sticky for a team whose domain is defined there already), and a class too large is
refused by `plan` and `up` alike with nothing defined on either host. The `vm` test boots
three 1-node teams: `up --teams 1-3` places them, `status` shows where, and another `up`
with the pool listed the other way round leaves every team where it runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO, fake_image_entry

from labbuilder.model.names import OWNER_NS
from labbuilder.system import privatelibvirtd, virt

TOPOLOGY = """\
lab: pooled
description: one small node per team, for placing teams on a pool of hosts
image: debian-12
packages: none
networks:
  lan:
    mode: nat
    subnet: 10.60.0.0/24
    dhcp: [10.60.0.100, 10.60.0.200]
nodes:
  n1:
    memory: 512
    nics:
      - network: lan
"""
# 1 GiB each: two teams of 512 MiB per host.
POOL = """\
pool:
  lab-a: {private: hosta, memory: 1GiB}
  lab-b: {private: hostb, memory: 1GiB}
"""
REVERSED = """\
pool:
  lab-b: {private: hostb, memory: 1GiB}
  lab-a: {private: hosta, memory: 1GiB}
"""


@dataclass(frozen=True)
class Pool:
    state: Path
    a: privatelibvirtd.PrivateDaemon
    b: privatelibvirtd.PrivateDaemon

    def lb(self, *args, inventory="pool.yaml", cache: Path | None = None, timeout=1800) -> subprocess.CompletedProcess:
        """`labbuilder COMMAND pooled.yaml --hosts INVENTORY ARGS…` (a fake image cache unless `cache`)."""
        return subprocess.run([sys.executable, "-m", "labbuilder.cli", args[0], str(self.state / "pooled.yaml"),
                               "--hosts", str(self.state / inventory), "--cache", str(cache or self.state / "cache"),
                               *args[1:]], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "LABBUILDER_STATE": str(self.state), "COLUMNS": "200"})

    def everything(self) -> dict[str, list[str]]:
        """Every domain, network and storage pool on each host."""
        found = {}
        for name, daemon in (("lab-a", self.a), ("lab-b", self.b)):
            conn = virt.connect(daemon.uri)
            try:
                found[name] = sorted([f"domain {d.name()}" for d in conn.listAllDomains()]
                                     + [f"network {n.name()}" for n in conn.listAllNetworks()]
                                     + [f"pool {p}" for p in virt.pool_names(conn)])
            finally:
                conn.close()
        return found


@pytest.fixture(scope="module")
def pool():
    """Both private libvirtds started; afterwards stopped, with all they hold."""
    if os.geteuid() != 0:
        pytest.skip("a private libvirtd needs root (unshare, mounts, bridges)")
    if shutil.which("libvirtd") is None:
        pytest.skip("libvirtd is not installed")
    state = Path(tempfile.mkdtemp(prefix="lbpool-"))
    daemons = []
    try:
        for where in (state / "hosta", state / "hostb"):
            daemons.append(privatelibvirtd.ensure(where))
        (state / "pooled.yaml").write_text(TOPOLOGY)
        (state / "pool.yaml").write_text(POOL)
        (state / "reversed.yaml").write_text(REVERSED)
        fake_image_entry(state / "cache", "debian-12")
        yield Pool(state, *daemons)
    finally:
        for daemon in daemons:
            privatelibvirtd.stop(daemon)
        shutil.rmtree(state, ignore_errors=True)


def _placed(out: str) -> dict[int, str]:
    return {t["team"]: t["slots"]["default"] for t in json.loads(out)["teams"]}


@pytest.mark.libvirtd
def test_plan_splits_the_class_over_both_hosts_and_a_defined_team_stays_where_it_is(pool):
    plan = pool.lb("plan", "--teams", "1-3", "--json")
    assert plan.returncode == 0, plan.stderr
    assert _placed(plan.stdout) == {1: "lab-a", 2: "lab-b", 3: "lab-a"}
    text = pool.lb("plan", "--teams", "1-3").stdout
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in text.splitlines() if line.startswith("│ lab-")]
    assert rows == [["lab-a", "1, 3", "1 GiB of 1 GiB", "0 MiB", "not known yet"],
                    ["lab-b", "2", "512 MiB of 1 GiB", "512 MiB", "not known yet"]]
    # Team 2's domain defined on lab-a (as an earlier `up` would leave it): it stays there,
    # and its memory is promised there; the other teams go around it.
    conn = virt.connect(pool.a.uri)
    try:
        virt.define_domain(conn, f"""<domain type="qemu"><name>pooled-t2-n1</name>
  <metadata><lb:owner xmlns:lb="{OWNER_NS}" lab="pooled" team="2" node="n1" host="lab-a" plan="" created="0"/></metadata>
  <memory unit="MiB">512</memory><os><type arch="x86_64" machine="q35">hvm</type></os></domain>""")
        plan = pool.lb("plan", "--teams", "1-3", "--json")
        assert plan.returncode == 0, plan.stderr
        assert _placed(plan.stdout) == {1: "lab-b", 2: "lab-a", 3: "lab-a"}
        assert [t["runs"] for t in json.loads(plan.stdout)["teams"]] == [False, True, False]
        # status and down find it there, from its ownership metadata.
        status = json.loads(pool.lb("status", "--team", "2", "--json").stdout)
        assert [(n["node"], n["host"], n["state"]) for n in status["nodes"]] == [("n1", "lab-a", "shut off")]
        down = pool.lb("down", "--all-teams")
        assert down.returncode == 0 and "domain pooled-t2-n1" in down.stdout, down.stderr
    finally:
        virt.remove_domain(conn, "pooled-t2-n1")
        conn.close()


@pytest.mark.libvirtd
def test_a_class_too_large_is_refused_before_anything_is_defined_on_either_host(pool):
    before = pool.everything()
    plan = pool.lb("plan", "--teams", "1-5")
    assert (plan.returncode, plan.stdout) == (2, "")
    assert plan.stderr == "error: team 5 does not fit: host lab-a needs 512 MiB more memory\n"
    # `up` refuses in the same line before it changes anything (the image is a stand-in:
    # nothing may get as far as uploading it, let alone booting it).
    up = pool.lb("up", "--teams", "1-5", "--no-wait")
    assert (up.returncode, up.stderr) == (2, plan.stderr), up.stdout
    assert pool.everything() == before


@pytest.mark.vm
@pytest.mark.image
def test_up_places_three_teams_on_both_hosts_and_keeps_them_there(pool, base_image):
    """Three 1-node teams, really booted (not waited for on SSH); the second `up` lists the
    pool the other way round, which would place them anew on other hosts: they stay."""
    cache = base_image.dir.parent
    try:
        up = pool.lb("up", "--teams", "1-3", "--no-wait", cache=cache)
        assert up.returncode == 0, up.stderr
        where = {"lab-a": pool.a.uri, "lab-b": pool.b.uri}
        placed = {1: "lab-a", 2: "lab-b", 3: "lab-a"}
        for team, host in placed.items():
            conn = virt.connect(where[host])
            try:
                assert virt.domain_state(conn, f"pooled-t{team}-n1") == "running", (team, host)
                owner = next(o.owner for o in virt.owned_objects(conn, "pooled", team) if o.kind == "domain")
                assert owner["host"] == host
            finally:
                conn.close()
        status = json.loads(pool.lb("status", "--teams", "1-3", "--json", cache=cache).stdout)
        assert {r["team"]: r["result"]["hosts"] for r in status} == {t: [h] for t, h in placed.items()}
        fresh = pool.lb("plan", "--teams", "1-3", "--json", inventory="reversed.yaml", cache=cache)
        assert _placed(fresh.stdout) == placed and all(t["runs"] for t in json.loads(fresh.stdout)["teams"])
        again = pool.lb("up", "--teams", "1-3", "--no-wait", "--json", inventory="reversed.yaml", cache=cache)
        assert again.returncode == 0, again.stderr
        assert [r["result"]["changes"] for r in json.loads(again.stdout)] == [0, 0, 0]
        assert pool.everything()["lab-b"].count("domain pooled-t2-n1") == 1
    finally:
        pool.lb("down", "--teams", "1-3", cache=cache)

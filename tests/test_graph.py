"""The lab's drawing (Mermaid and SVG) and the class page, checked in a real headless
browser (Debian's chromium): the page renders, with a row per team and the drawing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from lxml import etree

from labbuilder.lab import graph, hosts, pipeline
from labbuilder.lab.plan import plan_lab
from labbuilder.model.topology import load_topology

CHROMIUM = shutil.which("chromium") or "chromium"


def _plan(test_host, name="gridka"):
    topo = load_topology(REPO / "topologies" / f"{name}.yaml")
    slots = hosts.resolve_hosts(topo, test_host, None, Path("/nonexistent"), start=False)
    images = pipeline.find_images(topo, None, required=False)
    return plan_lab(topo, 2, slots, images)


def test_mermaid_has_a_node_per_lab_node_and_an_edge_per_nic(test_host):
    plan = _plan(test_host)
    text = graph.mermaid(plan)
    assert text.startswith("flowchart LR\n")
    assert text.count(" --- net_") == sum(len(n.nics) for n in plan.nodes)
    assert 'node_network_node -- "eth2 172.16.0.7" --- net_public' in text
    assert 'node_network_node -- "eth3 - (unconfigured)" --- net_public' in text
    assert 'net_internal(("internal<br/>isolated 10.0.0.0/24"))' in text


def test_svg_is_well_formed_with_every_node_and_network(test_host):
    plan = _plan(test_host)
    doc = etree.fromstring(graph.svg(plan).encode())
    ns = {"s": "http://www.w3.org/2000/svg"}
    assert [g.get("data-node") for g in doc.findall("s:g[@class='node']", ns)] == [n.name for n in plan.nodes]
    assert [g.get("data-network") for g in doc.findall("s:g[@class='network']", ns)] == ["nat", "internal", "public"]
    assert len(doc.findall("s:line", ns)) == sum(len(n.nics) for n in plan.nodes)
    assert "gridka-t2-internal" in graph.svg(plan)  # team 2's libvirt names


@pytest.mark.subprocess(sys.executable, CHROMIUM)
def test_the_class_page_renders_in_a_browser_with_a_row_per_team(tmp_path, test_host):
    env = {**os.environ, "LABBUILDER_STATE": str(tmp_path / "state")}
    page = tmp_path / "class.html"
    proc = subprocess.run([sys.executable, "-m", "labbuilder.cli", "status", "topologies/gridka.yaml", "--connect",
                           test_host, "--teams", "1-3", "--json", "--html", str(page)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert [t["team"] for t in json.loads(proc.stdout)] == [1, 2, 3]
    browser = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--user-data-dir=" + str(tmp_path / "b")]
    shot = tmp_path / "class.png"
    run = subprocess.run([*browser, f"--screenshot={shot}", "--window-size=1600,900", page.as_uri()],
                         capture_output=True, text=True, timeout=180)
    assert shot.is_file() and shot.stat().st_size > 10_000, run.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    dom = subprocess.run([*browser, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=180).stdout
    tree = etree.HTML(dom)
    rows = [[td.text for td in tr.findall("td")] for tr in tree.findall(".//table[@id='teams']/tbody/tr")]
    assert [(r[0], r[1], r[2]) for r in rows] == [("1", "ok", "0/8"), ("2", "ok", "0/8"), ("3", "ok", "0/8")]
    assert len(tree.findall(".//svg//g[@class='node']")) == 8  # the drawing is in the rendered page

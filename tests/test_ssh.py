"""SSH access to the nodes: strict host keys once labbuilder has given them, the seed
that gives them, and the hand-off files' modes. Pure: no ssh is run."""

from __future__ import annotations

import os
from pathlib import Path

from labbuilder.lab import pipeline, seed
from labbuilder.system import ssh


def _option(argv: list[str], name: str) -> str | None:
    values = [argv[i + 1].split("=", 1)[1] for i, a in enumerate(argv[:-1])
              if a == "-o" and argv[i + 1].startswith(name + "=")]
    return values[-1] if values else None


def test_a_target_with_known_hosts_checks_the_node_key_strictly_under_its_alias(tmp_path):
    access = ssh.Access(tmp_path / "id_ed25519", tmp_path / "known_hosts")
    argv = access.target("10.0.0.3", "gridka-t1-db-node").argv(["true"])
    assert _option(argv, "StrictHostKeyChecking") == "accept-new"  # a listed key that differs is refused
    assert _option(argv, "UserKnownHostsFile") == str(tmp_path / "known_hosts")
    assert _option(argv, "HostKeyAlias") == "gridka-t1-db-node"
    assert _option(argv, "GlobalKnownHostsFile") == "/dev/null"


def test_a_target_without_known_hosts_does_not_check(tmp_path):
    argv = ssh.Access(tmp_path / "id_ed25519").target("10.0.0.3", "x").argv(["true"])
    assert _option(argv, "StrictHostKeyChecking") == "no"
    assert _option(argv, "HostKeyAlias") is None


def test_ssh_config_is_strict_with_each_node_under_its_alias(tmp_path):
    access = ssh.Access(tmp_path / "id", tmp_path / "known_hosts")
    text = ssh.ssh_config([("alpha", "192.168.140.10", "demo-t1-alpha", ())], access)
    assert "  StrictHostKeyChecking accept-new\n" in text
    assert f"  UserKnownHostsFile {tmp_path / 'known_hosts'}\n" in text
    assert "  HostKeyAlias demo-t1-alpha\n" in text
    assert "/dev/null\n  HostKeyAlias" in text and "UserKnownHostsFile /dev/null" not in text


def test_known_hosts_lists_each_alias_once():
    assert ssh.known_hosts([("a", "ssh-ed25519 AAA"), ("b", "ssh-ed25519 BBB")]) == \
        "a ssh-ed25519 AAA\nb ssh-ed25519 BBB\n"


def test_the_seed_gives_the_node_its_host_key_and_no_other():
    s = seed.NodeIdentity("i-1", "alpha", "alpha.lab", ("ssh-ed25519 LAB",), (),
                  host_key=("-----BEGIN OPENSSH PRIVATE KEY-----\nx\n-----END OPENSSH PRIVATE KEY-----\n",
                            "ssh-ed25519 HOST"))
    doc = seed.user_data(s)
    assert doc["ssh_keys"] == {"ed25519_private": s.host_key[0], "ed25519_public": "ssh-ed25519 HOST"}
    assert doc["ssh_genkeytypes"] == [] and doc["ssh_deletekeys"] is True
    assert "ssh_keys" not in seed.user_data(seed.NodeIdentity("i-1", "alpha", "alpha.lab", ("k",), ()))


def test_private_files_are_0600_and_replaced_whole(tmp_path):
    path = tmp_path / "vars.yaml"
    path.write_text("old")
    path.chmod(0o644)
    pipeline.write_private(path, "admin_password: s3cret\n")
    assert path.read_text() == "admin_password: s3cret\n"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert os.listdir(tmp_path) == ["vars.yaml"]  # no temporary file left beside it


def test_state_dirs_are_0700(tmp_path, monkeypatch):
    monkeypatch.setenv("LABBUILDER_STATE", str(tmp_path / "state"))
    team = Path(tmp_path / "state" / "demo-t1")
    pipeline.private_dir(team)
    assert oct(team.stat().st_mode & 0o777) == "0o700"
    assert oct(team.parent.stat().st_mode & 0o777) == "0o700"

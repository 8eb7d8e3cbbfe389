"""Handouts, pure: the files a team gets, and only its own (no ssh, no libvirt)."""

from __future__ import annotations

import zipfile

import yaml

from labbuilder.lab import handout, seed


def _nodes():
    return [handout.NodeLine("db-node", ("common", "db"), "192.168.130.3", {"internal": "10.0.0.3"}),
            handout.NodeLine("auth-node", ("common", "auth"), "192.168.130.4", {"internal": "10.0.0.4"})]


def _write(tmp_path, team, jump=None):
    state = tmp_path / f"state-t{team}"
    state.mkdir()
    key = handout.student_key(state)
    key.parent.mkdir()
    key.write_text(f"PRIVATE KEY OF TEAM {team}\n")
    key.with_suffix(".pub").write_text(f"ssh-ed25519 TEAM{team}\n")
    known = state / "known_hosts"
    known.write_text(f"gridka-t{team}-db-node ssh-ed25519 HOSTKEY\n")
    variables = {"openstack_packages": True, "admin_password": "gridka", "region": "RegionOne",
                 "databases": {"keystone": {"user": "keystoneUser", "password": "keystonePass"}}}
    return handout.write(tmp_path / "out", "gridka", team, _nodes(), state, known,
                         {"db-node": f"gridka-t{team}-db-node", "auth-node": f"gridka-t{team}-auth-node"},
                         variables, jump)


def test_a_team_gets_its_key_config_nodes_credentials_and_readme(tmp_path):
    d = _write(tmp_path, 3, jump="teacher@lab1.example.org")
    assert sorted(p.name for p in d.iterdir()) == ["README.md", "credentials.yaml", "id_ed25519",
                                                   "id_ed25519.pub", "known_hosts", "nodes.txt", "ssh_config"]
    assert oct((d / "id_ed25519").stat().st_mode & 0o777) == "0o600"
    config = (d / "ssh_config").read_text()
    assert "Host db-node\n  HostName 192.168.130.3\n  User student\n  IdentityFile id_ed25519" in config
    assert "  HostKeyAlias gridka-t3-db-node\n" in config and "StrictHostKeyChecking accept-new" in config
    assert config.count("ProxyJump teacher@lab1.example.org") == 2
    assert "auth-node  common,auth  192.168.130.4  internal=10.0.0.4" in (d / "nodes.txt").read_text()
    creds = yaml.safe_load((d / "credentials.yaml").read_text())
    assert creds == {"admin_password": "gridka",
                     "databases": {"keystone": {"user": "keystoneUser", "password": "keystonePass"}}}
    assert "ssh -F ssh_config db-node" in (d / "README.md").read_text()
    with zipfile.ZipFile(tmp_path / "out" / "gridka-t3.zip") as z:
        assert sorted(z.namelist()) == sorted(f"gridka-t3/{p.name}" for p in d.iterdir())
        assert z.read("gridka-t3/id_ed25519") == b"PRIVATE KEY OF TEAM 3\n"
        assert (z.getinfo("gridka-t3/id_ed25519").external_attr >> 16) & 0o777 == 0o600


def test_a_handout_holds_nothing_of_another_team(tmp_path):
    _write(tmp_path, 3)
    d4 = _write(tmp_path, 4)
    text = "".join(p.read_text() for p in d4.iterdir())
    assert "TEAM3" not in text and "TEAM 3" not in text and "gridka-t3" not in text
    assert "ProxyJump" not in (d4 / "ssh_config").read_text()


def test_the_seed_makes_the_student_user_so_a_reset_keeps_the_handout_working():
    user = handout.seed_user("ssh-ed25519 TEAM3")
    doc = seed.user_data(seed.NodeIdentity("i", "db-node", "db-node", ("ssh-ed25519 ADMIN",), (), extra={"users": [user]}))
    assert doc["users"] == [{"name": "student", "shell": "/bin/bash", "sudo": "ALL=(ALL) NOPASSWD:ALL",
                             "lock_passwd": True, "ssh_authorized_keys": ["ssh-ed25519 TEAM3"]}]
    assert doc["ssh_authorized_keys"] == ["ssh-ed25519 ADMIN"]  # root keeps labbuilder's key only


def test_the_install_script_quotes_the_key():
    script = handout.install_script("ssh-ed25519 AAAA x'; rm -rf /")
    assert "printf '%s\\n' 'ssh-ed25519 AAAA x'\"'\"'; rm -rf /' > /home/student/.ssh/authorized_keys" in script

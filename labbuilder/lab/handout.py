"""Handouts: what a team's students need to reach their nodes, and nothing of other
teams. Each team gets a key pair of its own (labbuilder's admin key stays private),
installed for the user `student` (passwordless sudo) on its nodes: through the seed, so
it survives resets, and on the running nodes at once. The handout holds that key, an
ssh_config (host keys checked against the team's known_hosts; through a jump host where
the nodes are not routable from the students' machines), the node table, the course
credentials from the topology's vars, and a one-page README; also as a zip."""

from __future__ import annotations

import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from labbuilder.lab import render
from labbuilder.system import ssh

STUDENT = "student"
# vars keys that hold the course's credentials (the rest is the roles' business)
_CREDENTIAL_WORDS = ("password", "passwords", "secret", "databases", "credentials", "user")


def student_key(state: Path) -> Path:
    """The team's student key (private; .pub beside it), made on first use."""
    return state / "student" / "id_ed25519"


def ensure_student_key(state: Path) -> str:
    return ssh.ensure_keypair(student_key(state))


def install_script(pubkey: str) -> str:
    """Shell run as root on a running node: the student user with `pubkey`, idempotent."""
    return render.render_shell("student-user.sh.j2", user=STUDENT, pubkey=pubkey)


def seed_user(pubkey: str) -> dict:
    """cloud-init's `users` entry for the student (a node made or reset after the handout)."""
    return {"name": STUDENT, "shell": "/bin/bash", "sudo": "ALL=(ALL) NOPASSWD:ALL", "lock_passwd": True,
            "ssh_authorized_keys": [pubkey]}


def credentials(variables: dict) -> dict:
    return {k: v for k, v in variables.items() if any(w in k.lower() for w in _CREDENTIAL_WORDS)}


@dataclass(frozen=True)
class NodeLine:
    name: str
    roles: tuple[str, ...]
    address: str  # where SSH reaches it
    ips: dict  # network → address


def write(out: Path, lab: str, team: int, nodes: list[NodeLine], state: Path, known_hosts: Path | None,
          aliases: dict[str, str], variables: dict, jump: str | None) -> Path:
    """The team's handout directory `out`/<lab>-t<team> and its zip beside it; returns the dir."""
    name = f"{lab}-t{team}"
    target = out / name
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    key = student_key(state)
    shutil.copy(key, target / "id_ed25519")
    shutil.copy(key.with_suffix(".pub"), target / "id_ed25519.pub")
    (target / "id_ed25519").chmod(0o600)
    if known_hosts is not None:
        shutil.copy(known_hosts, target / "known_hosts")
    (target / "ssh_config").write_text(_ssh_config(nodes, aliases, known_hosts is not None, jump))
    (target / "nodes.txt").write_text(_node_table(nodes))
    (target / "credentials.yaml").write_text(yaml.safe_dump(credentials(variables), sort_keys=False) or "{}\n")
    (target / "README.md").write_text(_readme(lab, team, nodes, jump))
    archive = out / f"{name}.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(target.iterdir()):
            info = zipfile.ZipInfo(f"{name}/{f.name}")
            info.external_attr = (0o600 if f.name == "id_ed25519" else 0o644) << 16
            z.writestr(info, f.read_bytes())
    return target


def _ssh_config(nodes: list[NodeLine], aliases: dict[str, str], checked: bool, jump: str | None) -> str:
    blocks = []
    for n in nodes:
        lines = [f"Host {n.name}", f"  HostName {n.address}", f"  User {STUDENT}", "  IdentityFile id_ed25519",
                 "  IdentitiesOnly yes"]
        if checked:
            lines += ["  StrictHostKeyChecking accept-new", "  UserKnownHostsFile known_hosts",
                      f"  HostKeyAlias {aliases[n.name]}"]
        if jump:
            lines.append(f"  ProxyJump {jump}")
        blocks.append("\n".join(lines))
    return ("# From this directory: ssh -F ssh_config NODE (the key and known_hosts are beside it)\n\n"
            + "\n\n".join(blocks) + "\n")


def _node_table(nodes: list[NodeLine]) -> str:
    rows = [("node", "roles", "ssh address", "addresses")]
    rows += [(n.name, ",".join(n.roles) or "-", n.address,
              " ".join(f"{net}={ip}" for net, ip in n.ips.items()) or "-") for n in nodes]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() + "\n" for r in rows)


def _readme(lab: str, team: int, nodes: list[NodeLine], jump: str | None) -> str:
    first = nodes[0].name if nodes else "NODE"
    via = (f"Your nodes are reached through the lab host `{jump}` (ProxyJump): you need an account "
           "there that your instructor gives you.\n\n") if jump else ""
    return f"""# {lab}, team {team}

Your lab: {len(nodes)} node(s), yours alone. Log in from this directory:

    ssh -F ssh_config {first}

You are `{STUDENT}` there, with sudo: `sudo -i` gives you the root shell the course's
steps are written for. The host keys of your nodes are in `known_hosts`: if ssh says a
key changed, ask your instructor (never accept a new one).

{via}## Files

- `nodes.txt`: your nodes, their roles and addresses.
- `credentials.yaml`: the course's passwords (from the lab's topology).
- `id_ed25519`: your team's private key. Keep it to your team.

If a node is broken beyond repair, your instructor can reset it (or the whole team) to a
fresh state or to a checkpoint in seconds; your key stays valid after a reset.
"""

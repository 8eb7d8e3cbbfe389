"""Where a team stands, as `status` (and `up`, `reset`) report it: per node its libvirt
state, addresses, SSH and finished roles; per network its bridge and whether it is active.
The CLI renders these as a table, or as JSON (to_json: the fields as they are named here)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class NodeStatus:
    node: str  # the topology's name
    domain: str  # libvirt's name
    host: str  # where it lands, as shown (Host.name)
    state: str  # libvirt's: running, shut off, starting, absent …
    addresses: dict[str, str | None]  # guest interface → address (a lease, else the topology's)
    ssh: bool  # answers on SSH
    roles: tuple[str, ...]
    roles_done: tuple[str, ...]  # recorded on the libvirt host by the config stage
    age_seconds: int | None  # since the domain was created; None: not known

    @property
    def roles_finished(self) -> list[str]:
        """The node's roles that are done, in the topology's order."""
        return [r for r in self.roles if r in self.roles_done]


@dataclass(frozen=True)
class NetworkStatus:
    network: str  # the topology's name
    name: str  # libvirt's name
    host: str
    subnet: str | None
    bridge: str | None
    active: bool
    exists: bool


@dataclass(frozen=True)
class LabStatus:
    lab: str
    team: int
    nodes: tuple[NodeStatus, ...]
    networks: tuple[NetworkStatus, ...]

    def to_json(self) -> dict:
        """The status as JSON-ready dicts and lists (`status --json`)."""
        return asdict(self)

    def team_line(self, roles: tuple[str, ...], checkpoints: list) -> TeamLine:
        """The team in one line of a class table: `roles` the topology's, in order;
        `checkpoints` the team's (lab/checkpoints.Checkpoint)."""
        done = [r for r in roles if any(r in n.roles for n in self.nodes)
                and all(r in n.roles_done for n in self.nodes if r in n.roles)]
        ages = [n.age_seconds for n in self.nodes if n.age_seconds is not None]
        return TeamLine(
            nodes=len(self.nodes), running=sum(n.state == "running" for n in self.nodes),
            ssh=sum(n.ssh for n in self.nodes),
            roles_done=(f"{len(done)}/{len(roles)}" + (f" (last {done[-1]})" if done else "")) if roles else "-",
            last_checkpoint=max(checkpoints, key=lambda c: c.created).name if checkpoints else None,
            hosts=sorted({n.host for n in self.nodes}), age_seconds=max(ages) if ages else None)


@dataclass(frozen=True)
class TeamLine:
    """A team as `status --teams` shows it: nodes running and answering, roles every node
    of them has finished, its newest checkpoint, where it lives, its oldest node's age."""

    nodes: int
    running: int
    ssh: int
    roles_done: str  # "3/8 (last auth)"
    last_checkpoint: str | None
    hosts: list[str]
    age_seconds: int | None

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

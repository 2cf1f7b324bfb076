"""State digests: one hash that says whether two machines are in the same state.

The digest covers the CPU and device state bytes, all of RAM and the whole
disk as the guest sees it (image plus overlay).  Two runs that agree on the
digest at the same position agree on everything the guest can observe.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from chrono.core.machine import Machine


@dataclass(frozen=True)
class Digest:
    position: int       # steps
    state: str          # CPU + devices
    ram: str
    disk: str           # "" when there is no disk

    @property
    def combined(self) -> str:
        return hashlib.sha256(f"{self.position}:{self.state}:{self.ram}:{self.disk}".encode()).hexdigest()


def _sha256(buffer) -> str:
    return hashlib.sha256(memoryview(buffer)).hexdigest()


def state_digest(machine: Machine) -> Digest:
    machine.materialize()               # a lazily restored page counts with its content
    disk = machine.disk.data if machine.disk is not None else None
    return Digest(
        position=machine.steps,
        state=_sha256(machine.save_state()),
        ram=_sha256(machine.ram),
        disk=_sha256(disk) if disk is not None else "",
    )

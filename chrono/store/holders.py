"""What keeps each snapshot in the store.

These are the roots `chrono store gc` starts from (chrono.store.gc), told per
snapshot so that listings can say why a snapshot stays, or that gc removes it:
a name (savevm NAME, snap tag), a recording (its keyframes and the snapshots
its log loads) or the lease of a running guest.  A parent link keeps nothing.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from chrono.store.store import LEASE_PREFIX, Reader, lease_alive
from chrono.store.traces import all_traces


@dataclass
class KeyframeOf:
    recording: str
    index: int                  # 0 is where the recording starts
    position: int               # instructions from the recording's start


@dataclass
class Holders:
    names: list[str] = field(default_factory=list)
    keyframes: list[KeyframeOf] = field(default_factory=list)
    loaded_by: list[str] = field(default_factory=list)     # recordings whose log loads it
    leases: list[str] = field(default_factory=list)        # host/pid/tag of running guests
    dead_leases: list[str] = field(default_factory=list)   # of ended ones: gc drops them

    @property
    def recordings(self) -> list[str]:
        return sorted({k.recording for k in self.keyframes} | set(self.loaded_by))

    @property
    def kept(self) -> bool:
        return bool(self.names or self.keyframes or self.loaded_by or self.leases)


@dataclass
class SnapshotHolders:
    by_id: dict[str, Holders]
    unreadable: int = 0         # recordings that could not be read (`chrono trace verify`)

    def of(self, sid: str) -> Holders:
        return self.by_id.get(sid) or Holders()


def snapshot_holders(r: Reader) -> SnapshotHolders:
    """For every snapshot something keeps: what keeps it."""
    by_id: dict[str, Holders] = {}
    for name, sid in r.refs(strict=False, leases=True).items():
        if name.startswith(LEASE_PREFIX):
            holder = name[len(LEASE_PREFIX):]
            h = by_id.setdefault(sid, Holders())
            (h.leases if lease_alive(holder) else h.dead_leases).append(holder)
        else:
            by_id.setdefault(sid, Holders()).names.append(name)
    traces = all_traces(r)
    for trace in traces:
        for i, k in enumerate(trace.keyframes):
            by_id.setdefault(k.snapshot, Holders()).keyframes.append(
                KeyframeOf(trace.name, i, k.position))
        for sid in dict.fromkeys(trace.loads):
            by_id.setdefault(sid, Holders()).loaded_by.append(trace.name)
    unreadable = sum(1 for _ in r.traces()) - len(traces)
    return SnapshotHolders(by_id, unreadable)

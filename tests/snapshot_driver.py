"""Driving a demo guest the way `chrono run` does, for the snapshot tests, and
the child process that restores a snapshot in a new process.

A Driver is a Session over a Console that reads a script from a file and
writes guest output to another file (the pattern of test_determinism.py).
What the host still holds for the guest at any moment, the input not yet
taken by the UART, is `remaining()`: a continuation from a snapshot gets
exactly that as its input, so it must reach exactly the state the
uninterrupted run reaches.

As a script (`python snapshot_driver.py STORE NAME STEPS INPUT OUTPUT`): open
the store, build a machine from snapshot NAME with guest_from_snapshot, run
STEPS steps (or until the run ends) feeding INPUT, write the guest's output to
OUTPUT and print the outcome and the state digest as one JSON line.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from chrono.core.console import Console
from chrono.core.digest import state_digest
from chrono.core.session import Session

EPOCH = 1_764_000_000 * 10**9      # a fixed wall clock, as in test_determinism.py


def fixed_entropy(n: int) -> bytes:
    """What the guest's virtio-rng gets here: the same in every run, since these
    tests compare runs byte for byte (`chrono run` gives it os.urandom)."""
    return bytes((151 * i + 7) & 0xFF for i in range(n))


class Driver:
    def __init__(self, machine, script: bytes, workdir: Path, tag: str):
        self.machine = machine
        self.session = Session(machine, entropy=fixed_entropy)
        self.input_path = Path(workdir) / f"{tag}.in"
        self.output_path = Path(workdir) / f"{tag}.out"
        self.input_path.write_bytes(script)
        self._in = open(self.input_path, "rb")
        self._out = open(self.output_path, "wb")
        self.console = Console(stdin=self._in, stdout=self._out)
        assert not self.console.interactive

    def run(self, max_steps: int | None = None):
        return self.session.run(self.console, max_steps=max_steps, paced=False)

    def remaining(self) -> bytes:
        """The input the guest has not been given yet (queued or not yet read)."""
        queued = list(self.session.pending)
        assert all(isinstance(e, bytes) for e in queued), queued
        unread = self.input_path.read_bytes()[os.lseek(self._in.fileno(), 0, os.SEEK_CUR):]
        return b"".join(queued) + unread

    @property
    def output(self) -> bytes:
        if not self._out.closed:
            self._out.flush()
        return self.output_path.read_bytes()

    def close(self) -> None:
        self.console.close()
        self._in.close()
        self._out.close()


def digest_dict(machine) -> dict:
    d = state_digest(machine)
    return {"position": d.position, "state": d.state, "ram": d.ram, "disk": d.disk,
            "combined": d.combined}


def main(store_dir: str, name: str, steps: str, input_path: str, output_path: str) -> None:
    from chrono.store.capture import guest_from_snapshot
    from chrono.store.store import Store

    with Store.open(store_dir) as store:
        guest, snapshots = guest_from_snapshot(store, name)
        try:
            state_after_restore = guest.machine.save_state().hex()
            with open(input_path, "rb") as fin, open(output_path, "wb") as fout:
                console = Console(stdin=fin, stdout=fout)
                outcome = Session(guest.machine, entropy=fixed_entropy).run(
                    console, max_steps=int(steps), paced=False)
                console.close()
            result = {"kind": outcome.kind, "exit_code": outcome.exit_code, "steps": outcome.steps,
                      "digest": digest_dict(guest.machine),
                      "state_after_restore": state_after_restore}
        finally:
            snapshots.close()
    print(json.dumps(result))


if __name__ == "__main__":
    main(*sys.argv[1:])

"""The determinism contract: a run is a function of its starting state and its
input, whoever drives it and however.

Runs here use the library the way `chrono run` does (launch a GuestSpec, drive
it with a Session over a Console), with the console reading a script from a
file and writing guest output to a file.  Their state digests (CPU and device
state, all of RAM, the whole disk as the guest sees it) are compared at equal
instruction counts.  The workloads write files (disk and block cache), run the
benchmark (RAM, mul/div) and power off, so every part of the digest moves.
"""

import random
from pathlib import Path

import pytest

from chrono.core.console import Console
from chrono.core.digest import state_digest
from chrono.core.launch import GuestSpec, launch
from chrono.core.session import Session

EPOCH = 1_764_000_000 * 10**9      # a fixed wall clock: the RTC epoch is an input, like keystrokes

DISK_SIZE = 4 << 20

SCRIPT = (
    "help\n"
    "echo determinism\n"
    "write alpha the first file\n"
    "write beta " + "b" * 600 + "\n"
    "ls\n"
    "bench 1\n"
    "cat alpha\n"
    "rm alpha\n"
    "sync\n"
    "write gamma written after the sync\n"
    "fsck\n"
    "uptime\n"
    "poweroff\n"
)

# Positions (instruction counts) at which runs are stopped and compared: at the
# first instruction, during boot (past the BSS clearing loop) and formatting, while commands are read and files written, inside the
# benchmark, and after it.
CHECKPOINTS = [1, 250_000, 400_000, 2_500_000, 7_777_777, 10_200_000]


class Run:
    """A fresh demo machine on its own copy-on-write view of a blank image,
    driven by a Session whose console reads `script` from a file."""

    def __init__(self, tmp_path: Path, name: str, image: Path, script: str = SCRIPT):
        self.guest = launch(GuestSpec(disk=image, rtc_epoch_ns=EPOCH))
        self.machine = self.guest.machine
        self.session = Session(self.machine, reboot=self.guest.reboot)
        script_file = tmp_path / f"{name}.in"
        script_file.write_bytes(script.encode())
        self.output_path = tmp_path / f"{name}.out"
        self._in = open(script_file, "rb")
        self._out = open(self.output_path, "wb")
        self.console = Console(stdin=self._in, stdout=self._out)
        assert not self.console.interactive

    def run(self, max_steps=None, paced=False):
        return self.session.run(self.console, max_steps=max_steps, paced=paced)

    def run_to(self, position, slices):
        """Advance to `position` in run() calls whose sizes come from `slices`."""
        while self.machine.steps < position:
            n = min(slices(), position - self.machine.steps)
            outcome = self.run(n)
            assert outcome.kind == "max-steps", outcome

    def finish(self):
        """Run to the end (poweroff); returns the Outcome."""
        outcome = self.run()
        self.close()
        return outcome

    def close(self):
        self.console.close()
        self._in.close()
        self._out.close()

    @property
    def output(self) -> bytes:
        return self.output_path.read_bytes()


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "blank.img"
    path.write_bytes(bytes(DISK_SIZE))
    return path


def assert_same_digest(a, b, where):
    da, db = state_digest(a.machine), state_digest(b.machine)
    assert da.position == db.position, where
    assert da.state == db.state, f"CPU/device state differs {where}"
    assert da.ram == db.ram, f"RAM differs {where}"
    assert da.disk == db.disk, f"disk differs {where}"
    assert da.combined == db.combined
    return da


def test_two_runs_agree_at_every_position_and_at_poweroff(tmp_path, image):
    a = Run(tmp_path, "a", image)
    b = Run(tmp_path, "b", image)
    digests = []
    for position in CHECKPOINTS:
        for run in (a, b):
            outcome = run.run(position - run.machine.steps)
            assert outcome.kind == "max-steps", (position, outcome)
            assert run.machine.steps == position
        digests.append(assert_same_digest(a, b, f"at step {position}"))

    for run in (a, b):
        outcome = run.finish()
        assert (outcome.kind, outcome.exit_code) == ("poweroff", 0), outcome
    final = assert_same_digest(a, b, "at poweroff")
    assert a.output == b.output

    # The workload really moved every part of the state between checkpoints.
    for earlier, later in zip(digests, digests[1:] + [final]):
        assert earlier.state != later.state
    assert len({d.ram for d in digests + [final]}) == len(digests) + 1
    assert digests[0].disk != final.disk                   # the file system was written
    assert b"checksum 0x293f286cb41ca541" in a.output
    assert b"CLEAN" in a.output
    assert image.read_bytes() == bytes(DISK_SIZE)           # copy-on-write: image untouched


def test_stopping_and_continuing_does_not_change_the_run(tmp_path, image):
    """A run stopped at the checkpoints ends exactly like one never stopped."""
    stopped = Run(tmp_path, "stopped", image)
    for position in CHECKPOINTS:
        stopped.run(position - stopped.machine.steps)
    straight = Run(tmp_path, "straight", image)
    ends = [stopped.finish(), straight.finish()]
    assert ends[0].kind == ends[1].kind == "poweroff"
    assert stopped.machine.steps == straight.machine.steps
    assert_same_digest(stopped, straight, "at poweroff")
    assert stopped.output == straight.output


def test_slicing_does_not_matter(tmp_path, image):
    """Many small run(n) calls of random sizes reach the same digest at the same
    positions as a few large ones."""
    rng = random.Random(20240607)
    small = Run(tmp_path, "small", image)
    large = Run(tmp_path, "large", image)
    # Tiny slices where the guest boots and reads input (the host refills the
    # UART FIFO between slices), bigger ones in the benchmark.
    plan = [(400_000, lambda: rng.randint(1, 300)),
            (2_500_000, lambda: rng.randint(1, 20_000)),
            (10_200_000, lambda: rng.randint(1, 2_000_000))]
    for position, slices in plan:
        small.run_to(position, slices)
        large.run_to(position, lambda: 1 << 40)
        assert_same_digest(small, large, f"at step {position}")
    while True:
        outcome = small.run(rng.randint(1, 50_000))
        if outcome.kind != "max-steps":
            break
    assert outcome.kind == "poweroff"
    small.close()
    assert large.finish().kind == "poweroff"
    assert_same_digest(small, large, "at poweroff")
    assert small.output == large.output


def test_slicing_across_an_idle_timer_wait_does_not_matter(tmp_path, image):
    """The guest idles until its cache-flush timer (5 s virtual after a write):
    stopping and resuming around the jump in virtual time changes nothing."""
    script = "write p flushed by the timer\nls\n"       # then idle, flush, input ends
    rng = random.Random(7)
    small = Run(tmp_path, "idle-small", image, script)
    while True:
        outcome = small.run(rng.randint(1, 5_000))
        if outcome.kind != "max-steps":
            break
    small.close()
    large = Run(tmp_path, "idle-large", image, script)
    assert large.finish().kind == outcome.kind == "input-ended"
    assert small.machine.vclock == large.machine.vclock > 5 * 10**9
    assert_same_digest(small, large, "when the input ended")
    assert small.output == large.output


def test_pacing_never_changes_results(tmp_path, image):
    """A paced run (virtual time kept in step with the host clock) computes the
    same as an unpaced one: same output, same final state."""
    script = "uptime\necho paced or not\nwrite p paced\nls\nsync\nuptime\npoweroff\n"
    results = {}
    for paced in (True, False):
        run = Run(tmp_path, f"paced-{paced}", image, script)
        outcome = run.run(paced=paced)
        assert outcome.kind == "poweroff", outcome
        run.close()
        results[paced] = (outcome, state_digest(run.machine), run.output)
    assert results[True][0] == results[False][0]        # same kind, code and steps
    assert results[True][1] == results[False][1]
    assert results[True][2] == results[False][2]
    assert b"paced or not" in results[True][2]


class FakeClock:
    """Stands in for the `time` module in chrono.core.session: host waits
    advance a counter instead of sleeping."""

    def __init__(self):
        self.now = 1000.0
        self.slept = 0.0

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds
        self.slept += seconds


def test_pacing_through_a_timer_wait_never_changes_results(tmp_path, image, monkeypatch):
    """The guest's periodic cache flush is a timer 5 s (virtual) after a write.
    Once the input is used up, a paced run waits for it on the host clock, an
    unpaced one jumps to it; both must flush the same blocks and end in the
    same state.  A fake host clock keeps the paced wait from taking 5 s."""
    import chrono.core.session as session_module

    script = "write p flushed by the timer\nls\n"      # no sync, no poweroff
    results = {}
    for paced in (True, False):
        clock = FakeClock()
        monkeypatch.setattr(session_module, "time", clock)
        run = Run(tmp_path, f"timer-paced-{paced}", image, script)
        outcome = run.run(paced=paced)
        run.close()
        assert outcome.kind == "input-ended", outcome
        results[paced] = (outcome, state_digest(run.machine), run.output, run.machine.vclock)
        if paced:
            assert 4.5 < clock.slept < 6.0, clock.slept    # it did wait for the timer
        else:
            assert clock.slept == 0.0
        # the periodic flush (not a sync) wrote the file's data to the disk
        assert b"flushed by the timer\n" in run.guest.disk.data.tobytes()
    assert results[True] == results[False]
    # virtual time moved past the 5 s flush deadline (1 GHz steps)
    assert results[True][3] >= 5 * 10**9

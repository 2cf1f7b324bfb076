"""The entropy device (virtio-rng, virtio-mmio slot 6): its bytes come only from
the host.

A bare-metal driver (tests/guests/virtio_rng.c) sets up the queue and, command by
command, posts the chains a test describes (well-formed or not) and notifies.
A notify that leaves writable buffers unfilled stops the run with Stop.ENTROPY
(code = bytes wanted); Machine.entropy_write fills them in ring order, completes
them in the used ring and interrupts through the PLIC, which the driver claims.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

import rvasm
from chrono.core.console import Console
from chrono.core.digest import state_digest
from chrono.core.machine import Machine, Stop
from chrono.core.session import Session

DRIVER = rvasm.guest_c("virtio_rng.c")

ASM = """
main:
        call rng_init
        mv s1, a0
ready:                                  // breakpoint: the host sets `command` (and `post`)
        la t0, command
        ld a0, 0(t0)
        ld a1, 8(t0)
        sd zero, 0(t0)                  // each command runs once
        call rng_command
        mv s1, a0
        j ready

        .globl rng_kick, rng_kicked
rng_kick:
        li t0, 0x10007050               // QueueNotify, virtio-mmio slot 6
        sw zero, 0(t0)
rng_kicked:
        ret

        .data
        .balign 8
        .globl command
command: .dword 0, 0                    // command, argument
"""

PAGE = 4096
RNG_IRQ = 7
NEXT, WRITE, INDIRECT = 1, 2, 4
S_NEEDS_RESET = 64
INT_USED, INT_CONFIG = 1, 2
(CMD_POST, CMD_NOTIFY, CMD_WAIT_IRQ, CMD_STATUS, CMD_SET_USED_ADDR, CMD_SET_AVAIL_FLAGS,
 CMD_SET_DESC_ADDR, CMD_REINIT) = range(1, 9)
FILL = 0xEE                             # what the buffers hold before the device writes


def data(n: int, seed: int = 1) -> bytes:
    return bytes((seed + 7 * i) & 0xFF or 1 for i in range(n))


class RngGuest:
    """The driver at its `ready` breakpoint, device set up (DRIVER_OK)."""

    def __init__(self):
        self.g = rvasm.boot(ASM, c_source=DRIVER)
        self.m = self.g.machine
        self.m.add_breakpoint(self.g.sym("ready"))
        self.expect_ready(self.m.run(1_000_000))
        assert self.m.reg(9) == 0, f"rng_init failed at step {self.m.reg(9)}"
        self.m.write_phys(self.buf(0), bytes([FILL]) * 4 * PAGE)

    def sym(self, name: str) -> int:
        return self.g.sym(name)

    def buf(self, page: int, offset: int = 0) -> int:
        return self.sym("bufs") + page * PAGE + offset

    def expect_ready(self, r) -> None:
        assert r.reason == Stop.BREAKPOINT and self.m.pc == self.sym("ready"), (
            r, hex(self.m.pc), self.g.trap)

    def start(self, command: int, arg: int = 0):
        """Run a command; returns the RunResult of its first stop."""
        self.g.set_u64("command", command, 0)
        self.g.set_u64("command", arg, 1)
        return self.m.run(1_000_000)

    def do(self, command: int, arg: int = 0) -> int:
        """Run a command to its end; returns its result."""
        self.expect_ready(self.start(command, arg))
        return self.m.reg(9)

    def resume(self) -> int:
        """Run on to the end of the command under way; its result."""
        self.expect_ready(self.m.run(1_000_000))
        return self.m.reg(9)

    def describe(self, descs, heads, idx_extra: int = 0) -> None:
        """What the next CMD_POST puts on the queue: `descs` (addr, len, flags, next)
        in the descriptor table, `heads` in the avail ring."""
        table = list(descs) + [(0, 0, 0, 0)] * (8 - len(descs))
        raw = struct.pack("<Q", len(descs)) + b"".join(struct.pack("<QIHH", *d) for d in table)
        raw += struct.pack("<Q", len(heads)) + struct.pack("<8H", *(list(heads) + [0] * (8 - len(heads))))
        raw += struct.pack("<Q", idx_extra)
        self.m.write_phys(self.sym("post"), raw)

    def post(self, descs, heads, idx_extra: int = 0):
        """Post the chains and notify; returns the RunResult of the first stop."""
        self.describe(descs, heads, idx_extra)
        return self.start(CMD_POST)

    def used(self) -> tuple[int, list[tuple[int, int]]]:
        """used.idx and its elements so far (id, len)."""
        raw = self.m.read_phys(self.sym("vq") + 152, 4 + 8 * 8)
        idx = struct.unpack_from("<H", raw, 2)[0]
        return idx, [struct.unpack_from("<II", raw, 4 + 8 * (i % 8)) for i in range(idx)]

    def wait_irq(self) -> tuple[int, int, bool]:
        """WFI until the PLIC interrupts, claim and acknowledge: (source, InterruptStatus,
        interrupt still pending after the acknowledgement)."""
        v = self.do(CMD_WAIT_IRQ)
        return v & 0xFF, (v >> 8) & 0xFF, bool(v >> 16 & 1)

    def status(self) -> tuple[int, int, bool]:
        """(device status, InterruptStatus, MEIP pending)."""
        v = self.do(CMD_STATUS)
        return v & 0xFFFF, (v >> 16) & 0xFFFF, bool(v >> 32 & 1)


def W(addr, length, nxt=None):
    return (addr, length, WRITE | (NEXT if nxt is not None else 0), nxt or 0)


def R(addr, length, nxt=None):
    return (addr, length, NEXT if nxt is not None else 0, nxt or 0)


@pytest.fixture
def rng():
    return RngGuest()


# --- A request and its answer ------------------------------------------------------

def test_the_device_in_slot_6_is_virtio_entropy_offering_version_1_only(rng):
    """rng_init checked magic, version 2, device id 4 and features == VERSION_1."""
    status, isr, meip = rng.status()
    assert status == 0xF and isr == 0 and not meip       # ACKNOWLEDGE|DRIVER|FEATURES_OK|DRIVER_OK
    assert rng.m.entropy_wanted() == 0


def test_a_notify_with_buffers_stops_the_run_and_nothing_is_filled_until_the_host_answers(rng):
    r = rng.post([W(rng.buf(0), 64)], [0])
    assert r.reason == Stop.ENTROPY and r.code == 64
    assert rng.m.pc == rng.sym("rng_kicked")             # right after the notify store
    assert rng.m.entropy_wanted() == 64
    assert rng.used() == (0, [])
    # Running on without an answer: the request stays pending, the stop is not
    # repeated, and a driver waiting for it sleeps with nothing to wake it.
    assert rng.resume() == 0
    assert rng.m.entropy_wanted() == 64
    r = rng.start(CMD_WAIT_IRQ)
    assert r.reason == Stop.IDLE and not r.has_deadline
    assert rng.m.read_phys(rng.buf(0), 64) == bytes([FILL]) * 64
    assert rng.m.entropy_wanted() == 64


def test_entropy_write_fills_the_buffer_completes_the_chain_and_interrupts(rng):
    rng.post([W(rng.buf(1, 8), 64)], [0])
    rng.m.clear_ram_dirty()
    given = data(64)
    assert rng.m.entropy_write(given) == 64
    assert rng.m.read_phys(rng.buf(1), 8 + 64 + 8) == bytes([FILL]) * 8 + given + bytes([FILL]) * 8
    assert rng.used() == (1, [(0, 64)])
    assert rng.m.entropy_wanted() == 0
    dirty = set(map(int, (rng.m.ram_dirty.nonzero()[0])))
    assert {rng.g.page_of(rng.buf(1)), rng.g.page_of("vq")} <= dirty    # the device's DMA
    assert rng.resume() == 0
    assert rng.wait_irq() == (RNG_IRQ, INT_USED, False)


def test_a_notify_with_nothing_new_does_not_stop_and_a_repeated_one_asks_again(rng):
    assert rng.do(CMD_NOTIFY) == 0
    assert rng.post([W(rng.buf(0), 32)], [0]).reason == Stop.ENTROPY
    rng.resume()
    r = rng.start(CMD_NOTIFY)                            # the request is still unanswered
    assert r.reason == Stop.ENTROPY and r.code == 32


def test_the_host_keeps_what_is_not_wanted_and_an_empty_write_changes_nothing(rng):
    rng.post([W(rng.buf(0), 64)], [0])
    state = rng.m.save_state()
    assert rng.m.entropy_write(b"") == 0
    assert rng.m.save_state() == state and rng.used() == (0, [])
    assert rng.m.entropy_write(data(100)) == 64
    assert rng.m.read_phys(rng.buf(0), 65) == data(100)[:64] + bytes([FILL])
    assert rng.m.entropy_write(data(10)) == 0            # nothing pending any more


def test_a_chain_may_be_filled_partly_its_used_length_says_how_much(rng):
    rng.post([W(rng.buf(0), 64)], [0])
    assert rng.m.entropy_write(data(10)) == 10
    assert rng.used() == (1, [(0, 10)])
    assert rng.m.read_phys(rng.buf(0), 11) == data(10) + bytes([FILL])
    assert rng.m.entropy_wanted() == 0                   # that request is done
    rng.resume()
    assert rng.wait_irq() == (RNG_IRQ, INT_USED, False)


def test_several_chains_fill_in_ring_order_and_readable_parts_are_left_alone(rng):
    chains = [W(rng.buf(0), 16, 1), W(rng.buf(1), 8),               # head 0: 24 bytes in two pieces
              R(rng.buf(2), 8, 3), W(rng.buf(2, 64), 32),           # head 2: readable + 32 writable
              W(rng.buf(3), 100)]                                   # head 4
    r = rng.post(chains, [0, 2, 4])
    assert r.reason == Stop.ENTROPY and r.code == 24 + 32 + 100
    given = data(40)
    assert rng.m.entropy_write(given) == 40                          # head 0 whole, 16 of head 2
    assert rng.m.read_phys(rng.buf(0), 17) == given[:16] + bytes([FILL])
    assert rng.m.read_phys(rng.buf(1), 9) == given[16:24] + bytes([FILL])
    assert rng.m.read_phys(rng.buf(2), 8) == bytes([FILL]) * 8        # the readable buffer
    assert rng.m.read_phys(rng.buf(2, 64), 32) == given[24:] + bytes([FILL]) * 16
    assert rng.used() == (2, [(0, 24), (2, 16)])
    assert rng.m.entropy_wanted() == 100                              # head 4 still waits
    more = data(300, seed=5)
    assert rng.m.entropy_write(more) == 100
    assert rng.m.read_phys(rng.buf(3), 101) == more[:100] + bytes([FILL])
    assert rng.used() == (3, [(0, 24), (2, 16), (4, 100)])
    rng.resume()
    assert rng.wait_irq() == (RNG_IRQ, INT_USED, False)


def test_what_is_wanted_is_capped_at_4096_bytes(rng):
    rng.post([W(rng.buf(0), PAGE), W(rng.buf(1), PAGE), W(rng.buf(2), 10)], [0, 1, 2])
    assert rng.m.entropy_wanted() == 4096
    assert rng.m.entropy_write(data(4096)) == 4096
    assert rng.m.entropy_wanted() == 4096
    assert rng.m.entropy_write(data(5000)) == 4096 + 10
    assert rng.used() == (3, [(0, 4096), (1, 4096), (2, 10)])


def test_the_first_stop_says_4096_when_more_is_posted(rng):
    r = rng.post([W(rng.buf(0), 4000), W(rng.buf(1), PAGE)], [0, 1])
    assert r.reason == Stop.ENTROPY and r.code == 4096


def test_only_buffers_the_driver_notified_are_pending(rng):
    """A buffer made available but not notified yet waits for its notify, so a
    request is pending from the stop that announced it, however the run is sliced."""
    rng.post([W(rng.buf(0), 16), W(rng.buf(1), 32)], [0])
    rng.resume()
    avail = rng.sym("vq") + 128
    rng.m.write_phys(avail + 4 + 2 * 1, struct.pack("<H", 1))   # ring[1] = head 1
    rng.m.write_phys(avail + 2, struct.pack("<H", 2))           # avail.idx = 2, no notify
    assert rng.m.entropy_wanted() == 16
    assert rng.m.entropy_write(data(100)) == 16
    assert rng.used() == (1, [(0, 16)])
    r = rng.start(CMD_NOTIFY)
    assert r.reason == Stop.ENTROPY and r.code == 32


def test_no_interrupt_flag_suppresses_the_interrupt(rng):
    rng.do(CMD_SET_AVAIL_FLAGS, 1)                       # VIRTQ_AVAIL_F_NO_INTERRUPT
    rng.post([W(rng.buf(0), 16)], [0])
    assert rng.m.entropy_write(data(16)) == 16
    assert rng.used() == (1, [(0, 16)])                  # completed all the same
    rng.resume()
    assert rng.status() == (0xF, 0, False)


# --- Malformed rings: handled as the block device handles them ----------------------

MALFORMED = {
    "descriptor loop": lambda g: ([W(g.buf(0), 16, 1), W(g.buf(1), 16, 0)], [0]),
    "self loop": lambda g: ([W(g.buf(0), 16, 0)], [0]),
    "buffer not in RAM": lambda g: ([W(0x1000, 16)], [0]),
    "buffer past the end of RAM": lambda g: ([W(rvasm.RAM_BASE + rvasm.DEFAULT_RAM - 8, 16)], [0]),
    "buffer at the top of the address space": lambda g: ([W(2**64 - 8, 16)], [0]),
    "head index beyond the queue": lambda g: ([W(g.buf(0), 16)], [200]),
    "next index beyond the queue": lambda g: ([W(g.buf(0), 16, 8)], [0]),
    "indirect descriptor": lambda g: ([(g.buf(0), 16, WRITE | INDIRECT, 0)], [0]),
    "no writable buffer": lambda g: ([R(g.buf(0), 16)], [0]),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_a_chain_that_can_take_no_bytes_completes_empty_without_a_stop(rng, case):
    descs, heads = MALFORMED[case](rng)
    assert rng.post(descs, heads).reason == Stop.BREAKPOINT      # no ENTROPY stop, no hang
    assert rng.used() == (1, [(heads[0], 0)])
    assert rng.m.entropy_wanted() == 0
    assert rng.m.read_phys(rng.buf(0), 2 * PAGE) == bytes([FILL]) * 2 * PAGE
    assert rng.wait_irq() == (RNG_IRQ, INT_USED, False)
    # The device still serves the next request.
    r = rng.post([W(rng.buf(2), 32)], [0])
    assert r.reason == Stop.ENTROPY and r.code == 32
    assert rng.m.entropy_write(data(32)) == 32
    assert rng.used() == (2, [(heads[0], 0), (0, 32)])


def test_a_bad_chain_behind_a_good_one_completes_when_the_good_one_is_answered(rng):
    r = rng.post([W(rng.buf(0), 32), W(rng.buf(1), 16, 1)], [0, 1])    # head 1 loops on itself
    assert r.reason == Stop.ENTROPY and r.code == 32
    assert rng.m.entropy_write(data(10)) == 10
    assert rng.used() == (2, [(0, 10), (1, 0)])
    assert rng.m.read_phys(rng.buf(1), 16) == bytes([FILL]) * 16


def test_a_ring_full_of_loops_neither_hangs_nor_stops(rng):
    ring = [W(rng.buf(i % 4, 64 * i), 16, (i + 1) % 8) for i in range(8)]
    assert rng.post(ring, list(range(8))).reason == Stop.BREAKPOINT
    assert rng.used() == (8, [(i, 0) for i in range(8)])


def test_an_avail_index_beyond_the_queue_size_marks_the_device_needs_reset(rng):
    assert rng.post([W(rng.buf(0), 16)], [0], idx_extra=20).reason == Stop.BREAKPOINT
    status, isr, meip = rng.status()
    assert status & S_NEEDS_RESET and isr == INT_CONFIG and meip
    assert rng.m.entropy_wanted() == 0
    assert rng.m.entropy_write(data(16)) == 0
    assert rng.m.read_phys(rng.buf(0), 16) == bytes([FILL]) * 16
    # A reset by the driver brings it back.
    assert rng.do(CMD_REINIT) == 0
    assert rng.status() == (0xF, 0, False)
    assert rng.post([W(rng.buf(0), 8)], [0]).code == 8


def test_an_unwritable_used_ring_marks_the_device_needs_reset_and_no_byte_lands(rng):
    rng.do(CMD_SET_USED_ADDR, 0x1000)
    r = rng.post([W(rng.buf(0), 32)], [0])
    assert r.reason == Stop.ENTROPY and r.code == 32
    assert rng.m.entropy_write(data(32)) == 0
    assert rng.m.read_phys(rng.buf(0), 32) == bytes([FILL]) * 32
    assert rng.m.entropy_wanted() == 0
    rng.resume()
    status, isr, _ = rng.status()
    assert status & S_NEEDS_RESET and isr == INT_CONFIG


def test_a_descriptor_table_outside_ram_gives_empty_completions(rng):
    rng.do(CMD_SET_DESC_ADDR, 0x2000)
    assert rng.post([W(rng.buf(0), 32)], [0]).reason == Stop.BREAKPOINT
    assert rng.used() == (1, [(0, 0)])


# --- State, reset, determinism ----------------------------------------------------

def clone(rng: RngGuest) -> Machine:
    """A new machine given rng's RAM and CPU/device state."""
    other = Machine(rvasm.DEFAULT_RAM, tohost=rng.g.image.tohost, fromhost=rng.g.image.fromhost)
    other.write_phys(rvasm.RAM_BASE, rng.m.read_phys(rvasm.RAM_BASE, rvasm.DEFAULT_RAM))
    other.load_state(rng.m.save_state())
    other.add_breakpoint(rng.sym("ready"))
    return other


def test_state_saved_mid_request_restores_the_pending_request(rng):
    rng.post([W(rng.buf(0), 48), W(rng.buf(1), 48)], [0, 1])
    rng.m.entropy_write(data(20))                        # head 0 answered, head 1 pending
    state = rng.m.save_state()
    other = clone(rng)
    assert other.save_state() == state
    assert other.entropy_wanted() == rng.m.entropy_wanted() == 48
    for m in (rng.m, other):
        assert m.entropy_write(data(48, seed=9)) == 48
        r = m.run(1_000_000)
        assert r.reason == Stop.BREAKPOINT
    assert state_digest(other) == state_digest(rng.m)


def test_reset_forgets_the_request(rng):
    rng.post([W(rng.buf(0), 16)], [0])
    rng.resume()
    assert rng.do(CMD_REINIT) == 0                       # the driver resets the device
    assert rng.m.entropy_wanted() == 0 and rng.m.entropy_write(data(16)) == 0
    rng.post([W(rng.buf(0), 16)], [0])
    rng.m.reset(rng.g.image.entry)                       # the machine resets
    assert rng.m.entropy_wanted() == 0 and rng.m.entropy_write(data(16)) == 0


def run_with(entropy: list[bytes]):
    """Three requests answered with the given bytes; the final digest."""
    g = RngGuest()
    for n, given in enumerate(entropy):
        r = g.post([W(g.buf(n), 64)], [0])
        assert r.reason == Stop.ENTROPY
        g.m.entropy_write(given)
        g.resume()
        g.wait_irq()
    return state_digest(g.m)


def test_the_same_bytes_give_the_same_digest_other_bytes_another():
    answers = [data(64, seed=s) for s in (1, 2, 3)]
    first, second = run_with(answers), run_with(answers)
    assert first == second
    other = run_with(answers[:2] + [data(64, seed=4)])
    assert other.position == first.position and other.state == first.state
    assert other.ram != first.ram


# --- The session answers with host randomness, through Machine.entropy_write --------

def session_run(machine: Machine, tmp_path: Path, **session_args):
    (tmp_path / "in").write_bytes(b"")
    with open(tmp_path / "in", "rb") as fin, open(tmp_path / "out", "wb") as fout:
        console = Console(stdin=fin, stdout=fout)
        outcome = Session(machine, **session_args).run(console, max_steps=1_000_000, paced=False)
        console.close()
    return outcome


def test_a_session_answers_every_request_through_the_machine(rng, tmp_path):
    calls = []
    write = rng.m.entropy_write

    def logged(given):                                   # where record/replay intercepts
        calls.append((rng.m.steps, bytes(given)))
        return write(given)

    rng.m.entropy_write = logged
    rng.describe([W(rng.buf(0), PAGE), W(rng.buf(1), PAGE), W(rng.buf(2), 10)], [0, 1, 2])
    rng.g.set_u64("command", CMD_POST, 0)
    outcome = session_run(rng.m, tmp_path, entropy=lambda n: b"\xab" * n)
    assert outcome.kind == "breakpoint"
    assert [len(c[1]) for c in calls] == [4096, 4096, 10]     # 4096 at most per answer
    assert len({steps for steps, _ in calls}) == 1       # all at the stop after the notify
    assert rng.m.read_phys(rng.buf(0), 2 * PAGE + 11) == b"\xab" * (2 * PAGE + 10) + bytes([FILL])
    assert rng.used() == (3, [(0, 4096), (1, 4096), (2, 10)])


def test_the_session_default_source_is_the_hosts_randomness(rng, tmp_path):
    assert Session(rng.m).entropy is os.urandom
    rng.describe([W(rng.buf(0), 64)], [0])
    rng.g.set_u64("command", CMD_POST, 0)
    assert session_run(rng.m, tmp_path).kind == "breakpoint"
    assert rng.used() == (1, [(0, 64)])
    assert rng.m.read_phys(rng.buf(0), 64) != bytes([FILL]) * 64


def test_a_session_answers_a_request_left_pending_in_a_restored_state(rng, tmp_path):
    rng.post([W(rng.buf(0), 64)], [0])                   # stopped, not answered
    other = clone(rng)
    assert session_run(other, tmp_path, entropy=lambda n: b"\x5a" * n).kind == "breakpoint"
    assert other.read_phys(rng.buf(0), 64) == b"\x5a" * 64
    assert other.entropy_wanted() == 0


def test_snapshots_name_the_entropy_device_in_the_machine_configuration():
    from chrono.core.launch import GuestSpec, launch
    from chrono.store.capture import machine_config

    assert machine_config(launch(GuestSpec()))["devices"][-1] == "virtio-mmio-rng"

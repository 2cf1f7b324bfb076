"""The network device (virtio-net, virtio-mmio slot 5): frames only ever move
through the host.

A bare-metal driver (tests/guests/virtio_net.c) sets up the receive queue (0)
and the transmit queue (1).  A frame it sends is completed in the notify,
kept for the host with the position of the notify instruction, and the run
stops (Stop.NET) so the host can take it (Machine.net_sent).  A frame the host
offers goes into the next receive buffer the guest posted, with the 12-byte
virtio-net header, and interrupts through the PLIC; with no buffer posted it
changes nothing, and a host that holds frames is told (Stop.NET) when the
guest posts buffers.
"""
from __future__ import annotations

import struct

import pytest

import rvasm
from chrono.core.machine import Machine, Received, Stop

DRIVER = rvasm.guest_c("virtio_net.c")

ASM = """
main:
        call net_init
        mv s1, a0
ready:                                  // breakpoint: the host sets `command`
        la t0, command
        ld a0, 0(t0)
        ld a1, 8(t0)
        sd zero, 0(t0)                  // each command runs once
        call net_command
        mv s1, a0
        j ready

        .globl net_kick_tx, net_kicked_tx, net_kick_rx
net_kick_tx:
        li t0, 0x10006050               // QueueNotify, virtio-mmio slot 5
        li t1, 1
        sw t1, 0(t0)
net_kicked_tx:
        ret
net_kick_rx:
        li t0, 0x10006050
        sw zero, 0(t0)
        ret

        .data
        .balign 8
        .globl command
command: .dword 0, 0
"""

NET_IRQ = 6
INT_USED = 1
CMD_POST_RX, CMD_SEND, CMD_WAIT_IRQ, CMD_CONFIG, CMD_QUEUES = range(1, 6)
HDR = 12
F_GUEST_CSUM, F_MAC = 1 << 1, 1 << 5
DATA_VALID = 2


def frame(n: int, seed: int = 3) -> bytes:
    """An Ethernet frame of n bytes (broadcast, from the guest's MAC)."""
    head = b"\xff" * 6 + bytes.fromhex("525400123456") + b"\x08\x00"
    return head + bytes((seed + 11 * i) & 0xFF for i in range(n - len(head)))


class NetGuest:
    """The driver at its `ready` breakpoint, device set up (DRIVER_OK)."""

    def __init__(self, attach: bool = True, features: int | None = None):
        self.g = rvasm.boot(ASM, c_source=DRIVER)
        self.m = self.g.machine
        if attach:
            self.m.attach_net()
        if features is not None:
            self.m.write_phys(self.g.sym("accepted_features"), struct.pack("<I", features))
        self.m.add_breakpoint(self.g.sym("ready"))
        self.expect_ready(self.m.run(1_000_000))

    def expect_ready(self, r) -> None:
        assert r.reason == Stop.BREAKPOINT and self.m.pc == self.g.sym("ready"), (
            r, hex(self.m.pc), self.g.trap)

    def start(self, command: int, arg: int = 0):
        self.g.set_u64("command", command, 0)
        self.g.set_u64("command", arg, 1)
        return self.m.run(1_000_000)

    def do(self, command: int, arg: int = 0) -> int:
        r = self.start(command, arg)
        while r.reason == Stop.NET:
            r = self.m.run(1_000_000)
        self.expect_ready(r)
        return self.m.reg(9)

    def send(self, data: bytes):
        """Put a frame in txbuf and send it; the RunResult of the first stop."""
        self.m.write_phys(self.g.sym("txbuf") + HDR, data)
        return self.start(CMD_SEND, len(data))

    def rx_used(self) -> tuple[int, list[tuple[int, int]]]:
        raw = self.m.read_phys(self.g.sym("rxq") + 152, 4 + 8 * 8)
        idx = struct.unpack_from("<H", raw, 2)[0]
        return idx, [struct.unpack_from("<II", raw, 4 + 8 * (i % 8)) for i in range(idx)]

    def rx_buffer(self, slot: int, length: int) -> bytes:
        return self.m.read_phys(self.g.sym("rxbufs") + 4096 * slot, length)


@pytest.fixture
def net():
    g = NetGuest()
    assert g.m.reg(9) == 0, f"net_init failed at step {g.m.reg(9)}"
    return g


def test_slot_5_is_a_network_device_with_qemus_mac_two_queues_and_link_up(net):
    """net_init checked device id 1 and the features: GUEST_CSUM, MAC, STATUS,
    VERSION_1."""
    config = net.do(CMD_CONFIG)
    assert config & (2**48 - 1) == int.from_bytes(bytes.fromhex("525400123456"), "little")
    assert config >> 48 == 1                             # VIRTIO_NET_S_LINK_UP
    assert net.do(CMD_QUEUES) == 128 | 128 << 8          # queues 0 and 1: 256 entries; no queue 2


def test_without_a_network_the_slot_is_empty():
    g = NetGuest(attach=False)
    assert g.m.reg(9) == 1                               # device id 0: nothing there
    assert not g.m.has_net and g.m.net_sent() == []


def test_a_sent_frame_stops_the_run_and_reaches_the_host_with_its_position(net):
    sent = frame(60)
    r = net.send(sent)
    assert r.reason == Stop.NET
    assert net.m.pc == net.g.sym("net_kicked_tx")        # right after the notify store
    frames = net.m.net_sent()
    assert frames == [(sent, net.m.steps - 1)]           # the notify store's position
    assert net.m.net_sent() == []                        # taken once
    net.expect_ready(net.m.run(1_000_000))
    assert net.m.reg(9) == 1                             # completed in the notify
    assert net.do(CMD_WAIT_IRQ) == NET_IRQ | INT_USED << 8


def test_frames_the_host_does_not_take_are_dropped_on_its_side_only():
    """The guest sees the same completions whether or not the host takes frames."""
    taking, leaving = NetGuest(), NetGuest()
    for n in range(3):
        for g in (taking, leaving):
            g.send(frame(100 + n, seed=n))
            g.expect_ready(g.m.run(1_000_000))
        assert len(taking.m.net_sent()) == 1
    assert taking.m.save_state() == leaving.m.save_state()
    assert len(leaving.m.net_sent()) == 3                # kept, as far as there is room


def test_a_frame_goes_into_the_next_posted_buffer_with_a_virtio_net_header(net):
    assert net.m.net_receive(frame(64)) == Received.NO_BUFFER     # nothing posted yet
    assert net.rx_used() == (0, [])
    net.do(CMD_POST_RX, 2 | 2048 << 32)
    state = net.m.save_state()
    first, second = frame(64, seed=1), frame(1514, seed=2)
    assert net.m.net_receive(first) == Received.DELIVERED
    assert net.m.save_state() != state
    assert net.m.net_receive(second) == Received.DELIVERED
    assert net.m.net_receive(frame(60)) == Received.NO_BUFFER     # both buffers used
    assert net.rx_used() == (2, [(0, HDR + 64), (1, HDR + 1514)])
    header = bytes(10) + struct.pack("<H", 1)                     # num_buffers = 1
    assert net.rx_buffer(0, HDR + 64) == header + first
    assert net.rx_buffer(1, HDR + 1514) == header + second
    assert net.do(CMD_WAIT_IRQ) == NET_IRQ | INT_USED << 8


def test_a_driver_taking_guest_csum_is_told_the_checksums_are_valid():
    """slirp's frames carry correct checksums: with VIRTIO_NET_F_GUEST_CSUM the
    header says so (DATA_VALID), and Linux does not check them again."""
    net = NetGuest(features=F_GUEST_CSUM | F_MAC)
    assert net.m.reg(9) == 0
    net.do(CMD_POST_RX, 1 | 2048 << 32)
    assert net.m.net_receive(frame(64)) == Received.DELIVERED
    assert net.rx_buffer(0, HDR)[0] == DATA_VALID and net.rx_buffer(0, HDR)[10] == 1


def test_a_frame_too_big_for_the_buffer_is_dropped_and_the_buffer_returned(net):
    net.do(CMD_POST_RX, 1 | 100 << 32)
    assert net.m.net_receive(frame(200)) == Received.DROPPED
    assert net.rx_used() == (1, [(0, 0)])


def test_posting_buffers_while_the_host_holds_frames_stops_the_run(net):
    net.m.net_set_rx_waiting(True)
    r = net.start(CMD_POST_RX, 1 | 2048 << 32)
    assert r.reason == Stop.NET
    net.m.net_set_rx_waiting(False)
    assert net.do(CMD_POST_RX, 1 | 2048 << 32) == 0       # no stop when nothing waits


def test_the_device_state_round_trips_into_a_fresh_machine(net):
    """Queues configured, a frame delivered, a buffer still posted: a fresh
    machine (with its network attached) loads the state and goes on alike."""
    net.do(CMD_POST_RX, 2 | 2048 << 32)
    net.m.net_receive(frame(80))
    state, ram = net.m.save_state(), net.m.read_phys(rvasm.RAM_BASE, net.m.ram_size)
    other = Machine(net.m.ram_size, tohost=net.g.image.tohost, fromhost=net.g.image.fromhost)
    other.attach_net()
    other.write_phys(rvasm.RAM_BASE, ram)
    other.load_state(state)
    assert other.save_state() == state
    for m in (net.m, other):
        assert m.net_receive(frame(90, seed=9)) == Received.DELIVERED
        assert m.net_receive(frame(90)) == Received.NO_BUFFER
    assert other.save_state() == net.m.save_state()
    assert other.read_phys(rvasm.RAM_BASE, other.ram_size) == net.m.read_phys(
        rvasm.RAM_BASE, net.m.ram_size)

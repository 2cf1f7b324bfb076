"""The PCIe host bridge and the virtio-pci transport, seen from a guest's loads
and stores, against the PCI specifications (PCI Local Bus 3.0 ch. 6, PCIe
base 6.0 7.5.1: the type 0 header, BAR sizing, INTx) and the virtio 1.2 spec
(4.1: ids, capabilities, common configuration, ISR).

A tiny bare-metal program performs one access per request at its `ready`
breakpoint, so every access is the hart's own, through the bus as a driver's
would be.  The device tree's host bridge node is compared with QEMU's virt.
"""
from __future__ import annotations

import shutil
import subprocess

import pytest

import rvasm
from chrono.core import board
from chrono.core.board import BoardConfig
from chrono.core.devicetree import build_device_tree
from chrono.core.disk import Disk
from chrono.core.machine import Stop
from chrono.units import GiB, MiB

ASM = """
main:
ready:                                  // breakpoint: the host fills `req`
        la t0, req
        ld t1, 0(t0)                    // 1 = load, 2 = store
        ld t2, 8(t0)                    // address
        ld t3, 16(t0)                   // size: 1, 2, 4, 8
        ld t4, 24(t0)                   // value to store
        li t5, 2
        beq t1, t5, store
        li t5, 1
        beq t3, t5, load1
        li t5, 2
        beq t3, t5, load2
        li t5, 4
        beq t3, t5, load4
        ld a0, 0(t2)
        j loaded
load1:  lbu a0, 0(t2)
        j loaded
load2:  lhu a0, 0(t2)
        j loaded
load4:  lwu a0, 0(t2)
loaded: sd a0, 32(t0)
        j ready
store:  li t5, 1
        beq t3, t5, store1
        li t5, 2
        beq t3, t5, store2
        li t5, 4
        beq t3, t5, store4
        sd t4, 0(t2)
        j ready
store1: sb t4, 0(t2)
        j ready
store2: sh t4, 0(t2)
        j ready
store4: sw t4, 0(t2)
        j ready

        .data
        .balign 8
        .globl req
req:    .dword 0, 0, 0, 0, 0
"""

ALL_ONES = 0xFFFF_FFFF
VIRTIO_VENDOR = 0x1AF4
CAP_VENDOR = 0x09
COMMON, NOTIFY, ISR, DEVICE, PCI_CFG = 1, 2, 3, 4, 5
BAR = 4
CMD_MEMORY, CMD_INTX_DISABLE = 0x2, 0x400
STATUS_INTERRUPT, STATUS_CAP_LIST = 0x8, 0x10
PLIC_PENDING = board.PLIC_BASE + 0x1000
BLK, NET, RNG = board.PCI_BLK_SLOT, board.PCI_NET_SLOT, board.PCI_RNG_SLOT


class Bus:
    """The program at its breakpoint: each call is one guest access."""

    def __init__(self, virtio: str = "pci", disk: bool = True, net: bool = True):
        self.g = rvasm.boot(ASM, virtio=virtio)
        self.m = self.g.machine
        if disk:
            self.m.attach_disk(Disk.blank(1 * MiB))
        if net:
            self.m.attach_net()
        self.m.add_breakpoint(self.g.sym("ready"))
        self._run()

    def _run(self) -> None:
        r = self.m.run(10_000)
        assert r.reason == Stop.BREAKPOINT, (r, hex(self.m.pc), self.g.trap)

    def read(self, address: int, size: int = 4) -> int:
        for i, v in enumerate((1, address, size, 0)):
            self.g.set_u64("req", v, i)
        self._run()
        return self.g.u64("req", 4)

    def write(self, address: int, value: int, size: int = 4) -> None:
        for i, v in enumerate((2, address, size, value)):
            self.g.set_u64("req", v, i)
        self._run()

    # ---- configuration space (ECAM) -------------------------------------------
    @staticmethod
    def cfg_address(slot: int, reg: int, bus: int = 0, function: int = 0) -> int:
        return board.PCIE_ECAM_BASE + (bus << 20 | slot << 15 | function << 12 | reg)

    def cfg(self, slot: int, reg: int, size: int = 4, **where) -> int:
        return self.read(self.cfg_address(slot, reg, **where), size)

    def set_cfg(self, slot: int, reg: int, value: int, size: int = 4) -> None:
        self.write(self.cfg_address(slot, reg), value, size)

    def caps(self, slot: int) -> dict[int, int]:
        """cfg_type -> config offset of each virtio capability (4.1.4), walking the list."""
        found, at = {}, self.cfg(slot, 0x34, 1)
        while at:
            assert self.cfg(slot, at, 1) == CAP_VENDOR
            found[self.cfg(slot, at + 3, 1)] = at
            at = self.cfg(slot, at + 1, 1)
        return found

    def assign(self, slot: int, address: int) -> None:
        """What Linux does: size BAR 4, place it, enable memory decoding."""
        self.set_cfg(slot, 0x10 + 4 * BAR, address & ALL_ONES)
        self.set_cfg(slot, 0x14 + 4 * BAR, address >> 32)
        self.set_cfg(slot, 0x04, CMD_MEMORY, 2)

    def region(self, slot: int, cfg_type: int) -> int:
        """CPU address of a virtio structure, from its capability (BAR 4 assigned)."""
        at = self.caps(slot)[cfg_type]
        bar = self.cfg(slot, 0x10 + 4 * BAR) & ~0xF | self.cfg(slot, 0x14 + 4 * BAR) << 32
        return bar + self.cfg(slot, at + 8)


@pytest.fixture
def bus():
    return Bus()


def test_bus_0_holds_the_host_bridge_and_the_virtio_devices_with_their_ids(bus):
    assert bus.cfg(0, 0) == 0x0008 << 16 | 0x1B36           # QEMU's generic PCIe host bridge
    assert bus.cfg(0, 0x08) >> 8 == 0x060000                # class: host bridge
    for slot, device_id, klass in ((BLK, 2, 0x010000), (NET, 1, 0x020000), (RNG, 4, 0x00FF00)):
        assert bus.cfg(slot, 0) == (0x1040 + device_id) << 16 | VIRTIO_VENDOR
        assert bus.cfg(slot, 0x08) == klass << 8 | 1         # 4.1.2.1: revision 1 or more
        assert bus.cfg(slot, 0x0E, 1) == 0                   # header type 0, single function
        sub_vendor, sub_device = bus.cfg(slot, 0x2C, 2), bus.cfg(slot, 0x2E, 2)
        assert sub_vendor == VIRTIO_VENDOR and sub_device >= 0x40   # 4.1.2.1
        assert bus.cfg(slot, 0x3D, 1) == 1                   # INTA#


def test_what_is_not_there_reads_all_ones_and_ignores_writes():
    bus = Bus(disk=False, net=False)
    assert bus.cfg(BLK, 0) == ALL_ONES                       # no disk: slot 1 empty
    assert bus.cfg(NET, 0) == ALL_ONES
    assert bus.cfg(4, 0) == ALL_ONES                         # nothing past slot 3
    assert bus.cfg(0, 0, function=1) == ALL_ONES             # single-function devices
    assert bus.cfg(0, 0, bus=1) == ALL_ONES                  # no bus behind bus 0
    assert bus.cfg(4, 0, 2) == 0xFFFF
    bus.set_cfg(4, 0x04, CMD_MEMORY)
    assert bus.cfg(4, 0x04) == ALL_ONES
    assert bus.cfg(RNG, 0) == 0x1044 << 16 | VIRTIO_VENDOR   # the entropy device is always there
    assert bus.read(board.PCIE_MMIO_BASE) == ALL_ONES        # no BAR there: a master abort
    assert bus.read(board.pcie_high_base(bus.m.ram_size), 8) == 2**64 - 1
    assert bus.read(board.PCIE_PIO_BASE, 1) == 0xFF          # no I/O BARs at all


def test_with_mmio_the_bus_has_only_the_host_bridge_and_the_slots_have_the_devices():
    bus = Bus(virtio="mmio")
    assert bus.cfg(0, 0) == 0x0008 << 16 | 0x1B36
    assert [bus.cfg(slot, 0) for slot in (BLK, NET, RNG)] == [ALL_ONES] * 3
    slot_id = lambda slot: bus.read(board.virtio_slot_base(slot) + 8)    # noqa: E731 - DeviceID
    assert [slot_id(s) for s in (board.VIRTIO_BLK_SLOT, board.VIRTIO_NET_SLOT,
                                 board.VIRTIO_RNG_SLOT)] == [2, 1, 4]
    on_pci = Bus()
    assert [on_pci.read(board.virtio_slot_base(s) + 8) for s in range(board.VIRTIO_SLOTS)] == [0] * 8


def test_bar_4_sizes_as_one_64_bit_memory_bar_of_16_kib_and_the_others_are_unimplemented(bus):
    for reg in range(0x10, 0x28, 4):
        bus.set_cfg(BLK, reg, ALL_ONES)
    bars = [bus.cfg(BLK, reg) for reg in range(0x10, 0x28, 4)]
    assert bars[:4] == [0, 0, 0, 0]
    assert bars[4] == (~(0x4000 - 1) & ALL_ONES) | 0b0100   # memory, 64-bit, not prefetchable
    assert bars[5] == ALL_ONES                               # the upper half takes any address
    bus.set_cfg(BLK, 0x30, 0xFFFF_F800)
    assert bus.cfg(BLK, 0x30) == 0                           # no expansion ROM
    bus.set_cfg(BLK, 0x20, 0x4000_1234)
    assert bus.cfg(BLK, 0x20) == 0x4000_0004                 # address bits below the size read 0
    bus.set_cfg(BLK, 0x21, 0xAB, 1)                          # a byte write merges into the BAR
    assert bus.cfg(BLK, 0x20) == 0x4000_8004                 # 0x4000_ab00 less the bits below 16 KiB


def test_command_decodes_the_bar_only_with_memory_space_on_and_status_lists_capabilities(bus):
    bus.set_cfg(BLK, 0x20, 0x4000_0000)
    bus.set_cfg(BLK, 0x24, 0)
    num_queues = 0x4000_0000 + 0x12
    assert bus.read(num_queues, 2) == 0xFFFF                 # not decoding yet
    bus.set_cfg(BLK, 0x04, CMD_MEMORY, 2)
    assert bus.read(num_queues, 2) == 1                      # virtio-blk: one queue
    assert bus.cfg(BLK, 0x06, 2) & STATUS_CAP_LIST
    assert bus.cfg(0, 0x06, 2) & STATUS_CAP_LIST == 0        # the host bridge has none
    bus.set_cfg(BLK, 0x04, 0xFFFF, 2)
    assert bus.cfg(BLK, 0x04, 2) == 0x0546                   # I/O space and the rest: hardwired 0
    bus.set_cfg(BLK, 0x3C, 0x5A, 1)
    assert bus.cfg(BLK, 0x3C) == 0x015A                      # interrupt line: scratch for software


def test_each_virtio_structure_has_its_capability_in_bar_4(bus):
    for slot, device_cfg in ((BLK, True), (NET, True), (RNG, False)):
        caps = bus.caps(slot)
        assert set(caps) == {COMMON, NOTIFY, ISR, PCI_CFG} | ({DEVICE} if device_cfg else set())
        for at in caps.values():
            assert bus.cfg(slot, at + 4, 1) == BAR or bus.cfg(slot, at + 3, 1) == PCI_CFG
            assert bus.cfg(slot, at + 2, 1) >= 16            # cap_len covers struct virtio_pci_cap
        assert bus.cfg(slot, caps[COMMON] + 12) >= 0x38      # the whole struct virtio_pci_common_cfg
        assert bus.cfg(slot, caps[NOTIFY] + 2, 1) == 20
        assert bus.cfg(slot, caps[NOTIFY] + 16) == 4         # notify_off_multiplier
        assert bus.cfg(slot, caps[ISR] + 12) >= 1


def test_common_configuration_and_device_configuration_read_through_the_bar(bus):
    bus.assign(NET, board.pcie_high_base(bus.m.ram_size))
    common, device = bus.region(NET, COMMON), bus.region(NET, DEVICE)
    assert bus.read(common + 0x12, 2) == 2                   # num_queues: receive, transmit
    bus.write(common + 0x00, 1)                              # device_feature_select
    assert bus.read(common + 0x04) & 1                       # VIRTIO_F_VERSION_1 (bit 32)
    assert bus.read(common + 0x10, 2) == 0xFFFF              # config_msix_vector: NO_VECTOR
    bus.write(common + 0x16, 1, 2)                           # queue_select
    assert bus.read(common + 0x18, 2) == 256                 # queue_size: the maximum at reset
    assert bus.read(common + 0x1E, 2) == 1                   # queue_notify_off
    bus.write(common + 0x20, 0x8010_0000)
    bus.write(common + 0x24, 0)
    assert bus.read(common + 0x20, 8) == 0x8010_0000         # queue_desc, two 32-bit halves
    bus.write(common + 0x16, 2, 2)
    assert bus.read(common + 0x18, 2) == 0                   # no queue 2
    mac = bus.read(device, 4) | bus.read(device + 4, 2) << 32
    assert mac.to_bytes(6, "little") == bytes.fromhex("525400123456")
    bus.write(common + 0x14, 1, 1)                           # ACKNOWLEDGE
    assert bus.read(common + 0x14, 1) == 1
    bus.write(common + 0x14, 0, 1)                           # reset
    assert bus.read(common + 0x14, 1) == 0


def test_the_pci_cfg_capability_reaches_the_bar_through_configuration_space(bus):
    bus.assign(NET, 0x4000_0000)
    at = bus.caps(NET)[PCI_CFG]
    bus.set_cfg(NET, at + 4, BAR, 1)
    bus.set_cfg(NET, at + 8, 0x12)                           # num_queues in the common structure
    bus.set_cfg(NET, at + 12, 2)
    assert bus.cfg(NET, at + 16, 2) == 2
    bus.set_cfg(NET, at + 8, 0x14)
    bus.set_cfg(NET, at + 12, 1)
    bus.set_cfg(NET, at + 16, 1, 1)                          # device_status <- ACKNOWLEDGE
    assert bus.read(0x4000_0000 + 0x14, 1) == 1


def test_intx_follows_the_isr_is_swizzled_to_its_plic_source_and_interrupt_disable_masks_it(bus):
    """A queue whose rings are not in RAM makes the device need a reset and
    raise a configuration interrupt (2.1.2): INTA of slot 1 is PLIC source 33."""
    base = 0x4000_0000
    bus.assign(BLK, base)
    common, isr, notify = (bus.region(BLK, t) for t in (COMMON, ISR, NOTIFY))
    irq = board.pci_intx_irq(BLK, 1)
    assert irq == 33
    pending = lambda: bus.read(PLIC_PENDING + 4 * (irq // 32)) >> irq % 32 & 1   # noqa: E731
    bus.write(common + 0x08, 1)                              # driver_feature_select: 32..63
    bus.write(common + 0x0C, 1)                              # VERSION_1
    for status in (1, 3, 11, 15):                            # ACK, DRIVER, FEATURES_OK, DRIVER_OK
        bus.write(common + 0x14, status, 1)
    bus.write(common + 0x28, 0x1000)                         # queue_driver (avail): not RAM
    bus.write(common + 0x1C, 1, 2)                           # queue_enable
    assert pending() == 0 and bus.cfg(BLK, 0x06, 2) & STATUS_INTERRUPT == 0
    bus.write(notify, 0, 2)
    assert bus.read(common + 0x14, 1) & 64                   # DEVICE_NEEDS_RESET
    assert pending() == 1 and bus.cfg(BLK, 0x06, 2) & STATUS_INTERRUPT
    bus.set_cfg(BLK, 0x04, CMD_MEMORY | CMD_INTX_DISABLE, 2)
    assert pending() == 0 and bus.cfg(BLK, 0x06, 2) & STATUS_INTERRUPT   # masked, still asserted
    bus.set_cfg(BLK, 0x04, CMD_MEMORY, 2)
    assert pending() == 1
    assert bus.read(isr, 1) == 2                             # configuration change
    assert pending() == 0 and bus.read(isr, 1) == 0          # reading the ISR cleared it


def test_the_plic_has_qemus_95_sources_and_the_pcie_lines_are_32_to_35(bus):
    assert [board.pci_intx_irq(slot, 1) for slot in range(4)] == [32, 33, 34, 35]
    assert board.pci_intx_irq(1, 4) == 32                    # the swizzle wraps
    enable1 = board.PLIC_BASE + 0x2000 + 0x80 * board.PLIC_CONTEXT_S + 4
    bus.write(enable1, ALL_ONES)
    assert bus.read(enable1) == ALL_ONES                     # sources 32..63
    bus.write(enable1 + 4, ALL_ONES)
    assert bus.read(enable1 + 4) == ALL_ONES                 # sources 64..95
    bus.write(enable1 + 8, ALL_ONES)
    assert bus.read(enable1 + 8) == 0                        # nothing past 95
    bus.write(board.PLIC_BASE + 4 * 95, 7)
    assert bus.read(board.PLIC_BASE + 4 * 95) == 7
    assert bus.read(board.PLIC_BASE + 4 * 96) == 0


def test_bars_and_command_survive_a_state_save_and_load(bus):
    bus.assign(RNG, 0x4000_8000)
    state = bus.m.save_state()
    other = Bus()
    other.m.load_state(state)
    assert other.cfg(RNG, 0x20) == 0x4000_8004 and other.cfg(RNG, 0x04, 2) == CMD_MEMORY
    assert other.read(0x4000_8000 + 0x12, 2) == 1


# ---- the device tree, against QEMU's -------------------------------------------------

def _dts_node(dtb: bytes, tmp_path, path: str) -> list[str]:
    (tmp_path / "x.dtb").write_bytes(dtb)
    text = subprocess.run(["dtc", "-I", "dtb", "-O", "dts", str(tmp_path / "x.dtb")],
                          capture_output=True, text=True, check=True).stdout
    start = text.index(f"{path} {{")
    return sorted(line.strip() for line in text[start:text.index("};", start)].splitlines()[1:])


@pytest.mark.skipif(not (shutil.which("qemu-system-riscv64") and shutil.which("dtc")),
                    reason="needs qemu-system-riscv64 and dtc")
@pytest.mark.parametrize("ram", [128 * MiB, 15 * GiB])
def test_the_host_bridge_node_is_qemus(ram, tmp_path):
    """Property for property, phandles included, with the 64-bit window moving
    past RAM as QEMU moves it."""
    qemu = tmp_path / "qemu.dtb"
    subprocess.run(["qemu-system-riscv64", "-M", f"virt,dumpdtb={qemu}", "-m", str(ram >> 20),
                    "-nographic"], capture_output=True, check=True)
    ours = _dts_node(build_device_tree(BoardConfig(ram)), tmp_path, "pci@30000000")
    assert ours == _dts_node(qemu.read_bytes(), tmp_path, "pci@30000000")
    assert board.pcie_high_base(ram) == (0x4_0000_0000 if ram < 14 * GiB else 0x8_0000_0000)

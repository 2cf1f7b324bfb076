"""The device tree: the generic DTB writer/reader and the board's tree.

dtc (device-tree-compiler) and QEMU are used as outside references when
installed; the tests that need them are skipped otherwise.
"""

import shutil
import struct
import subprocess

import pytest

from chrono.core import board
from chrono.core.board import BoardConfig, MiB
from chrono.core.devicetree import build_device_tree
from chrono.core.fdt import DeviceTree, Node, cells64, encode_property, parse_dtb
from chrono.errors import ImageError

DTC = shutil.which("dtc")
QEMU = shutil.which("qemu-system-riscv64")
needs_dtc = pytest.mark.skipif(DTC is None, reason="dtc (device-tree-compiler) not installed")
needs_qemu = pytest.mark.skipif(QEMU is None, reason="qemu-system-riscv64 not installed")


def dts(blob: bytes, tmp_path) -> str:
    path = tmp_path / "tree.dtb"
    path.write_bytes(blob)
    result = subprocess.run([DTC, "-I", "dtb", "-O", "dts", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def cfg():
    return BoardConfig(256 * MiB, bootargs="console=ttyS0 quiet", initrd=(0x8820_0000, 0x8830_1000))


@pytest.fixture
def tree(cfg):
    return parse_dtb(build_device_tree(cfg))


# --- The generic writer ----------------------------------------------------------

def test_property_values_encode_from_python_types():
    assert encode_property(0x1234) == b"\x00\x00\x12\x34"
    assert encode_property([1, 2]) == b"\x00\x00\x00\x01\x00\x00\x00\x02"
    assert encode_property("ab") == b"ab\0"
    assert encode_property(["ab", "c"]) == b"ab\0c\0"
    assert encode_property(b"\x01\x02\x03") == b"\x01\x02\x03"
    assert encode_property(True) == b""
    assert encode_property([]) == b""
    assert cells64(0x1_2345_6789, 0x10) == (0x1, 0x2345_6789, 0, 0x10)


def test_writer_refuses_values_that_do_not_fit():
    with pytest.raises(ValueError):
        encode_property(1 << 32)
    with pytest.raises(ValueError):
        encode_property(-1)
    with pytest.raises(ValueError):
        encode_property("nul\0inside")
    with pytest.raises(TypeError):
        encode_property(["mixed", 1])
    with pytest.raises(TypeError):
        encode_property(False)
    with pytest.raises(ValueError):
        cells64(1 << 64)


def test_writer_refuses_bad_names():
    with pytest.raises(ValueError):
        Node("has space")
    with pytest.raises(ValueError):
        Node("x").set("bad name", 1)
    parent = Node("parent")
    parent.add("child@1")
    with pytest.raises(ValueError):
        parent.add("child@1")


def test_phandles_are_allocated_once_per_node_and_resolve_on_read():
    t = DeviceTree()
    a = t.root.add("a")
    b = t.root.add("b")
    assert t.phandle(a) == 1
    assert t.phandle(b) == 2
    assert t.phandle(a) == 1
    t.root.add("user").set("ref", [t.phandle(b), 7])
    parsed = parse_dtb(t.to_bytes())
    ref, arg = parsed.find("/user").cells("ref")
    assert parsed.by_phandle(ref) is parsed.find("/b")
    assert arg == 7


def test_reader_round_trips_a_hand_built_tree():
    t = DeviceTree(boot_cpuid_phys=3)
    t.reservations.append((0x8000_0000, 0x1000))
    n = t.root.add("node@10").set("s", "text").set("l", ["x", "yz"]).set("c", [1, 2, 3])
    n.add("deeper").set("flag").set("raw", b"\x01\x02\x03\x04\x05")
    t.root.set("r64", cells64(0xFFFF_FFFF_0000_0001))
    parsed = parse_dtb(t.to_bytes())
    assert parsed.boot_cpuid_phys == 3
    assert parsed.reservations == [(0x8000_0000, 0x1000)]
    node = parsed.find("/node@10")
    assert node.string("s") == "text"
    assert node.strings("l") == ["x", "yz"]
    assert node.cells("c") == (1, 2, 3)
    assert parsed.find("/node@10/deeper").properties == {"flag": b"", "raw": b"\x01\x02\x03\x04\x05"}
    assert parsed.root.u64s("r64") == (0xFFFF_FFFF_0000_0001,)


def test_reader_rejects_garbage_with_an_image_error():
    for blob in (b"", b"not a device tree at all, no sir" * 4, build_device_tree(BoardConfig(64 * MiB))[:100]):
        with pytest.raises(ImageError) as info:
            parse_dtb(blob, "guest.dtb")
        assert info.value.message.startswith("guest.dtb: ")
        assert "\n" not in info.value.message


# --- The blob's layout -------------------------------------------------------------

def test_header_fields_describe_the_blob(cfg):
    blob = build_device_tree(cfg)
    (magic, total, off_struct, off_strings, off_rsvmap, version, last_comp,
     boot_cpuid, size_strings, size_struct) = struct.unpack_from(">10I", blob)
    assert magic == 0xD00DFEED
    assert total == len(blob)
    assert (version, last_comp, boot_cpuid) == (17, 16, 0)
    assert off_rsvmap % 8 == 0 and off_struct % 4 == 0
    assert blob[off_rsvmap:off_rsvmap + 16] == bytes(16)          # empty reservation block
    assert off_struct == off_rsvmap + 16
    assert off_strings == off_struct + size_struct
    assert off_strings + size_strings == total
    assert struct.unpack_from(">I", blob, off_strings - 4)[0] == 0x9   # FDT_END closes the structure


def test_property_names_are_stored_once(cfg):
    blob = build_device_tree(cfg)
    off_strings, size_strings = struct.unpack_from(">I", blob, 12)[0], struct.unpack_from(">I", blob, 32)[0]
    names = blob[off_strings:off_strings + size_strings].split(b"\0")[:-1]
    assert len(names) == len(set(names))
    assert b"compatible" in names and b"interrupts" in names


@needs_dtc
def test_dtc_reserialises_the_blob_byte_for_byte(cfg, tmp_path):
    blob = build_device_tree(cfg)
    (tmp_path / "in.dtb").write_bytes(blob)
    subprocess.run([DTC, "-I", "dtb", "-O", "dtb", "-o", str(tmp_path / "out.dtb"), str(tmp_path / "in.dtb")],
                   check=True, capture_output=True)
    assert (tmp_path / "out.dtb").read_bytes() == blob


def test_the_tree_is_a_pure_function_of_the_config(cfg):
    assert build_device_tree(cfg) == build_device_tree(BoardConfig(**{
        f: getattr(cfg, f) for f in ("ram_size", "isa_extensions", "mmu_type", "bootargs", "initrd", "has_disk")}))


# --- The board's tree --------------------------------------------------------------

def test_root_chosen_and_memory_describe_the_config(tree):
    root = tree.root
    assert root.u32("#address-cells") == 2 and root.u32("#size-cells") == 2
    assert root.string("compatible") == "riscv-virtio"
    assert root.string("model") == "chrono,virt"
    chosen = tree.find("/chosen")
    assert chosen.string("bootargs") == "console=ttyS0 quiet"
    assert chosen.string("stdout-path") == "/soc/serial@10000000"
    assert tree.find(chosen.string("stdout-path")) is not None
    assert chosen.u64s("linux,initrd-start") == (0x8820_0000,)
    assert chosen.u64s("linux,initrd-end") == (0x8830_1000,)
    memory = tree.find("/memory@80000000")
    assert memory.string("device_type") == "memory"
    assert memory.u64s("reg") == (0x8000_0000, 256 * MiB)


def test_chosen_has_no_bootargs_or_initrd_unless_given():
    chosen = parse_dtb(build_device_tree(BoardConfig(64 * MiB))).find("/chosen")
    assert set(chosen.properties) == {"stdout-path"}


def test_cpu_node_carries_isa_mmu_and_interrupt_controller(tree):
    cpus = tree.find("/cpus")
    assert cpus.u32("timebase-frequency") == 10_000_000
    assert (cpus.u32("#address-cells"), cpus.u32("#size-cells")) == (1, 0)
    cpu = tree.find("/cpus/cpu@0")
    assert cpu.string("device_type") == "cpu"
    assert cpu.u32("reg") == 0
    assert cpu.string("status") == "okay"
    assert cpu.string("compatible") == "riscv"
    assert cpu.string("riscv,isa") == "rv64imafdc_zicntr_zicsr_zifencei_sstc"
    assert cpu.string("riscv,isa-base") == "rv64i"
    assert cpu.strings("riscv,isa-extensions") == ["i", "m", "a", "f", "d", "c", "zicntr", "zicsr",
                                                   "zifencei", "sstc"]
    assert cpu.string("mmu-type") == "riscv,sv48"
    intc = tree.find("/cpus/cpu@0/interrupt-controller")
    assert intc.string("compatible") == "riscv,cpu-intc"
    assert intc.u32("#interrupt-cells") == 1
    assert intc.properties["interrupt-controller"] == b""
    assert "phandle" in intc.properties
    core = tree.find("/cpus/cpu-map/cluster0/core0")
    assert tree.by_phandle(core.u32("cpu")) is cpu


def test_clint_and_plic_are_wired_to_hart0_interrupts(tree):
    intc = tree.find("/cpus/cpu@0/interrupt-controller").u32("phandle")
    clint = tree.find("/soc/clint@2000000")
    assert clint.strings("compatible") == ["sifive,clint0", "riscv,clint0"]
    assert clint.u64s("reg") == (0x200_0000, 0x10000)
    assert clint.cells("interrupts-extended") == (intc, 3, intc, 7)
    plic = tree.find("/soc/plic@c000000")
    assert plic.strings("compatible") == ["sifive,plic-1.0.0", "riscv,plic0"]
    assert plic.u64s("reg") == (0xC00_0000, 0x60_0000)
    assert plic.u32("riscv,ndev") == 95      # sources 1..95 (QEMU 7.2 says 96, one past its last)
    assert plic.u32("#interrupt-cells") == 1 and plic.u32("#address-cells") == 0
    assert plic.properties["interrupt-controller"] == b""
    # context 0 = M-mode external (11), context 1 = S-mode external (9)
    assert plic.cells("interrupts-extended") == (intc, 11, intc, 9)


def test_uart_and_all_eight_virtio_slots_interrupt_through_the_plic(tree):
    plic = tree.find("/soc/plic@c000000")
    serial = tree.find("/soc/serial@10000000")
    assert serial.string("compatible") == "ns16550a"
    assert serial.u64s("reg") == (0x1000_0000, 0x100)
    assert serial.u32("clock-frequency") == 3_686_400
    assert tree.by_phandle(serial.u32("interrupt-parent")) is plic
    assert serial.u32("interrupts") == 10
    names = [n for n in tree.find("/soc").children if n.startswith("virtio_mmio@")]
    assert names == [f"virtio_mmio@{0x1000_1000 + slot * 0x1000:x}" for slot in range(7, -1, -1)]
    for slot in range(8):
        node = tree.find(f"/soc/virtio_mmio@{0x1000_1000 + slot * 0x1000:x}")
        assert node.string("compatible") == "virtio,mmio"
        assert node.u64s("reg") == (0x1000_1000 + slot * 0x1000, 0x1000)
        assert node.u32("interrupts") == 1 + slot
        assert tree.by_phandle(node.u32("interrupt-parent")) is plic
    assert tree.find("/soc/virtio_mmio@10008000").u32("interrupts") == 8     # the disk's slot


def test_the_entropy_device_slot_is_described_with_or_without_a_disk():
    """virtio-rng is always on the board, in slot 6: its node is there whatever the config."""
    assert board.virtio_slot_base(board.VIRTIO_RNG_SLOT) == 0x1000_7000
    for has_disk in (False, True):
        tree = parse_dtb(build_device_tree(BoardConfig(64 * MiB, has_disk=has_disk)))
        node = tree.find("/soc/virtio_mmio@10007000")
        assert node is not None and node.string("compatible") == "virtio,mmio"
        assert node.u64s("reg") == (0x1000_7000, 0x1000)
        assert node.u32("interrupts") == board.virtio_slot_irq(board.VIRTIO_RNG_SLOT) == 7
        assert tree.by_phandle(node.u32("interrupt-parent")) is tree.find("/soc/plic@c000000")


def test_the_network_device_slot_is_described_with_or_without_a_network():
    """virtio-net sits in slot 5 (IRQ 6) with --net user; the node is there either way
    (an empty slot reads device id 0), so the tree does not depend on it."""
    assert board.virtio_slot_base(board.VIRTIO_NET_SLOT) == 0x1000_6000
    trees = [build_device_tree(BoardConfig(64 * MiB, has_net=net)) for net in (False, True)]
    assert trees[0] == trees[1]
    node = parse_dtb(trees[1]).find("/soc/virtio_mmio@10006000")
    assert node is not None and node.u32("interrupts") == board.virtio_slot_irq(5) == 6


def test_test_device_backs_poweroff_and_reboot(tree):
    test = tree.find("/soc/test@100000")
    assert test.strings("compatible") == ["sifive,test1", "sifive,test0", "syscon"]
    assert test.u64s("reg") == (0x10_0000, 0x1000)
    for name, value in (("poweroff", 0x5555), ("reboot", 0x7777)):
        node = tree.find(f"/{name}")
        assert node.string("compatible") == f"syscon-{name}"
        assert tree.by_phandle(node.u32("regmap")) is test
        assert node.u32("offset") == 0
        assert node.u32("value") == value


def test_soc_is_an_identity_mapped_simple_bus(tree):
    soc = tree.find("/soc")
    assert soc.string("compatible") == "simple-bus"
    assert soc.properties["ranges"] == b""
    assert (soc.u32("#address-cells"), soc.u32("#size-cells")) == (2, 2)


def test_isa_and_mmu_follow_the_config():
    cfg = BoardConfig(64 * MiB, isa_extensions=("zifencei", "c", "d", "f", "a", "m", "i", "zicsr"),
                      mmu_type="sv39")
    cpu = parse_dtb(build_device_tree(cfg)).find("/cpus/cpu@0")
    assert cpu.string("riscv,isa") == "rv64imafdc_zicsr_zifencei"
    assert cpu.strings("riscv,isa-extensions") == ["i", "m", "a", "f", "d", "c", "zicsr", "zifencei"]
    assert cpu.string("mmu-type") == "riscv,sv39"


@needs_dtc
def test_dtc_reads_the_tree_and_sees_the_devices(cfg, tmp_path):
    text = dts(build_device_tree(cfg), tmp_path)
    for expected in ('compatible = "riscv-virtio";', 'model = "chrono,virt";',
                     'stdout-path = "/soc/serial@10000000";', 'riscv,isa = "rv64imafdc_zicntr_zicsr_zifencei_sstc";',
                     'mmu-type = "riscv,sv48";', "clint@2000000 {", "plic@c000000 {", "serial@10000000 {",
                     "virtio_mmio@10001000 {", "virtio_mmio@10007000 {", "virtio_mmio@10008000 {",
                     "test@100000 {",
                     "poweroff {", "reboot {", "riscv,ndev = <0x5f>;", "timebase-frequency = <0x989680>;",
                     "linux,initrd-start = <0x00 0x88200000>;", "interrupts-extended = <0x02 0x0b 0x02 0x09>;"):
        assert expected in text, expected


@needs_qemu
def test_devices_match_qemu_virt(tmp_path):
    """Every device node we describe exists in QEMU 7.2's own virt tree with the
    same compatible, reg and interrupt wiring (QEMU has more devices, not fewer)."""
    dumped = tmp_path / "qemu.dtb"
    subprocess.run([QEMU, "-M", f"virt,dumpdtb={dumped}", "-m", "256M", "-display", "none"],
                   capture_output=True, timeout=30)
    if not dumped.exists():
        pytest.skip("this QEMU cannot dump its device tree")
    qemu = parse_dtb(dumped.read_bytes(), "qemu.dtb")
    ours = parse_dtb(build_device_tree(BoardConfig(256 * MiB)))
    assert qemu.find("/memory@80000000").u64s("reg") == ours.find("/memory@80000000").u64s("reg")
    assert qemu.find("/cpus").u32("timebase-frequency") == ours.find("/cpus").u32("timebase-frequency")

    def resolve(tree, node, prop):
        # interrupts-extended as (controller path, number) pairs, phandles resolved
        cells = node.cells(prop)
        paths = {id(n): p for p, n in walk_paths(tree.root)}
        return [(paths[id(tree.by_phandle(cells[i]))], cells[i + 1]) for i in range(0, len(cells), 2)]

    paths = dict(walk_paths(ours.root))
    assert "/fw-cfg@10100000" in paths
    for path, node in paths.items():
        if not path.startswith("/soc/") and path not in ("/poweroff", "/reboot", "/fw-cfg@10100000"):
            continue
        theirs = qemu.find(path)
        assert theirs is not None, f"QEMU has no {path}"
        for prop in ("compatible", "reg", "interrupts", "offset", "value", "clock-frequency",
                     "dma-coherent"):
            if prop in node.properties:
                assert node.properties[prop] == theirs.properties[prop], f"{path} {prop}"
        if "interrupts-extended" in node.properties:
            assert resolve(ours, node, "interrupts-extended") == resolve(qemu, theirs, "interrupts-extended")
        if "interrupt-parent" in node.properties:
            assert ours.by_phandle(node.u32("interrupt-parent")).properties["compatible"] == \
                qemu.by_phandle(theirs.u32("interrupt-parent")).properties["compatible"]


def walk_paths(node, prefix=""):
    path = prefix + "/" + node.name if node.name else "/"
    yield path, node
    for child in node.children.values():
        yield from walk_paths(child, "" if path == "/" else path)

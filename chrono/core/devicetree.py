"""The board's device tree, generated from a BoardConfig.

The tree describes the same board as QEMU 7.2's ``-M virt`` (node names,
compatibles, interrupt wiring), minus what chrono does not implement (flash,
PMU, the platform bus).  OpenSBI reads it in M-mode, patches it and passes
it on; Linux reads it in S-mode.  It must be a pure function of the config:
the tree is stored with every snapshot and a replay must see the same bytes,
which is why there is no ``rng-seed`` in /chosen (QEMU's is random).
"""

from __future__ import annotations

from chrono.core import board
from chrono.core.board import BoardConfig
from chrono.core.fdt import DeviceTree, Node, cells64

# Root compatible: QEMU virt says "riscv-virtio"; OpenSBI's generic platform
# and Linux accept any string here (neither matches on it), and saying
# "riscv-virtio" tells other software this board follows the virt layout.
ROOT_COMPATIBLE = "riscv-virtio"
MODEL = "chrono,virt"
STDOUT_PATH = f"/soc/serial@{board.UART_BASE:x}"

# PCI bus addresses in device trees (IEEE 1275 PCI binding): the first cell
# says the space; the interrupt map matches on the device number's bits.
_PCI_SPACE_IO = 0x0100_0000
_PCI_SPACE_MEM32 = 0x0200_0000
_PCI_SPACE_MEM64 = 0x0300_0000
_PCI_DEVICE_MASK = 0x1800       # device number bits 11..12: the swizzle repeats every 4 slots


def build_device_tree(cfg: BoardConfig) -> bytes:
    """The DTB for ``cfg`` (version 17, boot cpu 0)."""
    tree = DeviceTree(boot_cpuid_phys=0)
    root = tree.root
    root.set("#address-cells", 2).set("#size-cells", 2)
    root.set("compatible", ROOT_COMPATIBLE).set("model", MODEL)

    _add_chosen(root, cfg)
    _add_memory(root, cfg)
    intc = _add_cpus(tree, cfg)
    test = _add_soc(tree, intc, cfg)
    _add_syscon_actions(tree, test)
    _add_fw_cfg(root)
    return tree.to_bytes()


def _add_chosen(root: Node, cfg: BoardConfig) -> None:
    chosen = root.add("chosen")
    # Like QEMU: no bootargs property unless there is a command line, so a
    # kernel's built-in CONFIG_CMDLINE is not overridden by an empty one.
    if cfg.bootargs:
        chosen.set("bootargs", cfg.bootargs)
    chosen.set("stdout-path", STDOUT_PATH)
    if cfg.initrd is not None:
        start, end = cfg.initrd
        # 64-bit values: Linux reads these with the cell count of the property.
        chosen.set("linux,initrd-start", cells64(start))
        chosen.set("linux,initrd-end", cells64(end))


def _add_memory(root: Node, cfg: BoardConfig) -> None:
    memory = root.add(f"memory@{board.RAM_BASE:x}")
    memory.set("device_type", "memory")
    memory.set("reg", cells64(board.RAM_BASE, cfg.ram_size))


def _add_cpus(tree: DeviceTree, cfg: BoardConfig) -> Node:
    """/cpus with one cpu node per hart; returns hart 0's interrupt controller."""
    cpus = tree.root.add("cpus")
    cpus.set("#address-cells", 1).set("#size-cells", 0)
    cpus.set("timebase-frequency", board.TIMEBASE_HZ)

    hart_nodes = []
    intc = None
    for hart in range(cfg.hart_count):
        cpu = cpus.add(f"cpu@{hart:x}")
        tree.phandle(cpu)                       # cpu-map refers to it
        cpu.set("device_type", "cpu")
        cpu.set("reg", hart)
        cpu.set("status", "okay")
        cpu.set("compatible", "riscv")
        # Both ISA descriptions: riscv,isa for older readers (OpenSBI < 1.5,
        # Linux < 6.7), base + extension list for newer ones, which prefer it.
        cpu.set("riscv,isa", cfg.riscv_isa)
        cpu.set("riscv,isa-base", "rv64i")
        cpu.set("riscv,isa-extensions", list(cfg.isa_extensions))
        cpu.set("mmu-type", cfg.mmu_type)
        controller = cpu.add("interrupt-controller")
        controller.set("#interrupt-cells", 1)
        controller.set("interrupt-controller")
        controller.set("compatible", "riscv,cpu-intc")
        phandle = tree.phandle(controller)
        if intc is None:
            intc = phandle
        hart_nodes.append(cpu)

    # The topology Linux would otherwise guess; QEMU lists it too.
    cluster = cpus.add("cpu-map").add("cluster0")
    for hart, cpu in enumerate(hart_nodes):
        cluster.add(f"core{hart}").set("cpu", tree.phandle(cpu))
    assert intc is not None
    return intc


def _add_soc(tree: DeviceTree, intc: int, cfg: BoardConfig) -> int:
    """/soc and its devices; returns the test device's phandle (for syscon)."""
    soc = tree.root.add("soc")
    soc.set("#address-cells", 2).set("#size-cells", 2)
    soc.set("compatible", "simple-bus")
    soc.set("ranges")                           # identity: soc addresses are physical

    clint = soc.add(f"clint@{board.CLINT_BASE:x}")
    clint.set("compatible", ["sifive,clint0", "riscv,clint0"])
    clint.set("reg", cells64(board.CLINT_BASE, board.CLINT_SIZE))
    # Hart 0's machine software and machine timer interrupts.
    clint.set("interrupts-extended", [intc, board.IRQ_M_SOFT, intc, board.IRQ_M_TIMER])

    plic_node = soc.add(f"plic@{board.PLIC_BASE:x}")
    plic = tree.phandle(plic_node)
    plic_node.set("compatible", ["sifive,plic-1.0.0", "riscv,plic0"])
    plic_node.set("reg", cells64(board.PLIC_BASE, board.PLIC_SIZE))
    plic_node.set("#interrupt-cells", 1)
    plic_node.set("#address-cells", 0)
    plic_node.set("interrupt-controller")
    plic_node.set("riscv,ndev", board.PLIC_NDEV)
    # The order of these pairs numbers the PLIC contexts: context 0 is hart 0's
    # M-mode external interrupt, context 1 its S-mode one (as in the core).
    contexts = {board.PLIC_CONTEXT_M: board.IRQ_M_EXT, board.PLIC_CONTEXT_S: board.IRQ_S_EXT}
    plic_node.set("interrupts-extended", [cell for ctx in sorted(contexts) for cell in (intc, contexts[ctx])])

    serial = soc.add(f"serial@{board.UART_BASE:x}")
    serial.set("compatible", "ns16550a")
    serial.set("reg", cells64(board.UART_BASE, board.UART_SIZE))
    serial.set("clock-frequency", board.UART_CLOCK_HZ)
    serial.set("interrupt-parent", plic)
    serial.set("interrupts", board.UART_IRQ)

    # All eight slots, empty ones included (an empty slot reads device id 0 and
    # drivers skip it), highest first as QEMU lists them: Linux registers
    # virtio-mmio devices in tree order, so with several devices the names
    # (vda, vdb...) come out as they do under QEMU.  A slot's node is the same
    # whatever sits in it (the driver reads the device id): the disk in
    # VIRTIO_BLK_SLOT, the entropy device in VIRTIO_RNG_SLOT, the network
    # device in VIRTIO_NET_SLOT.
    for slot in reversed(range(board.VIRTIO_SLOTS)):
        base = board.virtio_slot_base(slot)
        virtio = soc.add(f"virtio_mmio@{base:x}")
        virtio.set("compatible", "virtio,mmio")
        virtio.set("reg", cells64(base, board.VIRTIO_SLOT_SIZE))
        virtio.set("interrupt-parent", plic)
        virtio.set("interrupts", board.virtio_slot_irq(slot))

    _add_pcie(soc, plic, cfg)

    rtc = soc.add(f"rtc@{board.RTC_BASE:x}")
    rtc.set("compatible", "google,goldfish-rtc")
    rtc.set("reg", cells64(board.RTC_BASE, board.RTC_SIZE))
    rtc.set("interrupt-parent", plic)
    rtc.set("interrupts", board.RTC_IRQ)

    test_node = soc.add(f"test@{board.TEST_BASE:x}")
    test = tree.phandle(test_node)
    # test1 adds the reset (0x7777) command to test0's pass/fail; "syscon"
    # lets the poweroff/reboot nodes below drive it through a regmap.
    test_node.set("compatible", ["sifive,test1", "sifive,test0", "syscon"])
    test_node.set("reg", cells64(board.TEST_BASE, board.TEST_SIZE))
    return test


def _add_fw_cfg(root: Node) -> None:
    """QEMU's firmware configuration device, at the top level as QEMU virt puts
    it: Linux's qemu_fw_cfg driver binds to it, and systemd-detect-virt looks
    for a top-level node named fw-cfg to recognise the machine."""
    node = root.add(f"fw-cfg@{board.FW_CFG_BASE:x}")
    node.set("compatible", "qemu,fw-cfg-mmio")
    node.set("reg", cells64(board.FW_CFG_BASE, board.FW_CFG_SIZE))
    node.set("dma-coherent")


def _add_pcie(soc: Node, plic: int, cfg: BoardConfig) -> None:
    """The PCIe host bridge, as QEMU's virt describes its gpex.  It is always
    there, as on QEMU (with --virtio mmio its bus 0 holds only the host
    bridge): the tree's shape does not depend on the transport."""
    pci = soc.add(f"pci@{board.PCIE_ECAM_BASE:x}")
    pci.set("compatible", "pci-host-ecam-generic")
    pci.set("device_type", "pci")
    pci.set("#address-cells", 3).set("#size-cells", 2).set("#interrupt-cells", 1)
    pci.set("linux,pci-domain", 0)
    pci.set("bus-range", [0, board.PCIE_BUSES - 1])
    pci.set("dma-coherent")
    pci.set("reg", cells64(board.PCIE_ECAM_BASE, board.PCIE_ECAM_SIZE))
    # No linux,pci-probe-only: the guest sizes and assigns the BARs itself.
    # Each range: the PCI address (space code, then 64 bits), the CPU address
    # (64 bits), the size (64 bits).  I/O at PCI address 0; memory identity-mapped.
    high = board.pcie_high_base(cfg.ram_size)
    windows = ((_PCI_SPACE_IO, 0, board.PCIE_PIO_BASE, board.PCIE_PIO_SIZE),
               (_PCI_SPACE_MEM32, board.PCIE_MMIO_BASE, board.PCIE_MMIO_BASE, board.PCIE_MMIO_SIZE),
               (_PCI_SPACE_MEM64, high, high, board.PCIE_HIGH_SIZE))
    pci.set("ranges", [cell for space, pci_addr, cpu, size in windows
                       for cell in (space, *cells64(pci_addr, cpu, size))])
    # INTx: the unit address's device number (bits 11..15 of its first cell)
    # and the pin pick the PLIC source, with the standard swizzle.
    pci.set("interrupt-map-mask", [_PCI_DEVICE_MASK, 0, 0, board.PCI_INTX_PINS + 3])
    pci.set("interrupt-map", [
        cell for slot in range(board.PCI_INTX_PINS) for pin in range(1, board.PCI_INTX_PINS + 1)
        for cell in (slot << 11, 0, 0, pin, plic, board.pci_intx_irq(slot, pin))])


def _add_syscon_actions(tree: DeviceTree, test: int) -> None:
    """Top-level poweroff and reboot nodes, as QEMU virt has them."""
    for name, compatible, value in (("poweroff", "syscon-poweroff", board.TEST_POWEROFF),
                                    ("reboot", "syscon-reboot", board.TEST_REBOOT)):
        node = tree.root.add(name)
        node.set("compatible", compatible)
        node.set("regmap", test)
        node.set("offset", 0)
        node.set("value", value)

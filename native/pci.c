/* pci.c: a generic ECAM PCIe host bridge where QEMU's virt machine has one
 * (devicetree "pci-host-ecam-generic"): configuration space at
 * PCIE_ECAM_BASE (bus << 20 | device << 15 | function << 12 | register),
 * an I/O window, a 32-bit and a 64-bit memory window.  Bus 0 holds one
 * function per slot: the host bridge in slot 0, and the virtio devices in
 * slots 1..3 when the machine has them on PCI (virtio_pci.c).  Other buses,
 * devices and functions are absent: their reads return all ones (a master
 * abort, which is how software finds nothing there) and writes are dropped;
 * so are window accesses no BAR claims.
 *
 * The guest assigns BARs (Linux does, with pci-host-generic); a BAR decodes
 * while the Command register's Memory Space bit is set.  Interrupts are INTx
 * only (the board has no MSI controller): pin P of slot S drives PLIC source
 * PCIE_IRQ + (S + P - 1) % 4, the swizzle the device tree's interrupt-map
 * tells the guest, as on QEMU's virt.  Lines are level-triggered and shared. */
#include <string.h>
#include "pci.h"

#define ALL_ONES 0xffffffffu
#define STATUS_INTERRUPT 0x0008u        /* Status: INTx asserted */
#define STATUS_CAP_LIST 0x0010u         /* Status: the capability pointer is valid */
#define CMD_WRITABLE 0x0546u            /* memory, bus master, parity, SERR#, INTx disable */
#define BAR_MEM_64 0x4u                 /* BAR type bits: 64-bit memory */
#define CLASS_HOST_BRIDGE 0x060000u

/* The identity of QEMU's generic PCIe host bridge (the vendor ID Red Hat
 * holds for QEMU's devices), so bus 0 reads as it does on QEMU's virt; the
 * virtio-mmio transport likewise reports QEMU's vendor.  No BAR, no
 * interrupt: Linux's pci-host-generic needs nothing of it. */
static const struct pci_function host_bridge = {
    .vendor = 0x1b36, .device = 0x0008, .class_code = CLASS_HOST_BRIDGE, .bar = -1,
};

uint64_t pcie_high_base(uint64_t ram_size)
{
    return (RAM_BASE + ram_size + PCIE_HIGH_SIZE - 1) / PCIE_HIGH_SIZE * PCIE_HIGH_SIZE;
}

/* The function in `slot` of bus 0 if it exists on this machine, else NULL. */
static const struct pci_function *function_at(struct machine *m, uint64_t slot)
{
    if (slot >= PCI_SLOTS)
        return NULL;
    const struct pci_function *f = slot == 0 ? &host_bridge : virtio_pci_function((int)slot);
    return f && (!f->present || f->present(m, f)) ? f : NULL;
}

static uint64_t bar_address(const struct pci_fn_state *s, const struct pci_function *f)
{
    return (uint64_t)s->bar[f->bar + 1] << 32 | s->bar[f->bar];
}

void pci_update_intx(struct machine *m)
{
    bool line[4] = { false };

    for (int slot = 0; slot < PCI_SLOTS; slot++) {
        const struct pci_function *f = function_at(m, slot);
        if (f && f->int_pin && !(m->pci.fn[slot].command & PCI_CMD_INTX_DISABLE) && f->irq(m, f))
            line[(slot + f->int_pin - 1) % 4] = true;
    }
    for (int i = 0; i < 4; i++)
        plic_set_level(m, PCIE_IRQ + i, line[i]);
}

void pci_reset(struct machine *m)
{
    memset(&m->pci, 0, sizeof m->pci);
    pci_update_intx(m);
}

/* ---- configuration space ---------------------------------------------------- */

/* The type 0 header dword at reg (a multiple of 4 below PCI_CAP_START). */
static uint32_t header_read(struct machine *m, const struct pci_function *f, int slot, uint32_t reg)
{
    const struct pci_fn_state *s = &m->pci.fn[slot];
    int bar = (int)(reg - 0x10) / 4;

    switch (reg) {
    case 0x00: return (uint32_t)f->device << 16 | f->vendor;
    case 0x04: {
        uint32_t status = (f->cap_ptr ? STATUS_CAP_LIST : 0) |
                          (f->int_pin && f->irq(m, f) ? STATUS_INTERRUPT : 0);
        return status << 16 | s->command;
    }
    case 0x08: return f->class_code << 8 | f->revision;
    case 0x0c: return s->cache_line;    /* latency timer 0, header type 0, no BIST */
    case 0x10: case 0x14: case 0x18: case 0x1c: case 0x20: case 0x24:
        if (f->bar >= 0 && bar == f->bar)
            return s->bar[bar] | BAR_MEM_64;
        if (f->bar >= 0 && bar == f->bar + 1)
            return s->bar[bar];
        return 0;                       /* not implemented: sizing reads back 0 */
    case 0x2c: return (uint32_t)f->subsystem << 16 | f->subsystem_vendor;
    case 0x34: return f->cap_ptr;
    case 0x3c: return (uint32_t)f->int_pin << 8 | s->int_line;
    default: return 0;                  /* CardBus CIS, expansion ROM (none), reserved */
    }
}

/* A write to header dword reg: `value` is its old value with the written bytes merged in. */
static void header_write(struct machine *m, const struct pci_function *f, int slot, uint32_t reg,
                         uint32_t value)
{
    struct pci_fn_state *s = &m->pci.fn[slot];
    int bar = (int)(reg - 0x10) / 4;

    switch (reg) {
    case 0x04:
        s->command = (uint16_t)(value & CMD_WRITABLE);  /* Status has no bits we let be cleared */
        pci_update_intx(m);
        break;
    case 0x0c: s->cache_line = (uint8_t)value; break;
    case 0x10: case 0x14: case 0x18: case 0x1c: case 0x20: case 0x24:
        /* The address bits below the size read back 0: that is how sizing works. */
        if (f->bar >= 0 && bar == f->bar)
            s->bar[bar] = value & (uint32_t)~(f->bar_size - 1) & ~0xfu;
        else if (f->bar >= 0 && bar == f->bar + 1)
            s->bar[bar] = value & (uint32_t)(~(f->bar_size - 1) >> 32);
        break;
    case 0x3c: s->int_line = (uint8_t)value; break;
    default: break;                     /* read-only */
    }
}

static uint32_t config_read(struct machine *m, const struct pci_function *f, int slot, uint32_t reg,
                            int size)
{
    if (reg >= 0x100)
        return 0;                       /* no extended capabilities */
    if (reg >= PCI_CAP_START)
        return f->cap_read ? f->cap_read(m, f, slot, reg, size) : 0;
    uint32_t dword = header_read(m, f, slot, reg & ~3u) >> 8 * (reg & 3);
    return size == 4 ? dword : dword & ((1u << 8 * size) - 1);
}

static void config_write(struct machine *m, const struct pci_function *f, int slot, uint32_t reg,
                         int size, uint32_t value)
{
    if (reg >= 0x100)
        return;
    if (reg >= PCI_CAP_START) {
        if (f->cap_write)
            f->cap_write(m, f, slot, reg, size, value);
        return;
    }
    uint32_t shift = 8 * (reg & 3);
    uint32_t mask = (size == 4 ? ALL_ONES : (1u << 8 * size) - 1) << shift;
    uint32_t old = header_read(m, f, slot, reg & ~3u);
    header_write(m, f, slot, reg & ~3u, (old & ~mask) | (value << shift & mask));
}

static const struct pci_function *ecam_function(struct machine *m, uint64_t offset, int *slot)
{
    uint64_t bus = offset >> 20, device = offset >> 15 & 31, function = offset >> 12 & 7;
    *slot = (int)device;
    return bus == 0 && function == 0 ? function_at(m, device) : NULL;
}

static bool ecam_read(struct machine *m, uint64_t offset, int size, uint64_t *value)
{
    int slot;
    const struct pci_function *f = ecam_function(m, offset, &slot);
    *value = f ? config_read(m, f, slot, offset & 0xfff, size) : ALL_ONES;
    return true;
}

static bool ecam_write(struct machine *m, uint64_t offset, int size, uint64_t value)
{
    int slot;
    const struct pci_function *f = ecam_function(m, offset, &slot);
    if (f)
        config_write(m, f, slot, offset & 0xfff, size, (uint32_t)value);
    return true;
}

/* ---- memory windows ----------------------------------------------------------- */

/* The function whose BAR holds [paddr, paddr + size), and the offset in it. */
static const struct pci_function *bar_at(struct machine *m, uint64_t paddr, int size, uint64_t *off)
{
    for (int slot = 0; slot < PCI_SLOTS; slot++) {
        const struct pci_function *f = function_at(m, slot);
        if (!f || f->bar < 0 || !(m->pci.fn[slot].command & PCI_CMD_MEMORY))
            continue;
        uint64_t base = bar_address(&m->pci.fn[slot], f);
        if (paddr >= base && paddr - base < f->bar_size && paddr - base + (uint64_t)size <= f->bar_size) {
            *off = paddr - base;
            return f;
        }
    }
    return NULL;
}

static bool window_read(struct machine *m, uint64_t paddr, int size, uint64_t *value)
{
    uint64_t off;
    const struct pci_function *f = bar_at(m, paddr, size, &off);
    *value = f ? f->bar_read(m, f, off, size) : ~0ull;
    return true;
}

static bool window_write(struct machine *m, uint64_t paddr, int size, uint64_t value)
{
    uint64_t off;
    const struct pci_function *f = bar_at(m, paddr, size, &off);
    if (f)
        f->bar_write(m, f, off, size, value);
    return true;
}

static bool mmio_read(struct machine *m, uint64_t offset, int size, uint64_t *value)
{
    return window_read(m, PCIE_MMIO_BASE + offset, size, value);
}

static bool mmio_write(struct machine *m, uint64_t offset, int size, uint64_t value)
{
    return window_write(m, PCIE_MMIO_BASE + offset, size, value);
}

bool pcie_high_read(struct machine *m, uint64_t offset, int size, uint64_t *value)
{
    return window_read(m, pcie_high_base(m->ram_size) + offset, size, value);
}

bool pcie_high_write(struct machine *m, uint64_t offset, int size, uint64_t value)
{
    return window_write(m, pcie_high_base(m->ram_size) + offset, size, value);
}

/* No function has an I/O BAR: the I/O window is all master aborts. */
static bool pio_read(struct machine *m, uint64_t offset, int size, uint64_t *value)
{
    *value = ~0ull;
    return true;
}

static bool pio_write(struct machine *m, uint64_t offset, int size, uint64_t value)
{
    return true;
}

const struct mmio_device pcie_pio_device = {
    .base = PCIE_PIO_BASE, .size = PCIE_PIO_SIZE, .sizes = 1 | 2 | 4,
    .read = pio_read, .write = pio_write,
};

const struct mmio_device pcie_ecam_device = {
    .base = PCIE_ECAM_BASE, .size = PCIE_ECAM_SIZE, .sizes = 1 | 2 | 4,
    .read = ecam_read, .write = ecam_write,
};

const struct mmio_device pcie_mmio_device = {
    .base = PCIE_MMIO_BASE, .size = PCIE_MMIO_SIZE, .sizes = 1 | 2 | 4 | 8,
    .read = mmio_read, .write = mmio_write,
};

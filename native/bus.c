/* bus.c: physical address decoding.  RAM is a flat host buffer; devices are
 * descriptors in a small table (base, size, allowed access sizes, handlers).
 * An access to nothing, or of a size a device does not take, is an access
 * fault for the guest, as on real hardware. */
#include <string.h>
#include "machine.h"

static const struct mmio_device *const devices[] = {
    &test_device, &goldfish_rtc_device, &clint_device, &pcie_pio_device, &plic_device, &uart_device,
    &virtio_mmio_device, &fw_cfg_device, &pcie_ecam_device, &pcie_mmio_device,
};

/* The 64-bit PCIe window: its base follows the RAM size (pcie_high_base). */
static const struct mmio_device pcie_high_device = {
    .base = 0, .size = PCIE_HIGH_SIZE, .sizes = 1 | 2 | 4 | 8,
    .read = pcie_high_read, .write = pcie_high_write,
};

static bool takes(const struct mmio_device *d, uint64_t base, uint64_t paddr, int size)
{
    return (d->sizes & size) && !(paddr & (uint64_t)(size - 1)) &&
           paddr - base + (uint64_t)size <= d->size;
}

/* The device at paddr and its base, NULL if nothing takes this access. */
static const struct mmio_device *find_device(struct machine *m, uint64_t paddr, int size,
                                             uint64_t *base)
{
    for (size_t i = 0; i < sizeof devices / sizeof devices[0]; i++) {
        const struct mmio_device *d = devices[i];
        if (paddr >= d->base && paddr - d->base < d->size) {
            *base = d->base;
            return takes(d, d->base, paddr, size) ? d : NULL;
        }
    }
    uint64_t high = pcie_high_base(m->ram_size);
    if (paddr >= high && paddr - high < PCIE_HIGH_SIZE && takes(&pcie_high_device, high, paddr, size)) {
        *base = high;
        return &pcie_high_device;
    }
    return NULL;
}

bool bus_read(struct machine *m, uint64_t paddr, int size, uint64_t *value)
{
    if (phys_is_ram(m, paddr, (uint64_t)size)) {
        *value = 0;
        memcpy(value, ram_range(m, paddr, (uint64_t)size), (size_t)size);
        watch_check(m, paddr, (uint64_t)size, ACCESS_READ);
        return true;
    }
    uint64_t base, v = 0;
    const struct mmio_device *d = find_device(m, paddr, size, &base);
    if (!d || !d->read(m, paddr - base, size, &v))
        return false;
    *value = size == 8 ? v : v & ((1ull << (8 * size)) - 1);
    return true;
}

bool bus_write(struct machine *m, uint64_t paddr, int size, uint64_t value)
{
    if (phys_is_ram(m, paddr, (uint64_t)size)) {
        ram_before_write(m, paddr, (uint64_t)size);
        memcpy(ram_range(m, paddr, (uint64_t)size), &value, (size_t)size);
        ram_mark_written(m, paddr, (uint64_t)size);
        watch_check(m, paddr, (uint64_t)size, ACCESS_WRITE);
        return true;
    }
    uint64_t base;
    const struct mmio_device *d = find_device(m, paddr, size, &base);
    if (!d)
        return false;
    if (size < 8)
        value &= (1ull << (8 * size)) - 1;
    /* A device write may raise or lower an interrupt line. */
    cpu_kick(m);
    return d->write(m, paddr - base, size, value);
}

bool phys_read(struct machine *m, uint64_t paddr, void *dst, uint64_t len)
{
    if (!phys_is_ram(m, paddr, len))
        return false;
    memcpy(dst, ram_range(m, paddr, len), len);
    watch_check_device(m, paddr, len, ACCESS_READ);
    return true;
}

bool phys_write(struct machine *m, uint64_t paddr, const void *src, uint64_t len)
{
    if (!phys_is_ram(m, paddr, len))
        return false;
    if (len == 0)
        return true;
    ram_before_write(m, paddr, len);
    memcpy(ram_range(m, paddr, len), src, len);
    ram_mark_written(m, paddr, len);
    watch_check_device(m, paddr, len, ACCESS_WRITE);
    return true;
}

void disk_mark_written(struct machine *m, uint64_t offset, uint64_t len)
{
    if (len == 0)
        return;
    uint64_t first = offset >> PAGE_SHIFT, last = (offset + len - 1) >> PAGE_SHIFT;
    memset(m->disk_dirty + first, 1, last - first + 1);
    memset(m->disk_written + first, 1, last - first + 1);
}

/* bus.c: physical address decoding.  RAM is a flat host buffer; devices are
 * descriptors in a small table (base, size, allowed access sizes, handlers).
 * An access to nothing, or of a size a device does not take, is an access
 * fault for the guest, as on real hardware. */
#include <string.h>
#include "machine.h"

static const struct mmio_device *const devices[] = {
    &test_device, &goldfish_rtc_device, &clint_device, &plic_device, &uart_device, &virtio_mmio_device,
    &fw_cfg_device,
};

static const struct mmio_device *find_device(uint64_t paddr, int size)
{
    for (size_t i = 0; i < sizeof devices / sizeof devices[0]; i++) {
        const struct mmio_device *d = devices[i];
        if (paddr >= d->base && paddr - d->base < d->size) {
            if (!(d->sizes & size) || (paddr & (uint64_t)(size - 1)) ||
                paddr - d->base + (uint64_t)size > d->size)
                return NULL;
            return d;
        }
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
    const struct mmio_device *d = find_device(paddr, size);
    uint64_t v = 0;
    if (!d || !d->read(m, paddr - d->base, size, &v))
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
    const struct mmio_device *d = find_device(paddr, size);
    if (!d)
        return false;
    if (size < 8)
        value &= (1ull << (8 * size)) - 1;
    /* A device write may raise or lower an interrupt line. */
    cpu_kick(m);
    return d->write(m, paddr - d->base, size, value);
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

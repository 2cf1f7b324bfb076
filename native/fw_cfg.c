/* fw_cfg.c: QEMU's firmware configuration device, memory-mapped where QEMU's
 * virt machine has it (FW_CFG_BASE), with the interface QEMU documents in
 * docs/specs/fw_cfg.rst: a big-endian 16-bit selector at +8 picks an item, the
 * data register at +0 reads it a byte (or up to 8) at a time, and the DMA
 * address register at +16 runs a whole transfer described in guest RAM.
 *
 * Guests find the board's identity through it: Linux's qemu_fw_cfg driver
 * lists the files under /sys/firmware/qemu_fw_cfg, and systemd-detect-virt
 * names a machine with an fw-cfg device tree node "qemu".  The items are
 * fixed when the machine is made (QEMU's defaults, see fw_cfg_init), so
 * everything read here is deterministic; only the selector, the read
 * offset and the DMA address latch are guest state.  Nothing is writable. */
#include <stdlib.h>
#include <string.h>
#include "machine.h"

/* Selector keys and flags (fw_cfg.rst, "Selector (Control) Register"). */
#define KEY_SIGNATURE 0x00
#define KEY_ID 0x01
#define KEY_UUID 0x02
#define KEY_NOGRAPHIC 0x04
#define KEY_NB_CPUS 0x05
#define KEY_BOOT_MENU 0x0e
#define KEY_FILE_DIR 0x19
#define KEY_FILE_FIRST 0x20
#define KEY_ENTRY_MASK 0x3fff           /* without the write (0x4000) and arch (0x8000) bits */

#define ID_TRADITIONAL 1u
#define ID_DMA 2u

/* FWCfgDmaAccess control bits. */
#define DMA_ERROR 0x01u
#define DMA_READ 0x02u
#define DMA_SKIP 0x04u
#define DMA_SELECT 0x08u
#define DMA_WRITE 0x10u

#define DMA_SIGNATURE 0x51454d5520434647ull   /* "QEMU CFG", what the DMA register reads */

enum { R_DATA = 0x00, R_SELECTOR = 0x08, R_DMA = 0x10, R_DMA_LOW = 0x14 };

static uint32_t be32(uint32_t v) { return __builtin_bswap32(v); }

static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static bool set_item(struct fw_cfg_host *h, unsigned key, const void *data, uint32_t len)
{
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy)
        return false;
    if (len)
        memcpy(copy, data, len);
    free(h->items[key].data);
    h->items[key] = (struct fw_cfg_item){ copy, len };
    return true;
}

/* The file directory (FW_CFG_FILE_DIR): a big-endian count, then per file its
 * size, key and a NUL-padded name, in name order as QEMU keeps them. */
static bool build_directory(struct fw_cfg_host *h)
{
    uint32_t n = h->nfiles, len = 4 + n * 64;
    uint8_t *dir = calloc(1, len);
    if (!dir)
        return false;
    uint32_t count = be32(n);
    memcpy(dir, &count, 4);
    for (uint32_t i = 0; i < n; i++) {
        uint8_t *e = dir + 4 + i * 64;
        uint32_t size = be32(h->items[KEY_FILE_FIRST + i].len);
        uint16_t key = __builtin_bswap16((uint16_t)(KEY_FILE_FIRST + i));
        memcpy(e, &size, 4);
        memcpy(e + 4, &key, 2);
        memcpy(e + 8, h->names[i], FW_CFG_NAME_MAX);
    }
    free(h->items[KEY_FILE_DIR].data);
    h->items[KEY_FILE_DIR] = (struct fw_cfg_item){ dir, len };
    return true;
}

/* A file; callers add them in name order, the order QEMU lists them in. */
static bool add_file(struct fw_cfg_host *h, const char *name, const void *data, uint32_t len)
{
    if (h->nfiles == FW_CFG_FILES)
        return false;
    /* A bounded copy (no strlen: the core's imports are kept to a short list). */
    char *slot = h->names[h->nfiles];
    uint32_t n = 0;
    while (n < FW_CFG_NAME_MAX - 1 && name[n]) {
        slot[n] = name[n];
        n++;
    }
    if (name[n])
        return false;
    slot[n] = 0;
    uint32_t i = h->nfiles++;
    return set_item(h, KEY_FILE_FIRST + i, data, len);
}

/* What QEMU's virt offers with no options: the signature and interface ID,
 * a null UUID, "no graphics" (chrono has a serial console only), one CPU,
 * no boot menu, and its three default files (empty boot order and disk
 * geometry, boot-fail-wait -1: never reboot on a failed boot). */
bool fw_cfg_init(struct machine *m)
{
    struct fw_cfg_host *h = &m->fw_cfg;
    uint8_t id[4], one[2], zero16[16] = {0}, wait[4];
    put_le(id, ID_TRADITIONAL | ID_DMA, 4);
    put_le(one, 1, 2);
    put_le(wait, UINT32_MAX, 4);
    return set_item(h, KEY_SIGNATURE, "QEMU", 4) && set_item(h, KEY_ID, id, 4) &&
           set_item(h, KEY_UUID, zero16, 16) && set_item(h, KEY_NOGRAPHIC, one, 2) &&
           set_item(h, KEY_NB_CPUS, one, 2) && set_item(h, KEY_BOOT_MENU, zero16, 2) &&
           add_file(h, "bios-geometry", NULL, 0) && add_file(h, "bootorder", NULL, 0) &&
           add_file(h, "etc/boot-fail-wait", wait, 4) && build_directory(h);
}

void fw_cfg_free(struct machine *m)
{
    for (int i = 0; i < FW_CFG_KEYS; i++)
        free(m->fw_cfg.items[i].data);
    memset(&m->fw_cfg, 0, sizeof m->fw_cfg);
}

void fw_cfg_reset(struct machine *m)
{
    m->fwcfg = (struct fw_cfg_state){ 0 };
}

static const struct fw_cfg_item *selected(struct machine *m)
{
    unsigned key = m->fwcfg.selector & KEY_ENTRY_MASK;
    return key < FW_CFG_KEYS && !(m->fwcfg.selector & 0x8000) ? &m->fw_cfg.items[key] : NULL;
}

/* The next `n` bytes of the selected item from the read offset (zeros past
 * its end or for an item that does not exist), moving the offset on. */
static void read_bytes(struct machine *m, uint8_t *out, uint32_t n)
{
    const struct fw_cfg_item *it = selected(m);
    uint32_t off = m->fwcfg.offset;
    uint32_t have = it && it->data && off < it->len ? it->len - off : 0;
    uint32_t take = have < n ? have : n;
    if (take)
        memcpy(out, it->data + off, take);
    memset(out + take, 0, n - take);
    m->fwcfg.offset = off + n < off ? UINT32_MAX : off + n;
}

/* Run the FWCfgDmaAccess at guest physical address `addr`: select, then read
 * into guest RAM or skip; the control word is written back 0 (done) or with
 * the error bit.  Synchronous, so the guest sees it done at once. */
static void dma_transfer(struct machine *m, uint64_t addr)
{
    uint8_t desc[16];
    if (!phys_read(m, addr, desc, sizeof desc))
        return;                         /* nowhere to report to */
    uint32_t control, length;
    uint64_t target;
    memcpy(&control, desc, 4);
    memcpy(&length, desc + 4, 4);
    memcpy(&target, desc + 8, 8);
    control = be32(control);
    length = be32(length);
    target = __builtin_bswap64(target);
    if (control & DMA_SELECT) {
        m->fwcfg.selector = (uint16_t)(control >> 16);
        m->fwcfg.offset = 0;
    }
    uint32_t result = 0;
    if (control & DMA_WRITE) {
        result = DMA_ERROR;             /* no item is writable */
    } else if (control & DMA_READ) {
        uint8_t chunk[512];
        for (uint32_t done = 0; done < length; ) {
            uint32_t n = length - done < sizeof chunk ? length - done : (uint32_t)sizeof chunk;
            read_bytes(m, chunk, n);
            if (!phys_write(m, target + done, chunk, n)) {
                result = DMA_ERROR;
                break;
            }
            done += n;
        }
    } else if (control & DMA_SKIP) {
        uint32_t off = m->fwcfg.offset;
        m->fwcfg.offset = off + length < off ? UINT32_MAX : off + length;
    }
    uint32_t out = be32(result);
    phys_write(m, addr, &out, 4);
}

static bool fw_cfg_read(struct machine *m, uint64_t offset, int size, uint64_t *value)
{
    if (offset < R_SELECTOR) {
        if (offset != R_DATA)
            return false;
        uint8_t bytes[8];
        read_bytes(m, bytes, (uint32_t)size);
        /* The bytes land in memory in item order, whatever the access width. */
        uint64_t v = 0;
        memcpy(&v, bytes, (size_t)size);
        *value = v;
        return true;
    }
    if (offset >= R_DMA) {              /* the DMA register reads "QEMU CFG", big-endian */
        uint64_t sig = __builtin_bswap64(DMA_SIGNATURE);
        uint64_t v = 0;
        memcpy(&v, (uint8_t *)&sig + (offset - R_DMA), (size_t)size);
        *value = v;
        return true;
    }
    *value = 0;                         /* the selector is write-only */
    return true;
}

static bool fw_cfg_write(struct machine *m, uint64_t offset, int size, uint64_t value)
{
    switch (offset) {
    case R_DATA:
        return true;                    /* nothing is writable: ignored, as QEMU does */
    case R_SELECTOR:
        if (size != 2)
            return false;
        m->fwcfg.selector = __builtin_bswap16((uint16_t)value);
        m->fwcfg.offset = 0;
        return true;
    case R_DMA:
        if (size == 8) {
            dma_transfer(m, __builtin_bswap64(value));
            return true;
        }
        if (size != 4)
            return false;
        m->fwcfg.dma_high = be32((uint32_t)value);
        return true;
    case R_DMA_LOW:
        if (size != 4)
            return false;
        /* Writing the low half starts the transfer (the high half went first). */
        dma_transfer(m, (uint64_t)m->fwcfg.dma_high << 32 | be32((uint32_t)value));
        m->fwcfg.dma_high = 0;
        return true;
    }
    return false;
}

const struct mmio_device fw_cfg_device = {
    .base = FW_CFG_BASE, .size = FW_CFG_SIZE, .sizes = 1 | 2 | 4 | 8,
    .read = fw_cfg_read, .write = fw_cfg_write,
};

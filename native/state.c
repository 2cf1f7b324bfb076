/* state.c: the complete CPU + device state as bytes.
 *
 * Layout: a header (magic "CHRS", format version, then the byte size of each
 * part) followed by the parts in order: hart, uart, rtc, clint, plic, virtio-blk,
 * virtio-rng, virtio-net, fw_cfg, pci (saved whether or not the device is present,
 * and whichever transport the virtio devices use, so every machine's state has
 * the same layout).
 * Every part is a plain struct without host pointers, so a state saved by one
 * process loads in another built from the same sources; the sizes in the
 * header make a state from a different build fail loudly instead of loading
 * garbage.  Host-side caches (TLB, console buffer) are not state.
 */
#include <string.h>
#include <stdio.h>
#include "machine.h"

#define STATE_MAGIC 0x53524843u     /* "CHRS" */
/* 2: goldfish RTC, 3: virtio-rng, 4: virtio-net, queues per device, 5: fw_cfg,
 * 6: PCIe, 96 PLIC sources */
#define STATE_VERSION 6u
#define STATE_PARTS 10

struct state_header {
    uint32_t magic, version;
    uint32_t sizes[STATE_PARTS];
    uint32_t pad;
};

struct state_part { void *ptr; size_t size; };

static void state_parts(struct machine *m, struct state_part parts[STATE_PARTS])
{
    parts[0] = (struct state_part){ &m->hart, sizeof m->hart };
    parts[1] = (struct state_part){ &m->uart, sizeof m->uart };
    parts[2] = (struct state_part){ &m->rtc, sizeof m->rtc };
    parts[3] = (struct state_part){ &m->clint, sizeof m->clint };
    parts[4] = (struct state_part){ &m->plic, sizeof m->plic };
    parts[5] = (struct state_part){ &m->vblk, sizeof m->vblk };
    parts[6] = (struct state_part){ &m->vrng, sizeof m->vrng };
    parts[7] = (struct state_part){ &m->vnet, sizeof m->vnet };
    parts[8] = (struct state_part){ &m->fwcfg, sizeof m->fwcfg };
    parts[9] = (struct state_part){ &m->pci, sizeof m->pci };
}

size_t machine_state_size(struct machine *m)
{
    struct state_part parts[STATE_PARTS];
    state_parts(m, parts);
    size_t total = sizeof(struct state_header);
    for (int i = 0; i < STATE_PARTS; i++)
        total += parts[i].size;
    return total;
}

size_t core_state_size(void)
{
    static struct machine probe;    /* only its members' sizes are taken */
    return machine_state_size(&probe);
}

int machine_save_state(struct machine *m, uint8_t *buf, size_t len)
{
    if (len < machine_state_size(m))
        return -1;
    struct state_part parts[STATE_PARTS];
    state_parts(m, parts);
    struct state_header hdr = { STATE_MAGIC, STATE_VERSION, {0}, 0 };
    for (int i = 0; i < STATE_PARTS; i++)
        hdr.sizes[i] = (uint32_t)parts[i].size;
    memcpy(buf, &hdr, sizeof hdr);
    size_t off = sizeof hdr;
    for (int i = 0; i < STATE_PARTS; i++) {
        memcpy(buf + off, parts[i].ptr, parts[i].size);
        off += parts[i].size;
    }
    return 0;
}

int machine_load_state(struct machine *m, const uint8_t *buf, size_t len)
{
    struct state_header hdr;
    if (len != machine_state_size(m)) {
        snprintf(m->error, sizeof m->error, "state is %zu bytes, this core expects %zu",
                 len, machine_state_size(m));
        return -1;
    }
    memcpy(&hdr, buf, sizeof hdr);
    struct state_part parts[STATE_PARTS];
    state_parts(m, parts);
    if (hdr.magic != STATE_MAGIC || hdr.version != STATE_VERSION) {
        snprintf(m->error, sizeof m->error, "not a chrono CPU/device state of version %u", STATE_VERSION);
        return -1;
    }
    for (int i = 0; i < STATE_PARTS; i++) {
        if (hdr.sizes[i] != parts[i].size) {
            snprintf(m->error, sizeof m->error, "state part %d has %u bytes, expected %zu",
                     i, hdr.sizes[i], parts[i].size);
            return -1;
        }
    }
    size_t off = sizeof hdr;
    for (int i = 0; i < STATE_PARTS; i++) {
        memcpy(parts[i].ptr, buf + off, parts[i].size);
        off += parts[i].size;
    }
    pmp_update(m);
    tlb_flush(m);
    jit_flush(&m->jit);         /* translations are tied to blocks, not state; start clean anyway */
    m->host_wrote = true;       /* a restore rewrites RAM next: recheck code at the next run */
    m->console_out_len = 0;
    m->net.tx_head = m->net.tx_count = 0;     /* frames sent before the restore are gone */
    m->net.tx_used = 0;
    return 0;
}

/* machine.h: the whole machine (hart + board) and the helpers devices share. */
#ifndef CHRONO_MACHINE_H
#define CHRONO_MACHINE_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdatomic.h>
#include "chrono_core.h"
#include "cpu.h"
#include "devices.h"
#include "decode.h"
#include "block.h"
#include "jit/jit.h"

#define PAGE_SHIFT 12
#define PAGE_SIZE 4096ull
#define TIMEBASE_HZ 10000000ull         /* 10 MHz, as QEMU virt */
#define STEPS_PER_TICK 100ull           /* the guest sees a 1 GHz, one-IPC CPU */
#define CONSOLE_OUT_SIZE 8192
#define CONSOLE_OUT_HIGH 6144           /* stop to let the host drain above this */
#define MAX_BREAKPOINTS 64
#define MAX_WATCHPOINTS 16
#define NET_FRAME_MAX 65550             /* longest Ethernet frame the network device carries */
#define NET_TX_BUF (4u << 20)           /* transmitted bytes the host has not taken yet, at most */
#define NET_TX_FRAMES 1024              /* ... and frames */

struct watchpoint {
    uint64_t addr, len;
    int kind;                   /* enum chrono_watch */
};

/* A copy-on-write capture in progress (capture.c): per RAM page / disk
 * block, whether the snapshot still needs its current content. */
struct capture_area {
    _Atomic uint8_t *state;     /* NULL until the first capture */
    uint8_t **aside;            /* content set aside before a write */
    uint64_t units;
};
struct capture {
    struct capture_area ram, disk;
    _Atomic uint64_t pending;   /* units the reader has not taken yet */
};

/* A frame the guest transmitted, kept for the host (virtio_net.c). */
struct net_tx_frame {
    uint32_t off, len;          /* in net_host.tx_buf */
    uint64_t steps;             /* position of the instruction that sent it */
};

/* The network device's host side: whether it exists, and what the guest
 * sent that the host has not taken.  Not saved: like console output. */
struct net_host {
    bool present;
    bool rx_waiting;            /* the host holds frames for the guest */
    uint8_t *tx_buf;            /* NET_TX_BUF bytes while present */
    uint64_t tx_used;
    uint32_t tx_head, tx_count;
    uint64_t tx_dropped;        /* frames the host never took (buffer full) */
    struct net_tx_frame tx[NET_TX_FRAMES];
};

/* fw_cfg.c: the items the guest can read, fixed when the machine is made
 * (host side: every machine has the same, so they are not saved). */
#define FW_CFG_FILES 8
#define FW_CFG_KEYS (0x20 + FW_CFG_FILES)
#define FW_CFG_NAME_MAX 56              /* with the terminating NUL */
struct fw_cfg_item {
    uint8_t *data;
    uint32_t len;
};
struct fw_cfg_host {
    struct fw_cfg_item items[FW_CFG_KEYS];
    char names[FW_CFG_FILES][FW_CFG_NAME_MAX];      /* of items 0x20.., sorted */
    uint32_t nfiles;
};

/* What the block cache knows of a RAM page (block.h). */
struct code_page {
    uint64_t gen;               /* nonzero while blocks run from it unchecked */
    uint8_t writes;             /* writes that took its generation this run */
    bool listed;                /* in machine.code_list */
};

struct machine {
    /* Saved state: plain data, see state.c. */
    struct hart hart;
    struct uart_state uart;
    struct rtc_state rtc;
    struct clint_state clint;
    struct plic_state plic;
    struct virtio_state vblk;
    struct virtio_state vrng;
    struct virtio_state vnet;
    struct fw_cfg_state fwcfg;
    struct pci_state pci;

    /* Host-side resources and caches: never saved. */
    struct tlb *tlb;                /* the current address space's, one of tlbs (tlb.c) */
    struct tlb tlbs[TLB_CONTEXTS];
    uint64_t tlb_switches;
    uint64_t tlb_generation;        /* bumped when entries may vanish or the TLB switches */
    struct pmp_ranges pmp;          /* decoded from hart.pmpcfg/pmpaddr, see pmp.c */
    struct block_cache blocks;      /* decoded code, see block.h */
    struct jit jit;                 /* translated code, see jit/jit.h */
    struct code_page *code;         /* per RAM page, see block.h */
    uint32_t *code_list;            /* pages that got a generation, to renew them per run */
    uint64_t code_listed;
    uint64_t code_gen_last;
    bool host_wrote;                /* the host wrote RAM: renew code generations at the next run */
    struct chrono_config cfg;
    struct capture capture;         /* see capture.c */
    uint8_t *ram;
    uint64_t ram_size;
    uint8_t *ram_dirty;
    uint8_t *ram_present;       /* 0 = page not materialized yet (lazy restore) */
    chrono_page_provider page_provider;
    void *page_provider_ctx;
    uint8_t *disk;
    uint64_t disk_size;
    uint8_t *disk_dirty;
    uint8_t *disk_written;
    struct net_host net;
    struct fw_cfg_host fw_cfg;
    uint64_t htif_page;         /* physical page of tohost, kept out of the write TLB */

    uint64_t slice_end;         /* the executor stops when hart.steps reaches this */
    int stop_reason;            /* pending stop (enum chrono_stop), -1 = none */
    uint64_t stop_code;
    int input_waiting;

    uint8_t console_out[CONSOLE_OUT_SIZE];
    uint64_t console_out_steps[CONSOLE_OUT_SIZE];   /* when each byte was written (for queries) */
    size_t console_out_len;
    uint8_t console_returned[16];   /* host input the guest discarded unread (uart.c) */
    size_t console_returned_len;

    uint64_t breakpoints[MAX_BREAKPOINTS];
    int nbreakpoints;
    uint64_t bp_skip_steps, bp_skip_pc;   /* resume over the breakpoint we stopped at */
    bool bp_pass;                         /* count breakpoint hits instead of stopping */
    struct chrono_breakpoint_hits bp_hits;

    struct watchpoint watch[MAX_WATCHPOINTS];     /* see watch.c */
    int nwatch;
    struct { uint64_t pc, addr; int kind, watch_kind, device; } watch_hit;

    char error[256];
};

/* watch.c: is a page watched for this access type; report an access. */
bool watch_page(struct machine *m, uint64_t ppage, enum access_type type);
void watch_access(struct machine *m, uint64_t pa, uint64_t len, enum access_type type, bool device);
static inline void watch_check(struct machine *m, uint64_t pa, uint64_t len, enum access_type type)
{
    if (m->nwatch)
        watch_access(m, pa, len, type, false);
}
static inline void watch_check_device(struct machine *m, uint64_t pa, uint64_t len,
                                      enum access_type type)
{
    if (m->nwatch)
        watch_access(m, pa, len, type, true);
}

/* Ask the run loop to return after the current instruction. */
void machine_request_stop(struct machine *m, int reason, uint64_t code);
/* Whether a breakpoint stops the hart before running pc at this step (not
 * the one machine_run() resumes over). */
bool machine_stops_at_breakpoint(struct machine *m, uint64_t pc, uint64_t steps);
/* Whether pc holds a breakpoint at all. */
bool machine_at_breakpoint(struct machine *m, uint64_t pc);
/* Virtual clock in step units, and the timebase derived from it. */
static inline uint64_t machine_vclock_now(struct machine *m)
{
    return m->hart.steps + m->hart.idle_skipped;
}
static inline uint64_t machine_mtime_now(struct machine *m)
{
    return machine_vclock_now(m) / STEPS_PER_TICK;
}
/* Append guest console output (UART THR, HTIF putchar). */
void console_put(struct machine *m, uint8_t byte);

/* RAM helpers for devices and the page walker: physical, bounds-checked,
 * marking dirty pages on writes.  Return false if the range is not RAM. */
bool phys_read(struct machine *m, uint64_t paddr, void *dst, uint64_t len);
bool phys_write(struct machine *m, uint64_t paddr, const void *src, uint64_t len);
static inline bool phys_is_ram(struct machine *m, uint64_t paddr, uint64_t len)
{
    return paddr >= RAM_BASE && paddr - RAM_BASE <= m->ram_size && len <= m->ram_size - (paddr - RAM_BASE);
}
/* Fill a page that is not present yet, through the page provider. */
void ram_materialize(struct machine *m, uint64_t page_index);

/* Host pointer to guest RAM at paddr (the caller checked it is RAM).  Every
 * access to RAM from C goes through here or ram_range, so a lazily restored
 * page is materialized before its first use.  The TLB only ever holds
 * present pages, so the fast paths need no check. */
static inline uint8_t *ram_ptr(struct machine *m, uint64_t paddr)
{
    uint64_t offset = paddr - RAM_BASE;
    if (__builtin_expect(!m->ram_present[offset >> PAGE_SHIFT], 0))
        ram_materialize(m, offset >> PAGE_SHIFT);
    return m->ram + offset;
}

/* Same for a range that may span pages. */
static inline uint8_t *ram_range(struct machine *m, uint64_t paddr, uint64_t len)
{
    uint64_t offset = paddr - RAM_BASE;
    if (len)
        for (uint64_t page = offset >> PAGE_SHIFT; page <= (offset + len - 1) >> PAGE_SHIFT; page++)
            if (__builtin_expect(!m->ram_present[page], 0))
                ram_materialize(m, page);
    return m->ram + offset;
}

/* Every write to RAM except the store fast path (whose TLB entry was filled
 * through here) marks its page: dirty for snapshots, and no longer vouched
 * for as code, so blocks decoded from it recheck their bytes (block.h). */
static inline void ram_forget_code(struct machine *m, uint64_t page)
{
    struct code_page *c = &m->code[page];
    if (c->gen) {
        c->gen = 0;
        if (c->writes < UINT8_MAX)
            c->writes++;
    }
}

/* capture.c: before RAM or disk bytes change, keep what a capture in
 * progress still needs of them. */
void capture_keep_ram(struct machine *m, uint64_t paddr, uint64_t len);
void capture_keep_disk(struct machine *m, uint64_t offset, uint64_t len);
void capture_free(struct machine *m);
void capture_prepare_ram(struct machine *m);     /* the tables, before the first capture */
void capture_prepare_disk(struct machine *m);
static inline void ram_before_write(struct machine *m, uint64_t paddr, uint64_t len)
{
    if (__builtin_expect(atomic_load_explicit(&m->capture.pending, memory_order_relaxed) != 0, 0))
        capture_keep_ram(m, paddr, len);
}
static inline void disk_before_write(struct machine *m, uint64_t offset, uint64_t len)
{
    if (__builtin_expect(atomic_load_explicit(&m->capture.pending, memory_order_relaxed) != 0, 0))
        capture_keep_disk(m, offset, len);
}

/* Marking comes before the write on the store paths (a write TLB entry is
 * filled through here), so it also keeps a capture's content. */
static inline void ram_mark_dirty(struct machine *m, uint64_t paddr)
{
    ram_before_write(m, paddr & ~0xfffull, 1);
    uint64_t page = (paddr - RAM_BASE) >> PAGE_SHIFT;
    m->ram_dirty[page] = 1;
    ram_forget_code(m, page);
}

/* Same for a range that may span pages. */
static inline void ram_mark_written(struct machine *m, uint64_t paddr, uint64_t len)
{
    ram_before_write(m, paddr, len);
    if (len)
        for (uint64_t page = (paddr - RAM_BASE) >> PAGE_SHIFT;
             page <= (paddr - RAM_BASE + len - 1) >> PAGE_SHIFT; page++) {
            m->ram_dirty[page] = 1;
            ram_forget_code(m, page);
        }
}

/* bus.c: physical access to RAM or a device (size 1/2/4/8, naturally aligned
 * for devices).  False = access fault. */
bool bus_read(struct machine *m, uint64_t paddr, int size, uint64_t *value);
bool bus_write(struct machine *m, uint64_t paddr, int size, uint64_t value);

/* Disk helpers (virtio-blk): offsets in bytes; writes mark blocks dirty/written. */
void disk_mark_written(struct machine *m, uint64_t offset, uint64_t len);

/* virtio_net.c: free the host-side buffers (machine_free). */
void net_free(struct machine *m);

/* fw_cfg.c: build the fixed items (machine_new); free them all. */
bool fw_cfg_init(struct machine *m);
void fw_cfg_free(struct machine *m);

/* htif.c: a store of `size` bytes at paddr landed in the tohost page. */
void htif_store(struct machine *m, uint64_t paddr, int size);

#endif

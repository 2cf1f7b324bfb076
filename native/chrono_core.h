/* chrono_core.h: the whole boundary between Python (cffi, API mode) and the C core.
 *
 * Everything here is plain C types so cffi can parse it as-is.  The machine
 * owns guest RAM and the dirty maps; the disk buffer is owned by Python (a
 * MAP_PRIVATE mapping of the image, so guest writes never reach the file).
 */

#include <stdint.h>
#include <stddef.h>

/* Why machine_run() returned. */
enum chrono_stop {
    CHRONO_STOP_BUDGET = 0,      /* executed exactly the requested number of steps */
    CHRONO_STOP_POWEROFF = 1,    /* sifive,test0 poweroff; code in result.code */
    CHRONO_STOP_REBOOT = 2,      /* sifive,test0 reset request */
    CHRONO_STOP_HTIF_EXIT = 3,   /* tohost exit; code = value >> 1 */
    CHRONO_STOP_BREAKPOINT = 4,  /* pc hit a breakpoint before executing it */
    CHRONO_STOP_IDLE = 5,        /* hart in WFI with nothing pending; see result.deadline */
    CHRONO_STOP_OUTPUT = 6,      /* console output buffer needs draining */
    CHRONO_STOP_INPUT = 7,       /* guest drained the UART receive FIFO while input_waiting */
    CHRONO_STOP_FATAL = 8,       /* the emulator cannot continue; see machine_error() */
    CHRONO_STOP_ENTROPY = 9,     /* the guest asked the entropy device (virtio-rng) for bytes
                                  * that only the host can give: code = bytes wanted now,
                                  * as machine_entropy_wanted(); answer with machine_entropy_write() */
    CHRONO_STOP_WATCHPOINT = 10, /* an access hit a watchpoint and its instruction completed:
                                  * code = the address; machine_watch_hit() says more */
    CHRONO_STOP_NET = 11         /* the network device has news for the host: the guest sent
                                  * frames (machine_net_tx_read), or posted receive buffers
                                  * while the host holds frames (machine_net_set_rx_waiting) */
};

struct chrono_config {
    uint64_t ram_size;          /* bytes, multiple of 4 KiB, RAM starts at 0x80000000 */
    uint64_t htif_tohost;       /* physical address of tohost, 0 = no HTIF */
    uint64_t htif_fromhost;     /* physical address of fromhost, 0 = none */
    uint64_t rtc_epoch_ns;      /* wall-clock time (ns since 1970) at virtual time 0: an input */
    uint64_t no_jit;            /* 1: never translate to host code (the interpreter only) */
    uint64_t jit_threshold;     /* runs of a block before it is translated, 0 = the default */
    uint64_t virtio_pci;        /* 1: the virtio devices are on the PCIe bus (virtio-pci), 0: in
                                 * their virtio-mmio slots */
};

struct chrono_result {
    int reason;                 /* enum chrono_stop */
    uint64_t executed;          /* steps executed by this call */
    uint64_t code;              /* poweroff / HTIF exit code; ENTROPY: bytes wanted */
    uint64_t deadline;          /* for IDLE: virtual clock of the next timer event, or UINT64_MAX */
};

struct machine;

/* Lazy restore: called (synchronously, from inside machine_run or any other
 * call that touches RAM) for a page whose present byte is 0.  It must write
 * the page's content into RAM and return 0; nonzero = the page cannot be had
 * (the run stops with CHRONO_STOP_FATAL and machine_error() says why). */
typedef int (*chrono_page_provider)(void *ctx, uint64_t page_index);

struct machine *machine_new(const struct chrono_config *cfg);
void machine_free(struct machine *m);
const char *machine_error(struct machine *m);

/* Memory and dirty maps (one byte per 4 KiB page / block; nonzero = dirty). */
uint8_t *machine_ram(struct machine *m);
uint64_t machine_ram_size(struct machine *m);
uint8_t *machine_ram_dirty(struct machine *m);
void machine_clear_ram_dirty(struct machine *m);
/* One byte per page: 1 = materialized.  All 1 on a new machine. */
uint8_t *machine_ram_present(struct machine *m);
void machine_set_page_provider(struct machine *m, chrono_page_provider provider, void *ctx);
/* Call after the host changed RAM contents or the present map: drops cached
 * translations (and with them every host pointer into RAM). */
void machine_invalidate_ram(struct machine *m);
/* Call after the host wrote RAM: the next run rechecks decoded code against
 * RAM (the core does not see host writes; it no longer rechecks every run). */
void machine_host_wrote(struct machine *m);
/* Call before the host writes RAM (disk = 0, offset from RAM's start) or the
 * disk buffer (disk = 1): a capture in progress keeps what it needs first. */
void machine_host_will_write(struct machine *m, int disk, uint64_t offset, uint64_t len);

/* Copy-on-write capture (capture.c).  begin: the RAM pages and disk blocks
 * (4 KiB units) whose byte in ram_mask / disk_mask (one byte per unit, as the
 * dirty maps; NULL: none) is set keep their current content for the capture,
 * and the dirty maps are cleared; the guest may run on at once.  read (from any thread,
 * also while the machine runs): the units' captured content into out
 * (n * 4096 bytes; a disk's last partial block zero-padded); -1 if one was
 * not part of the capture or could not be kept.  nonzero (NULL: not wanted)
 * gets a byte per unit: 1 if its content has a non-zero byte (a zero page is
 * known before anyone hashes or compresses it).  pending: units not read
 * yet.  abandon: forget what is unread (a capture that failed).  begin
 * returns -1 while units are pending (or with a disk mask and no disk). */
int machine_capture_begin(struct machine *m, const uint8_t *ram_mask, const uint8_t *disk_mask);
int machine_capture_read(struct machine *m, int disk, const uint64_t *units, size_t n, uint8_t *out,
                         uint8_t *nonzero);
uint64_t machine_capture_pending(struct machine *m);
void machine_capture_abandon(struct machine *m);

/* Attach a disk buffer (size a multiple of 512, owned by the caller, kept alive
 * for the machine's life).  Returns 0, or -1 if a disk is already attached. */
int machine_attach_disk(struct machine *m, uint8_t *data, uint64_t size);
uint8_t *machine_disk_dirty(struct machine *m);      /* since last clear */
uint8_t *machine_disk_written(struct machine *m);    /* since start: the overlay */
uint64_t machine_disk_blocks(struct machine *m);
void machine_clear_disk_dirty(struct machine *m);

/* Execution.  A step is one instruction executed or trapped; the position
 * (machine_steps) counts them and virtual time derives from it. */
void machine_reset(struct machine *m, uint64_t pc, uint64_t a0, uint64_t a1, uint64_t a2);
void machine_run(struct machine *m, uint64_t max_steps, struct chrono_result *out);
uint64_t machine_steps(struct machine *m);
uint64_t machine_vclock(struct machine *m);          /* virtual clock, in step units */
uint64_t machine_mtime(struct machine *m);           /* timebase ticks */
uint64_t machine_timebase_hz(void);
uint64_t machine_steps_per_tick(void);
/* Jump the virtual clock forward to `vclock` (used when idle; never backwards). */
void machine_skip_to(struct machine *m, uint64_t vclock);

/* The JIT (x86-64 hosts): whether it is in use, and blocks translated so
 * far.  It changes speed only: every result is the interpreter's. */
int machine_jit_enabled(struct machine *m);
uint64_t machine_jit_translated(struct machine *m);
struct chrono_jit_stats {
    uint64_t translated;        /* blocks translated */
    uint64_t declined;          /* hot blocks left to the interpreter (first op not translated) */
    uint64_t guest_ops;         /* guest instructions in those translations */
    uint64_t code_bytes;        /* host code written, over every cache epoch */
    uint64_t cache_used;        /* bytes of the code cache in use now */
    uint64_t cache_size;
    uint64_t flushes;           /* times the cache was full and started over */
};
void machine_jit_stats(struct machine *m, struct chrono_jit_stats *out);
/* The code cache as it runs (cache_used bytes), for looking at the code
 * (tools/jit_dump.py); NULL without the JIT. */
const uint8_t *machine_jit_code(struct machine *m);

/* Data watchpoints on physical address ranges (for debuggers): the run
 * stops after an instruction (or device DMA) that reads or writes them. */
enum chrono_watch { CHRONO_WATCH_WRITE = 1, CHRONO_WATCH_READ = 2, CHRONO_WATCH_ACCESS = 3 };
struct chrono_watch_hit {
    uint64_t pc;                /* the instruction that made the access */
    uint64_t addr;              /* the first watched byte it touched */
    int kind;                   /* CHRONO_WATCH_WRITE or _READ: what the access was */
    int watch_kind;             /* the kind of the watchpoint it hit */
    int device;                 /* 1: device DMA (during the instruction at pc), 0: the hart */
};
int machine_add_watchpoint(struct machine *m, uint64_t addr, uint64_t len, int kind);
int machine_remove_watchpoint(struct machine *m, uint64_t addr, uint64_t len, int kind);
/* The first hit since the last machine_run began (kind 0: none). */
void machine_watch_hit(struct machine *m, struct chrono_watch_hit *out);

/* Breakpoints on guest pc (virtual address as fetched). */
int machine_add_breakpoint(struct machine *m, uint64_t pc);
int machine_remove_breakpoint(struct machine *m, uint64_t pc);
/* Passing mode (reverse-continue's scan): a breakpoint no longer stops the
 * run; each time an instruction at one is about to run, the core counts it
 * and keeps its position (including the first instruction of a run call).
 * Turning it on clears the count; turning it off keeps it for reading. */
struct chrono_breakpoint_hits {
    uint64_t count;
    uint64_t last_steps;        /* machine_steps before the last hit's instruction */
    uint64_t last_pc;
};
void machine_pass_breakpoints(struct machine *m, int on);
void machine_breakpoint_hits(struct machine *m, struct chrono_breakpoint_hits *out);

/* Registers: 0-31 = x0..x31, 32 = pc, 33 = privilege level, 34-65 = f0..f31 (raw bits). */
uint64_t machine_get_reg(struct machine *m, int idx);
void machine_get_xregs(struct machine *m, uint64_t out[32]);
void machine_set_reg(struct machine *m, int idx, uint64_t value);
/* Debugger view of a CSR; returns 0 and stores the value, -1 if it does not exist. */
int machine_get_csr(struct machine *m, int csr, uint64_t *value);

/* Console.  Output is buffered in the core and drained by the host. */
size_t machine_console_read(struct machine *m, uint8_t *buf, size_t len);
/* The same, with the position (machine_steps) of the instruction that wrote each byte. */
size_t machine_console_read_steps(struct machine *m, uint8_t *buf, uint64_t *steps, size_t len);
/* Put up to len bytes into the UART receive FIFO; returns how many fit. */
size_t machine_console_write(struct machine *m, const uint8_t *buf, size_t len);
/* Whether the guest is ready for console input (it enabled the UART receive
 * interrupt, or polls the line status): the host feeds input only then. */
int machine_console_ready(struct machine *m);
/* Host input the guest threw away unread (a receive-FIFO reset), to be
 * delivered again, ahead of anything still queued.  Returns the byte count. */
size_t machine_console_returned(struct machine *m, uint8_t *buf, size_t len);
/* Tell the core that host input is queued, so it stops with CHRONO_STOP_INPUT
 * when the guest empties the receive FIFO. */
void machine_set_input_waiting(struct machine *m, int waiting);

/* Entropy (virtio-rng in virtio-mmio slot 6): the device's only source is
 * the host.  wanted = the writable space of the requests the guest has made
 * available and the host has not filled yet, capped at 4096 (0 = none); it
 * reads guest state and changes nothing.  write fills those requests in ring
 * order with up to len bytes (the last one it touches may be filled partly:
 * its used length says how much), completes them in the used ring, raises the
 * interrupt unless the driver suppressed it, and returns the bytes consumed;
 * the rest stay the host's.  len = 0 changes nothing.  The outcome depends
 * only on guest state and the bytes given: a logged input. */
size_t machine_entropy_wanted(struct machine *m);
size_t machine_entropy_write(struct machine *m, const uint8_t *buf, size_t len);

/* Network (virtio-net in virtio-mmio slot 5, MAC 52:54:00:12:34:56), present
 * once attached (0; -1 if it already is, or out of memory).  The core does no
 * I/O: the host moves frames.
 * receive: put one Ethernet frame into the next receive buffer the guest
 * posted and complete it (interrupt unless suppressed): 1 = delivered, 0 = no
 * buffer posted (nothing changed: offer it again later), -1 = dropped (it
 * does not fit the buffer, or the queue is broken; the buffer came back
 * empty).  Its outcome depends only on guest state and the frame: a logged
 * input.
 * set_rx_waiting: the host holds frames; the guest posting receive buffers
 * then stops the run with CHRONO_STOP_NET.
 * tx_read: the oldest frame the guest sent that the host has not taken,
 * copied into buf (up to len bytes; 65550 always suffice); returns its length
 * (0: none) and in *steps the position of the instruction that sent it.
 * Frames left untaken are dropped when the buffer fills (tx_dropped counts
 * them) or the state is loaded; the guest sees the same either way. */
int machine_net_attach(struct machine *m);
int machine_net_present(struct machine *m);
int machine_net_receive(struct machine *m, const uint8_t *frame, size_t len);
void machine_net_set_rx_waiting(struct machine *m, int waiting);
size_t machine_net_tx_read(struct machine *m, uint8_t *buf, size_t len, uint64_t *steps);
uint64_t machine_net_tx_dropped(struct machine *m);

/* Complete CPU + device state as bytes (no host pointers inside). */
size_t machine_state_size(struct machine *m);
/* The same size without a machine: it is fixed by the build (a fast boot
 * checks a snapshot's layout against it before building one). */
size_t core_state_size(void);
int machine_save_state(struct machine *m, uint8_t *buf, size_t len);
int machine_load_state(struct machine *m, const uint8_t *buf, size_t len);

/* demo.h: shared declarations for the chrono demo guest.
 *
 * Bare-metal, M-mode only, single hart, on a board compatible with QEMU's
 * `virt` machine.  Everything here is freestanding: no libc. */
#ifndef DEMO_H
#define DEMO_H

#include <stdint.h>
#include <stddef.h>
#include <stdarg.h>

#define BLOCK_SIZE 512

/* ---- board memory map (QEMU virt) ---- */
#define TEST_BASE       0x00100000UL    /* sifive,test0 */
#define CLINT_MTIMECMP  0x02004000UL    /* hart 0 */
#define CLINT_MTIME     0x0200bff8UL
#define TIMEBASE_HZ     10000000UL      /* mtime ticks per second */
#define PLIC_BASE       0x0c000000UL
#define UART_BASE       0x10000000UL
#define UART_IRQ        10
#define VIRTIO_BASE     0x10001000UL    /* slot n at VIRTIO_BASE + n * 0x1000 */
#define VIRTIO_SLOTS    8

/* ---- CSR bits ---- */
#define MSTATUS_MIE     (1UL << 3)
#define MIE_MTIE        (1UL << 7)
#define MIE_MEIE        (1UL << 11)

#define csr_read(csr) ({ unsigned long __v; \
    __asm__ volatile("csrr %0, " #csr : "=r"(__v) :: "memory"); __v; })
#define csr_write(csr, val) \
    __asm__ volatile("csrw " #csr ", %0" :: "rK"((unsigned long)(val)) : "memory")
#define csr_set(csr, val) \
    __asm__ volatile("csrs " #csr ", %0" :: "rK"((unsigned long)(val)) : "memory")
#define csr_clear(csr, val) \
    __asm__ volatile("csrc " #csr ", %0" :: "rK"((unsigned long)(val)) : "memory")

static inline uint64_t rdinstret(void)
{
    uint64_t v;
    __asm__ volatile("rdinstret %0" : "=r"(v) :: "memory");
    return v;
}

static inline void fence(void) { __asm__ volatile("fence iorw, iorw" ::: "memory"); }
static inline void wfi(void) { __asm__ volatile("wfi" ::: "memory"); }

/* ---- MMIO accessors (naturally aligned, exact width) ---- */
static inline uint8_t mmio_r8(uintptr_t a) { return *(volatile uint8_t *)a; }
static inline uint32_t mmio_r32(uintptr_t a) { return *(volatile uint32_t *)a; }
static inline uint64_t mmio_r64(uintptr_t a) { return *(volatile uint64_t *)a; }
static inline void mmio_w8(uintptr_t a, uint8_t v) { *(volatile uint8_t *)a = v; }
static inline void mmio_w32(uintptr_t a, uint32_t v) { *(volatile uint32_t *)a = v; }
static inline void mmio_w64(uintptr_t a, uint64_t v) { *(volatile uint64_t *)a = v; }

/* ---- lib.c ---- */
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);
int parse_u64(const char *s, uint64_t *out);      /* decimal; 0 = ok */
void kputc(char c);                                /* '\n' becomes CR LF */
void kputs(const char *s);                         /* no newline added */
void kprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void kvprintf(const char *fmt, va_list ap);
void print_seconds(uint64_t ticks);                /* "3.141" from mtime ticks */

/* ---- uart.c ---- */
void uart_init(void);
void uart_putc(char c);
int uart_getc_nonblock(void);                      /* -1 if nothing received */
int uart_rx_ready(void);

/* ---- platform.c: CLINT, PLIC, sifive,test0 ---- */
uint64_t mtime(void);
void timer_arm(uint64_t deadline);                 /* mtimecmp = deadline, mie.MTIE = 1 */
void timer_disarm(void);                           /* mtimecmp = ~0, mie.MTIE = 0 */
void plic_init(void);
void plic_ack_all(void);                           /* claim + complete whatever is pending */
void poweroff(void) __attribute__((noreturn));
void poweroff_fail(unsigned code) __attribute__((noreturn));

/* ---- virtio_blk.c ---- */
int vblk_init(void);                               /* 0 = a usable disk was found */
int vblk_present(void);
uint64_t vblk_capacity(void);                      /* in 512-byte sectors */
int disk_read(uint32_t block, void *buf);          /* 0 = ok, -1 = I/O error */
int disk_write(uint32_t block, const void *buf);

/* ---- cache.c: write-back block cache ---- */
struct cblock {
    uint8_t data[BLOCK_SIZE];
    uint32_t blockno;
    uint8_t valid;
    uint8_t dirty;
    struct cblock *prev, *next;         /* LRU list: head = most recently used */
};
void cache_init(void);
struct cblock *cache_get(uint32_t block, int fill);  /* fill=0: caller overwrites all */
void cache_mark_dirty(struct cblock *b);
int cache_flush(void);                  /* write all dirty blocks; returns count or -1 */
int cache_flush_scheduled(void);
int cache_flush_due(void);              /* the periodic flush deadline has passed */
unsigned cache_dirty_count(void);
void cache_crash(void) __attribute__((noreturn));

/* ---- fs.c / fsck.c ---- */
void fs_mount(void);                    /* at boot; formats a blank disk */
int fs_usable(void);                    /* prints why not if not */
void fs_ls(void);
void fs_cat(const char *name);
void fs_write(const char *name, const char *text);
void fs_rm(const char *name);
void fs_fsck(void);

/* ---- bench.c ---- */
#define BENCH_DEFAULT_UNITS 100
void bench_run(uint64_t units);

/* ---- shell.c ---- */
void shell_run(void) __attribute__((noreturn));

#endif

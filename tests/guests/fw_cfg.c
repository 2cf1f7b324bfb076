/* fw_cfg.c: a bare-metal reader of the firmware configuration device, run
 * on QEMU's virt and on chrono (tests/test_fw_cfg.py).  It prints, one per
 * line on the UART, what the traditional interface (selector + data
 * register) and the DMA interface read of the standard items, then the
 * file directory, so the two machines' answers can be compared line by line. */
#include <stdint.h>

#define FW_CFG 0x10100000ul
/* No libgcc here: byte swaps and fills by hand. */
static uint16_t be16(uint16_t v) { return (uint16_t)(v << 8 | v >> 8); }
static uint32_t be32(uint32_t v)
{
    return v << 24 | (v & 0xff00) << 8 | (v >> 8 & 0xff00) | v >> 24;
}
static uint64_t be64(uint64_t v) { return (uint64_t)be32((uint32_t)v) << 32 | be32((uint32_t)(v >> 32)); }
static void fill(volatile uint8_t *p, uint8_t v, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        p[i] = v;
}
static void copy(uint8_t *d, const void *s, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        d[i] = ((const uint8_t *)s)[i];
}
#define UART 0x10000000ul

static void putc_(char c)
{
    volatile uint8_t *u = (volatile uint8_t *)UART;
    while (!(u[5] & 0x20))
        ;
    u[0] = (uint8_t)c;
}

static void puts_(const char *s)
{
    while (*s)
        putc_(*s++);
}

static void hex(const uint8_t *p, unsigned n)
{
    static const char digits[] = "0123456789abcdef";
    for (unsigned i = 0; i < n; i++) {
        putc_(digits[p[i] >> 4]);
        putc_(digits[p[i] & 15]);
    }
}

static void select_(uint16_t key)
{
    *(volatile uint16_t *)(FW_CFG + 8) = be16(key);
}

/* `n` bytes of the selected item through the data register, `width` at a time. */
static void read_data(uint8_t *out, unsigned n, unsigned width)
{
    for (unsigned i = 0; i < n; i += width) {
        if (width == 8) {
            uint64_t v = *(volatile uint64_t *)FW_CFG;
            copy(out + i, &v, 8);
        } else if (width == 4) {
            uint32_t v = *(volatile uint32_t *)FW_CFG;
            copy(out + i, &v, 4);
        } else {
            out[i] = *(volatile uint8_t *)FW_CFG;
        }
    }
}

struct dma_access { uint32_t control, length; uint64_t address; };
static volatile struct dma_access dma __attribute__((aligned(16)));

/* A DMA transfer: control is the big-endian control word's value. */
static uint32_t dma_run(uint32_t control, void *buf, uint32_t len)
{
    dma.control = be32(control);
    dma.length = be32(len);
    dma.address = be64((uint64_t)(uintptr_t)buf);
    uint64_t a = (uint64_t)(uintptr_t)&dma;
    *(volatile uint32_t *)(FW_CFG + 16) = be32((uint32_t)(a >> 32));
    *(volatile uint32_t *)(FW_CFG + 20) = be32((uint32_t)a);
    return be32(dma.control);
}

static void line(const char *what, const uint8_t *p, unsigned n)
{
    puts_(what);
    puts_(" ");
    hex(p, n);
    puts_("\n");
}

static uint8_t buf[4096];

void fw_cfg_main(void)
{
    uint8_t b[16];
    select_(0);                         /* signature, a byte at a time */
    read_data(b, 4, 1);
    line("signature", b, 4);
    select_(0);                         /* the same, one 32-bit read */
    read_data(b, 4, 4);
    line("signature32", b, 4);
    select_(1);
    read_data(b, 4, 1);
    line("id", b, 4);
    select_(0);                         /* reads past an item's end give zeros */
    read_data(b, 8, 8);
    line("signature64", b, 8);
    select_(0x0005);
    read_data(b, 2, 1);
    line("nb_cpus", b, 2);
    /* The other standard keys below the file directory, as the data
     * register reads them (zeros where the board has no such item). */
    for (uint16_t key = 2; key < 0x19; key++) {
        static char name[] = "key 00";
        name[4] = "0123456789abcdef"[key >> 4];
        name[5] = "0123456789abcdef"[key & 15];
        select_(key);
        read_data(b, 16, 1);
        line(name, b, 16);
    }
    select_(0x1234);                    /* no such item: zeros */
    read_data(b, 4, 1);
    line("missing", b, 4);
    uint64_t sig = *(volatile uint64_t *)(FW_CFG + 16);
    line("dma_register", (uint8_t *)&sig, 8);

    /* DMA: select the signature and read 8 bytes (4 past its end: zeros). */
    fill(buf, 0xee, 16);
    uint32_t st = dma_run(0x0008u | 0x02u, buf, 8);
    line("dma_signature", buf, 8);
    line("dma_status", (uint8_t *)&st, 4);
    /* skip 2 bytes of the ID, then read the rest. */
    dma_run((1u << 16) | 0x08u | 0x04u, 0, 2);
    st = dma_run(0x02u, buf, 2);
    line("dma_id_tail", buf, 2);
    /* writes are refused: the error bit comes back */
    st = dma_run((1u << 16) | 0x08u | 0x10u, buf, 2);
    line("dma_write_status", (uint8_t *)&st, 4);

    /* The file directory: count, then each entry (size, key, name). */
    select_(0x19);
    uint32_t count;
    read_data((uint8_t *)&count, 4, 1);
    count = be32(count);
    line("files", (uint8_t *)&count, 4);
    for (uint32_t i = 0; i < count && i < 64; i++) {
        uint8_t e[64];
        read_data(e, 64, 1);
        puts_("file ");
        puts_((const char *)e + 8);
        puts_(" ");
        hex(e, 6);
        puts_("\n");
    }
    /* Each file's first bytes, through DMA with select (which moves the
     * selector: the directory is read whole first). */
    static uint8_t dir[4 + 16 * 64];
    select_(0x19);
    read_data(dir, sizeof dir, 8);
    for (uint32_t i = 0; i < count && i < 16; i++) {
        const uint8_t *e = dir + 4 + i * 64;
        uint16_t key = (uint16_t)(e[4] << 8 | e[5]);
        fill(buf, 0, 16);
        dma_run((uint32_t)key << 16 | 0x08u | 0x02u, buf, 16);
        puts_("content ");
        puts_((const char *)e + 8);
        puts_(" ");
        hex(buf, 16);
        puts_("\n");
    }
    puts_("done\n");
}

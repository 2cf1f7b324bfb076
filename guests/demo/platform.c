/* platform.c: CLINT timer, PLIC and the sifive,test0 power device. */
#include "demo.h"

/* PLIC, context 0 = hart 0 M-mode */
#define PLIC_PRIORITY(n)   (PLIC_BASE + 4UL * (n))
#define PLIC_ENABLE0       (PLIC_BASE + 0x2000UL)
#define PLIC_THRESHOLD0    (PLIC_BASE + 0x200000UL)
#define PLIC_CLAIM0        (PLIC_BASE + 0x200004UL)

uint64_t mtime(void)
{
    return mmio_r64(CLINT_MTIME);
}

void timer_arm(uint64_t deadline)
{
    mmio_w64(CLINT_MTIMECMP, deadline);
    csr_set(mie, MIE_MTIE);
}

void timer_disarm(void)
{
    csr_clear(mie, MIE_MTIE);
    /* No deadline at all: the hart is truly idle in WFI. */
    mmio_w64(CLINT_MTIMECMP, ~(uint64_t)0);
}

void plic_init(void)
{
    mmio_w32(PLIC_PRIORITY(UART_IRQ), 1);
    mmio_w32(PLIC_ENABLE0, 1u << UART_IRQ);    /* only the UART */
    mmio_w32(PLIC_THRESHOLD0, 0);
    plic_ack_all();
}

void plic_ack_all(void)
{
    /* Bounded: a source whose line is still high may be pending again at once. */
    for (int i = 0; i < 8; i++) {
        uint32_t id = mmio_r32(PLIC_CLAIM0);
        if (id == 0)
            break;
        mmio_w32(PLIC_CLAIM0, id);
    }
}

void poweroff(void)
{
    mmio_w32(TEST_BASE, 0x5555);
    for (;;)
        wfi();
}

void poweroff_fail(unsigned code)
{
    mmio_w32(TEST_BASE, 0x3333u | (code << 16));
    for (;;)
        wfi();
}

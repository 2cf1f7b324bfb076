/* uart.c: ns16550a console at 0x10000000 (PLIC source 10).
 *
 * Only byte-wide register accesses.  The FIFO control register is left
 * alone on purpose: toggling FIFO enable clears the receive FIFO, which would
 * drop input that arrived before the guest got here. */
#include "demo.h"

#define RBR 0   /* receive buffer (read) */
#define THR 0   /* transmit holding (write) */
#define IER 1   /* interrupt enable */
#define LCR 3   /* line control */
#define MCR 4   /* modem control */
#define LSR 5   /* line status */

#define IER_RX_AVAIL 0x01
#define LSR_DR 0x01     /* data ready */
#define LSR_THRE 0x20   /* transmit holding register empty */

static inline uint8_t reg_r(int r) { return mmio_r8(UART_BASE + r); }
static inline void reg_w(int r, uint8_t v) { mmio_w8(UART_BASE + r, v); }

void uart_init(void)
{
    reg_w(LCR, 0x03);           /* 8N1, DLAB = 0 */
    reg_w(MCR, 0x0b);           /* DTR, RTS, OUT2 (interrupt gate on real 16550s) */
    reg_w(IER, IER_RX_AVAIL);   /* interrupt when a byte has been received */
}

void uart_putc(char c)
{
    while (!(reg_r(LSR) & LSR_THRE))
        ;
    reg_w(THR, (uint8_t)c);
}

int uart_rx_ready(void)
{
    return reg_r(LSR) & LSR_DR;
}

int uart_getc_nonblock(void)
{
    if (!(reg_r(LSR) & LSR_DR))
        return -1;
    return reg_r(RBR);
}

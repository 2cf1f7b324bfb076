/* uart.c: ns16550a with byte-wide registers (reg-shift 0).  Transmission is
 * instantaneous (straight to the console buffer); reception goes through the
 * 16-byte FIFO that the host fills between run slices. */
#include <string.h>
#include "machine.h"

enum { REG_RBR = 0, REG_IER = 1, REG_IIR = 2, REG_LCR = 3,
       REG_MCR = 4, REG_LSR = 5, REG_MSR = 6, REG_SCR = 7 };

#define IER_RDA 0x01            /* received data available */
#define IER_THRE 0x02           /* transmit holding register empty */
#define IIR_NONE 0x01
#define IIR_THRE 0x02
#define IIR_RDA 0x04
#define IIR_FIFO 0xc0           /* both bits set: a 16550A with FIFOs enabled */
#define FCR_ENABLE 0x01
#define FCR_CLEAR_RX 0x02
#define LCR_DLAB 0x80
#define MCR_LOOP 0x10
#define LSR_DR 0x01
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define MSR_IDLE 0xb0           /* DCD | DSR | CTS: a modem that is always there */
#define RX_SIZE 16
#define POLLING_GUEST 1000      /* empty-LSR reads in a row that make a guest a polling console */
_Static_assert(sizeof ((struct uart_state){ 0 }).rx_fifo == RX_SIZE, "rx_fifo size");

/* Highest-priority interrupt cause, as IIR bits 3:0. */
static uint8_t uart_cause(const struct uart_state *u)
{
    if ((u->ier & IER_RDA) && u->rx_count)
        return IIR_RDA;
    if ((u->ier & IER_THRE) && u->thre_pending)
        return IIR_THRE;
    return IIR_NONE;
}

static void uart_update_irq(struct machine *m)
{
    plic_set_level(m, UART_IRQ, uart_cause(&m->uart) != IIR_NONE);
}

static bool rx_push(struct uart_state *u, uint8_t byte, bool from_host)
{
    if (u->rx_count >= RX_SIZE)
        return false;
    unsigned slot = (u->rx_head + u->rx_count) % RX_SIZE;
    u->rx_fifo[slot] = byte;
    u->rx_from_host = (uint16_t)((u->rx_from_host & ~(1u << slot)) | ((unsigned)from_host << slot));
    u->rx_count++;
    return true;
}

/* FCR "clear receive FIFO": host input the guest never read goes back to the
 * host, which delivers it again later.  Drivers clear the FIFO while they
 * initialize (Linux's 8250 does), and input typed or pasted before that
 * must not be lost: console input is only ever consumed by the guest. */
static void rx_clear(struct machine *m)
{
    struct uart_state *u = &m->uart;
    for (unsigned i = 0; i < u->rx_count; i++) {
        unsigned slot = (u->rx_head + i) % RX_SIZE;
        if (((u->rx_from_host >> slot) & 1) && m->console_returned_len < sizeof m->console_returned)
            m->console_returned[m->console_returned_len++] = u->rx_fifo[slot];
    }
    if (m->console_returned_len)
        machine_request_stop(m, CHRONO_STOP_INPUT, 0);  /* let the host give it back now */
    u->rx_head = u->rx_count = 0;
    u->rx_from_host = 0;
}

/* In loopback the modem inputs follow the outputs (16550 datasheet):
 * CTS = RTS, DSR = DTR, RI = OUT1, DCD = OUT2.  Linux's autoconfig probes this. */
static uint8_t uart_msr(const struct uart_state *u)
{
    uint8_t c = u->mcr;

    if (!(c & MCR_LOOP))
        return u->msr;
    return (uint8_t)((c & 0x02) << 3 | (c & 0x01) << 5 | (c & 0x0c) << 4);
}

static bool uart_read(struct machine *m, uint64_t offset, int size, uint64_t *value)
{
    struct uart_state *u = &m->uart;
    bool dlab = u->lcr & LCR_DLAB;
    uint8_t v = 0;

    (void)size;
    if (offset != REG_LSR)
        u->empty_polls = 0;             /* not a loop waiting for data: see uart_wants_input */
    switch (offset) {
    case REG_RBR:
        if (dlab) {
            v = u->dll;
        } else if (u->rx_count) {
            v = u->rx_fifo[u->rx_head % RX_SIZE];
            u->rx_head = (uint8_t)((u->rx_head + 1) % RX_SIZE);
            u->rx_count--;
            /* The guest drained what it had: let the host refill before it runs on. */
            if (u->rx_count == 0 && m->input_waiting)
                machine_request_stop(m, CHRONO_STOP_INPUT, 0);
            uart_update_irq(m);
        }
        break;
    case REG_IER:
        v = dlab ? u->dlm : u->ier;
        break;
    case REG_IIR:
        v = uart_cause(u);
        if (v == IIR_THRE) {            /* reading IIR acknowledges THRE */
            u->thre_pending = 0;
            uart_update_irq(m);
        }
        if (u->fcr & FCR_ENABLE)
            v |= IIR_FIFO;
        break;
    case REG_LCR:
        v = u->lcr;
        break;
    case REG_MCR:
        v = u->mcr;
        break;
    case REG_LSR:
        v = LSR_THRE | LSR_TEMT | (u->rx_count ? LSR_DR : 0);
        if (u->rx_count)
            u->empty_polls = 0;
        else if (u->empty_polls < POLLING_GUEST) {
            u->empty_polls++;
            if (u->empty_polls == POLLING_GUEST && m->input_waiting)
                machine_request_stop(m, CHRONO_STOP_INPUT, 0);
        }
        break;
    case REG_MSR:
        v = uart_msr(u);
        break;
    case REG_SCR:
        v = u->scr;
        break;
    default:
        break;                          /* past the 8 registers: reads 0 */
    }
    *value = v;
    return true;
}

static bool uart_write(struct machine *m, uint64_t offset, int size, uint64_t value)
{
    struct uart_state *u = &m->uart;
    bool dlab = u->lcr & LCR_DLAB;
    uint8_t v = (uint8_t)value;

    (void)size;
    u->empty_polls = 0;                 /* printing or configuring, not waiting for data */
    switch (offset) {
    case REG_RBR:                       /* THR */
        if (dlab) {
            u->dll = v;
            break;
        }
        if (u->mcr & MCR_LOOP)
            rx_push(u, v, false);
        else
            console_put(m, v);
        u->thre_pending = 1;            /* the byte left at once: THR is empty again */
        break;
    case REG_IER:
        if (dlab) {
            u->dlm = v;
            break;
        }
        /* Enabling THRE while THR is empty raises the interrupt immediately. */
        if ((v & IER_THRE) && !(u->ier & IER_THRE))
            u->thre_pending = 1;
        /* The receiver just became ready for input: let the host deliver now. */
        if ((v & IER_RDA) && !(u->ier & IER_RDA) && m->input_waiting)
            machine_request_stop(m, CHRONO_STOP_INPUT, 0);
        u->ier = v & 0x0f;              /* Linux's autoconfig expects bits 7:4 to read 0 */
        break;
    case REG_IIR:                       /* FCR */
        if (v & FCR_CLEAR_RX)
            rx_clear(m);
        u->fcr = v & 0xc9;              /* the clear bits are self-clearing */
        break;
    case REG_LCR:
        u->lcr = v;
        break;
    case REG_MCR:
        u->mcr = v & 0x1f;
        break;
    case REG_SCR:
        u->scr = v;
        break;
    default:
        break;                          /* LSR and MSR are read-only */
    }
    uart_update_irq(m);
    return true;
}

void uart_reset(struct machine *m)
{
    memset(&m->uart, 0, sizeof m->uart);
    m->uart.msr = MSR_IDLE;
    plic_set_level(m, UART_IRQ, 0);
}

/* The host delivers input only to a guest that can keep it: one that enabled
 * the receive interrupt, or one polling the line status for data right now
 * (POLLING_GUEST empty LSR reads in a row, no other UART access between).
 * Firmware and kernels read LSR before every byte they print, so a count that
 * survived THR writes would call any chatty boot "polling"; Linux's 8250
 * start-up then clears the FIFO and reads RBR twice to drop stale bytes
 * before it enables the receive interrupt, and input delivered meanwhile
 * was lost.  Both conditions are guest-visible state, so delivery points are
 * deterministic and a replay finds them at the same instructions. */
bool uart_wants_input(struct machine *m)
{
    return (m->uart.ier & IER_RDA) || m->uart.empty_polls >= POLLING_GUEST;
}

size_t uart_receive(struct machine *m, const uint8_t *buf, size_t len)
{
    size_t n = 0;


    while (n < len && rx_push(&m->uart, buf[n], true))
        n++;
    if (n)
        uart_update_irq(m);
    return n;
}

/* Byte access is the norm; a 32-bit access reaches the byte register at that
 * offset (bits 31:8 ignored / read as 0), which bare-metal code sometimes uses. */
const struct mmio_device uart_device = {
    .base = UART_BASE, .size = UART_SIZE, .sizes = 1 | 4,
    .read = uart_read, .write = uart_write,
};

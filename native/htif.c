/* htif.c: the host-target interface of riscv-tests and Spike-style guests.
 *
 * The guest writes a 64-bit command to `tohost`: device 0 with bit 0 set is an
 * exit (code = value >> 1); device 1 command 1 prints the low byte.  We act on
 * it at once and clear tohost, which is what the guest waits for. */
#include <string.h>
#include "machine.h"

void htif_store(struct machine *m, uint64_t paddr, int size)
{
    uint64_t tohost = m->cfg.htif_tohost;
    if (!tohost || paddr + (uint64_t)size <= tohost || paddr >= tohost + 8)
        return;
    uint64_t value;
    if (!phys_read(m, tohost, &value, 8) || value == 0)
        return;
    uint64_t device = value >> 56, command = (value >> 48) & 0xff;
    uint64_t payload = value & ((1ull << 48) - 1);
    if (device == 0 && command == 0 && (payload & 1)) {
        machine_request_stop(m, CHRONO_STOP_HTIF_EXIT, payload >> 1);
        return;                          /* leave tohost as written, like a halted host */
    }
    if (device == 1 && command == 1)
        console_put(m, (uint8_t)payload);
    uint64_t zero = 0;
    phys_write(m, tohost, &zero, 8);
}

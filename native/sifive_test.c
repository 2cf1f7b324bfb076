/* sifive_test.c: the "sifive,test0" finisher: one write-only word that powers
 * the machine off (with an exit status) or asks for a reboot. */
#include "machine.h"

#define FINISHER_FAIL 0x3333
#define FINISHER_PASS 0x5555
#define FINISHER_RESET 0x7777

/* Reads return 0: Linux's syscon-poweroff/reboot drivers read-modify-write. */
static bool test_read(struct machine *m, uint64_t offset, int size, uint64_t *value)
{
    (void)m, (void)offset, (void)size;
    *value = 0;
    return true;
}

static bool test_write(struct machine *m, uint64_t offset, int size, uint64_t value)
{
    (void)size;
    if (offset != 0)
        return true;
    uint32_t v = (uint32_t)value;
    switch (v & 0xffff) {
    case FINISHER_PASS:
        machine_request_stop(m, CHRONO_STOP_POWEROFF, 0);
        break;
    case FINISHER_FAIL:
        /* The upper half is the exit status; a failure must not read as success. */
        machine_request_stop(m, CHRONO_STOP_POWEROFF, (v >> 16) ? (v >> 16) : 1);
        break;
    case FINISHER_RESET:
        machine_request_stop(m, CHRONO_STOP_REBOOT, 0);
        break;
    default:
        break;
    }
    return true;
}

const struct mmio_device test_device = {
    .base = TEST_BASE, .size = TEST_SIZE, .sizes = 2 | 4 | 8,
    .read = test_read, .write = test_write,
};

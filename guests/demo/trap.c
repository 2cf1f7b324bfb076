/* trap.c: the M-mode trap handler (called from start.S with the saved
 * registers).  Interrupts are never enabled globally (mstatus.MIE = 0), so
 * only exceptions arrive here; they are fatal: report and power off with
 * failure code 1 through sifive,test0. */
#include "demo.h"

struct trapframe {
    uint64_t x[32];         /* x[0] unused; x[2] = sp at the time of the trap */
};

static const char *const cause_names[] = {
    "instruction address misaligned", "instruction access fault", "illegal instruction",
    "breakpoint", "load address misaligned", "load access fault",
    "store/AMO address misaligned", "store/AMO access fault", "environment call from U-mode",
    "environment call from S-mode", "reserved", "environment call from M-mode",
    "instruction page fault", "load page fault", "reserved", "store/AMO page fault",
};

void trap_handler(struct trapframe *tf);
void trap_handler(struct trapframe *tf)
{
    static int depth;
    uint64_t cause = csr_read(mcause);
    uint64_t epc = csr_read(mepc);
    uint64_t tval = csr_read(mtval);

    if (cause >> 63) {
        /* Not expected (mstatus.MIE is never set); quiet it and go on. */
        uint64_t code = cause & 0xff;
        if (code == 7)
            csr_clear(mie, MIE_MTIE);
        else if (code == 11)
            plic_ack_all();
        return;
    }
    if (depth++)
        poweroff_fail(2);   /* fault inside the handler: give up quietly */

    const char *name = cause < sizeof(cause_names) / sizeof(cause_names[0])
                           ? cause_names[cause] : "unknown";
    kprintf("TRAP: cause=%lu (%s) pc=0x%lx tval=0x%lx\n", (unsigned long)cause, name,
            (unsigned long)epc, (unsigned long)tval);
    kprintf("      ra=0x%lx sp=0x%lx a0=0x%lx a1=0x%lx a5=0x%lx\n", (unsigned long)tf->x[1],
            (unsigned long)tf->x[2], (unsigned long)tf->x[10], (unsigned long)tf->x[11],
            (unsigned long)tf->x[15]);
    kputs("Fatal exception: powering off with failure code 1.\n");
    poweroff_fail(1);
}

/* watch.c: data watchpoints for the debugger.
 *
 * A watchpoint is a physical address range and the accesses it catches
 * (reads, writes or both).  Pages holding a watched range are kept out of
 * the TLB for those accesses (tlb_fill asks watch_page), so every such access
 * takes a slow path, which calls watch_access; device DMA goes through
 * phys_read/phys_write, which call it too (marked as a device access).  A hit is
 * recorded (pc of the instruction, address, kind) and stops the run once
 * the accessing instruction has completed: the position after a hit is the
 * one after that instruction. */
#include "machine.h"

static bool overlaps(const struct watchpoint *w, uint64_t pa, uint64_t len)
{
    return pa < w->addr + w->len && w->addr < pa + len;
}

static int kind_of(enum access_type type)
{
    return type == ACCESS_WRITE ? CHRONO_WATCH_WRITE : CHRONO_WATCH_READ;
}

bool watch_page(struct machine *m, uint64_t ppage, enum access_type type)
{
    /* AMOs and LR/SC read through write entries: any watchpoint keeps a page
     * out of the write TLB. */
    int kinds = type == ACCESS_WRITE ? CHRONO_WATCH_ACCESS : kind_of(type);
    for (int i = 0; i < m->nwatch; i++)
        if ((m->watch[i].kind & kinds) && overlaps(&m->watch[i], ppage, PAGE_SIZE))
            return true;
    return false;
}

void watch_access(struct machine *m, uint64_t pa, uint64_t len, enum access_type type, bool device)
{
    for (int i = 0; i < m->nwatch; i++) {
        const struct watchpoint *w = &m->watch[i];
        if ((w->kind & kind_of(type)) && overlaps(w, pa, len)) {
            if (m->watch_hit.kind == 0) {       /* the first hit of this stop counts */
                m->watch_hit.pc = m->hart.pc;
                m->watch_hit.addr = pa > w->addr ? pa : w->addr;
                m->watch_hit.kind = kind_of(type);
                m->watch_hit.watch_kind = w->kind;
                m->watch_hit.device = device;
            }
            machine_request_stop(m, CHRONO_STOP_WATCHPOINT, m->watch_hit.addr);
            return;
        }
    }
}

int machine_add_watchpoint(struct machine *m, uint64_t addr, uint64_t len, int kind)
{
    if (len == 0 || kind < CHRONO_WATCH_WRITE || kind > CHRONO_WATCH_ACCESS)
        return -1;
    for (int i = 0; i < m->nwatch; i++)
        if (m->watch[i].addr == addr && m->watch[i].len == len && m->watch[i].kind == kind)
            return 0;
    if (m->nwatch == MAX_WATCHPOINTS)
        return -1;
    m->watch[m->nwatch++] = (struct watchpoint){addr, len, kind};
    tlb_flush(m);               /* entries for its page must take the slow path now */
    return 0;
}

int machine_remove_watchpoint(struct machine *m, uint64_t addr, uint64_t len, int kind)
{
    for (int i = 0; i < m->nwatch; i++) {
        if (m->watch[i].addr == addr && m->watch[i].len == len && m->watch[i].kind == kind) {
            m->watch[i] = m->watch[--m->nwatch];
            tlb_flush(m);
            return 0;
        }
    }
    return -1;
}

void machine_watch_hit(struct machine *m, struct chrono_watch_hit *out)
{
    out->pc = m->watch_hit.pc;
    out->addr = m->watch_hit.addr;
    out->kind = m->watch_hit.kind;
    out->watch_kind = m->watch_hit.watch_kind;
    out->device = m->watch_hit.device;
}

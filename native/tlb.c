/* tlb.c: the software TLB's address spaces (ASIDs) and its flushes.
 *
 * Each of TLB_CONTEXTS contexts holds the translations of one satp value
 * (mode, ASID and root table); m->tlb is the current one, whose arrays the
 * fast paths and the translations index.  A satp write switches contexts
 * instead of flushing, so a process keeps its translations across context
 * switches; an address space not held takes the least recently used
 * context, emptied.  Keying by the whole satp rather than the ASID alone
 * only ever misses where hardware would hit (an ASID reused with another
 * root table is another context), never the reverse.  Global mappings are
 * cached in each context that used them, and an sfence.vma for one ASID
 * keeps them, as the privileged spec says.
 *
 * The TLB is a cache, never saved: a restore, a reset and host actions
 * (breakpoints, watchpoints, PMP or debugger writes) start it empty.  A
 * guest that fences as the spec requires cannot tell; one that changes a
 * PTE without sfence.vma may see the old or the new mapping, as on hardware.
 */
#include <string.h>
#include "machine.h"

/* The bit of t->superpages for the superpage (level >= 1) holding va. */
static unsigned superpage_bit(uint64_t va, int level)
{
    uint64_t number = va >> (PAGE_SHIFT + 9 * level);
    return (unsigned)(((number ^ (uint64_t)level) * 0x9e3779b97f4a7c15ull) >> 54);
}

static void tlb_empty(struct tlb *t)
{
    struct tlb_entry *e = &t->e[0][0][0];
    if (t->listed) {
        for (uint32_t i = 0; i < t->nfilled; i++)
            e[t->filled[i]].tag = TLB_INVALID;
    } else {
        for (size_t i = 0; i < TLB_ENTRIES; i++)
            e[i].tag = TLB_INVALID;
    }
    t->nfilled = 0;
    t->listed = true;
    memset(t->superpages, 0, sizeof t->superpages);
}

/* Invalidate the entries `drop` selects; the filled list keeps the rest. */
static void tlb_drop(struct tlb *t, bool (*drop)(const struct tlb *, size_t, const void *),
                     const void *arg)
{
    struct tlb_entry *e = &t->e[0][0][0];
    uint32_t kept = 0;
    size_t n = t->listed ? t->nfilled : TLB_ENTRIES;
    for (size_t k = 0; k < n; k++) {
        size_t i = t->listed ? t->filled[k] : k;
        if (e[i].tag == TLB_INVALID)
            continue;
        if (drop(t, i, arg))
            e[i].tag = TLB_INVALID;
        else
            t->filled[kept++] = (uint16_t)i;
    }
    t->nfilled = kept;          /* survivors are at most TLB_ENTRIES: listed again */
    t->listed = true;
}

static uint8_t entry_info(const struct tlb *t, size_t i)
{
    return (&t->info[0][0][0])[i];
}

static bool drop_non_global(const struct tlb *t, size_t i, const void *arg)
{
    (void)arg;
    return !(entry_info(t, i) & TLB_INFO_GLOBAL);
}

struct fence_range { uint64_t va; int level; bool keep_global; };

static bool drop_in_superpage(const struct tlb *t, size_t i, const void *arg)
{
    const struct fence_range *r = arg;
    uint8_t info = entry_info(t, i);
    int shift = PAGE_SHIFT + 9 * r->level;
    return (info & TLB_INFO_LEVEL) == r->level && !(r->keep_global && (info & TLB_INFO_GLOBAL)) &&
           (&t->e[0][0][0])[i].tag >> shift == r->va >> shift;
}

void tlb_switch(struct machine *m)
{
    uint64_t satp = m->hart.satp;
    if (m->tlb && m->tlb->keyed && m->tlb->satp == satp)
        return;
    struct tlb *pick = NULL, *oldest = &m->tlbs[0];
    for (int i = 0; i < TLB_CONTEXTS && !pick; i++) {
        struct tlb *t = &m->tlbs[i];
        if (t->keyed && t->satp == satp)
            pick = t;
        else if (!t->keyed ? oldest->keyed : (oldest->keyed && t->last_used < oldest->last_used))
            oldest = t;
    }
    if (!pick) {
        pick = oldest;
        tlb_empty(pick);
        pick->keyed = true;
        pick->satp = satp;
    }
    pick->last_used = ++m->tlb_switches;
    m->tlb = pick;
    m->tlb_generation++;                /* cached code pointers are stale */
}

void tlb_flush(struct machine *m)
{
    for (int i = 0; i < TLB_CONTEXTS; i++) {
        tlb_empty(&m->tlbs[i]);
        m->tlbs[i].keyed = false;
    }
    m->tlb = NULL;
    tlb_switch(m);
}

void tlb_fence(struct machine *m, bool one_addr, uint64_t va, bool one_asid, uint64_t asid)
{
    asid &= (1ull << SATP_ASID_BITS) - 1;   /* bits beyond ASIDLEN are ignored */
    for (int c = 0; c < TLB_CONTEXTS; c++) {
        struct tlb *t = &m->tlbs[c];
        if (!t->keyed || (one_asid && ((t->satp & SATP_ASID_MASK) >> SATP_ASID_SHIFT) != asid))
            continue;
        if (!one_addr) {
            if (one_asid)
                tlb_drop(t, drop_non_global, NULL);
            else
                tlb_empty(t);
            continue;
        }
        uint64_t vpage = va & ~0xfffull;
        size_t index = (va >> PAGE_SHIFT) & (TLB_SIZE - 1);
        for (int set = 0; set < 4; set++)
            for (int type = 0; type < 3; type++) {
                struct tlb_entry *e = &t->e[set][type][index];
                if (e->tag == vpage && !(one_asid && (t->info[set][type][index] & TLB_INFO_GLOBAL)))
                    e->tag = TLB_INVALID;
            }
        /* Pieces of a superpage holding va sit at other indexes. */
        for (int level = 1; level <= 3; level++) {
            unsigned bit = superpage_bit(va, level);
            if (t->superpages[bit / 64] >> (bit % 64) & 1) {
                struct fence_range r = { va, level, one_asid };
                tlb_drop(t, drop_in_superpage, &r);
            }
        }
    }
    m->tlb_generation++;
}

void tlb_insert(struct machine *m, int set, enum access_type type, uint64_t vpage,
                uint8_t *host, uint8_t info)
{
    struct tlb *t = m->tlb;
    size_t index = (vpage >> PAGE_SHIFT) & (TLB_SIZE - 1);
    struct tlb_entry *e = &t->e[set][type][index];
    if (e->tag == TLB_INVALID) {
        if (t->nfilled < TLB_ENTRIES)
            t->filled[t->nfilled++] = (uint16_t)(e - &t->e[0][0][0]);
        else
            t->listed = false;          /* refills after partial flushes: next flush is full */
    }
    e->tag = vpage;
    e->addend = (uintptr_t)host - vpage;
    t->info[set][type][index] = info;
    int level = info & TLB_INFO_LEVEL;
    if (level) {
        unsigned bit = superpage_bit(vpage, level);
        t->superpages[bit / 64] |= 1ull << (bit % 64);
    }
}

void tlb_flush_writes(struct machine *m)
{
    for (int c = 0; c < TLB_CONTEXTS; c++)
        for (int set = 0; set < 4; set++)
            for (int i = 0; i < TLB_SIZE; i++)
                m->tlbs[c].e[set][ACCESS_WRITE][i].tag = TLB_INVALID;
}

void tlb_forget_writes_to(struct machine *m, const uint8_t *host_page)
{
    for (int c = 0; c < TLB_CONTEXTS; c++) {
        if (!m->tlbs[c].keyed)
            continue;
        for (int set = 0; set < 4; set++)
            for (int i = 0; i < TLB_SIZE; i++) {
                struct tlb_entry *e = &m->tlbs[c].e[set][ACCESS_WRITE][i];
                if (e->tag != TLB_INVALID && e->addend + e->tag == (uintptr_t)host_page)
                    e->tag = TLB_INVALID;
            }
    }
}

/* pmp.c: physical memory protection, 16 entries (privileged spec 3.7).
 *
 * pmpaddr holds address bits 55:2, granularity is 4 bytes.  The first
 * (lowest-numbered) entry that matches any byte of an access decides it; an
 * access only partly inside that entry fails.  M-mode is only bound by
 * locked entries; S and U fail when no entry matches.
 *
 * Checks run on every TLB fill and page-table walk, so the entries' ranges
 * are decoded once, when pmpcfg/pmpaddr change (pmp_update), into
 * m->pmp: a host-side cache derived from the hart's CSRs.
 */
#include "machine.h"

/* Range [lo, hi) covered by entry i; false if the entry is off or empty. */
static bool decode_range(const struct hart *h, int i, uint64_t *lo, uint64_t *hi)
{
    uint64_t addr = h->pmpaddr[i];
    switch (h->pmpcfg[i] & PMP_A) {
    case PMP_A_TOR:
        *lo = i == 0 ? 0 : h->pmpaddr[i - 1] << 2;
        *hi = addr << 2;
        return *lo < *hi;
    case PMP_A_NA4:
        *lo = addr << 2;
        *hi = *lo + 4;
        return true;
    case PMP_A_NAPOT: {
        /* Trailing ones t give a region of 2^(t+3) bytes. */
        int t = __builtin_ctzll(~addr);
        if (t >= 54) {
            *lo = 0;
            *hi = UINT64_MAX;                           /* the whole address space */
            return true;
        }
        uint64_t size = 1ull << (t + 3);
        *lo = (addr & ~((1ull << t) - 1)) << 2;
        *hi = *lo + size;
        return true;
    }
    default:
        return false;
    }
}

void pmp_update(struct machine *m)
{
    struct pmp_ranges *r = &m->pmp;
    r->count = 0;
    for (int i = 0; i < 16; i++) {
        uint64_t lo, hi;
        if (decode_range(&m->hart, i, &lo, &hi)) {
            r->lo[r->count] = lo;
            r->hi[r->count] = hi;
            r->cfg[r->count] = m->hart.pmpcfg[i];
            r->count++;
        }
    }
}

static bool pmp_permits(uint8_t cfg, enum access_type type, int priv)
{
    if (priv == PRV_M && !(cfg & PMP_L))
        return true;
    static const uint8_t need[3] = { PMP_R, PMP_W, PMP_X };
    return (cfg & need[type]) != 0;
}

/* Verdict for [addr, addr+size): 1 allow, 0 deny. */
bool pmp_check(struct machine *m, uint64_t addr, uint64_t size, enum access_type type, int priv)
{
    const struct pmp_ranges *r = &m->pmp;
    uint64_t end = addr + size;
    for (int i = 0; i < r->count; i++) {
        if (end <= r->lo[i] || addr >= r->hi[i])
            continue;
        if (addr < r->lo[i] || end > r->hi[i])
            return false;                               /* partial match always fails */
        return pmp_permits(r->cfg[i], type, priv);
    }
    return priv == PRV_M;
}

bool pmp_page_allows(struct machine *m, uint64_t page, enum access_type type, int priv)
{
    const struct pmp_ranges *r = &m->pmp;
    uint64_t end = page + PAGE_SIZE;
    for (int i = 0; i < r->count; i++) {
        /* Unlocked entries cannot change an M-mode verdict: skip them. */
        if (priv == PRV_M && !(r->cfg[i] & PMP_L))
            continue;
        if (end <= r->lo[i] || page >= r->hi[i])
            continue;
        if (page < r->lo[i] || end > r->hi[i])
            return false;                               /* not uniform over the page */
        return pmp_permits(r->cfg[i], type, priv);
    }
    return priv == PRV_M;
}

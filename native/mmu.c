/* mmu.c: Sv39/Sv48 translation with hardware A/D updates, the software TLB,
 * and the slow paths for loads, stores, fetches and atomics.
 *
 * The TLB only ever caches 4 KiB RAM pages whose PMP verdict is uniform; a
 * write entry is filled only once the page is marked dirty (that is the
 * whole dirty-tracking cost of the store fast path) and never for the HTIF
 * tohost page, whose stores must be seen.
 */
#include <string.h>
#include "machine.h"

int mmu_data_set(struct hart *h)
{
    int priv = h->priv;
    if (priv == PRV_M && (h->mstatus & MSTATUS_MPRV))
        priv = (int)((h->mstatus & MSTATUS_MPP) >> MSTATUS_MPP_SHIFT);
    if (priv == PRV_M) return TLB_SET_M;
    if (priv == PRV_S) return (h->mstatus & MSTATUS_SUM) ? TLB_SET_S_SUM : TLB_SET_S;
    return TLB_SET_U;
}

int mmu_exec_set(struct hart *h)
{
    return h->priv == PRV_M ? TLB_SET_M : h->priv == PRV_S ? TLB_SET_S : TLB_SET_U;
}

static int set_priv(int set)
{
    return set == TLB_SET_M ? PRV_M : set == TLB_SET_U ? PRV_U : PRV_S;
}

static const uint64_t page_fault_cause[3] = {
    CAUSE_LOAD_PAGE_FAULT, CAUSE_STORE_PAGE_FAULT, CAUSE_FETCH_PAGE_FAULT };
static const uint64_t access_fault_cause[3] = {
    CAUSE_LOAD_ACCESS, CAUSE_STORE_ACCESS, CAUSE_FETCH_ACCESS };

bool mmu_translate(struct machine *m, uint64_t va, enum access_type type,
                   int set, uint64_t *pa, uint64_t *cause, uint8_t *info)
{
    struct hart *h = &m->hart;
    int priv = set_priv(set);
    uint64_t mode = h->satp >> 60;

    if (priv == PRV_M || mode == SATP_MODE_BARE) {
        if (va >> 56) {                                 /* beyond the physical address space */
            *cause = access_fault_cause[type];
            return false;
        }
        *pa = va;
        *info = 0;
        return true;
    }

    int levels = mode == SATP_MODE_SV39 ? 3 : 4;
    int va_bits = 12 + 9 * levels;
    if ((uint64_t)((int64_t)(va << (64 - va_bits)) >> (64 - va_bits)) != va) {
        *cause = page_fault_cause[type];                /* not sign-extended */
        return false;
    }

    uint64_t table = (h->satp & ((1ull << 44) - 1)) << PAGE_SHIFT;
    uint64_t pte = 0, pte_addr = 0;
    int level;
    for (level = levels - 1; ; level--) {
        pte_addr = table + ((va >> (PAGE_SHIFT + 9 * level)) & 511) * 8;
        if (!phys_is_ram(m, pte_addr, 8) || !pmp_check(m, pte_addr, 8, ACCESS_READ, PRV_S)) {
            *cause = access_fault_cause[type];
            return false;
        }
        memcpy(&pte, ram_ptr(m, pte_addr), 8);
        /* Invalid, W without R, or bits we do not implement (PBMT, N, reserved). */
        if (!(pte & PTE_V) || (!(pte & PTE_R) && (pte & PTE_W)) || (pte >> 54))
            goto page_fault;
        if (pte & (PTE_R | PTE_X))
            break;                                      /* leaf */
        if (level == 0 || (pte & (PTE_D | PTE_A | PTE_U)))
            goto page_fault;                            /* non-leaf must have D, A, U clear */
        table = ((pte >> 10) & ((1ull << 44) - 1)) << PAGE_SHIFT;
    }

    uint64_t ppn = (pte >> 10) & ((1ull << 44) - 1);
    if (level > 0 && (ppn & ((1ull << (9 * level)) - 1)))
        goto page_fault;                                /* misaligned superpage */

    if (priv == PRV_U && !(pte & PTE_U)) goto page_fault;
    if (priv == PRV_S && (pte & PTE_U) && (type == ACCESS_EXEC || set != TLB_SET_S_SUM))
        goto page_fault;
    switch (type) {
    case ACCESS_READ:
        if (!(pte & PTE_R) && !((h->mstatus & MSTATUS_MXR) && (pte & PTE_X))) goto page_fault;
        break;
    case ACCESS_WRITE:
        if (!(pte & PTE_W)) goto page_fault;
        break;
    case ACCESS_EXEC:
        if (!(pte & PTE_X)) goto page_fault;
        break;
    }

    /* Hardware A/D update (Svade not implemented): write back the PTE. */
    uint64_t want = PTE_A | (type == ACCESS_WRITE ? PTE_D : 0);
    if ((pte & want) != want) {
        if (!pmp_check(m, pte_addr, 8, ACCESS_WRITE, PRV_S)) {
            *cause = access_fault_cause[type];
            return false;
        }
        pte |= want;
        ram_before_write(m, pte_addr, 8);
        memcpy(ram_ptr(m, pte_addr), &pte, 8);
        ram_mark_dirty(m, pte_addr);
    }

    uint64_t offset_mask = (1ull << (PAGE_SHIFT + 9 * level)) - 1;
    *pa = (ppn << PAGE_SHIFT) | (va & offset_mask);
    *info = (uint8_t)level | ((pte & PTE_G) ? TLB_INFO_GLOBAL : 0);
    return true;

page_fault:
    *cause = page_fault_cause[type];
    return false;
}

/* Cache the translation of va's page if it is uniformly accessible RAM. */
static void tlb_fill(struct machine *m, int set, enum access_type type, uint64_t va, uint64_t pa,
                     uint8_t info)
{
    uint64_t ppage = pa & ~0xfffull;
    if (!phys_is_ram(m, ppage, PAGE_SIZE))
        return;
    if (!pmp_page_allows(m, ppage, type, set_priv(set)))
        return;
    if (m->nwatch && watch_page(m, ppage, type))
        return;                         /* watched: every access takes the slow path */
    if (type == ACCESS_WRITE) {
        if (ppage == m->htif_page)
            return;
        ram_mark_dirty(m, ppage);
    }
    tlb_insert(m, set, type, va & ~0xfffull, ram_ptr(m, ppage), info);
}

/* Translate + PMP for one naturally contained access; traps on failure. */
static bool access_paddr(struct machine *m, uint64_t va, uint64_t size, enum access_type type,
                         int set, uint64_t *pa, uint8_t *info)
{
    uint64_t cause;
    if (!mmu_translate(m, va, type, set, pa, &cause, info)) {
        trap_exception(m, cause, va);
        return false;
    }
    if (!pmp_check(m, *pa, size, type, set_priv(set))) {
        trap_exception(m, access_fault_cause[type], va);
        return false;
    }
    return true;
}

/* Host pointer for `size` bytes at va that lie in one page of RAM, through
 * the TLB when it can (misaligned accesses miss the fast path's tag check,
 * not the TLB).  Raises the trap and returns false on failure; a misaligned
 * access to a device is an access fault.  Writes are marked dirty; *htif
 * is set when the piece lands in the tohost page. */
static bool ram_piece(struct machine *m, uint64_t va, int size, enum access_type type, int set,
                      uint8_t **host, bool *htif)
{
    struct tlb_entry *e = &m->tlb->e[set][type][(va >> PAGE_SHIFT) & (TLB_SIZE - 1)];
    if (e->tag == (va & ~0xfffull)) {
        *host = (uint8_t *)(e->addend + va);
        return true;                    /* the tohost page is never in the write TLB */
    }
    uint64_t pa;
    uint8_t info;
    if (!access_paddr(m, va, (uint64_t)size, type, set, &pa, &info))
        return false;
    if (!phys_is_ram(m, pa, (uint64_t)size)) {
        trap_exception(m, access_fault_cause[type], va);
        return false;
    }
    tlb_fill(m, set, type, va, pa, info);
    *host = ram_ptr(m, pa);
    watch_check(m, pa, (uint64_t)size, type);
    if (type == ACCESS_WRITE) {
        ram_mark_dirty(m, pa);
        *htif |= (pa & ~0xfffull) == m->htif_page;
    }
    return true;
}

/* A misaligned access as at most two page-contained pieces (bytes [0, n0)
 * and [n0, size)), both translated and checked before anything is touched,
 * so a fault on the second leaves memory as it was. */
static bool split_pieces(struct machine *m, uint64_t va, int size, enum access_type type, int set,
                         uint8_t *piece[2], int *n0, bool *htif)
{
    uint64_t first = PAGE_SIZE - (va & 0xfff);
    *n0 = first < (uint64_t)size ? (int)first : size;
    return ram_piece(m, va, *n0, type, set, &piece[0], htif) &&
           (*n0 == size || ram_piece(m, va + *n0, size - *n0, type, set, &piece[1], htif));
}

bool mmu_load_slow(struct machine *m, uint64_t va, int size, uint64_t *value)
{
    int set = mmu_data_set(&m->hart);
    uint64_t pa;
    uint8_t info;

    if (!(va & (uint64_t)(size - 1))) {
        if (!access_paddr(m, va, (uint64_t)size, ACCESS_READ, set, &pa, &info))
            return false;
        if (phys_is_ram(m, pa, (uint64_t)size)) {
            tlb_fill(m, set, ACCESS_READ, va, pa, info);
            *value = 0;
            memcpy(value, ram_ptr(m, pa), (size_t)size);
            watch_check(m, pa, (uint64_t)size, ACCESS_READ);
            return true;
        }
        if (!bus_read(m, pa, size, value)) {
            trap_exception(m, CAUSE_LOAD_ACCESS, va);
            return false;
        }
        return true;
    }

    uint8_t *piece[2];
    int n0;
    bool htif = false;
    if (!split_pieces(m, va, size, ACCESS_READ, set, piece, &n0, &htif))
        return false;
    uint64_t v = 0;
    memcpy(&v, piece[0], (size_t)n0);
    if (n0 < size)
        memcpy((uint8_t *)&v + n0, piece[1], (size_t)(size - n0));
    *value = v;
    return true;
}

bool mmu_store_slow(struct machine *m, uint64_t va, int size, uint64_t value)
{
    int set = mmu_data_set(&m->hart);
    uint64_t pa;
    uint8_t info;

    if (!(va & (uint64_t)(size - 1))) {
        if (!access_paddr(m, va, (uint64_t)size, ACCESS_WRITE, set, &pa, &info))
            return false;
        if (phys_is_ram(m, pa, (uint64_t)size)) {
            tlb_fill(m, set, ACCESS_WRITE, va, pa, info);
            ram_before_write(m, pa, (uint64_t)size);
            memcpy(ram_ptr(m, pa), &value, (size_t)size);
            ram_mark_dirty(m, pa);
            watch_check(m, pa, (uint64_t)size, ACCESS_WRITE);
            if ((pa & ~0xfffull) == m->htif_page)
                htif_store(m, pa, size);
            return true;
        }
        if (!bus_write(m, pa, size, value)) {
            trap_exception(m, CAUSE_STORE_ACCESS, va);
            return false;
        }
        return true;
    }

    uint8_t *piece[2];
    int n0;
    bool htif = false;
    if (!split_pieces(m, va, size, ACCESS_WRITE, set, piece, &n0, &htif))
        return false;
    memcpy(piece[0], &value, (size_t)n0);
    if (n0 < size)
        memcpy(piece[1], (uint8_t *)&value + n0, (size_t)(size - n0));
    if (htif)
        htif_store(m, m->cfg.htif_tohost, 8);   /* re-read tohost as now written */
    return true;
}

bool mmu_host_ptr(struct machine *m, uint64_t va, int size, uint8_t **host)
{
    int set = mmu_data_set(&m->hart);
    struct tlb_entry *e = &m->tlb->e[set][ACCESS_WRITE][(va >> PAGE_SHIFT) & (TLB_SIZE - 1)];
    if (e->tag == (va & ~0xfffull)) {
        *host = (uint8_t *)(e->addend + va);
        return true;
    }
    uint64_t pa;
    uint8_t info;
    if (!access_paddr(m, va, (uint64_t)size, ACCESS_WRITE, set, &pa, &info))
        return false;
    if (!phys_is_ram(m, pa, (uint64_t)size) ||
        !pmp_check(m, pa, (uint64_t)size, ACCESS_READ, set_priv(set))) {
        trap_exception(m, CAUSE_STORE_ACCESS, va);      /* AMOs on devices are not supported */
        return false;
    }
    tlb_fill(m, set, ACCESS_WRITE, va, pa, info);
    ram_mark_dirty(m, pa);
    watch_check(m, pa, (uint64_t)size, ACCESS_READ);     /* an AMO reads and writes */
    watch_check(m, pa, (uint64_t)size, ACCESS_WRITE);
    *host = ram_ptr(m, pa);
    return true;
}

bool mmu_fetch_slow(struct machine *m, uint64_t va, uint16_t *parcel)
{
    uint64_t pa;
    uint8_t info;
    if (!access_paddr(m, va, 2, ACCESS_EXEC, mmu_exec_set(&m->hart), &pa, &info))
        return false;
    if (!phys_is_ram(m, pa, 2)) {
        trap_exception(m, CAUSE_FETCH_ACCESS, va);
        return false;
    }
    memcpy(parcel, ram_ptr(m, pa), 2);
    return true;
}

uint8_t *mmu_exec_page(struct machine *m, uint64_t va)
{
    int set = mmu_exec_set(&m->hart);
    struct tlb_entry *e = &m->tlb->e[set][ACCESS_EXEC][(va >> PAGE_SHIFT) & (TLB_SIZE - 1)];
    uint64_t vpage = va & ~0xfffull;
    if (e->tag != vpage) {
        uint64_t pa, cause;
        uint8_t info;
        if (!mmu_translate(m, va, ACCESS_EXEC, set, &pa, &cause, &info))
            return NULL;
        tlb_fill(m, set, ACCESS_EXEC, va, pa, info);
        if (e->tag != vpage)
            return NULL;                                /* not cacheable: use the slow path */
    }
    return (uint8_t *)(e->addend + vpage);
}

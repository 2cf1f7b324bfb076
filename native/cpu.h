/* cpu.h: hart state and the CPU's internal interfaces (execute, CSRs, MMU, traps). */
#ifndef CHRONO_CPU_H
#define CHRONO_CPU_H

#include <stdint.h>
#include <stdbool.h>
#include "riscv.h"

struct machine;

/* Architectural state of one hart.  Plain data: saved and loaded with memcpy. */
struct hart {
    uint64_t x[32];
    uint64_t pc;
    uint64_t f[32];             /* F/D registers (singles NaN-boxed), see fpu.c */
    uint64_t steps;             /* instructions executed or trapped: the position */
    uint64_t idle_skipped;      /* virtual clock added by idle jumps, in step units */
    uint64_t exceptions;        /* steps that trapped instead of retiring */
    uint64_t minstret_offset;   /* minstret = steps - exceptions + offset (writes move the offset) */
    uint64_t mcycle_offset;     /* mcycle = vclock + offset */
    uint64_t minstret_frozen;   /* value held while mcountinhibit.IR is set */
    uint64_t mcycle_frozen;     /* value held while mcountinhibit.CY is set */
    uint64_t resv_addr;         /* LR/SC reservation (physical address) */
    uint32_t fcsr;
    uint8_t priv;
    uint8_t wfi;                /* stalled in WFI until an interrupt is pending */
    uint8_t resv_valid;
    uint8_t pad0;

    uint64_t mstatus, misa, medeleg, mideleg, mie, mip;
    uint64_t mtvec, mscratch, mepc, mcause, mtval;
    uint64_t mcounteren, menvcfg, mcountinhibit, mhartid;
    uint64_t stvec, sscratch, sepc, scause, stval, satp, scounteren, senvcfg;
    uint64_t stimecmp;
    uint64_t pmpaddr[16];
    uint8_t pmpcfg[16];
};

/* Software TLB: direct mapped, one array per privilege mode and access type.
 * tag = virtual page address (low 12 bits zero) or TLB_INVALID; the host
 * address of a byte is addend + vaddr.  Only RAM is ever cached here. */
#define TLB_SIZE 256
/* Never equals a key: a key is a page address plus at most the low 3 bits
 * of a misaligned access (tlb_key), never bit 11.  (1 would equal the key of
 * a misaligned 2-byte access at 0x1 or 0x7ff, and hit an empty entry.) */
#define TLB_INVALID 0x800ull

enum access_type { ACCESS_READ = 0, ACCESS_WRITE = 1, ACCESS_EXEC = 2 };

struct tlb_entry {
    uint64_t tag;
    uintptr_t addend;
};

#define TLB_ENTRIES (4 * 3 * TLB_SIZE)
/* Address spaces whose translations are kept at once (ASIDs, see mmu.c). */
#define TLB_CONTEXTS 8
/* satp.ASID bits implemented (ASIDLEN), as QEMU virt. */
#define SATP_ASID_BITS 16
#define SATP_ASID_SHIFT 44
#define SATP_ASID_MASK (((1ull << SATP_ASID_BITS) - 1) << SATP_ASID_SHIFT)

/* What a walk found about the leaf, kept per entry for sfence.vma. */
#define TLB_INFO_GLOBAL 0x80            /* PTE.G: belongs to every ASID */
#define TLB_INFO_LEVEL 0x03             /* leaf level: 0 = 4 KiB page, 1+ = superpage */

/* The translations of one address space (one satp value): the arrays the
 * fast paths index, plus what flushes need. */
struct tlb {
    struct tlb_entry e[4][3][TLB_SIZE];     /* [TLB set][access type][index] */
    uint8_t info[4][3][TLB_SIZE];           /* TLB_INFO_* of each valid entry */
    /* Entries filled since the last flush, so that a flush (Linux makes
     * ~100k per boot) clears those instead of the whole TLB; valid only
     * while `listed` (a full flush sets it, running out of room clears it). */
    uint16_t filled[TLB_ENTRIES];
    uint32_t nfilled;
    bool listed;
    bool keyed;                 /* holds the address space `satp` */
    uint64_t satp;
    uint64_t last_used;         /* tlb_switches when last made current */
    /* Superpages some entry was split from, hashed (tlb_superpage_bit): an
     * sfence.vma of an address scans the entries only when its bit is set. */
    uint64_t superpages[16];
};

/* Stop the current instruction slice after this instruction so that the run
 * loop re-evaluates interrupts, stop requests and the budget. */
void cpu_kick(struct machine *m);

/* execute.c */
void cpu_run_slice(struct machine *m, uint64_t slice_end);

/* trap.c */
void trap_exception(struct machine *m, uint64_t cause, uint64_t tval);
bool trap_check_interrupts(struct machine *m);   /* takes one if pending; true if taken */
uint64_t hart_pending_interrupts(struct machine *m);  /* mip & mie, with timer lines fresh */
void trap_mret(struct machine *m);
void trap_sret(struct machine *m);

/* csr.c: return false when the access must raise illegal-instruction. */
bool csr_read(struct machine *m, int csr, uint64_t *value);
bool csr_write(struct machine *m, int csr, uint64_t value);
void csr_reset(struct hart *h);

/* mmu.c */
void tlb_flush(struct machine *m);
/* Make the translations of satp's address space current (after a satp write). */
void tlb_switch(struct machine *m);
/* sfence.vma: vaddr/asid given or all (see the privileged spec, 10.2.1). */
void tlb_fence(struct machine *m, bool one_addr, uint64_t vaddr, bool one_asid, uint64_t asid);
void tlb_flush_writes(struct machine *m);
/* Cache vpage -> host page in the current address space (TLB_INFO_* in info). */
void tlb_insert(struct machine *m, int set, enum access_type type, uint64_t vpage,
                uint8_t *host, uint8_t info);
/* Drop the write entries of one RAM page (given by its host address). */
void tlb_forget_writes_to(struct machine *m, const uint8_t *host_page);
/* Translate and check; on failure returns false with *cause set.  *info
 * gets what a TLB entry keeps of the leaf (TLB_INFO_*). */
bool mmu_translate(struct machine *m, uint64_t vaddr, enum access_type type,
                   int set, uint64_t *paddr, uint64_t *cause, uint8_t *info);
/* Slow paths used by the executor when the TLB misses; raise the trap themselves. */
bool mmu_load_slow(struct machine *m, uint64_t vaddr, int size, uint64_t *value);
bool mmu_store_slow(struct machine *m, uint64_t vaddr, int size, uint64_t value);
/* Fetch the 16-bit parcel at vaddr through the exec TLB; false = trapped. */
bool mmu_fetch_slow(struct machine *m, uint64_t vaddr, uint16_t *parcel);
/* Host pointer for a read-modify-write (AMO) of an aligned RAM location,
 * with store permission; false = trapped (store/AMO faults). */
bool mmu_host_ptr(struct machine *m, uint64_t vaddr, int size, uint8_t **host);
/* Host pointer to the executable page holding vaddr (NULL if not RAM or faulting;
 * no trap raised).  Used to cache the current code page. */
uint8_t *mmu_exec_page(struct machine *m, uint64_t vaddr);
/* TLB set for data accesses: the effective privilege (mstatus.MPRV), with
 * S-mode split by mstatus.SUM into TLB_SET_S (SUM=0) and TLB_SET_S_SUM, so
 * that Linux toggling SUM around every user copy costs no TLB flush. */
#define TLB_SET_U 0
#define TLB_SET_S 1
#define TLB_SET_S_SUM 2
#define TLB_SET_M 3
int mmu_data_set(struct hart *h);
/* TLB set for fetches: the privilege mode. */
int mmu_exec_set(struct hart *h);

/* pmp.c */
bool pmp_check(struct machine *m, uint64_t paddr, uint64_t size, enum access_type type, int priv);
/* True when every byte of the 4 KiB page has the same PMP verdict and it is allow. */
bool pmp_page_allows(struct machine *m, uint64_t page, enum access_type type, int priv);
/* Re-derive the decoded ranges after pmpcfg/pmpaddr or the whole state changed. */
void pmp_update(struct machine *m);

/* Decoded PMP entries (active ones only, in priority order). */
struct pmp_ranges {
    uint64_t lo[16], hi[16];
    uint8_t cfg[16];
    int count;
};

#endif

/* decode.h: instructions decoded into a flat form the executor dispatches on.
 *
 * Decoded instructions are kept in a direct-mapped cache indexed by pc
 * (consecutive instructions sit in consecutive entries, which keeps the
 * host's caches warm) and validated by the instruction bits: the executor
 * fetches the bits anyway and re-decodes when they differ from the entry's.
 * Decoding depends only on the bits, never on pc or state, so nothing ever
 * needs invalidating: self-modifying code, new mappings and a different page
 * at the same index all just show up as other bits.
 * Compressed instructions decode into their 32-bit equivalents (len = 2).
 */
#ifndef CHRONO_DECODE_H
#define CHRONO_DECODE_H

#include <stdint.h>

enum op {
    OP_ILLEGAL,
    OP_LUI, OP_AUIPC, OP_JAL, OP_JALR,
    OP_BEQ, OP_BNE, OP_BLT, OP_BGE, OP_BLTU, OP_BGEU,
    OP_LB, OP_LH, OP_LW, OP_LD, OP_LBU, OP_LHU, OP_LWU,
    OP_SB, OP_SH, OP_SW, OP_SD,
    OP_ADDI, OP_SLTI, OP_SLTIU, OP_XORI, OP_ORI, OP_ANDI, OP_SLLI, OP_SRLI, OP_SRAI,
    OP_ADD, OP_SUB, OP_SLL, OP_SLT, OP_SLTU, OP_XOR, OP_SRL, OP_SRA, OP_OR, OP_AND,
    OP_ADDIW, OP_SLLIW, OP_SRLIW, OP_SRAIW,
    OP_ADDW, OP_SUBW, OP_SLLW, OP_SRLW, OP_SRAW,
    OP_MUL, OP_MULH, OP_MULHSU, OP_MULHU, OP_DIV, OP_DIVU, OP_REM, OP_REMU,
    OP_MULW, OP_DIVW, OP_DIVUW, OP_REMW, OP_REMUW,
    OP_FENCE,           /* fence, fence.i: nothing to do for one in-order hart */
    OP_EBREAK,          /* ebreak, c.ebreak */
    OP_ATOMIC,          /* A extension: executed from the raw bits */
    OP_SYSTEM,          /* CSR and privileged instructions: from the raw bits */
    OP_COUNT
};

struct decoded {
    uint32_t insn;      /* the instruction bits (16 or 32): validates the entry */
    uint8_t op;         /* enum op */
    uint8_t rd, rs1, rs2;
    int32_t imm;        /* sign-extended immediate (LUI/AUIPC: already << 12) */
    uint8_t len;        /* 2 or 4 */
    uint8_t pad[3];
};

#define DECODE_CACHE_SIZE (1u << 16)    /* entries: 128 KiB of code, 1 MiB of cache */

static inline uint32_t decode_slot(uint64_t pc)
{
    return (uint32_t)(pc >> 1) & (DECODE_CACHE_SIZE - 1);
}

void decode(uint32_t insn, struct decoded *d);
/* Fill a fresh cache: every slot holds the (illegal) all-zero parcel. */
void decode_cache_init(struct decoded *cache);

#endif

/* decode.h: instructions decoded into a flat form the executor dispatches on.
 *
 * Compressed instructions decode into their 32-bit equivalents (len = 2).
 * FP register numbers go in rd/rs1/rs2/rs3 like integer ones; the op says
 * which register file each one names.  Decoding depends only on the bits;
 * the block builder (block.c) then adds what depends on the pc.
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
    OP_NOP,             /* an instruction whose only effect would be writing x0 */
    OP_END,             /* not an instruction: ends a block that falls through */
    /* F and D.  Loads and stores run inline in execute.c; everything from
     * OP_FP_FIRST to OP_FP_LAST runs in fpu.c.  S/D pairs are adjacent
     * (the D form is the S form + 1). */
    OP_FLW, OP_FLD, OP_FSW, OP_FSD,
    OP_FADD_S, OP_FADD_D, OP_FSUB_S, OP_FSUB_D, OP_FMUL_S, OP_FMUL_D,
    OP_FDIV_S, OP_FDIV_D, OP_FSQRT_S, OP_FSQRT_D,
    OP_FMADD_S, OP_FMADD_D, OP_FMSUB_S, OP_FMSUB_D,
    OP_FNMSUB_S, OP_FNMSUB_D, OP_FNMADD_S, OP_FNMADD_D,
    OP_FSGNJ_S, OP_FSGNJ_D, OP_FSGNJN_S, OP_FSGNJN_D, OP_FSGNJX_S, OP_FSGNJX_D,
    OP_FMIN_S, OP_FMIN_D, OP_FMAX_S, OP_FMAX_D,
    OP_FEQ_S, OP_FEQ_D, OP_FLT_S, OP_FLT_D, OP_FLE_S, OP_FLE_D,
    OP_FCLASS_S, OP_FCLASS_D,
    OP_FCVT_S_D, OP_FCVT_D_S,
    OP_FCVT_W_S, OP_FCVT_W_D, OP_FCVT_WU_S, OP_FCVT_WU_D,
    OP_FCVT_L_S, OP_FCVT_L_D, OP_FCVT_LU_S, OP_FCVT_LU_D,
    OP_FCVT_S_W, OP_FCVT_D_W, OP_FCVT_S_WU, OP_FCVT_D_WU,
    OP_FCVT_S_L, OP_FCVT_D_L, OP_FCVT_S_LU, OP_FCVT_D_LU,
    OP_FMV_X_W, OP_FMV_X_D, OP_FMV_W_X, OP_FMV_D_X,
    OP_COUNT
};
#define OP_FP_FIRST OP_FADD_S
#define OP_FP_LAST OP_FMV_D_X

/* One decoded instruction, as it sits in a block (32 bytes). */
struct decoded {
    const void *handler;    /* the executor's code for op (filled by the block builder) */
    uint64_t imm;           /* sign-extended immediate (LUI: already << 12); in a block,
                             * AUIPC's result and JAL/branch targets, precomputed */
    uint32_t insn;          /* the instruction bits (16 or 32): mtval, CSR/AMO fields */
    uint16_t off;           /* pc - the block's pc */
    uint8_t op;             /* enum op */
    uint8_t rd, rs1, rs2;
    uint8_t rs3;            /* F/D fused multiply-add: third source */
    uint8_t rm;             /* F/D: rounding mode field (7 = dynamic); 0 for ops without one */
    uint8_t len;            /* 2 or 4 */
    uint8_t idx;            /* position in the block: steps before it, from the block's start */
};

void decode(uint32_t insn, struct decoded *d);

#endif

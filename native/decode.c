/* decode.c: RV64IMAFDC instruction bits → struct decoded (see decode.h).
 *
 * Anything not recognised decodes to OP_ILLEGAL, so the executor raises
 * illegal-instruction with the bits as mtval.  A/SYSTEM instructions keep
 * only their class here; their executors read the raw bits.
 */
#include <stdbool.h>
#include <string.h>
#include "decode.h"

static int32_t sext(uint32_t value, int bits)
{
    return (int32_t)(value << (32 - bits)) >> (32 - bits);
}

static void set(struct decoded *d, int op, int rd, int rs1, int rs2, int32_t imm)
{
    d->op = (uint8_t)op;
    d->rd = (uint8_t)rd;
    d->rs1 = (uint8_t)rs1;
    d->rs2 = (uint8_t)rs2;
    d->imm = (uint64_t)(int64_t)imm;
}

static void decode_compressed(uint32_t insn, struct decoded *d)
{
    uint32_t funct3 = insn >> 13;
    int rdp = 8 + ((insn >> 2) & 7);            /* rd' / rs2' */
    int rs1p = 8 + ((insn >> 7) & 7);           /* rs1' / rd' */
    int rd = (insn >> 7) & 31;                  /* full rd / rs1 */
    int rs2 = (insn >> 2) & 31;
    int32_t imm6 = sext(((insn >> 7) & 0x20) | ((insn >> 2) & 0x1f), 6);
    uint32_t shamt = ((insn >> 7) & 0x20) | ((insn >> 2) & 0x1f);

    switch ((insn & 3) << 3 | funct3) {
    case 0x00: {                                /* c.addi4spn (zero imm = illegal) */
        uint32_t imm = ((insn >> 7) & 0x30) | ((insn >> 1) & 0x3c0) |
                       ((insn >> 4) & 0x4) | ((insn >> 2) & 0x8);
        if (imm) set(d, OP_ADDI, rdp, 2, 0, (int32_t)imm);
        return;
    }
    case 0x02:                                  /* c.lw */
        set(d, OP_LW, rdp, rs1p, 0,
            (int32_t)(((insn >> 7) & 0x38) | ((insn >> 4) & 0x4) | ((insn << 1) & 0x40)));
        return;
    case 0x01:                                  /* c.fld */
        set(d, OP_FLD, rdp, rs1p, 0, (int32_t)(((insn >> 7) & 0x38) | ((insn << 1) & 0xc0)));
        return;
    case 0x03:                                  /* c.ld */
        set(d, OP_LD, rdp, rs1p, 0, (int32_t)(((insn >> 7) & 0x38) | ((insn << 1) & 0xc0)));
        return;
    case 0x06:                                  /* c.sw */
        set(d, OP_SW, 0, rs1p, rdp,
            (int32_t)(((insn >> 7) & 0x38) | ((insn >> 4) & 0x4) | ((insn << 1) & 0x40)));
        return;
    case 0x05:                                  /* c.fsd */
        set(d, OP_FSD, 0, rs1p, rdp, (int32_t)(((insn >> 7) & 0x38) | ((insn << 1) & 0xc0)));
        return;
    case 0x07:                                  /* c.sd */
        set(d, OP_SD, 0, rs1p, rdp, (int32_t)(((insn >> 7) & 0x38) | ((insn << 1) & 0xc0)));
        return;
    case 0x08:                                  /* c.addi, c.nop */
        set(d, OP_ADDI, rd, rd, 0, imm6);
        return;
    case 0x09:                                  /* c.addiw (rd = 0 reserved) */
        if (rd) set(d, OP_ADDIW, rd, rd, 0, imm6);
        return;
    case 0x0a:                                  /* c.li */
        set(d, OP_ADDI, rd, 0, 0, imm6);
        return;
    case 0x0b:
        if (rd == 2) {                          /* c.addi16sp */
            uint32_t imm = ((insn >> 3) & 0x200) | ((insn >> 2) & 0x10) |
                           ((insn << 1) & 0x40) | ((insn << 4) & 0x180) | ((insn << 3) & 0x20);
            if (imm) set(d, OP_ADDI, 2, 2, 0, sext(imm, 10));
        } else if (imm6) {                      /* c.lui */
            set(d, OP_LUI, rd, 0, 0, (int32_t)((uint32_t)imm6 << 12));
        }
        return;
    case 0x0c:
        switch ((insn >> 10) & 3) {
        case 0: set(d, OP_SRLI, rs1p, rs1p, 0, (int32_t)shamt); return;
        case 1: set(d, OP_SRAI, rs1p, rs1p, 0, (int32_t)shamt); return;
        case 2: set(d, OP_ANDI, rs1p, rs1p, 0, imm6); return;
        default: {
            static const uint8_t ops[8] = { OP_SUB, OP_XOR, OP_OR, OP_AND,
                                            OP_SUBW, OP_ADDW, OP_ILLEGAL, OP_ILLEGAL };
            set(d, ops[((insn >> 10) & 4) | ((insn >> 5) & 3)], rs1p, rs1p, rdp, 0);
            return;
        }
        }
    case 0x0d:                                  /* c.j */
        set(d, OP_JAL, 0, 0, 0,
            sext(((insn >> 1) & 0x800) | ((insn >> 7) & 0x10) | ((insn >> 1) & 0x300) |
                 ((insn << 2) & 0x400) | ((insn >> 1) & 0x40) | ((insn << 1) & 0x80) |
                 ((insn >> 2) & 0xe) | ((insn << 3) & 0x20), 12));
        return;
    case 0x0e: case 0x0f:                       /* c.beqz, c.bnez */
        set(d, funct3 == 6 ? OP_BEQ : OP_BNE, 0, rs1p, 0,
            sext(((insn >> 4) & 0x100) | ((insn >> 7) & 0x18) | ((insn << 1) & 0xc0) |
                 ((insn >> 2) & 0x6) | ((insn << 3) & 0x20), 9));
        return;
    case 0x10:                                  /* c.slli */
        set(d, OP_SLLI, rd, rd, 0, (int32_t)shamt);
        return;
    case 0x11:                                  /* c.fldsp (any rd, f0 included) */
        set(d, OP_FLD, rd, 2, 0,
            (int32_t)(((insn >> 7) & 0x20) | ((insn >> 2) & 0x18) | ((insn << 4) & 0x1c0)));
        return;
    case 0x12:                                  /* c.lwsp (rd = 0 reserved) */
        if (rd)
            set(d, OP_LW, rd, 2, 0,
                (int32_t)(((insn >> 7) & 0x20) | ((insn >> 2) & 0x1c) | ((insn << 4) & 0xc0)));
        return;
    case 0x13:                                  /* c.ldsp (rd = 0 reserved) */
        if (rd)
            set(d, OP_LD, rd, 2, 0,
                (int32_t)(((insn >> 7) & 0x20) | ((insn >> 2) & 0x18) | ((insn << 4) & 0x1c0)));
        return;
    case 0x14:
        if (!(insn & 0x1000)) {
            if (rs2 == 0) {
                if (rd) set(d, OP_JALR, 0, rd, 0, 0);       /* c.jr */
            } else {
                set(d, OP_ADD, rd, 0, rs2, 0);              /* c.mv */
            }
        } else if (rs2 == 0) {
            if (rd == 0) set(d, OP_EBREAK, 0, 0, 0, 0);     /* c.ebreak */
            else set(d, OP_JALR, 1, rd, 0, 0);              /* c.jalr */
        } else {
            set(d, OP_ADD, rd, rd, rs2, 0);                 /* c.add */
        }
        return;
    case 0x16:                                  /* c.swsp */
        set(d, OP_SW, 0, 2, rs2, (int32_t)(((insn >> 7) & 0x3c) | ((insn >> 1) & 0xc0)));
        return;
    case 0x15:                                  /* c.fsdsp */
        set(d, OP_FSD, 0, 2, rs2, (int32_t)(((insn >> 7) & 0x38) | ((insn >> 1) & 0x1c0)));
        return;
    case 0x17:                                  /* c.sdsp */
        set(d, OP_SD, 0, 2, rs2, (int32_t)(((insn >> 7) & 0x38) | ((insn >> 1) & 0x1c0)));
        return;
    default:                                    /* reserved, or RV32/RV128 only */
        return;
    }
}

/* F/D rounding mode field: 5 and 6 are reserved (7, dynamic, is checked
 * against frm when the instruction runs). */
static bool rm_valid(uint32_t rm)
{
    return rm != 5 && rm != 6;
}

/* An FP op that rounds: keeps rm, or stays illegal for a reserved one. */
static void set_fp(struct decoded *d, int op, int rd, int rs1, int rs2, uint32_t rm)
{
    if (!rm_valid(rm)) return;
    set(d, op, rd, rs1, rs2, 0);
    d->rm = (uint8_t)rm;
}

/* OP-FP (major opcode 0x53).  fmt (funct7[1:0]) 0 = S, 1 = D; H and Q are
 * not implemented.  rs2 selects the variant of conversions. */
static void decode_op_fp(uint32_t insn, struct decoded *d)
{
    int rd = (insn >> 7) & 31, rs1 = (insn >> 15) & 31, rs2 = (insn >> 20) & 31;
    uint32_t funct3 = (insn >> 12) & 7, funct7 = insn >> 25;
    int fmt = (int)(funct7 & 3);

    if (fmt > 1) return;
    switch (funct7 >> 2) {
    case 0x00: set_fp(d, OP_FADD_S + fmt, rd, rs1, rs2, funct3); return;
    case 0x01: set_fp(d, OP_FSUB_S + fmt, rd, rs1, rs2, funct3); return;
    case 0x02: set_fp(d, OP_FMUL_S + fmt, rd, rs1, rs2, funct3); return;
    case 0x03: set_fp(d, OP_FDIV_S + fmt, rd, rs1, rs2, funct3); return;
    case 0x0b: if (rs2 == 0) set_fp(d, OP_FSQRT_S + fmt, rd, rs1, 0, funct3); return;
    case 0x04:                                  /* fsgnj, fsgnjn, fsgnjx */
        if (funct3 <= 2) set(d, OP_FSGNJ_S + 2 * (int)funct3 + fmt, rd, rs1, rs2, 0);
        return;
    case 0x05:                                  /* fmin, fmax */
        if (funct3 <= 1) set(d, OP_FMIN_S + 2 * (int)funct3 + fmt, rd, rs1, rs2, 0);
        return;
    case 0x08:                                  /* fcvt.s.d, fcvt.d.s */
        if (fmt == 0 && rs2 == 1) set_fp(d, OP_FCVT_S_D, rd, rs1, 0, funct3);
        else if (fmt == 1 && rs2 == 0) set_fp(d, OP_FCVT_D_S, rd, rs1, 0, funct3);
        return;
    case 0x14: {                                /* fle, flt, feq */
        static const uint8_t ops[3] = { OP_FLE_S, OP_FLT_S, OP_FEQ_S };
        if (funct3 <= 2) set(d, ops[funct3] + fmt, rd, rs1, rs2, 0);
        return;
    }
    case 0x18:                                  /* fcvt.{w,wu,l,lu}.fmt */
        if (rs2 <= 3) set_fp(d, OP_FCVT_W_S + 2 * rs2 + fmt, rd, rs1, 0, funct3);
        return;
    case 0x1a:                                  /* fcvt.fmt.{w,wu,l,lu} */
        if (rs2 <= 3) set_fp(d, OP_FCVT_S_W + 2 * rs2 + fmt, rd, rs1, 0, funct3);
        return;
    case 0x1c:                                  /* fmv.x.fmt, fclass */
        if (rs2 == 0 && funct3 == 0) set(d, OP_FMV_X_W + fmt, rd, rs1, 0, 0);
        else if (rs2 == 0 && funct3 == 1) set(d, OP_FCLASS_S + fmt, rd, rs1, 0, 0);
        return;
    case 0x1e:                                  /* fmv.fmt.x */
        if (rs2 == 0 && funct3 == 0) set(d, OP_FMV_W_X + fmt, rd, rs1, 0, 0);
        return;
    default:
        return;
    }
}

static void decode_32(uint32_t insn, struct decoded *d)
{
    int rd = (insn >> 7) & 31, rs1 = (insn >> 15) & 31, rs2 = (insn >> 20) & 31;
    uint32_t funct3 = (insn >> 12) & 7, funct7 = insn >> 25;
    int32_t imm_i = (int32_t)insn >> 20;
    int32_t imm_s = ((int32_t)(insn & 0xfe000000) >> 20) | (int32_t)((insn >> 7) & 0x1f);

    switch ((insn >> 2) & 31) {
    case 0x0d: set(d, OP_LUI, rd, 0, 0, (int32_t)(insn & 0xfffff000)); return;
    case 0x05: set(d, OP_AUIPC, rd, 0, 0, (int32_t)(insn & 0xfffff000)); return;
    case 0x1b:
        set(d, OP_JAL, rd, 0, 0,
            sext(((insn >> 11) & 0x100000) | (insn & 0xff000) | ((insn >> 9) & 0x800) |
                 ((insn >> 20) & 0x7fe), 21));
        return;
    case 0x19:
        if (funct3 == 0) set(d, OP_JALR, rd, rs1, 0, imm_i);
        return;
    case 0x18: {
        static const uint8_t ops[8] = { OP_BEQ, OP_BNE, OP_ILLEGAL, OP_ILLEGAL,
                                        OP_BLT, OP_BGE, OP_BLTU, OP_BGEU };
        set(d, ops[funct3], 0, rs1, rs2,
            sext(((insn >> 19) & 0x1000) | ((insn << 4) & 0x800) | ((insn >> 20) & 0x7e0) |
                 ((insn >> 7) & 0x1e), 13));
        return;
    }
    case 0x00: {
        static const uint8_t ops[8] = { OP_LB, OP_LH, OP_LW, OP_LD, OP_LBU, OP_LHU, OP_LWU, OP_ILLEGAL };
        set(d, ops[funct3], rd, rs1, 0, imm_i);
        return;
    }
    case 0x08: {
        static const uint8_t ops[8] = { OP_SB, OP_SH, OP_SW, OP_SD,
                                        OP_ILLEGAL, OP_ILLEGAL, OP_ILLEGAL, OP_ILLEGAL };
        set(d, ops[funct3], 0, rs1, rs2, imm_s);
        return;
    }
    case 0x04: {
        uint32_t funct6 = insn >> 26;
        switch (funct3) {
        case 0: set(d, OP_ADDI, rd, rs1, 0, imm_i); return;
        case 2: set(d, OP_SLTI, rd, rs1, 0, imm_i); return;
        case 3: set(d, OP_SLTIU, rd, rs1, 0, imm_i); return;
        case 4: set(d, OP_XORI, rd, rs1, 0, imm_i); return;
        case 6: set(d, OP_ORI, rd, rs1, 0, imm_i); return;
        case 7: set(d, OP_ANDI, rd, rs1, 0, imm_i); return;
        case 1: if (funct6 == 0) set(d, OP_SLLI, rd, rs1, 0, imm_i & 63); return;
        default:
            if (funct6 == 0) set(d, OP_SRLI, rd, rs1, 0, imm_i & 63);
            else if (funct6 == 0x10) set(d, OP_SRAI, rd, rs1, 0, imm_i & 63);
            return;
        }
    }
    case 0x06:
        if (funct3 == 0) set(d, OP_ADDIW, rd, rs1, 0, imm_i);
        else if (funct3 == 1 && funct7 == 0) set(d, OP_SLLIW, rd, rs1, 0, rs2);
        else if (funct3 == 5 && funct7 == 0) set(d, OP_SRLIW, rd, rs1, 0, rs2);
        else if (funct3 == 5 && funct7 == 0x20) set(d, OP_SRAIW, rd, rs1, 0, rs2);
        return;
    case 0x0c: {
        static const uint8_t base[8] = { OP_ADD, OP_SLL, OP_SLT, OP_SLTU, OP_XOR, OP_SRL, OP_OR, OP_AND };
        static const uint8_t muldiv[8] = { OP_MUL, OP_MULH, OP_MULHSU, OP_MULHU,
                                           OP_DIV, OP_DIVU, OP_REM, OP_REMU };
        if (funct7 == 0) set(d, base[funct3], rd, rs1, rs2, 0);
        else if (funct7 == 1) set(d, muldiv[funct3], rd, rs1, rs2, 0);
        else if (funct7 == 0x20 && funct3 == 0) set(d, OP_SUB, rd, rs1, rs2, 0);
        else if (funct7 == 0x20 && funct3 == 5) set(d, OP_SRA, rd, rs1, rs2, 0);
        return;
    }
    case 0x0e: {
        static const uint8_t muldiv[8] = { OP_MULW, OP_ILLEGAL, OP_ILLEGAL, OP_ILLEGAL,
                                           OP_DIVW, OP_DIVUW, OP_REMW, OP_REMUW };
        if (funct7 == 1) set(d, muldiv[funct3], rd, rs1, rs2, 0);
        else if (funct7 == 0 && funct3 == 0) set(d, OP_ADDW, rd, rs1, rs2, 0);
        else if (funct7 == 0x20 && funct3 == 0) set(d, OP_SUBW, rd, rs1, rs2, 0);
        else if (funct7 == 0 && funct3 == 1) set(d, OP_SLLW, rd, rs1, rs2, 0);
        else if (funct7 == 0 && funct3 == 5) set(d, OP_SRLW, rd, rs1, rs2, 0);
        else if (funct7 == 0x20 && funct3 == 5) set(d, OP_SRAW, rd, rs1, rs2, 0);
        return;
    }
    case 0x01:                                  /* flw, fld */
        if (funct3 == 2) set(d, OP_FLW, rd, rs1, 0, imm_i);
        else if (funct3 == 3) set(d, OP_FLD, rd, rs1, 0, imm_i);
        return;
    case 0x09:                                  /* fsw, fsd */
        if (funct3 == 2) set(d, OP_FSW, 0, rs1, rs2, imm_s);
        else if (funct3 == 3) set(d, OP_FSD, 0, rs1, rs2, imm_s);
        return;
    case 0x10: case 0x11: case 0x12: case 0x13: { /* fmadd, fmsub, fnmsub, fnmadd */
        int fmt = (int)(funct7 & 3);
        if (fmt > 1) return;
        set_fp(d, OP_FMADD_S + 2 * (int)(((insn >> 2) & 31) - 0x10) + fmt, rd, rs1, rs2, funct3);
        d->rs3 = (uint8_t)(insn >> 27);
        return;
    }
    case 0x14:
        decode_op_fp(insn, d);
        return;
    case 0x03:                                  /* fence, fence.i */
        if (funct3 == 0 || funct3 == 1) set(d, OP_FENCE, 0, 0, 0, 0);
        return;
    case 0x0b:                                  /* AMO .w / .d */
        if (funct3 == 2 || funct3 == 3) set(d, OP_ATOMIC, rd, rs1, rs2, 0);
        return;
    case 0x1c:
        if (insn == 0x00100073) set(d, OP_EBREAK, 0, 0, 0, 0);
        else set(d, OP_SYSTEM, rd, rs1, rs2, 0);
        return;
    default:
        return;
    }
}

void decode(uint32_t insn, struct decoded *d)
{
    memset(d, 0, sizeof *d);
    d->insn = insn;
    d->op = OP_ILLEGAL;
    if ((insn & 3) != 3) {
        d->len = 2;
        decode_compressed(insn, d);
    } else {
        d->len = 4;
        decode_32(insn, d);
    }
}

/* x86.h: a small x86-64 instruction encoder for the JIT (jit.c).
 *
 * Plain functions that append one instruction each to a byte buffer.  Only
 * what the translator needs: 64/32-bit integer ALU ops, shifts, multiplies,
 * moves with [base + index*scale + disp] operands, setcc, jumps with rel32
 * targets patched later, call through a register.  Register numbers are the
 * hardware ones (RAX = 0 ... R15 = 15).  A buffer that runs out of room sets
 * `full` and drops the rest; the caller then discards the translation.
 */
#ifndef CHRONO_JIT_X86_H
#define CHRONO_JIT_X86_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum x86_reg {
    RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI,
    R8, R9, R10, R11, R12, R13, R14, R15,
};

/* Condition codes (the low nibble of Jcc/SETcc). */
enum x86_cc {
    CC_O, CC_NO, CC_B, CC_AE, CC_E, CC_NE, CC_BE, CC_A,
    CC_S, CC_NS, CC_P, CC_NP, CC_L, CC_GE, CC_LE, CC_G,
};

/* ALU ops of the 0x01/0x03/0x81 groups (the /digit). */
enum x86_alu { ALU_ADD = 0, ALU_OR = 1, ALU_AND = 4, ALU_SUB = 5, ALU_XOR = 6, ALU_CMP = 7 };

/* Shifts of the 0xc1/0xd3 groups. */
enum x86_shift { SH_SHL = 4, SH_SHR = 5, SH_SAR = 7 };

struct x86 {
    uint8_t *buf;
    size_t len, cap;
    bool full;
};

/* A memory operand: [base + index*scale + disp]; index < 0 for none (never RSP). */
struct x86_mem {
    int base, index, scale;
    int32_t disp;
};

static inline struct x86_mem x86_at(int base, int32_t disp)
{
    return (struct x86_mem){ base, -1, 1, disp };
}

static inline struct x86_mem x86_at_index(int base, int index, int scale, int32_t disp)
{
    return (struct x86_mem){ base, index, scale, disp };
}

static inline bool x86_fits_i32(int64_t v) { return v == (int64_t)(int32_t)v; }

void x86_init(struct x86 *a, uint8_t *buf, size_t cap);

static inline void x86_byte(struct x86 *a, uint8_t b)
{
    if (a->len < a->cap)
        a->buf[a->len++] = b;
    else
        a->full = true;
}

/* op dst, src (64-bit if w64, else 32-bit, which zero-extends dst). */
void x86_alu_rr(struct x86 *a, enum x86_alu op, int dst, int src, bool w64);
void x86_alu_rm(struct x86 *a, enum x86_alu op, int dst, struct x86_mem m, bool w64);
void x86_alu_ri(struct x86 *a, enum x86_alu op, int dst, int32_t imm, bool w64);
void x86_test_rr(struct x86 *a, int r1, int r2, bool w64);

void x86_mov_rr(struct x86 *a, int dst, int src, bool w64);
/* dst = imm, shortest encoding that gives the 64-bit value. */
void x86_mov_ri(struct x86 *a, int dst, uint64_t imm);
/* Loads of size 1/2/4/8 bytes, zero- or sign-extended to 64 bits. */
void x86_load_zx(struct x86 *a, int dst, struct x86_mem m, int size);
void x86_load_sx(struct x86 *a, int dst, struct x86_mem m, int size);
/* Store the low `size` bytes of src. */
void x86_store(struct x86 *a, struct x86_mem m, int src, int size);
/* qword [m] = imm sign-extended to 64 bits. */
void x86_store_i32(struct x86 *a, struct x86_mem m, int32_t imm);
void x86_lea(struct x86 *a, int dst, struct x86_mem m);
/* dst = sign-extension of src's low 32 bits. */
void x86_movsxd_rr(struct x86 *a, int dst, int src);
/* dst = zero-extension of src's low byte. */
void x86_movzx8_rr(struct x86 *a, int dst, int src);

void x86_shift_ri(struct x86 *a, enum x86_shift op, int dst, uint8_t count, bool w64);
/* Shift by CL (the hardware masks the count to 5 or 6 bits, as RISC-V does). */
void x86_shift_rcl(struct x86 *a, enum x86_shift op, int dst, bool w64);
void x86_imul_rr(struct x86 *a, int dst, int src, bool w64);
/* RDX:RAX = RAX * src, unsigned (mul) or signed (imul). */
void x86_mul_rdx(struct x86 *a, int src, bool is_signed);
/* RAX = RDX:RAX / src, RDX = remainder (div or idiv; 32-bit: EDX:EAX). */
void x86_div_rdx(struct x86 *a, int src, bool is_signed, bool w64);
/* RDX = the sign of RAX (cqo), or EDX of EAX (cdq). */
void x86_sign_extend_rdx(struct x86 *a, bool w64);
void x86_neg(struct x86 *a, int dst, bool w64);

void x86_setcc(struct x86 *a, enum x86_cc cc, int dst);

/* Jumps with a rel32 to fill in: they return the offset of that field. */
size_t x86_jcc(struct x86 *a, enum x86_cc cc);
size_t x86_jmp(struct x86 *a);
size_t x86_call(struct x86 *a);
/* Point the rel32 field at `field` to the code offset `target` (which may
 * lie before the buffer: code written earlier in the same region). */
void x86_patch(struct x86 *a, size_t field, int64_t target);
void x86_call_r(struct x86 *a, int reg);
void x86_push(struct x86 *a, int reg);
void x86_pop(struct x86 *a, int reg);
void x86_ret(struct x86 *a);

#endif

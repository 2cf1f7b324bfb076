/* muldiv.h: the M extension's high multiplies and divisions, with the
 * results RISC-V defines for division by zero and overflow (spec, "M"
 * chapter, division table), for the interpreter; the JIT's inline
 * divisions (jit/jit.c, emit_div) give the same results. */
#ifndef CHRONO_MULDIV_H
#define CHRONO_MULDIV_H

#include <stdint.h>

static inline uint64_t mulh(int64_t a, int64_t b) { return (uint64_t)(((__int128)a * b) >> 64); }
static inline uint64_t mulhu(uint64_t a, uint64_t b) { return (uint64_t)(((unsigned __int128)a * b) >> 64); }
static inline uint64_t mulhsu(int64_t a, uint64_t b) { return (uint64_t)(((__int128)a * (unsigned __int128)b) >> 64); }

static inline uint64_t div64(int64_t a, int64_t b)
{
    if (b == 0) return UINT64_MAX;
    if (a == INT64_MIN && b == -1) return (uint64_t)a;
    return (uint64_t)(a / b);
}
static inline uint64_t divu64(uint64_t a, uint64_t b) { return b ? a / b : UINT64_MAX; }
static inline uint64_t rem64(int64_t a, int64_t b)
{
    if (b == 0) return (uint64_t)a;
    if (a == INT64_MIN && b == -1) return 0;
    return (uint64_t)(a % b);
}
static inline uint64_t remu64(uint64_t a, uint64_t b) { return b ? a % b : a; }
static inline uint64_t div32(int32_t a, int32_t b)
{
    if (b == 0) return UINT64_MAX;
    if (a == INT32_MIN && b == -1) return (uint64_t)(int64_t)a;
    return (uint64_t)(int64_t)(a / b);
}
static inline uint64_t divu32(uint32_t a, uint32_t b) { return b ? (uint64_t)(int64_t)(int32_t)(a / b) : UINT64_MAX; }
static inline uint64_t rem32(int32_t a, int32_t b)
{
    if (b == 0) return (uint64_t)(int64_t)a;
    if (a == INT32_MIN && b == -1) return 0;
    return (uint64_t)(int64_t)(a % b);
}
static inline uint64_t remu32(uint32_t a, uint32_t b) { return (uint64_t)(int64_t)(int32_t)(b ? a % b : a); }

#endif

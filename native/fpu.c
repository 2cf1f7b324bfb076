/* fpu.c: the F and D extensions, in software.
 *
 * All arithmetic is integer arithmetic: an operand is unpacked into a sign,
 * an integer significand and a power-of-two exponent; the exact result is
 * computed in 128-bit integers (or, where it would not fit, the exact result
 * with every bit far below the rounding position folded into one "sticky"
 * bit, which cannot change the rounding), and round_pack() rounds it once
 * into either format.  The host's FPU, rounding mode and flags are never
 * used, so results and flags are the same on every host and compiler:
 *
 *  - the five rounding modes; rm = 7 takes frm, and a reserved mode there is
 *    an illegal instruction (reserved static modes never decode);
 *  - fflags exactly as the spec says: tininess is detected after rounding
 *    (as if the exponent range were unbounded), and UF is raised only when
 *    the result is both tiny and inexact;
 *  - every NaN an operation produces is the canonical NaN; signaling NaN
 *    operands raise NV; sign injection and moves copy bits unchanged;
 *  - singles are NaN-boxed in the 64-bit registers: reading one whose upper
 *    32 bits are not all ones gives the canonical NaN, writing one sets them.
 */
#include "fpu.h"

typedef unsigned __int128 u128;

enum { RM_RNE = 0, RM_RTZ = 1, RM_RDN = 2, RM_RUP = 3, RM_RMM = 4, RM_DYN = 7 };

/* A binary interchange format. */
struct fmt {
    int mbits;          /* stored significand (fraction) bits */
    int ebits;          /* exponent bits */
    int bias;
    uint64_t qnan;      /* the canonical NaN */
};

static const struct fmt F32 = { 23, 8, 127, 0x7fc00000ull };
static const struct fmt F64 = { 52, 11, 1023, 0x7ff8000000000000ull };

/* What an operation needs besides its operands: the rounding mode in, the
 * exception flags out. */
struct fctx {
    int rm;
    uint32_t flags;
};

/* ---- encoding helpers ---------------------------------------------------- */

static inline uint64_t sign_bit(const struct fmt *f) { return 1ull << (f->mbits + f->ebits); }
static inline uint64_t frac_mask(const struct fmt *f) { return (1ull << f->mbits) - 1; }
static inline uint64_t exp_ones(const struct fmt *f) { return (1ull << f->ebits) - 1; }
static inline uint64_t inf_bits(const struct fmt *f) { return exp_ones(f) << f->mbits; }
static inline uint64_t exp_field(const struct fmt *f, uint64_t a) { return (a >> f->mbits) & exp_ones(f); }
static inline uint64_t magnitude(const struct fmt *f, uint64_t a) { return a & (sign_bit(f) - 1); }
static inline bool sign_of(const struct fmt *f, uint64_t a) { return (a & sign_bit(f)) != 0; }
static inline bool is_nan(const struct fmt *f, uint64_t a) { return magnitude(f, a) > inf_bits(f); }
static inline bool is_inf(const struct fmt *f, uint64_t a) { return magnitude(f, a) == inf_bits(f); }
static inline bool is_zero(const struct fmt *f, uint64_t a) { return magnitude(f, a) == 0; }
static inline bool is_snan(const struct fmt *f, uint64_t a)
{
    return is_nan(f, a) && !(a & (1ull << (f->mbits - 1)));    /* quiet bit clear */
}
static inline uint64_t signed_inf(const struct fmt *f, bool sign) { return (sign ? sign_bit(f) : 0) | inf_bits(f); }
static inline uint64_t signed_zero(const struct fmt *f, bool sign) { return sign ? sign_bit(f) : 0; }

/* |a| = sig * 2^exp, for a finite nonzero a (subnormals included). */
static void unpack(const struct fmt *f, uint64_t a, int *exp, uint64_t *sig)
{
    uint64_t e = exp_field(f, a), frac = a & frac_mask(f);
    if (e == 0) {
        *sig = frac;
        *exp = 1 - f->bias - f->mbits;
    } else {
        *sig = frac | (1ull << f->mbits);
        *exp = (int)e - f->bias - f->mbits;
    }
}

static int bitlen128(u128 x)
{
    uint64_t hi = (uint64_t)(x >> 64), lo = (uint64_t)x;
    if (hi) return 128 - __builtin_clzll(hi);
    return lo ? 64 - __builtin_clzll(lo) : 0;
}

/* x / 2^n, with every bit shifted out ORed into bit 0 (n >= 0). */
static u128 shift_right_jam(u128 x, int n)
{
    if (n == 0) return x;
    if (n >= 128) return x != 0;
    return (x >> n) | ((x & (((u128)1 << n) - 1)) != 0);
}

/* x * 2^sh, exact for sh >= 0 (the caller guarantees it fits), jammed for sh < 0. */
static u128 align(u128 x, int sh)
{
    return sh >= 0 ? x << sh : shift_right_jam(x, -sh);
}

/* ---- rounding -------------------------------------------------------------- */

/* sig / 2^n rounded to an integer in mode rm; neg says the value is negative
 * (for the directed modes); *inexact whether anything was lost.  n <= 0 is an
 * exact left shift (the caller guarantees it fits). */
static u128 round_shift(u128 sig, int n, bool neg, int rm, bool *inexact)
{
    u128 q;
    int half_cmp;           /* the part shifted out vs half of 2^n: -1 below, 0 equal, 1 above */
    bool lost;

    if (n <= 0) {
        *inexact = false;
        return sig << -n;
    }
    if (n > 128) {
        q = 0;
        lost = sig != 0;
        half_cmp = -1;      /* sig < 2^128 <= 2^(n-1) */
    } else {
        u128 rem, half = (u128)1 << (n - 1);
        if (n == 128) {
            q = 0;
            rem = sig;
        } else {
            q = sig >> n;
            rem = sig & (((u128)1 << n) - 1);
        }
        lost = rem != 0;
        half_cmp = rem < half ? -1 : rem > half;
    }
    *inexact = lost;
    if (!lost) return q;
    switch (rm) {
    case RM_RNE: return q + (half_cmp > 0 || (half_cmp == 0 && (q & 1)));
    case RM_RMM: return q + (half_cmp >= 0);
    case RM_RDN: return q + neg;
    case RM_RUP: return q + !neg;
    default:     return q;                      /* RTZ */
    }
}

/* Round (-1)^sign * sig * 2^exp (sig > 0) into format f, raising flags.
 * Bit 0 of sig may be a sticky bit (standing for "something nonzero below")
 * as long as sig has at least mbits + 3 bits, so that it lies below the
 * rounding bit (callers with a sticky bit keep 31 or more). */
static uint64_t round_pack(const struct fmt *f, bool sign, int exp, u128 sig, struct fctx *c)
{
    const int emin = 1 - f->bias;
    int top = exp + bitlen128(sig) - 1;         /* exponent of the leading bit */
    int lsb = top - f->mbits;                   /* exponent of the result's last bit */
    bool tiny = false, inexact;
    u128 q;

    if (top < emin) {
        /* Below the normal range.  Tiny "after rounding": the value rounded
         * to full precision with an unbounded exponent is still below 2^emin
         * (only a value just under 2^emin can round up to it). */
        if (top < emin - 1) {
            tiny = true;
        } else {
            q = round_shift(sig, lsb - exp, sign, c->rm, &inexact);
            tiny = (q >> (f->mbits + 1)) == 0;
        }
        lsb = emin - f->mbits;                  /* subnormal: fixed last-bit exponent */
    }
    q = round_shift(sig, lsb - exp, sign, c->rm, &inexact);
    if (q >> (f->mbits + 1)) {                  /* rounded up to the next power of two */
        q >>= 1;
        lsb++;
    }
    if (inexact) c->flags |= tiny ? FFLAG_NX | FFLAG_UF : FFLAG_NX;

    uint64_t s = signed_zero(f, sign);
    if (!(q >> f->mbits)) return s | (uint64_t)q;               /* subnormal or zero */
    int biased = lsb + f->mbits + f->bias;
    if (biased >= (int)exp_ones(f)) {
        c->flags |= FFLAG_OF | FFLAG_NX;
        bool to_inf = c->rm == RM_RNE || c->rm == RM_RMM ||
                      (c->rm == RM_RDN && sign) || (c->rm == RM_RUP && !sign);
        return s | (to_inf ? inf_bits(f) : inf_bits(f) - 1);    /* inf or the largest finite */
    }
    return s | ((uint64_t)biased << f->mbits) | ((uint64_t)q & frac_mask(f));
}

/* The sign of an exact zero sum of two zeros / of opposite operands. */
static uint64_t zero_sum(const struct fmt *f, bool sa, bool sb, struct fctx *c)
{
    if (sa == sb) return signed_zero(f, sa);
    return signed_zero(f, c->rm == RM_RDN);
}

/* (-1)^sa * A * 2^ea + (-1)^sb * B * 2^eb, rounded once; A, B nonzero and
 * below 2^106.  Both are placed so that the larger ends at bit 125; the other,
 * if it reaches below bit 0, is at least 20 bits shorter (so far smaller),
 * and jamming its low bits cannot move the rounding, which happens ~70 bits
 * higher even after a one-bit cancellation.  An exact zero needs equal
 * magnitudes, and then nothing was jammed. */
static uint64_t add_exact(const struct fmt *f, bool sa, int ea, u128 A, bool sb, int eb, u128 B,
                          struct fctx *c)
{
    int ta = ea + bitlen128(A), tb = eb + bitlen128(B);
    int e = (ta > tb ? ta : tb) - 126;
    u128 sum;
    bool sign;

    A = align(A, ea - e);
    B = align(B, eb - e);
    if (sa == sb) {
        sum = A + B;
        sign = sa;
    } else if (A >= B) {
        sum = A - B;
        sign = sa;
    } else {
        sum = B - A;
        sign = sb;
    }
    if (sum == 0) return zero_sum(f, sa, sb, c);
    return round_pack(f, sign, e, sum, c);
}

/* ---- arithmetic ------------------------------------------------------------ */

/* Any NaN operand: the canonical NaN, NV if one of them is signaling. */
static uint64_t nan_result(const struct fmt *f, uint64_t a, uint64_t b, struct fctx *c)
{
    if (is_snan(f, a) || is_snan(f, b)) c->flags |= FFLAG_NV;
    return f->qnan;
}

static uint64_t invalid(const struct fmt *f, struct fctx *c)
{
    c->flags |= FFLAG_NV;
    return f->qnan;
}

static uint64_t f_add(const struct fmt *f, uint64_t a, uint64_t b, struct fctx *c)
{
    if (is_nan(f, a) || is_nan(f, b)) return nan_result(f, a, b, c);
    bool sa = sign_of(f, a), sb = sign_of(f, b);
    if (is_inf(f, a)) {
        if (is_inf(f, b) && sa != sb) return invalid(f, c);        /* inf - inf */
        return a;
    }
    if (is_inf(f, b)) return b;
    if (is_zero(f, a)) return is_zero(f, b) ? zero_sum(f, sa, sb, c) : b;
    if (is_zero(f, b)) return a;
    int ea, eb;
    uint64_t ma, mb;
    unpack(f, a, &ea, &ma);
    unpack(f, b, &eb, &mb);
    return add_exact(f, sa, ea, ma, sb, eb, mb, c);
}

static uint64_t f_mul(const struct fmt *f, uint64_t a, uint64_t b, struct fctx *c)
{
    if (is_nan(f, a) || is_nan(f, b)) return nan_result(f, a, b, c);
    bool s = sign_of(f, a) != sign_of(f, b);
    if (is_inf(f, a) || is_inf(f, b)) {
        if (is_zero(f, a) || is_zero(f, b)) return invalid(f, c);  /* inf * 0 */
        return signed_inf(f, s);
    }
    if (is_zero(f, a) || is_zero(f, b)) return signed_zero(f, s);
    int ea, eb;
    uint64_t ma, mb;
    unpack(f, a, &ea, &ma);
    unpack(f, b, &eb, &mb);
    return round_pack(f, s, ea + eb, (u128)ma * mb, c);            /* the product is exact */
}

/* Shift a nonzero significand up so that its leading bit is bit 63. */
static void normalize64(uint64_t *sig, int *exp)
{
    int shift = __builtin_clzll(*sig);
    *sig <<= shift;
    *exp -= shift;
}

static uint64_t f_div(const struct fmt *f, uint64_t a, uint64_t b, struct fctx *c)
{
    if (is_nan(f, a) || is_nan(f, b)) return nan_result(f, a, b, c);
    bool s = sign_of(f, a) != sign_of(f, b);
    if (is_inf(f, a)) return is_inf(f, b) ? invalid(f, c) : signed_inf(f, s);
    if (is_inf(f, b)) return signed_zero(f, s);
    if (is_zero(f, b)) {
        if (is_zero(f, a)) return invalid(f, c);                   /* 0 / 0 */
        c->flags |= FFLAG_DZ;
        return signed_inf(f, s);
    }
    if (is_zero(f, a)) return signed_zero(f, s);
    int ea, eb;
    uint64_t ma, mb;
    unpack(f, a, &ea, &ma);
    unpack(f, b, &eb, &mb);
    normalize64(&ma, &ea);
    normalize64(&mb, &eb);
    /* (ma * 2^63) / mb lies in (2^62, 2^64): 63+ quotient bits, the
     * remainder becomes the sticky bit. */
    u128 n = (u128)ma << 63;
    u128 q = n / mb;
    q |= (n % mb) != 0;
    return round_pack(f, s, ea - eb - 63, q, c);
}

/* floor(sqrt(n)) for n < 2^64, one result bit per step. */
static uint64_t isqrt64(uint64_t n)
{
    uint64_t root = 0, bit;
    if (n == 0) return 0;
    bit = 1ull << ((63 - __builtin_clzll(n)) & ~1);        /* highest power of 4 <= n */
    while (bit) {
        if (n >= root + bit) {
            n -= root + bit;
            root = (root >> 1) + bit;
        } else {
            root >>= 1;
        }
        bit >>= 2;
    }
    return root;
}

/* floor(sqrt(n)) for n < 2^128, and whether it is exact.  Above 2^64:
 * Newton's iteration x' = (x + n/x) / 2 from a start above the root (the
 * root of the top 64 bits, plus one, scaled); it decreases monotonically and
 * stops at floor(sqrt(n)) -- exact integer arithmetic throughout. */
static uint64_t isqrt128(u128 n, bool *exact)
{
    u128 x;
    if (!(n >> 64)) {
        x = isqrt64((uint64_t)n);
    } else {
        int shift = (bitlen128(n) - 63) & ~1;               /* even, leaves at most 64 bits */
        x = ((u128)isqrt64((uint64_t)(n >> shift)) + 1) << (shift / 2);
        for (;;) {
            u128 y = (x + n / x) >> 1;
            if (y >= x) break;
            x = y;
        }
    }
    *exact = x * x == n;
    return (uint64_t)x;
}

static uint64_t f_sqrt(const struct fmt *f, uint64_t a, struct fctx *c)
{
    if (is_nan(f, a)) return nan_result(f, a, a, c);
    if (is_zero(f, a)) return a;                                    /* sqrt(-0) = -0 */
    if (sign_of(f, a)) return invalid(f, c);
    if (is_inf(f, a)) return a;
    int e;
    uint64_t m;
    bool exact;
    unpack(f, a, &e, &m);
    /* Scale to an integer with an even exponent whose root has plenty of
     * bits beyond the mbits + 3 rounding needs: 31-32 for S (all in 64-bit
     * arithmetic), 63-64 for D. */
    int shift = (f->mbits < 32 ? 62 : 126) - bitlen128(m);
    if ((e - shift) % 2) shift++;
    u128 root = isqrt128((u128)m << shift, &exact);
    root |= !exact;
    return round_pack(f, false, (e - shift) / 2, root, c);
}

/* (-1)^neg_prod * a * b + (-1)^neg_c * addend with one rounding:
 * fmadd (0, 0), fmsub (0, 1), fnmsub (1, 0), fnmadd (1, 1). */
static uint64_t f_fma(const struct fmt *f, uint64_t a, uint64_t b, uint64_t addend,
                      bool neg_prod, bool neg_c, struct fctx *c)
{
    bool inf_times_zero = (is_inf(f, a) && is_zero(f, b)) || (is_zero(f, a) && is_inf(f, b));
    if (is_nan(f, a) || is_nan(f, b) || is_nan(f, addend)) {
        /* inf * 0 is invalid even when the addend is a quiet NaN. */
        if (inf_times_zero || is_snan(f, addend)) c->flags |= FFLAG_NV;
        return nan_result(f, a, b, c);
    }
    if (inf_times_zero) return invalid(f, c);
    bool sp = (sign_of(f, a) != sign_of(f, b)) != neg_prod;
    bool sc = sign_of(f, addend) != neg_c;
    if (is_inf(f, a) || is_inf(f, b)) {
        if (is_inf(f, addend) && sc != sp) return invalid(f, c);   /* inf - inf */
        return signed_inf(f, sp);
    }
    if (is_inf(f, addend)) return signed_inf(f, sc);
    if (is_zero(f, a) || is_zero(f, b)) {
        if (is_zero(f, addend)) return zero_sum(f, sp, sc, c);
        return magnitude(f, addend) | signed_zero(f, sc);           /* exact */
    }
    int ea, eb;
    uint64_t ma, mb;
    unpack(f, a, &ea, &ma);
    unpack(f, b, &eb, &mb);
    u128 product = (u128)ma * mb;                                   /* exact, < 2^106 */
    if (is_zero(f, addend)) return round_pack(f, sp, ea + eb, product, c);
    int ec;
    uint64_t mc;
    unpack(f, addend, &ec, &mc);
    return add_exact(f, sp, ea + eb, product, sc, ec, mc, c);
}

/* a < b for non-NaN values, ordering -0 below +0. */
static bool less_signed_zero(const struct fmt *f, uint64_t a, uint64_t b)
{
    bool sa = sign_of(f, a), sb = sign_of(f, b);
    if (sa != sb) return sa;
    return sa ? magnitude(f, a) > magnitude(f, b) : magnitude(f, a) < magnitude(f, b);
}

static bool f_eq(const struct fmt *f, uint64_t a, uint64_t b)
{
    return a == b || (is_zero(f, a) && is_zero(f, b));
}

static bool f_lt(const struct fmt *f, uint64_t a, uint64_t b)
{
    return !(is_zero(f, a) && is_zero(f, b)) && less_signed_zero(f, a, b);
}

/* feq (quiet: NV only for sNaN), flt and fle (signaling: NV for any NaN). */
static uint64_t f_compare(const struct fmt *f, uint64_t a, uint64_t b, int op, struct fctx *c)
{
    if (is_nan(f, a) || is_nan(f, b)) {
        if (op != 0 || is_snan(f, a) || is_snan(f, b)) c->flags |= FFLAG_NV;
        return 0;
    }
    switch (op) {
    case 0:  return f_eq(f, a, b);
    case 1:  return f_lt(f, a, b);
    default: return f_lt(f, a, b) || f_eq(f, a, b);
    }
}

/* IEEE 754-2019 minimumNumber / maximumNumber: -0 < +0, a NaN operand
 * loses to a number, two NaNs give the canonical NaN, sNaN raises NV. */
static uint64_t f_minmax(const struct fmt *f, uint64_t a, uint64_t b, bool want_max, struct fctx *c)
{
    bool na = is_nan(f, a), nb = is_nan(f, b);
    if (is_snan(f, a) || is_snan(f, b)) c->flags |= FFLAG_NV;
    if (na && nb) return f->qnan;
    if (na) return b;
    if (nb) return a;
    return less_signed_zero(f, a, b) != want_max ? a : b;
}

static uint64_t f_class(const struct fmt *f, uint64_t a)
{
    bool s = sign_of(f, a);
    if (is_nan(f, a)) return is_snan(f, a) ? 1u << 8 : 1u << 9;
    if (is_inf(f, a)) return s ? 1u << 0 : 1u << 7;
    if (is_zero(f, a)) return s ? 1u << 3 : 1u << 4;
    if (exp_field(f, a) == 0) return s ? 1u << 2 : 1u << 5;        /* subnormal */
    return s ? 1u << 1 : 1u << 6;
}

/* fcvt.s.d and fcvt.d.s. */
static uint64_t f_convert(const struct fmt *to, const struct fmt *from, uint64_t a, struct fctx *c)
{
    if (is_nan(from, a)) {
        if (is_snan(from, a)) c->flags |= FFLAG_NV;
        return to->qnan;
    }
    bool s = sign_of(from, a);
    if (is_inf(from, a)) return signed_inf(to, s);
    if (is_zero(from, a)) return signed_zero(to, s);
    int e;
    uint64_t m;
    unpack(from, a, &e, &m);
    return round_pack(to, s, e, m, c);
}

static uint64_t sext32(uint64_t v)
{
    return (uint64_t)(int64_t)(int32_t)(uint32_t)v;
}

/* fcvt.{w,wu,l,lu}.fmt: round to an integer of `width` bits.  NaN, infinities
 * and anything out of range after rounding saturate and raise NV only
 * (NaN and +large give the largest value, -large the smallest, which is 0
 * for the unsigned ones); 32-bit results are sign-extended to 64 bits. */
static uint64_t f_to_int(const struct fmt *f, uint64_t a, int width, bool is_signed, struct fctx *c)
{
    u128 max_pos = is_signed ? ((u128)1 << (width - 1)) - 1 : ((u128)1 << width) - 1;
    u128 max_neg = is_signed ? (u128)1 << (width - 1) : 0;        /* magnitude of the minimum */
    bool s = sign_of(f, a);
    bool inexact = false;
    uint64_t r;
    u128 mag;

    if (is_nan(f, a)) {
        s = false;
        goto invalid;
    }
    if (is_inf(f, a)) goto invalid;
    if (is_zero(f, a)) return 0;
    int e;
    uint64_t m;
    unpack(f, a, &e, &m);
    if (e >= 0) {
        if (e > 64) goto invalid;
        mag = (u128)m << e;                     /* < 2^117 */
    } else {
        mag = round_shift(m, -e, s, c->rm, &inexact);
    }
    if (mag > (s ? max_neg : max_pos)) goto invalid;
    if (inexact) c->flags |= FFLAG_NX;
    r = s ? 0 - (uint64_t)mag : (uint64_t)mag;
    return width == 32 ? sext32(r) : r;
invalid:
    c->flags |= FFLAG_NV;
    r = s ? 0 - (uint64_t)max_neg : (uint64_t)max_pos;
    return width == 32 ? sext32(r) : r;
}

/* fcvt.fmt.{w,wu,l,lu}: the integer is given as sign and magnitude. */
static uint64_t int_to_f(const struct fmt *f, bool negative, uint64_t mag, struct fctx *c)
{
    if (mag == 0) return 0;
    return round_pack(f, negative, 0, mag, c);
}

static uint64_t int64_to_f(const struct fmt *f, int64_t v, struct fctx *c)
{
    return int_to_f(f, v < 0, v < 0 ? 0 - (uint64_t)v : (uint64_t)v, c);
}

/* ---- the instructions -------------------------------------------------------- */

/* A single read from an f register: the canonical NaN unless NaN-boxed. */
static inline uint64_t unbox32(uint64_t r)
{
    return (r >> 32) == 0xffffffffu ? (uint32_t)r : F32.qnan;
}

bool fpu_execute(struct hart *h, const struct decoded *d)
{
    if (!fpu_enabled(h)) return false;
    struct fctx c = { d->rm, 0 };
    if (c.rm == RM_DYN) {
        c.rm = (int)((h->fcsr >> FRM_SHIFT) & 7);
        if (c.rm > RM_RMM) return false;
    }
    /* S/D pairs are adjacent in enum op, S first (decode.h): the low bit of
     * the offset is the instruction's fmt field. */
    const bool dbl = (d->op - OP_FP_FIRST) & 1;
    const struct fmt *f = dbl ? &F64 : &F32;
    uint64_t *fr = h->f;
    const uint64_t a = dbl ? fr[d->rs1] : unbox32(fr[d->rs1]);
    const uint64_t b = dbl ? fr[d->rs2] : unbox32(fr[d->rs2]);
    const uint64_t sb = sign_bit(f);
    const uint64_t xs1 = h->x[d->rs1];
    uint64_t r;                 /* an f result, for rd (boxed below for S) */
    uint64_t xr;                /* an x result */

    switch (d->op) {
    case OP_FADD_S: case OP_FADD_D: r = f_add(f, a, b, &c); break;
    case OP_FSUB_S: case OP_FSUB_D: r = f_add(f, a, b ^ sb, &c); break;
    case OP_FMUL_S: case OP_FMUL_D: r = f_mul(f, a, b, &c); break;
    case OP_FDIV_S: case OP_FDIV_D: r = f_div(f, a, b, &c); break;
    case OP_FSQRT_S: case OP_FSQRT_D: r = f_sqrt(f, a, &c); break;
    case OP_FMADD_S: case OP_FMADD_D: case OP_FMSUB_S: case OP_FMSUB_D:
    case OP_FNMSUB_S: case OP_FNMSUB_D: case OP_FNMADD_S: case OP_FNMADD_D: {
        int k = (d->op - OP_FMADD_S) >> 1;      /* 0 fmadd, 1 fmsub, 2 fnmsub, 3 fnmadd */
        uint64_t a3 = dbl ? fr[d->rs3] : unbox32(fr[d->rs3]);
        r = f_fma(f, a, b, a3, k >= 2, k == 1 || k == 3, &c);
        break;
    }
    case OP_FSGNJ_S: case OP_FSGNJ_D: r = (a & ~sb) | (b & sb); break;
    case OP_FSGNJN_S: case OP_FSGNJN_D: r = (a & ~sb) | (~b & sb); break;
    case OP_FSGNJX_S: case OP_FSGNJX_D: r = a ^ (b & sb); break;
    case OP_FMIN_S: case OP_FMIN_D: r = f_minmax(f, a, b, false, &c); break;
    case OP_FMAX_S: case OP_FMAX_D: r = f_minmax(f, a, b, true, &c); break;
    case OP_FEQ_S: case OP_FEQ_D: xr = f_compare(f, a, b, 0, &c); goto x_result;
    case OP_FLT_S: case OP_FLT_D: xr = f_compare(f, a, b, 1, &c); goto x_result;
    case OP_FLE_S: case OP_FLE_D: xr = f_compare(f, a, b, 2, &c); goto x_result;
    case OP_FCLASS_S: case OP_FCLASS_D: xr = f_class(f, a); goto x_result;
    case OP_FCVT_S_D: r = f_convert(&F32, &F64, fr[d->rs1], &c); break;
    case OP_FCVT_D_S: r = f_convert(&F64, &F32, unbox32(fr[d->rs1]), &c); break;
    case OP_FCVT_W_S: case OP_FCVT_W_D: xr = f_to_int(f, a, 32, true, &c); goto x_result;
    case OP_FCVT_WU_S: case OP_FCVT_WU_D: xr = f_to_int(f, a, 32, false, &c); goto x_result;
    case OP_FCVT_L_S: case OP_FCVT_L_D: xr = f_to_int(f, a, 64, true, &c); goto x_result;
    case OP_FCVT_LU_S: case OP_FCVT_LU_D: xr = f_to_int(f, a, 64, false, &c); goto x_result;
    case OP_FCVT_S_W: case OP_FCVT_D_W: r = int64_to_f(f, (int32_t)xs1, &c); break;
    case OP_FCVT_S_WU: case OP_FCVT_D_WU: r = int_to_f(f, false, (uint32_t)xs1, &c); break;
    case OP_FCVT_S_L: case OP_FCVT_D_L: r = int64_to_f(f, (int64_t)xs1, &c); break;
    case OP_FCVT_S_LU: case OP_FCVT_D_LU: r = int_to_f(f, false, xs1, &c); break;
    /* Moves transfer bits unchanged; fmv.x.w ignores the upper half. */
    case OP_FMV_X_W: xr = sext32(fr[d->rs1]); goto x_result;
    case OP_FMV_X_D: xr = fr[d->rs1]; goto x_result;
    case OP_FMV_W_X: r = (uint32_t)xs1; break;
    case OP_FMV_D_X: r = xs1; break;
    default: return false;
    }
    fr[d->rd] = dbl ? r : fpu_box32((uint32_t)r);
    fpu_set_dirty(h);
    goto flags;
x_result:
    if (d->rd) h->x[d->rd] = xr;
flags:
    if (c.flags) {
        h->fcsr |= c.flags;
        fpu_set_dirty(h);
    }
    return true;
}

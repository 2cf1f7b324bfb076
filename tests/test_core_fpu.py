"""F and D extensions: results and fflags checked bit for bit.

The riscv-tests (rv64uf/rv64ud) cover every instruction, but mostly in
round-to-nearest and with few flag corner cases.  Here:

* a reference model in Python, written from the spec with exact rational
  arithmetic (fractions.Fraction): every operation is computed exactly and
  rounded once, in each of the five rounding modes, with tininess detected
  after rounding.  It is checked against the host's float64 arithmetic where
  that applies (round to nearest), then a few thousand edge-biased vectors per
  instruction are run on the core and compared with it;
* hand-picked values whose results differ between rounding modes, the
  underflow boundary (tiny after rounding or not), NaN-boxing, canonical NaNs,
  fcvt saturation, with expected bits written out by hand;
* mstatus.FS: Off traps every FP instruction and FP CSR, Initial/Clean turn
  Dirty exactly when an f register or fcsr changes, SD follows; invalid
  rounding modes trap; fcsr/frm/fflags masks.
"""

from __future__ import annotations

import math
import random
import struct
from dataclasses import dataclass
from fractions import Fraction

import pytest

import rvasm

MARCH = "rv64imafdc_zicsr_zifencei"
MSTATUS_FS = 3 << 13
MSTATUS_SD = 1 << 63
M64 = (1 << 64) - 1

RNE, RTZ, RDN, RUP, RMM = range(5)
NX, UF, OF, DZ, NV = 1, 2, 4, 8, 16
RM_NAMES = ["rne", "rtz", "rdn", "rup", "rmm"]


# ---- reference model -----------------------------------------------------------

@dataclass(frozen=True)
class Fmt:
    mbits: int
    ebits: int

    @property
    def bias(self) -> int:
        return (1 << (self.ebits - 1)) - 1

    @property
    def emin(self) -> int:
        return 1 - self.bias

    @property
    def sign(self) -> int:
        return 1 << (self.mbits + self.ebits)

    @property
    def inf(self) -> int:
        return ((1 << self.ebits) - 1) << self.mbits

    @property
    def qnan(self) -> int:
        return self.inf | (1 << (self.mbits - 1))

    @property
    def max_finite(self) -> int:
        return self.inf - 1


S = Fmt(23, 8)
D = Fmt(52, 11)
BOX = 0xFFFF_FFFF_0000_0000


def pow2(e: int) -> Fraction:
    return Fraction(1 << e) if e >= 0 else Fraction(1, 1 << -e)


def kind(f: Fmt, bits: int) -> str:
    e = (bits >> f.mbits) & ((1 << f.ebits) - 1)
    m = bits & ((1 << f.mbits) - 1)
    if e == (1 << f.ebits) - 1:
        if m == 0:
            return "inf"
        return "qnan" if m >> (f.mbits - 1) else "snan"
    if e == 0:
        return "zero" if m == 0 else "sub"
    return "norm"


def is_nan(f: Fmt, bits: int) -> bool:
    return kind(f, bits) in ("qnan", "snan")


def sign_of(f: Fmt, bits: int) -> bool:
    return bool(bits & f.sign)


def value(f: Fmt, bits: int) -> Fraction:
    """Exact value of a finite encoding (zeros are 0 whatever their sign)."""
    e = (bits >> f.mbits) & ((1 << f.ebits) - 1)
    m = bits & ((1 << f.mbits) - 1)
    v = m * pow2(f.emin - f.mbits) if e == 0 else (m | (1 << f.mbits)) * pow2(e - f.bias - f.mbits)
    return -v if sign_of(f, bits) else v


def encode_exact(f: Fmt, sign: bool, mag: Fraction) -> int:
    """Bits of a representable magnitude."""
    s = f.sign if sign else 0
    if mag == 0:
        return s
    e = mag.numerator.bit_length() - mag.denominator.bit_length()
    if pow2(e) > mag:
        e -= 1
    if e < f.emin:
        frac = mag / pow2(f.emin - f.mbits)
        assert frac.denominator == 1
        return s | int(frac)
    sig = mag / pow2(e - f.mbits)
    assert sig.denominator == 1 and (1 << f.mbits) <= sig < (2 << f.mbits)
    return s | ((e + f.bias) << f.mbits) | (int(sig) - (1 << f.mbits))


def round_int(x: Fraction, rm: int) -> int:
    """x rounded to an integer in mode rm."""
    n = math.floor(x)
    rem = x - n
    if rem == 0:
        return n
    half = Fraction(1, 2)
    up = {RNE: rem > half or (rem == half and n % 2 == 1), RTZ: x < 0, RDN: False,
          RUP: True, RMM: rem > half or (rem == half and x > 0)}[rm]
    return n + 1 if up else n


def round_to(f: Fmt, x: Fraction, rm: int) -> tuple[int, int]:
    """A nonzero exact value rounded to format f: (bits, flags)."""
    assert x != 0
    sign = x < 0
    a = -x if sign else x
    e = a.numerator.bit_length() - a.denominator.bit_length()
    if pow2(e) > a:
        e -= 1

    def rnd(q: int) -> Fraction:
        # round the magnitude to a multiple of 2^q (the signed value decides directed modes)
        n = round_int(x / pow2(q), rm)
        return abs(n) * pow2(q)

    tiny = rnd(e - f.mbits) < pow2(f.emin)              # after rounding, unbounded exponent
    mag = rnd(max(e - f.mbits, f.emin - f.mbits))
    inexact = mag != a
    flags = (NX if inexact else 0) | (UF if tiny and inexact else 0)
    if mag >= pow2(f.bias + 1):
        to_inf = rm in (RNE, RMM) or (rm == RDN and sign) or (rm == RUP and not sign)
        return (f.sign if sign else 0) | (f.inf if to_inf else f.max_finite), OF | NX
    return encode_exact(f, sign, mag), flags


def exact_or_zero(f: Fmt, x: Fraction, rm: int, zero_sign: bool) -> tuple[int, int]:
    if x == 0:
        return (f.sign if zero_sign else 0), 0
    return round_to(f, x, rm)


def nan_in(f: Fmt, *ops: int) -> tuple[int, int] | None:
    if any(is_nan(f, o) for o in ops):
        return f.qnan, NV if any(kind(f, o) == "snan" for o in ops) else 0
    return None


def ref_add(f: Fmt, a: int, b: int, rm: int) -> tuple[int, int]:
    if (r := nan_in(f, a, b)):
        return r
    ka, kb = kind(f, a), kind(f, b)
    sa, sb = sign_of(f, a), sign_of(f, b)
    if ka == "inf" or kb == "inf":
        if ka == kb and sa != sb:
            return f.qnan, NV
        return (a if ka == "inf" else b), 0
    return exact_or_zero(f, value(f, a) + value(f, b), rm, sa if sa == sb else rm == RDN)


def ref_mul(f: Fmt, a: int, b: int, rm: int) -> tuple[int, int]:
    if (r := nan_in(f, a, b)):
        return r
    s = sign_of(f, a) != sign_of(f, b)
    ka, kb = kind(f, a), kind(f, b)
    if "inf" in (ka, kb):
        if "zero" in (ka, kb):
            return f.qnan, NV
        return (f.sign if s else 0) | f.inf, 0
    return exact_or_zero(f, value(f, a) * value(f, b), rm, s)


def ref_div(f: Fmt, a: int, b: int, rm: int) -> tuple[int, int]:
    if (r := nan_in(f, a, b)):
        return r
    s = f.sign if sign_of(f, a) != sign_of(f, b) else 0
    ka, kb = kind(f, a), kind(f, b)
    if ka == "inf":
        return (f.qnan, NV) if kb == "inf" else (s | f.inf, 0)
    if kb == "inf":
        return s, 0
    if kb == "zero":
        return (f.qnan, NV) if ka == "zero" else (s | f.inf, DZ)
    return exact_or_zero(f, value(f, a) / value(f, b), rm, bool(s))


def ref_sqrt(f: Fmt, a: int, rm: int) -> tuple[int, int]:
    if (r := nan_in(f, a)):
        return r
    k = kind(f, a)
    if k == "zero":
        return a, 0
    if sign_of(f, a):
        return f.qnan, NV
    if k == "inf":
        return a, 0
    # sqrt(v) = isqrt(v * 4^K) / 2^K, plus "a bit more" when inexact: with K far
    # beyond the precision, (2r+1) / 2^(K+1) rounds exactly like the true root.
    K = 1200
    n = value(f, a) * pow2(2 * K)
    assert n.denominator == 1
    r = math.isqrt(int(n))
    root = Fraction(r, 1 << K) if r * r == n else Fraction(2 * r + 1, 1 << (K + 1))
    return round_to(f, root, rm)


def ref_fma(f: Fmt, a: int, b: int, c: int, rm: int, neg_prod: bool, neg_c: bool) -> tuple[int, int]:
    ka, kb, kc = kind(f, a), kind(f, b), kind(f, c)
    inf_zero = {ka, kb} == {"inf", "zero"}
    if any(is_nan(f, o) for o in (a, b, c)):
        snan = any(kind(f, o) == "snan" for o in (a, b, c))
        return f.qnan, NV if (snan or inf_zero) else 0
    if inf_zero:
        return f.qnan, NV
    sp = (sign_of(f, a) != sign_of(f, b)) != neg_prod
    sc = sign_of(f, c) != neg_c
    if "inf" in (ka, kb):
        if kc == "inf" and sp != sc:
            return f.qnan, NV
        return (f.sign if sp else 0) | f.inf, 0
    if kc == "inf":
        return (f.sign if sc else 0) | f.inf, 0
    p = value(f, a) * value(f, b)
    p = -p if neg_prod else p
    cv = -value(f, c) if neg_c else value(f, c)
    return exact_or_zero(f, p + cv, rm, sp if sp == sc else rm == RDN)


def ref_minmax(f: Fmt, a: int, b: int, want_max: bool) -> tuple[int, int]:
    flags = NV if kind(f, a) == "snan" or kind(f, b) == "snan" else 0
    if is_nan(f, a) and is_nan(f, b):
        return f.qnan, flags
    if is_nan(f, a):
        return b, flags
    if is_nan(f, b):
        return a, flags
    va, vb = value(f, a), value(f, b)
    if va == vb:        # equal, or +0 / -0: min takes the negative one, max the positive
        return (b if sign_of(f, a) else a) if want_max else (a if sign_of(f, a) else b), flags
    return (a if (va > vb) == want_max else b), flags


def ref_compare(f: Fmt, a: int, b: int, op: str) -> tuple[int, int]:
    if is_nan(f, a) or is_nan(f, b):
        signaling = op != "eq" or kind(f, a) == "snan" or kind(f, b) == "snan"
        return 0, NV if signaling else 0
    va, vb = value(f, a), value(f, b)
    return int({"eq": va == vb, "lt": va < vb, "le": va <= vb}[op]), 0


def ref_class(f: Fmt, a: int) -> int:
    k, s = kind(f, a), sign_of(f, a)
    bit = {"inf": 0, "norm": 1, "sub": 2, "zero": 3}.get(k)
    if bit is not None:
        return 1 << (bit if s else 7 - bit)
    return 1 << (8 if k == "snan" else 9)


def ref_f2i(f: Fmt, a: int, width: int, signed: bool, rm: int) -> tuple[int, int]:
    lo, hi = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if signed else (0, (1 << width) - 1)
    k = kind(f, a)
    if is_nan(f, a):
        n, flags = hi, NV
    elif k == "inf":
        n, flags = (lo if sign_of(f, a) else hi), NV
    else:
        v = value(f, a)
        n = round_int(v, rm)
        flags = NX if n != v else 0
        if n < lo:
            n, flags = lo, NV
        elif n > hi:
            n, flags = hi, NV
    n &= (1 << width) - 1
    if width == 32 and n >> 31:                 # 32-bit results are sign-extended
        n |= M64 ^ 0xFFFF_FFFF
    return n, flags


def ref_i2f(f: Fmt, n: int, rm: int) -> tuple[int, int]:
    return exact_or_zero(f, Fraction(n), rm, False)


def ref_f2f(to: Fmt, frm: Fmt, a: int, rm: int) -> tuple[int, int]:
    k = kind(frm, a)
    if is_nan(frm, a):
        return to.qnan, NV if k == "snan" else 0
    s = to.sign if sign_of(frm, a) else 0
    if k == "inf":
        return s | to.inf, 0
    return exact_or_zero(to, value(frm, a), rm, bool(s))


def unbox(raw: int) -> int:
    return raw & 0xFFFF_FFFF if raw >> 32 == 0xFFFF_FFFF else S.qnan


def sext32(v: int) -> int:
    v &= 0xFFFF_FFFF
    return v | (M64 ^ 0xFFFF_FFFF) if v >> 31 else v


def as_signed(v: int, width: int) -> int:
    v &= (1 << width) - 1
    return v - (1 << width) if v >> (width - 1) else v


# ---- the instructions, for the guest harness and the model ----------------------
#
# Each entry: name, assembly (operands fa0/fa1/fa2 or a0, result fa3 or a1),
# and the model: (raw a, raw b, raw c, rm) -> ("f", raw register) | ("x", value), flags.

def _fp(f: Fmt, raw: int) -> int:
    return raw if f is D else unbox(raw)


def _res(f: Fmt, bits: int) -> int:
    return bits if f is D else BOX | bits


def _arith(f, fn):
    return lambda a, b, c, rm: (lambda r: (("f", _res(f, r[0])), r[1]))(fn(f, _fp(f, a), _fp(f, b), _fp(f, c), rm))


def _build_ops():
    ops = []
    for sfx, f in (("s", S), ("d", D)):
        ops += [
            (f"fadd.{sfx}", f"fadd.{sfx} fa3, fa0, fa1", _arith(f, lambda f, a, b, c, rm: ref_add(f, a, b, rm))),
            (f"fsub.{sfx}", f"fsub.{sfx} fa3, fa0, fa1",
             _arith(f, lambda f, a, b, c, rm: ref_add(f, a, b ^ f.sign, rm))),
            (f"fmul.{sfx}", f"fmul.{sfx} fa3, fa0, fa1", _arith(f, lambda f, a, b, c, rm: ref_mul(f, a, b, rm))),
            (f"fdiv.{sfx}", f"fdiv.{sfx} fa3, fa0, fa1", _arith(f, lambda f, a, b, c, rm: ref_div(f, a, b, rm))),
            (f"fsqrt.{sfx}", f"fsqrt.{sfx} fa3, fa0", _arith(f, lambda f, a, b, c, rm: ref_sqrt(f, a, rm))),
            (f"fmadd.{sfx}", f"fmadd.{sfx} fa3, fa0, fa1, fa2",
             _arith(f, lambda f, a, b, c, rm: ref_fma(f, a, b, c, rm, False, False))),
            (f"fmsub.{sfx}", f"fmsub.{sfx} fa3, fa0, fa1, fa2",
             _arith(f, lambda f, a, b, c, rm: ref_fma(f, a, b, c, rm, False, True))),
            (f"fnmsub.{sfx}", f"fnmsub.{sfx} fa3, fa0, fa1, fa2",
             _arith(f, lambda f, a, b, c, rm: ref_fma(f, a, b, c, rm, True, False))),
            (f"fnmadd.{sfx}", f"fnmadd.{sfx} fa3, fa0, fa1, fa2",
             _arith(f, lambda f, a, b, c, rm: ref_fma(f, a, b, c, rm, True, True))),
            (f"fsgnj.{sfx}", f"fsgnj.{sfx} fa3, fa0, fa1",
             _arith(f, lambda f, a, b, c, rm: ((a & ~f.sign) | (b & f.sign), 0))),
            (f"fsgnjn.{sfx}", f"fsgnjn.{sfx} fa3, fa0, fa1",
             _arith(f, lambda f, a, b, c, rm: ((a & ~f.sign) | (~b & f.sign), 0))),
            (f"fsgnjx.{sfx}", f"fsgnjx.{sfx} fa3, fa0, fa1",
             _arith(f, lambda f, a, b, c, rm: (a ^ (b & f.sign), 0))),
            (f"fmin.{sfx}", f"fmin.{sfx} fa3, fa0, fa1", _arith(f, lambda f, a, b, c, rm: ref_minmax(f, a, b, False))),
            (f"fmax.{sfx}", f"fmax.{sfx} fa3, fa0, fa1", _arith(f, lambda f, a, b, c, rm: ref_minmax(f, a, b, True))),
        ]
        for op in ("eq", "lt", "le"):
            ops.append((f"f{op}.{sfx}", f"f{op}.{sfx} a1, fa0, fa1",
                        lambda a, b, c, rm, f=f, op=op: (lambda r: (("x", r[0]), r[1]))(
                            ref_compare(f, _fp(f, a), _fp(f, b), op))))
        ops.append((f"fclass.{sfx}", f"fclass.{sfx} a1, fa0",
                    lambda a, b, c, rm, f=f: (("x", ref_class(f, _fp(f, a))), 0)))
        for it, width, signed in (("w", 32, True), ("wu", 32, False), ("l", 64, True), ("lu", 64, False)):
            ops.append((f"fcvt.{it}.{sfx}", f"fcvt.{it}.{sfx} a1, fa0",
                        lambda a, b, c, rm, f=f, w=width, sg=signed: (lambda r: (("x", r[0]), r[1]))(
                            ref_f2i(f, _fp(f, a), w, sg, rm))))

            def i2f(a, b, c, rm, f=f, w=width, sg=signed):
                n = as_signed(a, w) if sg else a & ((1 << w) - 1)
                bits, flags = ref_i2f(f, n, rm)
                return ("f", _res(f, bits)), flags
            ops.append((f"fcvt.{sfx}.{it}", f"fcvt.{sfx}.{it} fa3, a0", i2f))
    ops += [
        ("fcvt.s.d", "fcvt.s.d fa3, fa0",
         lambda a, b, c, rm: (lambda r: (("f", BOX | r[0]), r[1]))(ref_f2f(S, D, a, rm))),
        ("fcvt.d.s", "fcvt.d.s fa3, fa0",
         lambda a, b, c, rm: (lambda r: (("f", r[0]), r[1]))(ref_f2f(D, S, unbox(a), rm))),
        ("fmv.x.w", "fmv.x.w a1, fa0", lambda a, b, c, rm: (("x", sext32(a)), 0)),
        ("fmv.x.d", "fmv.x.d a1, fa0", lambda a, b, c, rm: (("x", a), 0)),
        ("fmv.w.x", "fmv.w.x fa3, a0", lambda a, b, c, rm: (("f", BOX | (a & 0xFFFF_FFFF)), 0)),
        ("fmv.d.x", "fmv.d.x fa3, a0", lambda a, b, c, rm: (("f", a), 0)),
    ]
    return ops


OPS = _build_ops()
OP_INDEX = {name: i for i, (name, _, _) in enumerate(OPS)}
# Static rounding modes: the same instructions with rm in the encoding (frm is
# set to something else by the harness to show that it is not used).
STATIC = [(name, rm) for name in ("fadd.s", "fmul.d", "fdiv.s", "fsqrt.d", "fmadd.d", "fnmsub.s",
                                  "fcvt.w.d", "fcvt.lu.s", "fcvt.s.l", "fcvt.s.d")
          for rm in range(5)]
STATIC_INDEX = {key: len(OPS) + i for i, key in enumerate(STATIC)}

REC = 8     # dwords per vector: op, frm, a, b, c, f result, x result, fflags
MAX_VECTORS = 16384


def _harness_source() -> str:
    stubs = []
    for _, asm, _ in OPS:
        stubs.append(f"        .balign 16\n        {asm}\n        ret")
    for name, rm in STATIC:
        asm = OPS[OP_INDEX[name]][1]
        stubs.append(f"        .balign 16\n        {asm}, {RM_NAMES[rm]}\n        ret")
    return f"""
main:
        li t0, 1 << 13
        csrs mstatus, t0                // FS = Initial
        la s0, fpvec
        la t0, fpvec_count
        ld s1, 0(t0)
next:
        beqz s1, done
        ld t0, 8(s0)
        fsrm t0
        fsflags zero
        fld fa0, 16(s0)
        fld fa1, 24(s0)
        fld fa2, 32(s0)
        ld a0, 16(s0)
        fmv.d.x fa3, zero
        li a1, 0
        ld t0, 0(s0)
        slli t0, t0, 4
        la t1, stubs
        add t0, t0, t1
        jalr ra, 0(t0)
        fsd fa3, 40(s0)
        sd a1, 48(s0)
        frflags t1
        sd t1, 56(s0)
        addi s0, s0, {REC * 8}
        addi s1, s1, -1
        j next
done:
        EXIT 0

        .balign 16
stubs:
{chr(10).join(stubs)}

        .data
        .balign 8
fpvec_count:    .dword 0
        .bss
        .balign 8
fpvec:  .skip {REC * 8 * MAX_VECTORS}
"""


HARNESS = _harness_source()


def run_vectors(vectors: list[tuple[int, int, int, int, int]]) -> list[tuple[int, int, int]]:
    """Run (op index, frm, a, b, c) vectors on the core; returns (f result, x result, fflags)."""
    assert len(vectors) <= MAX_VECTORS
    g = rvasm.boot(HARNESS, march=MARCH)
    data = b"".join(struct.pack("<8Q", op, frm, a & M64, b & M64, c & M64, 0, 0, 0)
                    for op, frm, a, b, c in vectors)
    g.machine.write_phys(g.sym("fpvec"), data)
    g.set_u64("fpvec_count", len(vectors))
    assert g.run_to_exit(60 * len(vectors) + 10_000) == 0
    out = g.read("fpvec", len(data))
    return [struct.unpack_from("<8Q", out, 64 * i)[5:] for i in range(len(vectors))]


def expected(op: int, frm: int, a: int, b: int, c: int) -> tuple[str, int, int]:
    if op >= len(OPS):
        name, rm = STATIC[op - len(OPS)]
        model = OPS[OP_INDEX[name]][2]
    else:
        model, rm = OPS[op][2], frm
    (where, v), flags = model(a, b, c, rm)
    return where, v, flags


def check_vectors(vectors, results=None):
    results = results if results is not None else run_vectors(vectors)
    bad = []
    for vec, (fres, xres, flags) in zip(vectors, results):
        where, v, want_flags = expected(*vec)
        got = fres if where == "f" else xres
        if got != v or flags != want_flags:
            name = OPS[vec[0]][0] if vec[0] < len(OPS) else "%s,%s" % STATIC[vec[0] - len(OPS)]
            bad.append(f"{name} frm={vec[1]} a={vec[2]:#x} b={vec[3]:#x} c={vec[4]:#x}: "
                       f"got {got:#x} flags {flags:#x}, want {v:#x} flags {want_flags:#x}")
    assert not bad, f"{len(bad)} mismatches:\n" + "\n".join(bad[:30])


# ---- the reference model against the host (float64, round to nearest) -----------

def _f64(bits: int) -> float:
    return struct.unpack("<d", struct.pack("<Q", bits))[0]


def _bits(x: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", x))[0]


def test_reference_model_agrees_with_host_doubles():
    """Python floats are IEEE binary64 with round-to-nearest-even: the model's
    RNE results for add/sub/mul/div/sqrt must agree with them bit for bit."""
    rng = random.Random(1)
    for _ in range(3000):
        a, b = (gen_operand(rng, D) for _ in range(2))
        if is_nan(D, a) or is_nan(D, b):
            continue
        x, y = _f64(a), _f64(b)
        for ref, host in ((ref_add(D, a, b, RNE), lambda: x + y),
                          (ref_add(D, a, b ^ D.sign, RNE), lambda: x - y),
                          (ref_mul(D, a, b, RNE), lambda: x * y)):
            try:
                h = host()
            except (OverflowError, ZeroDivisionError):
                continue
            if math.isnan(h):
                assert ref[0] == D.qnan
            else:
                assert ref[0] == _bits(h), (hex(a), hex(b))
        if kind(D, b) not in ("zero",):
            h = x / y
            assert ref_div(D, a, b, RNE)[0] == (D.qnan if math.isnan(h) else _bits(h))
        if not sign_of(D, a) or kind(D, a) == "zero":
            assert ref_sqrt(D, a, RNE)[0] == _bits(math.sqrt(x))


# ---- random, edge-biased vectors against the model ------------------------------

def gen_operand(rng: random.Random, f: Fmt) -> int:
    sgn = f.sign if rng.random() < 0.5 else 0
    frac = rng.getrandbits(f.mbits)
    emax = (1 << f.ebits) - 1
    k = rng.randrange(12)
    if k == 0:
        return rng.getrandbits(f.mbits + f.ebits + 1)
    if k == 1:
        return sgn | frac                                           # subnormal
    if k == 2:
        return sgn | rng.choice([0, f.inf, f.qnan, f.qnan | 1, f.inf | 1, f.inf | frac])
    if k == 3:
        return sgn | ((emax - 1 - rng.randrange(3)) << f.mbits) | frac     # near overflow
    if k == 4:
        return sgn | ((1 + rng.randrange(3)) << f.mbits) | frac             # near underflow
    if k == 5:
        return sgn | ((f.bias // 2 + rng.randrange(4)) << f.mbits) | frac   # products near min
    if k == 6:
        return sgn | ((f.bias + f.bias // 2 - 1 + rng.randrange(3)) << f.mbits) | frac
    if k == 7:
        return sgn | ((f.bias - 2 + rng.randrange(5)) << f.mbits) | (frac & ~0xFF)  # short, near 1
    if k == 8:                                                      # near integers / int limits
        return sgn | ((f.bias + rng.randrange(66)) << f.mbits) | (frac & ~((1 << rng.randrange(f.mbits)) - 1))
    if k == 9:
        return sgn | ((f.bias - 1 + rng.randrange(3)) << f.mbits) | rng.choice([0, 1, frac, (1 << f.mbits) - 1])
    return sgn | (rng.randrange(1, emax) << f.mbits) | frac


def gen_int(rng: random.Random) -> int:
    n = rng.getrandbits(64) >> rng.randrange(64)
    if rng.random() < 0.3:
        n = rng.choice([0, 1, 2**31 - 1, 2**31, 2**32 - 1, 2**63 - 1, 2**63, 2**64 - 1, 2**24 + 1, 2**53 + 1])
    return -n & M64 if rng.random() < 0.5 else n


def gen_vector(rng: random.Random, op: int) -> tuple[int, int, int, int, int]:
    name = OPS[op][0] if op < len(OPS) else STATIC[op - len(OPS)][0]
    parts = name.split(".")
    f = D if parts[-1] == "d" else S                # format of b and c (and of a, mostly)
    int_source = name.startswith("fcvt.") and parts[2] in ("w", "wu", "l", "lu")
    if int_source or name in ("fmv.w.x", "fmv.d.x"):
        a = gen_int(rng)
    elif f is D:
        a = gen_operand(rng, D)
    else:
        a = BOX | gen_operand(rng, S)
    b, c = (gen_operand(rng, f) | (BOX if f is S else 0) for _ in range(2))
    if rng.random() < 0.25 and "fcvt" not in name and "fmv" not in name:
        # an operand close to another one (cancellation), or an addend close to -(a*b)
        if name.startswith(("fmadd", "fmsub", "fnm")):
            t, _ = ref_mul(f, _fp(f, a), _fp(f, b), RNE)
        else:
            t = _fp(f, a)
        t = ((t ^ (f.sign if rng.random() < 0.5 else 0)) + rng.randrange(-2, 3)) & (2 * f.sign - 1)
        t |= BOX if f is S else 0
        if name.startswith(("fmadd", "fmsub", "fnm")):
            c = t
        else:
            b = t
    frm = rng.randrange(5)
    if op >= len(OPS):
        frm = (STATIC[op - len(OPS)][1] + 3) % 5            # never the static mode
    return op, frm, a, b, c


@pytest.mark.parametrize("chunk", range(4))
def test_random_vectors_match_the_model(chunk):
    rng = random.Random(1000 + chunk)
    n_ops = len(OPS) + len(STATIC)
    ops = range(chunk, n_ops, 4)
    per_op = 600
    vectors = [gen_vector(rng, op) for op in ops for _ in range(per_op)]
    check_vectors(vectors)


# ---- hand-picked values ------------------------------------------------------------

def batch(cases):
    """cases: (name, rm, a, b, c, expected result, expected flags).  Runs them all
    in one guest and checks both the core and the model against the expectation."""
    vectors = [(OP_INDEX[name], rm, a, b, c) for name, rm, a, b, c, _, _ in cases]
    results = run_vectors(vectors)
    bad = []
    for (name, rm, a, b, c, want, want_flags), vec, (fres, xres, flags) in zip(cases, vectors, results):
        where, model, model_flags = expected(*vec)
        got = fres if where == "f" else xres
        if (got, flags) != (want, want_flags) or (model, model_flags) != (want, want_flags):
            bad.append(f"{name} {RM_NAMES[rm]} a={a:#x} b={b:#x} c={c:#x}: core {got:#x}/{flags:#x}, "
                       f"model {model:#x}/{model_flags:#x}, expected {want:#x}/{want_flags:#x}")
    assert not bad, "\n".join(bad)


ONE_S, TWO_S = BOX | 0x3F800000, BOX | 0x40000000
ONE_D = 0x3FF0000000000000


def test_rounding_modes_differ_on_hand_picked_values():
    # 1 + 2^-24 (single): exactly half an ulp above 1 → a tie.
    tie = BOX | 0x33800000                  # 2^-24
    above = BOX | 0x33C00000                # 1.5 * 2^-24: more than half an ulp
    cases = [
        ("fadd.s", RNE, ONE_S, tie, 0, BOX | 0x3F800000, NX),          # tie → even (1.0)
        ("fadd.s", RTZ, ONE_S, tie, 0, BOX | 0x3F800000, NX),
        ("fadd.s", RDN, ONE_S, tie, 0, BOX | 0x3F800000, NX),
        ("fadd.s", RUP, ONE_S, tie, 0, BOX | 0x3F800001, NX),
        ("fadd.s", RMM, ONE_S, tie, 0, BOX | 0x3F800001, NX),          # tie → away
        ("fadd.s", RNE, ONE_S, above, 0, BOX | 0x3F800001, NX),
        ("fadd.s", RTZ, ONE_S, above, 0, BOX | 0x3F800000, NX),
        # negative: -(1 + 2^-24)
        ("fadd.s", RNE, BOX | 0xBF800000, BOX | 0xB3800000, 0, BOX | 0xBF800000, NX),
        ("fadd.s", RDN, BOX | 0xBF800000, BOX | 0xB3800000, 0, BOX | 0xBF800001, NX),
        ("fadd.s", RUP, BOX | 0xBF800000, BOX | 0xB3800000, 0, BOX | 0xBF800000, NX),
        ("fadd.s", RTZ, BOX | 0xBF800000, BOX | 0xB3800000, 0, BOX | 0xBF800000, NX),
        ("fadd.s", RMM, BOX | 0xBF800000, BOX | 0xB3800000, 0, BOX | 0xBF800001, NX),
        # 1 + 3*2^-24 = 1 + 1.5 ulp: tie between odd 1+ulp and even 1+2ulp
        ("fadd.s", RNE, ONE_S, BOX | 0x34400000, 0, BOX | 0x3F800002, NX),
        ("fadd.s", RMM, ONE_S, BOX | 0x34400000, 0, BOX | 0x3F800002, NX),
        ("fadd.s", RTZ, ONE_S, BOX | 0x34400000, 0, BOX | 0x3F800001, NX),
        # 1/3 in double: ...5555 (RNE, RDN, RTZ) vs ...5556 (RUP)
        ("fdiv.d", RNE, ONE_D, 0x4008000000000000, 0, 0x3FD5555555555555, NX),
        ("fdiv.d", RTZ, ONE_D, 0x4008000000000000, 0, 0x3FD5555555555555, NX),
        ("fdiv.d", RDN, ONE_D, 0x4008000000000000, 0, 0x3FD5555555555555, NX),
        ("fdiv.d", RUP, ONE_D, 0x4008000000000000, 0, 0x3FD5555555555556, NX),
        ("fdiv.d", RMM, ONE_D, 0x4008000000000000, 0, 0x3FD5555555555555, NX),
        # 2/3: ...5555.10101 → RNE/RMM/RUP round up
        ("fdiv.d", RNE, 0x4000000000000000, 0x4008000000000000, 0, 0x3FE5555555555555, NX),
        ("fdiv.d", RUP, 0x4000000000000000, 0x4008000000000000, 0, 0x3FE5555555555556, NX),
        # sqrt(2) single: 0x3FB504F3 (0x3FB504F3.33...)
        ("fsqrt.s", RNE, TWO_S, 0, 0, BOX | 0x3FB504F3, NX),
        ("fsqrt.s", RUP, TWO_S, 0, 0, BOX | 0x3FB504F4, NX),
        ("fsqrt.s", RDN, TWO_S, 0, 0, BOX | 0x3FB504F3, NX),
        # exact results raise nothing, in every mode
        ("fsqrt.d", RUP, 0x4010000000000000, 0, 0, 0x4000000000000000, 0),
        ("fmul.s", RDN, TWO_S, TWO_S, 0, BOX | 0x40800000, 0),
        # x - x = +0, except -0 when rounding down
        ("fsub.d", RNE, ONE_D, ONE_D, 0, 0, 0),
        ("fsub.d", RDN, ONE_D, ONE_D, 0, 1 << 63, 0),
        ("fadd.s", RDN, BOX | 0x80000000, BOX | 0x00000000, 0, BOX | 0x80000000, 0),
        ("fadd.s", RUP, BOX | 0x80000000, BOX | 0x00000000, 0, BOX | 0x00000000, 0),
        # overflow: inf or the largest finite number, by mode and sign
        ("fmul.d", RNE, 0x7FE0000000000000, 0x4000000000000000, 0, 0x7FF0000000000000, OF | NX),
        ("fmul.d", RTZ, 0x7FE0000000000000, 0x4000000000000000, 0, 0x7FEFFFFFFFFFFFFF, OF | NX),
        ("fmul.d", RDN, 0x7FE0000000000000, 0x4000000000000000, 0, 0x7FEFFFFFFFFFFFFF, OF | NX),
        ("fmul.d", RUP, 0x7FE0000000000000, 0x4000000000000000, 0, 0x7FF0000000000000, OF | NX),
        ("fmul.d", RMM, 0x7FE0000000000000, 0x4000000000000000, 0, 0x7FF0000000000000, OF | NX),
        ("fmul.d", RDN, 0xFFE0000000000000, 0x4000000000000000, 0, 0xFFF0000000000000, OF | NX),
        ("fmul.d", RUP, 0xFFE0000000000000, 0x4000000000000000, 0, 0xFFEFFFFFFFFFFFFF, OF | NX),
        # max finite + half an ulp: RNE overflows (tie to even = 2^128), RTZ does not
        ("fadd.s", RNE, BOX | 0x7F7FFFFF, BOX | 0x73000000, 0, BOX | 0x7F800000, OF | NX),
        ("fadd.s", RTZ, BOX | 0x7F7FFFFF, BOX | 0x73000000, 0, BOX | 0x7F7FFFFF, NX),
        # fused: a*b + c with one rounding.  (1 + 2^-12)^2 - 1 = 2^-11 + 2^-24 exactly,
        # where a separate multiply would have rounded (a tie, to even) to 1 + 2^-11.
        ("fmadd.s", RNE, BOX | 0x3F800800, BOX | 0x3F800800, BOX | 0xBF800000, BOX | 0x3A000400, 0),
        ("fmsub.s", RNE, BOX | 0x3F800800, BOX | 0x3F800800, ONE_S, BOX | 0x3A000400, 0),
        ("fnmadd.s", RNE, BOX | 0x3F800800, BOX | 0x3F800800, BOX | 0xBF800000, BOX | 0xBA000400, 0),
        ("fnmsub.s", RNE, BOX | 0x3F800800, BOX | 0x3F800800, ONE_S, BOX | 0xBA000400, 0),
        ("fmul.s", RNE, BOX | 0x3F800800, BOX | 0x3F800800, 0, BOX | 0x3F801000, NX),
        # fnmadd: -(0 * 1) - 0 = -0; fmadd: 0 * -1 + 0 = +0 (RNE), -0 (RDN)
        ("fnmadd.d", RNE, 0, ONE_D, 0, 1 << 63, 0),
        ("fmadd.d", RNE, 0, 0xBFF0000000000000, 0, 0, 0),
        ("fmadd.d", RDN, 0, 0xBFF0000000000000, 0, 1 << 63, 0),
        # integer conversions round by mode too: 2.5 and -2.5
        ("fcvt.w.d", RNE, 0x4004000000000000, 0, 0, 2, NX),
        ("fcvt.w.d", RMM, 0x4004000000000000, 0, 0, 3, NX),
        ("fcvt.w.d", RUP, 0x4004000000000000, 0, 0, 3, NX),
        ("fcvt.w.d", RDN, 0x4004000000000000, 0, 0, 2, NX),
        ("fcvt.w.d", RTZ, 0x4004000000000000, 0, 0, 2, NX),
        ("fcvt.w.d", RNE, 0xC004000000000000, 0, 0, M64 - 1, NX),          # -2
        ("fcvt.w.d", RMM, 0xC004000000000000, 0, 0, M64 - 2, NX),          # -3
        ("fcvt.w.d", RDN, 0xC004000000000000, 0, 0, M64 - 2, NX),
        ("fcvt.w.d", RUP, 0xC004000000000000, 0, 0, M64 - 1, NX),
        ("fcvt.l.s", RNE, BOX | 0x3F400000, 0, 0, 1, NX),                  # 0.75
        ("fcvt.l.s", RTZ, BOX | 0x3F400000, 0, 0, 0, NX),
        # 2^24 + 1 does not fit a single: RNE → 2^24 (tie to even), RUP → 2^24 + 2
        ("fcvt.s.w", RNE, 2**24 + 1, 0, 0, BOX | 0x4B800000, NX),
        ("fcvt.s.w", RUP, 2**24 + 1, 0, 0, BOX | 0x4B800001, NX),
        ("fcvt.s.w", RMM, 2**24 + 1, 0, 0, BOX | 0x4B800001, NX),
        ("fcvt.s.w", RDN, -(2**24 + 1) & M64, 0, 0, BOX | 0xCB800001, NX),
        ("fcvt.d.lu", RNE, M64, 0, 0, 0x43F0000000000000, NX),             # 2^64 - 1 → 2^64
        ("fcvt.d.lu", RTZ, M64, 0, 0, 0x43EFFFFFFFFFFFFF, NX),
        ("fcvt.d.w", RUP, 0x7FFFFFFF, 0, 0, 0x41DFFFFFFFC00000, 0),        # exact
        # double → single: 1 + 2^-24 + 2^-30 rounds up even in RNE
        ("fcvt.s.d", RNE, 0x3FF0000010000000, 0, 0, BOX | 0x3F800000, NX),
        ("fcvt.s.d", RNE, 0x3FF0000010000001, 0, 0, BOX | 0x3F800001, NX),
        ("fcvt.s.d", RDN, 0x3FF0000010000001, 0, 0, BOX | 0x3F800000, NX),
    ]
    batch(cases)


def test_static_rounding_mode_overrides_frm():
    """rm in the encoding wins over frm (the harness sets frm to another mode)."""
    op = STATIC_INDEX[("fadd.s", RUP)]
    frm = RDN
    (fres, _, flags), = run_vectors([(op, frm, ONE_S, BOX | 0x33800000, 0)])
    assert (fres, flags) == (BOX | 0x3F800001, NX)
    op = STATIC_INDEX[("fcvt.w.d", RTZ)]
    (_, xres, flags), = run_vectors([(op, RUP, 0xC004000000000000, 0, 0)])
    assert (xres, flags) == (M64 - 1, NX)


def test_underflow_is_detected_after_rounding():
    """UF = tiny after rounding (as if the exponent range were unbounded) and
    inexact.  A result can be the smallest normal number and still underflow,
    or round up to it from below without underflowing."""
    MIN_S, MIN_D = 0x00800000, 0x0010000000000000
    cases = [
        # (1 - 2^-24) * 2^-126: 24 bits, exact with an unbounded exponent → tiny;
        # as a subnormal it is a tie and rounds (to even) up to 2^-126: UF and NX
        # although the result is normal.
        ("fmul.s", RNE, BOX | 0x3F7FFFFF, BOX | MIN_S, 0, BOX | MIN_S, UF | NX),
        ("fmul.s", RTZ, BOX | 0x3F7FFFFF, BOX | MIN_S, 0, BOX | 0x007FFFFF, UF | NX),
        ("fmul.s", RUP, BOX | 0x3F7FFFFF, BOX | MIN_S, 0, BOX | MIN_S, UF | NX),
        ("fmul.d", RNE, 0x3FEFFFFFFFFFFFFF, MIN_D, 0, MIN_D, UF | NX),
        ("fmul.d", RDN, 0x3FEFFFFFFFFFFFFF, MIN_D, 0, 0x000FFFFFFFFFFFFF, UF | NX),
        # 2^-1022 - 2^-1077 (one bit more than fits): rounding to 53 bits with an
        # unbounded exponent gives 2^-1022 (not tiny) in RNE/RUP/RMM; RTZ/RDN
        # stay below (tiny).
        ("fmadd.d", RNE, 0x8170000000000000, 0x3B20000000000000, MIN_D, MIN_D, NX),
        ("fmadd.d", RUP, 0x8170000000000000, 0x3B20000000000000, MIN_D, MIN_D, NX),
        ("fmadd.d", RMM, 0x8170000000000000, 0x3B20000000000000, MIN_D, MIN_D, NX),
        ("fmadd.d", RTZ, 0x8170000000000000, 0x3B20000000000000, MIN_D, 0x000FFFFFFFFFFFFF, UF | NX),
        ("fmadd.d", RDN, 0x8170000000000000, 0x3B20000000000000, MIN_D, 0x000FFFFFFFFFFFFF, UF | NX),
        # single: (1 - 2^-25) * 2^-126 from a double
        ("fcvt.s.d", RNE, 0x380FFFFFF0000000, 0, 0, BOX | MIN_S, NX),
        ("fcvt.s.d", RTZ, 0x380FFFFFF0000000, 0, 0, BOX | 0x007FFFFF, UF | NX),
        # just above (1 - 2^-24) * 2^-126: rounding up with an unbounded exponent
        # reaches 2^-126 (not tiny); a bit further below it stays under (tiny),
        # while the subnormal result is 2^-126 both times
        ("fcvt.s.d", RUP, 0x380FFFFFE0000001, 0, 0, BOX | MIN_S, NX),
        ("fcvt.s.d", RUP, 0x380FFFFFC0000001, 0, 0, BOX | MIN_S, UF | NX),
        # exact subnormal results are tiny but exact: no UF
        ("fmul.s", RNE, BOX | 0x00000003, BOX | 0x3F000000, 0, BOX | 0x00000002, UF | NX),  # 1.5 ulp: inexact
        ("fmul.s", RNE, BOX | 0x00000004, BOX | 0x3F000000, 0, BOX | 0x00000002, 0),
        ("fsub.d", RNE, 0x0010000000000001, MIN_D, 0, 1, 0),
        ("fcvt.s.d", RNE, 0x36A0000000000000, 0, 0, BOX | 0x00000001, 0),       # 2^-149 exactly
        # underflow to zero
        ("fmul.s", RNE, BOX | 0x00000001, BOX | 0x3E800000, 0, BOX | 0x00000000, UF | NX),
        ("fmul.s", RUP, BOX | 0x00000001, BOX | 0x3E800000, 0, BOX | 0x00000001, UF | NX),
        ("fmul.s", RDN, BOX | 0x80000001, BOX | 0x3E800000, 0, BOX | 0x80000001, UF | NX),
        ("fmul.s", RTZ, BOX | 0x80000001, BOX | 0x3E800000, 0, BOX | 0x80000000, UF | NX),
        # division by zero and invalid operations
        ("fdiv.s", RNE, ONE_S, BOX | 0x80000000, 0, BOX | 0xFF800000, DZ),
        ("fdiv.d", RNE, 0, 0, 0, D.qnan, NV),
        ("fsqrt.s", RNE, BOX | 0xBF800000, 0, 0, BOX | S.qnan, NV),
        ("fsqrt.d", RNE, 1 << 63, 0, 0, 1 << 63, 0),                           # sqrt(-0) = -0
        ("fmul.d", RNE, 0x7FF0000000000000, 0, 0, D.qnan, NV),
        ("fadd.s", RNE, BOX | 0x7F800000, BOX | 0xFF800000, 0, BOX | S.qnan, NV),
        # inf * 0 + qNaN is invalid too
        ("fmadd.d", RNE, 0x7FF0000000000000, 0, D.qnan, D.qnan, NV),
        ("fmadd.d", RNE, ONE_D, 0, D.qnan, D.qnan, 0),
    ]
    batch(cases)


def test_canonical_nans_and_bit_exact_moves():
    PAYLOAD_Q_D = 0x7FF8_0000_DEAD_BEEF
    SNAN_D = 0x7FF0_0000_0000_0001
    PAYLOAD_Q_S = BOX | 0xFFC0BEEF
    SNAN_S = BOX | 0x7F800001
    cases = [
        ("fadd.d", RNE, PAYLOAD_Q_D, ONE_D, 0, D.qnan, 0),
        ("fadd.d", RNE, SNAN_D, ONE_D, 0, D.qnan, NV),
        ("fmul.s", RNE, PAYLOAD_Q_S, ONE_S, 0, BOX | S.qnan, 0),
        ("fdiv.s", RNE, ONE_S, SNAN_S, 0, BOX | S.qnan, NV),
        ("fsqrt.d", RNE, PAYLOAD_Q_D | (1 << 63), 0, 0, D.qnan, 0),
        ("fmadd.s", RNE, ONE_S, ONE_S, SNAN_S, BOX | S.qnan, NV),
        ("fcvt.s.d", RNE, PAYLOAD_Q_D, 0, 0, BOX | S.qnan, 0),
        ("fcvt.s.d", RNE, SNAN_D, 0, 0, BOX | S.qnan, NV),
        ("fcvt.d.s", RNE, PAYLOAD_Q_S, 0, 0, D.qnan, 0),
        ("fcvt.d.s", RNE, SNAN_S, 0, 0, D.qnan, NV),
        # min/max: one NaN gives the other operand, two give the canonical NaN,
        # a signaling one raises NV either way; -0 < +0
        ("fmin.d", RNE, PAYLOAD_Q_D, ONE_D, 0, ONE_D, 0),
        ("fmax.d", RNE, ONE_D, SNAN_D, 0, ONE_D, NV),
        ("fmin.s", RNE, PAYLOAD_Q_S, SNAN_S, 0, BOX | S.qnan, NV),
        ("fmax.s", RNE, PAYLOAD_Q_S, PAYLOAD_Q_S, 0, BOX | S.qnan, 0),
        ("fmin.s", RNE, BOX | 0x00000000, BOX | 0x80000000, 0, BOX | 0x80000000, 0),
        ("fmax.s", RNE, BOX | 0x80000000, BOX | 0x00000000, 0, BOX | 0x00000000, 0),
        ("fmin.d", RNE, 1 << 63, 0, 0, 1 << 63, 0),
        # sign injection and moves keep NaN payloads
        ("fsgnj.d", RNE, PAYLOAD_Q_D, 1 << 63, 0, PAYLOAD_Q_D | (1 << 63), 0),
        ("fsgnjn.s", RNE, SNAN_S, ONE_S, 0, BOX | 0xFF800001, 0),
        ("fsgnjx.s", RNE, PAYLOAD_Q_S, BOX | 0x80000000, 0, BOX | 0x7FC0BEEF, 0),
        ("fmv.x.d", RNE, SNAN_D, 0, 0, SNAN_D, 0),
        ("fmv.d.x", RNE, SNAN_D, 0, 0, SNAN_D, 0),
        ("fmv.x.w", RNE, PAYLOAD_Q_S, 0, 0, 0xFFFF_FFFF_FFC0BEEF, 0),
        ("fmv.w.x", RNE, 0x1234_5678_7F800001, 0, 0, BOX | 0x7F800001, 0),
        # comparisons: feq is quiet (NV only for sNaN), flt/fle signal on any NaN
        ("feq.d", RNE, PAYLOAD_Q_D, ONE_D, 0, 0, 0),
        ("feq.d", RNE, SNAN_D, ONE_D, 0, 0, NV),
        ("flt.s", RNE, PAYLOAD_Q_S, ONE_S, 0, 0, NV),
        ("fle.s", RNE, ONE_S, PAYLOAD_Q_S, 0, 0, NV),
        ("feq.s", RNE, BOX | 0x80000000, BOX | 0x00000000, 0, 1, 0),
        ("flt.s", RNE, BOX | 0x80000000, BOX | 0x00000000, 0, 0, 0),
        ("fle.d", RNE, 1 << 63, 0, 0, 1, 0),
        ("fclass.d", RNE, SNAN_D, 0, 0, 1 << 8, 0),
        ("fclass.d", RNE, PAYLOAD_Q_D, 0, 0, 1 << 9, 0),
        ("fclass.s", RNE, BOX | 0x80000001, 0, 0, 1 << 2, 0),
        ("fclass.s", RNE, BOX | 0xFF800000, 0, 0, 1 << 0, 0),
    ]
    batch(cases)


def test_nan_boxing():
    """A single read from a register whose upper half is not all ones is the
    canonical NaN (quiet: no NV); single results are written NaN-boxed; moves
    and stores of singles use the low 32 bits as they are."""
    UNBOXED_ONE = 0x0000_0000_3F80_0000
    HALF_BOXED = 0xFFFF_FFFE_3F80_0000
    cases = [
        ("fadd.s", RNE, UNBOXED_ONE, ONE_S, 0, BOX | S.qnan, 0),
        ("fadd.s", RNE, ONE_S, HALF_BOXED, 0, BOX | S.qnan, 0),
        ("fmin.s", RNE, UNBOXED_ONE, ONE_S, 0, ONE_S, 0),              # treated as a (quiet) NaN
        ("feq.s", RNE, UNBOXED_ONE, UNBOXED_ONE, 0, 0, 0),
        ("flt.s", RNE, UNBOXED_ONE, ONE_S, 0, 0, NV),
        ("fclass.s", RNE, UNBOXED_ONE, 0, 0, 1 << 9, 0),
        ("fsgnj.s", RNE, UNBOXED_ONE, BOX | 0x80000000, 0, BOX | 0xFFC00000, 0),
        ("fsgnj.s", RNE, ONE_S, UNBOXED_ONE, 0, BOX | 0x3F800000, 0),   # sign of the canonical NaN: +
        ("fcvt.d.s", RNE, UNBOXED_ONE, 0, 0, D.qnan, 0),
        ("fcvt.w.s", RNE, UNBOXED_ONE, 0, 0, 0x7FFFFFFF, NV),
        ("fmadd.s", RNE, ONE_S, ONE_S, UNBOXED_ONE, BOX | S.qnan, 0),
        # doubles are never unboxed (a boxed single is just a NaN pattern to D ops)
        ("fsgnj.d", RNE, ONE_S, ONE_S, 0, ONE_S, 0),
        ("fadd.d", RNE, ONE_S, 0, 0, D.qnan, 0),
        # transfers out ignore the upper half
        ("fmv.x.w", RNE, UNBOXED_ONE, 0, 0, 0x3F800000, 0),
        ("fmv.x.w", RNE, 0x0000_0000_BF80_0000, 0, 0, 0xFFFF_FFFF_BF80_0000, 0),
        # results are boxed
        ("fcvt.s.w", RNE, 3, 0, 0, BOX | 0x40400000, 0),
        ("fcvt.s.d", RNE, ONE_D, 0, 0, BOX | 0x3F800000, 0),
        ("fmv.w.x", RNE, 0xFFFF_FFFF_0000_0000, 0, 0, BOX | 0, 0),
    ]
    batch(cases)


def test_nan_boxing_loads_and_stores():
    g = rvasm.boot("""
main:
        li t0, 1 << 13
        csrs mstatus, t0
        la s0, buf
        flw ft0, 0(s0)                  // boxed on load
        fsd ft0, 8(s0)
        fld ft1, 16(s0)                 // an unboxed 64-bit pattern
        fsw ft1, 24(s0)                 // stores its low 32 bits unchanged
        fadd.s ft2, ft1, ft0            // reads it as the canonical NaN
        fsd ft2, 32(s0)
        c.fld fa0, 16(s0)               // compressed forms
        c.fsd fa0, 40(s0)
        addi sp, sp, -16
        c.fsdsp fa0, 8(sp)
        c.fldsp fa1, 8(sp)
        fsd fa1, 48(s0)
        frflags a0
        EXIT 0
        .data
        .balign 8
buf:    .word 0x40490fdb, 0x55555555      // pi as a single, then junk
        .dword 0
        .dword 0x123456783f800000
        .dword 0, 0, 0, 0
""", march=MARCH)
    assert g.run_to_exit() == 0
    assert g.u64("buf", 1) == BOX | 0x40490FDB
    assert g.u64("buf", 3) == 0x3F800000        # upper word untouched (0)
    assert g.u64("buf", 4) == BOX | S.qnan
    assert g.u64("buf", 5) == 0x123456783F800000
    assert g.u64("buf", 6) == 0x123456783F800000
    assert g.machine.reg(10) == 0               # a quiet NaN operand: no flags


def test_fcvt_saturation():
    """The spec's table: NaN and +inf/+large → the largest integer, -inf/-large
    → the smallest (0 unsigned), NV and no NX; in range after rounding is fine."""
    NAN_D, SNAN_S = 0x7FF8000000000001, BOX | 0x7F800001
    PINF_D, NINF_D = 0x7FF0000000000000, 0xFFF0000000000000
    IMIN32 = 0xFFFF_FFFF_8000_0000
    IMAX32 = 0x7FFF_FFFF
    UMAX32 = M64                    # 0xffffffff sign-extended
    cases = [
        ("fcvt.w.d", RNE, NAN_D, 0, 0, IMAX32, NV),
        ("fcvt.w.s", RNE, SNAN_S, 0, 0, IMAX32, NV),
        ("fcvt.w.d", RNE, PINF_D, 0, 0, IMAX32, NV),
        ("fcvt.w.d", RNE, NINF_D, 0, 0, IMIN32, NV),
        ("fcvt.wu.d", RNE, NAN_D, 0, 0, UMAX32, NV),
        ("fcvt.wu.d", RNE, NINF_D, 0, 0, 0, NV),
        ("fcvt.l.d", RNE, NAN_D, 0, 0, 2**63 - 1, NV),
        ("fcvt.l.d", RNE, NINF_D, 0, 0, 1 << 63, NV),
        ("fcvt.lu.s", RNE, SNAN_S, 0, 0, M64, NV),
        ("fcvt.lu.d", RNE, NINF_D, 0, 0, 0, NV),
        # boundaries of w: 2^31 - 1 and -2^31 fit, 2^31 and -2^31 - 1 do not
        ("fcvt.w.d", RNE, 0x41DFFFFFFFC00000, 0, 0, IMAX32, 0),            # 2147483647.0
        ("fcvt.w.d", RNE, 0x41E0000000000000, 0, 0, IMAX32, NV),           # 2147483648.0
        ("fcvt.w.d", RNE, 0xC1E0000000000000, 0, 0, IMIN32, 0),            # -2147483648.0
        ("fcvt.w.d", RNE, 0xC1E0000000200000, 0, 0, IMIN32, NV),           # -2147483649.0
        # rounding decides: 2147483647.5 rounds out of range in RNE, not in RTZ
        ("fcvt.w.d", RNE, 0x41DFFFFFFFE00000, 0, 0, IMAX32, NV),
        ("fcvt.w.d", RTZ, 0x41DFFFFFFFE00000, 0, 0, IMAX32, NX),
        ("fcvt.w.d", RDN, 0xC1E0000000100000, 0, 0, IMIN32, NV),           # -2147483648.5
        ("fcvt.w.d", RUP, 0xC1E0000000100000, 0, 0, IMIN32, NX),
        # unsigned: negative values that round to 0 are inexact, not invalid
        ("fcvt.wu.d", RTZ, 0xBFE0000000000000, 0, 0, 0, NX),               # -0.5
        ("fcvt.wu.d", RUP, 0xBFE0000000000000, 0, 0, 0, NX),
        ("fcvt.wu.d", RNE, 0xBFE0000000000000, 0, 0, 0, NX),               # tie to even 0
        ("fcvt.wu.d", RMM, 0xBFE0000000000000, 0, 0, 0, NV),               # rounds to -1
        ("fcvt.wu.d", RDN, 0xBFE0000000000000, 0, 0, 0, NV),
        ("fcvt.lu.d", RNE, 0xBFF0000000000000, 0, 0, 0, NV),               # -1.0
        ("fcvt.wu.s", RNE, BOX | 0x80000000, 0, 0, 0, 0),                  # -0.0
        ("fcvt.wu.d", RNE, 0x41EFFFFFFFE00000, 0, 0, UMAX32, 0),           # 4294967295.0
        ("fcvt.wu.d", RNE, 0x41F0000000000000, 0, 0, UMAX32, NV),          # 4294967296.0
        ("fcvt.wu.d", RNE, 0x41DFFFFFFFC00000, 0, 0, IMAX32, 0),
        ("fcvt.wu.d", RNE, 0x41E0000000000000, 0, 0, IMIN32, 0),           # 2^31: sign-extended
        # l / lu around 2^63 and 2^64
        ("fcvt.l.d", RNE, 0x43E0000000000000, 0, 0, 2**63 - 1, NV),        # 2^63
        ("fcvt.l.d", RNE, 0xC3E0000000000000, 0, 0, 1 << 63, 0),           # -2^63
        ("fcvt.l.s", RNE, BOX | 0x5EFFFFFF, 0, 0, 0x7FFFFF8000000000, 0),  # largest single < 2^63
        ("fcvt.lu.d", RNE, 0x43EFFFFFFFFFFFFF, 0, 0, 0xFFFFFFFFFFFFF800, 0),
        ("fcvt.lu.d", RNE, 0x43F0000000000000, 0, 0, M64, NV),             # 2^64
        ("fcvt.lu.s", RNE, BOX | 0x5F800000, 0, 0, M64, NV),
        # tiny values
        ("fcvt.l.d", RUP, 0x0000000000000001, 0, 0, 1, NX),
        ("fcvt.l.d", RDN, 0x8000000000000001, 0, 0, M64, NX),
        ("fcvt.l.d", RNE, 0x8000000000000001, 0, 0, 0, NX),
    ]
    batch(cases)


# ---- CSRs, mstatus.FS and illegal instructions ---------------------------------------

FP_ON = """
        li t0, 1 << 13
        csrs mstatus, t0                // FS = Initial
"""


def test_misa_has_f_and_d_and_fs_is_writable():
    g = rvasm.boot("""
main:
        csrr a0, misa
        csrr a1, mstatus                // reset: FS = Off
        li t0, 1 << 13
        csrs mstatus, t0
        csrr a2, mstatus                // Initial
        li t0, 3 << 13
        csrs mstatus, t0
        csrr a3, mstatus                // Dirty: SD
        csrr a4, sstatus
        li t0, 1 << 14
        csrc sstatus, t0                // S view writes FS too: Dirty → Initial
        csrr a5, mstatus
        li t0, 3 << 13
        csrc mstatus, t0
        csrr a6, sstatus                // Off again
        EXIT 0
""", march=MARCH)
    assert g.run_to_exit() == 0
    r = g.machine.reg
    for ext in "IMAFDCSU":
        assert r(10) & (1 << (ord(ext) - ord("A"))), ext
    assert r(11) & MSTATUS_FS == 0
    assert r(12) & (MSTATUS_FS | MSTATUS_SD) == 1 << 13
    assert r(13) & (MSTATUS_FS | MSTATUS_SD) == MSTATUS_FS | MSTATUS_SD
    assert r(14) & (MSTATUS_FS | MSTATUS_SD) == MSTATUS_FS | MSTATUS_SD
    assert r(15) & (MSTATUS_FS | MSTATUS_SD) == 1 << 13
    assert r(16) & (MSTATUS_FS | MSTATUS_SD) == 0


FS_OFF_CASES = {
    "flw": "flw ft0, 0(sp)",
    "fsw": "fsw ft0, 0(sp)",
    "fld": "fld ft0, 0(sp)",
    "fsd": "fsd ft0, 0(sp)",
    "fadd.d": "fadd.d ft0, ft1, ft2",
    "fmadd.s": "fmadd.s ft0, ft1, ft2, ft3",
    "fmv.x.w": "fmv.x.w a0, ft0",
    "fmv.d.x": "fmv.d.x ft0, a0",
    "fsgnj.s": "fsgnj.s ft0, ft1, ft2",
    "feq.d": "feq.d a0, ft0, ft1",
    "fclass.s": "fclass.s a0, ft0",
    "fcvt.w.s": "fcvt.w.s a0, ft0",
    "frcsr": "frcsr a0",
    "fsflags": "fsflags a0",
    "frrm": "frrm a0",
    "csrw_fcsr": "csrw fcsr, zero",
}


@pytest.mark.parametrize("label", list(FS_OFF_CASES))
def test_fs_off_makes_fp_instructions_illegal(label):
    g = rvasm.boot(f"""
main:
        li a1, 1
bad:
        {FS_OFF_CASES[label]}
        EXIT 0
""", march=MARCH)
    assert g.run_to_exit() == rvasm.TRAP_EXIT
    bits = struct.unpack("<I", g.read("bad", 4))[0]
    if bits & 3 != 3:
        bits &= 0xFFFF
    t = g.trap
    assert (t.count, t.cause, t.epc, t.tval) == (1, 2, g.sym("bad"), bits)


@pytest.mark.parametrize("parcel, name", [(0x2008, "c.fld"), (0xA008, "c.fsd"),
                                          (0x2002, "c.fldsp"), (0xA002, "c.fsdsp")])
def test_fs_off_makes_compressed_fp_loads_stores_illegal(parcel, name):
    g = rvasm.boot(f"""
main:
bad:
        .half {parcel:#x}
        .half 0xffff
        EXIT 0
""", march=MARCH)
    assert g.run_to_exit() == rvasm.TRAP_EXIT
    t = g.trap
    assert (t.cause, t.epc, t.tval) == (2, g.sym("bad"), parcel)


def test_fs_off_in_user_mode_after_it_was_on():
    """FS is checked on every instruction: turning it off again traps from U too."""
    g = rvasm.boot(f"""
main:
        {FP_ON}
        fmv.d.x ft0, zero
        li t0, 3 << 13
        csrc mstatus, t0
        PMP_ALLOW_ALL
        ENTER_U user
user:
bad:
        fadd.s ft0, ft0, ft0
        EXIT 0
""", march=MARCH)
    assert g.run_to_exit() == rvasm.TRAP_EXIT
    assert (g.trap.cause, g.trap.epc) == (2, g.sym("bad"))


DIRTY_CASES = [
    # (label, instructions, becomes dirty?)
    ("fadd", "fadd.d ft0, ft1, ft2", True),
    ("flw", "flw ft0, 0(sp)", True),
    ("fld", "fld ft0, 0(sp)", True),
    ("fmv.w.x", "fmv.w.x ft0, zero", True),
    ("fcvt.d.l", "fcvt.d.l ft0, zero", True),
    ("csrw_fflags", "csrw fflags, zero", True),
    ("csrw_frm", "fsrm zero", True),
    ("csrs_fcsr_zero_mask", "csrs fcsr, zero", False),        # csrs with x0 does not write
    ("fsd", "fsd ft0, 0(sp)", False),
    ("fsw", "fsw ft0, 0(sp)", False),
    ("fmv.x.d", "fmv.x.d a0, ft0", False),
    ("feq_no_flags", "feq.d a0, ft0, ft0", False),
    ("fclass", "fclass.d a0, ft0", False),
    ("frcsr", "frcsr a0", False),
    ("fcvt.w.d_exact", "fcvt.w.d a0, ft0", False),            # ft0 = 0.0: no flags
    ("flt_nan_sets_nv", "flt.d a0, ft3, ft0", True),         # ft3 = NaN: NV accrues
    ("fcvt.w.d_inexact", "fcvt.w.d a0, ft4", True),          # ft4 = 0.5: NX accrues
]


@pytest.mark.parametrize("start", [1, 2])
@pytest.mark.parametrize("label, insn, dirty", DIRTY_CASES)
def test_fs_becomes_dirty_exactly_when_fp_state_changes(label, insn, dirty, start):
    g = rvasm.boot(f"""
main:
        {FP_ON}
        addi sp, sp, -16
        sd zero, 0(sp)
        fmv.d.x ft0, zero
        li t0, -1
        fmv.d.x ft3, t0                 // a NaN
        li t0, 0x3fe0000000000000
        fmv.d.x ft4, t0                 // 0.5
        csrw fcsr, zero
        li t0, 3 << 13
        csrc mstatus, t0
        li t0, {start} << 13
        csrs mstatus, t0                // FS = Initial or Clean
        csrr s0, mstatus
        {insn}
        csrr s1, mstatus
        csrr s2, sstatus
        EXIT 0
""", march=MARCH)
    assert g.run_to_exit() == 0
    r = g.machine.reg
    assert r(8) & (MSTATUS_FS | MSTATUS_SD) == start << 13
    want = MSTATUS_FS | MSTATUS_SD if dirty else start << 13
    assert r(9) & (MSTATUS_FS | MSTATUS_SD) == want
    assert r(18) & (MSTATUS_FS | MSTATUS_SD) == want


def test_fcsr_fields_and_masks():
    g = rvasm.boot(f"""
main:
        {FP_ON}
        li t0, -1
        csrw fcsr, t0
        csrr a0, fcsr                   // 0xff
        csrr a1, fflags                 // 0x1f
        csrr a2, frm                    // 7 (reserved values are stored)
        csrw fflags, zero
        csrr a3, fcsr                   // 0xe0
        li t0, 0x1234
        csrw frm, t0                    // 0x1234 & 7 = 4
        csrr a4, fcsr                   // 0x80
        fsflagsi 0x15
        csrr a5, fcsr                   // 0x95
        fsrmi 1
        csrr a6, fcsr                   // 0x35
        csrrwi a7, fflags, 0            // old 0x15
        EXIT 0
""", march=MARCH)
    assert g.run_to_exit() == 0
    r = g.machine.reg
    assert [r(i) for i in range(10, 18)] == [0xFF, 0x1F, 7, 0xE0, 0x80, 0x95, 0x35, 0x15]


def test_flags_accrue():
    g = rvasm.boot(f"""
main:
        {FP_ON}
        li t0, 1
        fcvt.s.w ft0, t0
        li t0, 3
        fcvt.s.w ft1, t0
        fdiv.s ft2, ft0, ft1            // NX
        frflags a0
        fmv.w.x ft3, zero
        fdiv.s ft2, ft0, ft3            // DZ, NX stays
        frflags a1
        fsqrt.s ft2, ft0                // exact: nothing new
        frflags a2
        EXIT 0
""", march=MARCH)
    assert g.run_to_exit() == 0
    r = g.machine.reg
    assert (r(10), r(11), r(12)) == (NX, NX | DZ, NX | DZ)


@pytest.mark.parametrize("frm", [5, 6, 7])
def test_dynamic_rounding_with_reserved_frm_is_illegal(frm):
    g = rvasm.boot(f"""
main:
        {FP_ON}
        li t0, {frm}
        fsrm t0
        fsgnj.d ft0, ft1, ft2           // no rounding: fine
        fmin.s ft0, ft1, ft2
        feq.d a0, ft0, ft1
        fclass.s a0, ft0
        fmv.x.w a0, ft0
        fadd.d ft0, ft1, ft2, rne       // static mode: fine
        li a1, 1
bad:
        fadd.d ft0, ft1, ft2            // dynamic: illegal
        EXIT 0
""", march=MARCH)
    assert g.run_to_exit() == rvasm.TRAP_EXIT
    bits = struct.unpack("<I", g.read("bad", 4))[0]
    t = g.trap
    assert (t.count, t.cause, t.epc, t.tval) == (1, 2, g.sym("bad"), bits)
    assert g.machine.reg(11) == 1


@pytest.mark.parametrize("word, what", [
    (0x02005053, "fadd.d rm=5"),
    (0x02006053, "fadd.d rm=6"),
    (0x5800D053, "fsqrt.s rm=5"),
    (0xC000E053, "fcvt.w.s rm=6"),
    (0x0000D043, "fmadd.s rm=5"),
    (0x4200D053, "fcvt.d.s rm=5"),
    (0x04000053, "fadd.h (fmt=H, no Zfh)"),
    (0x06000053, "fadd.q (fmt=Q, no Q)"),
    (0x20003053, "fsgnj.s funct3=3"),
    (0xE0002053, "fmv.x.w funct3=2"),
    (0xC0400053, "fcvt with rs2=4"),
])
def test_reserved_fp_encodings_are_illegal(word, what):
    g = rvasm.boot(f"""
main:
        {FP_ON}
bad:
        .word {word:#x}
        EXIT 0
""", march=MARCH)
    assert g.run_to_exit() == rvasm.TRAP_EXIT, what
    t = g.trap
    assert (t.cause, t.epc, t.tval) == (2, g.sym("bad"), word), what


def test_fp_state_survives_save_and_load():
    """f registers, fcsr and FS are part of the saved hart state."""
    source = f"""
main:
        {FP_ON}
        li t0, 0x400921fb54442d18
        fmv.d.x fs0, t0
        fsrmi 3
        fsflagsi 5
stop_here:
        fmv.x.d a0, fs0
        frcsr a1
        csrr a2, mstatus
        EXIT 0
"""
    g = rvasm.boot(source, march=MARCH)
    g.machine.add_breakpoint(g.sym("stop_here"))
    g.run()
    assert g.machine.pc == g.sym("stop_here")
    other = rvasm.boot(source, march=MARCH)
    other.machine.load_state(g.machine.save_state())
    assert other.run_to_exit() == 0
    r = other.machine.reg
    assert (r(10), r(11), r(12) & (MSTATUS_FS | MSTATUS_SD)) == (
        0x400921FB54442D18, 0x65, MSTATUS_FS | MSTATUS_SD)

#!/usr/bin/env python3
"""Reference model of bench.c in Python: recomputes the checksum that
`bench N` must print, independently of any RISC-V implementation.
    python3 test/bench_ref.py N"""
import sys

M64 = (1 << 64) - 1
M32 = (1 << 32) - 1
BUF_BYTES, CRC_PASSES, SIEVE_N, SORT_N, MAT_N, MULDIV_ITERS = 4096, 46, 131072, 16384, 48, 65000


def crc_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = 0xEDB88320 ^ (c >> 1) if c & 1 else c >> 1
        t.append(c)
    return t


TABLE = crc_table()


class Rng:
    def __init__(self, seed):
        self.x = seed

    def next(self):
        x = self.x
        x ^= (x << 13) & M64
        x ^= x >> 7
        x ^= (x << 17) & M64
        self.x = x
        return x


def mix(h, v):
    h ^= v
    h = (h * 0x100000001B3) & M64
    h ^= h >> 29
    return h


def crc32(buf, crc):
    crc = ~crc & M32
    for b in buf:
        crc = TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return ~crc & M32


def k_crc(r):
    buf = bytearray()
    for _ in range(BUF_BYTES // 8):
        buf += r.next().to_bytes(8, "little")
    crc = 0
    for p in range(CRC_PASSES):
        crc = crc32(buf, crc)
        buf[p * 13 % BUF_BYTES] ^= crc & 0xFF
    return crc


def k_sieve(limit):
    comp = bytearray(limit)
    count = total = 0
    for i in range(2, limit):
        if comp[i]:
            continue
        count += 1
        total += i
        if i * i < limit:
            comp[i * i::i] = b"\1" * len(range(i * i, limit, i))
    return ((count << 32) ^ total) & M64


def k_sort(r):
    arr = sorted(r.next() & M32 for _ in range(SORT_N))
    h = 0
    for i in range(0, SORT_N, 64):
        h = mix(h, arr[i])
    return h


def s32(v):
    v &= M32
    return v - (1 << 32) if v & 0x80000000 else v


def k_matmul(r):
    a = [[0] * MAT_N for _ in range(MAT_N)]
    b = [[0] * MAT_N for _ in range(MAT_N)]
    for i in range(MAT_N):
        for j in range(MAT_N):
            x = r.next()
            a[i][j] = (x & 0xFFFF) - 0x8000
            b[i][j] = ((x >> 16) & 0xFFFF) - 0x8000
    h = 0
    for i in range(MAT_N):
        row = [s32(sum(a[i][k] * b[k][j] for k in range(MAT_N))) for j in range(MAT_N)]
        if True:
            diag = row[i] & M32
            anti = row[MAT_N - 1 - i] & M32
            h = mix(h, diag ^ (anti << 32))
    return h


def cdiv(a, b):      # C division: truncate toward zero
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def k_muldiv(r):
    x = r.next() | 1
    acc = 0
    w = s32((x >> 33) | 1)
    acc32 = 0
    for _ in range(MULDIV_ITERS):
        x = (x * 6364136223846793005 + 1442695040888963407) & M64
        d = (x >> 40) | 1
        acc = (acc + x // d) & M64
        acc ^= x % 1000003
        acc = (acc * 31 + ((x * acc) >> 64)) & M64
        v = s32(x >> 17)
        dv = (w & 0x7FFF) + 1
        acc32 = s32(acc32 ^ (cdiv(v, dv) + (v - cdiv(v, dv) * dv)))
        w = s32(w * 1103515245 + 12345)
    return acc ^ (((acc32 & M32) << 13) & M64)


def unit(u):
    r = Rng(((0x9E3779B97F4A7C15 * (u + 1)) & M64) | 1)
    h = 0xCBF29CE484222325
    h = mix(h, k_crc(r))
    h = mix(h, k_sieve(SIEVE_N - u % 1024))
    h = mix(h, k_sort(r))
    h = mix(h, k_matmul(r))
    h = mix(h, k_muldiv(r))
    return h


def checksum(n):
    s = 0
    for u in range(n):
        s = mix(s, unit(u))
    return "0x%016x" % s


if __name__ == "__main__":
    print(checksum(int(sys.argv[1]) if len(sys.argv) > 1 else 100))

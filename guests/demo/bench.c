/* bench.c: deterministic integer CPU benchmark.
 *
 * One "unit" runs six kernels on data generated from the unit number:
 * table-driven CRC32 over a 4 KiB buffer, a sieve of Eratosthenes, a
 * quicksort (insertion sort below 16 elements), a 48x48 integer matrix
 * multiply, a 64-bit multiply/divide/remainder chain and a 32-bit
 * signed-division chain.  Every result is folded into a 64-bit checksum.
 * Nothing depends on time or on the machine's speed, so the checksum is the
 * same on any correct RV64IMAC.  A unit is about 10 million instructions;
 * the default of 100 units is about 1e9 (see README.md for measurements). */
#include "demo.h"

#define BUF_BYTES   4096
#define CRC_PASSES  46
#define SIEVE_N     131072
#define SORT_N      16384
#define MAT_N       48
#define MULDIV_ITERS 65000

static uint32_t crc_table[256];
static uint8_t buf[BUF_BYTES] __attribute__((aligned(8)));
static uint8_t composite[SIEVE_N];
static uint32_t arr[SORT_N];
static int32_t ma[MAT_N][MAT_N], mb[MAT_N][MAT_N], mc[MAT_N][MAT_N];

static uint64_t rng;

static uint64_t xorshift64(void)
{
    uint64_t x = rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rng = x;
    return x;
}

static uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v;
    h *= 0x100000001b3ULL;
    h ^= h >> 29;
    return h;
}

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

static uint32_t crc32(const uint8_t *p, size_t n, uint32_t crc)
{
    crc = ~crc;
    while (n--)
        crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

static uint64_t k_crc(void)
{
    uint64_t *q = (uint64_t *)buf;
    for (unsigned i = 0; i < BUF_BYTES / 8; i++)
        q[i] = xorshift64();
    uint32_t crc = 0;
    for (unsigned pass = 0; pass < CRC_PASSES; pass++) {
        crc = crc32(buf, BUF_BYTES, crc);
        buf[pass * 13 % BUF_BYTES] ^= (uint8_t)crc;
    }
    return crc;
}

static uint64_t k_sieve(uint32_t limit)
{
    memset(composite, 0, sizeof(composite));
    uint64_t count = 0, sum = 0;
    for (uint32_t i = 2; i < limit; i++) {
        if (composite[i])
            continue;
        count++;
        sum += i;
        if ((uint64_t)i * i >= limit)
            continue;
        for (uint32_t j = i * i; j < limit; j += i)
            composite[j] = 1;
    }
    return count << 32 ^ sum;
}

static void insertion_sort(uint32_t *a, int lo, int hi)
{
    for (int i = lo + 1; i <= hi; i++) {
        uint32_t v = a[i];
        int j = i - 1;
        while (j >= lo && a[j] > v) {
            a[j + 1] = a[j];
            j--;
        }
        a[j + 1] = v;
    }
}

static void quick_sort(uint32_t *a, int lo, int hi)
{
    while (hi - lo >= 16) {
        uint32_t x = a[lo], y = a[(lo + hi) / 2], z = a[hi];
        uint32_t pivot = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
        int i = lo, j = hi;
        while (i <= j) {
            while (a[i] < pivot)
                i++;
            while (a[j] > pivot)
                j--;
            if (i <= j) {
                uint32_t t = a[i];
                a[i] = a[j];
                a[j] = t;
                i++;
                j--;
            }
        }
        /* recurse on the smaller side, loop on the larger */
        if (j - lo < hi - i) {
            quick_sort(a, lo, j);
            lo = i;
        } else {
            quick_sort(a, i, hi);
            hi = j;
        }
    }
    insertion_sort(a, lo, hi);
}

static uint64_t k_sort(void)
{
    for (unsigned i = 0; i < SORT_N; i++)
        arr[i] = (uint32_t)xorshift64();
    quick_sort(arr, 0, SORT_N - 1);
    uint64_t h = 0;
    for (unsigned i = 0; i < SORT_N; i++) {
        if (i && arr[i - 1] > arr[i])
            h ^= 0xbad0000000000000ULL;     /* never: a broken sort shows in the checksum */
        if ((i & 63) == 0)
            h = mix(h, arr[i]);
    }
    return h;
}

static uint64_t k_matmul(void)
{
    for (unsigned i = 0; i < MAT_N; i++)
        for (unsigned j = 0; j < MAT_N; j++) {
            uint64_t r = xorshift64();
            ma[i][j] = (int32_t)(r & 0xffff) - 0x8000;
            mb[i][j] = (int32_t)((r >> 16) & 0xffff) - 0x8000;
        }
    for (unsigned i = 0; i < MAT_N; i++)
        for (unsigned j = 0; j < MAT_N; j++) {
            int32_t s = 0;
            for (unsigned k = 0; k < MAT_N; k++)
                s = (int32_t)((uint32_t)s + (uint32_t)(ma[i][k] * mb[k][j]));
            mc[i][j] = s;
        }
    uint64_t h = 0;
    for (unsigned i = 0; i < MAT_N; i++)
        h = mix(h, (uint32_t)mc[i][i] ^ (uint64_t)(uint32_t)mc[i][MAT_N - 1 - i] << 32);
    return h;
}

static uint64_t k_muldiv(void)
{
    uint64_t x = xorshift64() | 1, acc = 0;
    int32_t w = (int32_t)(x >> 33) | 1, acc32 = 0;
    for (unsigned i = 0; i < MULDIV_ITERS; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        uint64_t d = (x >> 40) | 1;
        acc += x / d;
        acc ^= x % 1000003;
        acc = acc * 31 + (uint64_t)((__uint128_t)x * acc >> 64);   /* mulhu */
        int32_t v = (int32_t)(x >> 17);
        int32_t dv = (w & 0x7fff) + 1;
        acc32 ^= v / dv + v % dv;
        w = (int32_t)((uint32_t)w * 1103515245u + 12345u);
    }
    return acc ^ (uint64_t)(uint32_t)acc32 << 13;
}

static uint64_t bench_unit(uint64_t u)
{
    rng = 0x9e3779b97f4a7c15ULL * (u + 1) | 1;
    uint64_t h = 0xcbf29ce484222325ULL;
#ifdef BENCH_PROFILE
    uint64_t t[6];
    t[0] = rdinstret();
    h = mix(h, k_crc());
    t[1] = rdinstret();
    h = mix(h, k_sieve(SIEVE_N - (uint32_t)(u % 1024)));
    t[2] = rdinstret();
    h = mix(h, k_sort());
    t[3] = rdinstret();
    h = mix(h, k_matmul());
    t[4] = rdinstret();
    h = mix(h, k_muldiv());
    t[5] = rdinstret();
    if (u == 0)
        kprintf("profile: crc %lu sieve %lu sort %lu matmul %lu muldiv %lu\n", t[1] - t[0],
                t[2] - t[1], t[3] - t[2], t[4] - t[3], t[5] - t[4]);
#else
    h = mix(h, k_crc());
    h = mix(h, k_sieve(SIEVE_N - (uint32_t)(u % 1024)));
    h = mix(h, k_sort());
    h = mix(h, k_matmul());
    h = mix(h, k_muldiv());
#endif
    return h;
}

void bench_run(uint64_t units)
{
    crc_init();
    kprintf("bench: %lu unit%s (1 unit ~ 10M instructions)\n", (unsigned long)units,
            units == 1 ? "" : "s");
    uint64_t t0 = mtime();
    uint64_t i0 = rdinstret();
    uint64_t sum = 0;
    for (uint64_t u = 0; u < units; u++)
        sum = mix(sum, bench_unit(u));
    uint64_t i1 = rdinstret();
    uint64_t t1 = mtime();
    uint64_t instr = i1 - i0, ticks = t1 - t0;
    kprintf("checksum 0x%016lx\n", (unsigned long)sum);
    kprintf("instructions %lu\n", (unsigned long)instr);
    kprintf("elapsed ");
    print_seconds(ticks);
    kprintf(" s (%lu mtime ticks)", (unsigned long)ticks);
    if (ticks)
        kprintf(", %lu MIPS", (unsigned long)(instr * 10 / ticks));  /* ticks are 0.1 us */
    kputc('\n');
}

/* pages.c: see pages.h.  The two libraries' functions are declared here with
 * the types of their stable ABIs (libcrypto.so.3, liblz4.so.1). */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "pages.h"

#define PAGE 4096
#define SIZE_HEADER 4           /* the content size before the block (blobs.py) */
#define CODEC_RAW 0             /* the codec bytes of blobs.py */
#define CODEC_LZ4 2

/* OpenSSL's low-level SHA-256 calls: a third faster for a 4 KiB page than
 * the one-shot SHA256(), which looks the algorithm up on every call.  The
 * context (112 bytes in libcrypto.so.3) lives in a larger aligned buffer. */
typedef int (*sha256_init_fn)(void *ctx);
typedef int (*sha256_update_fn)(void *ctx, const void *data, size_t n);
typedef int (*sha256_final_fn)(unsigned char *md, void *ctx);
typedef int (*lz4_state_size_fn)(void);
typedef int (*lz4_compress_fn)(void *state, const char *src, char *dst, int n, int cap, int accel);
typedef int (*lz4_bound_fn)(int n);

static struct {
    sha256_init_fn sha_init;
    sha256_update_fn sha_update;
    sha256_final_fn sha_final;
    lz4_state_size_fn state_size;
    lz4_compress_fn compress;
    lz4_bound_fn bound;
    char why[200];
    int ok;
} lib;

static pthread_once_t loaded = PTHREAD_ONCE_INIT;
static __thread void *lz4_state;     /* one LZ4 state per thread, kept for its life */

static void *open_first(const char *const *names)
{
    for (; *names; names++) {
        void *h = dlopen(*names, RTLD_NOW | RTLD_LOCAL);
        if (h)
            return h;
    }
    return NULL;
}

static void load(void)
{
    static const char *const crypto[] = { "libcrypto.so.3", "libcrypto.so", NULL };
    static const char *const lz4[] = { "liblz4.so.1", "liblz4.so", NULL };
    void *c = open_first(crypto), *z = open_first(lz4);
    if (!c || !z) {
        snprintf(lib.why, sizeof lib.why, "%s is not installed", !c ? "libcrypto.so.3" : "liblz4.so.1");
        return;
    }
    lib.sha_init = (sha256_init_fn)dlsym(c, "SHA256_Init");
    lib.sha_update = (sha256_update_fn)dlsym(c, "SHA256_Update");
    lib.sha_final = (sha256_final_fn)dlsym(c, "SHA256_Final");
    lib.state_size = (lz4_state_size_fn)dlsym(z, "LZ4_sizeofState");
    lib.compress = (lz4_compress_fn)dlsym(z, "LZ4_compress_fast_extState");
    lib.bound = (lz4_bound_fn)dlsym(z, "LZ4_compressBound");
    if (!lib.sha_init || !lib.sha_update || !lib.sha_final || !lib.state_size || !lib.compress || !lib.bound) {
        snprintf(lib.why, sizeof lib.why, "libcrypto or liblz4 lacks a function chrono uses");
        return;
    }
    lib.ok = 1;
}

int pages_init(char *why, size_t len)
{
    pthread_once(&loaded, load);
    if (!lib.ok && why && len)
        snprintf(why, len, "%s", lib.why);
    return lib.ok ? 0 : -1;
}

void pages_hash(const uint8_t *pages, size_t n, const uint8_t *nonzero, uint8_t *keys)
{
    _Alignas(64) unsigned char ctx[512];
    for (size_t i = 0; i < n; i++) {
        if (!nonzero[i])
            continue;
        lib.sha_init(ctx);
        lib.sha_update(ctx, pages + i * PAGE, PAGE);
        lib.sha_final(keys + i * 32, ctx);
    }
}

size_t pages_bound(void)
{
    return SIZE_HEADER + (size_t)lib.bound(PAGE);
}

static int have_state(void)
{
    return lz4_state || (lz4_state = malloc((size_t)lib.state_size())) != NULL;
}

static void put_size_header(uint8_t *out)
{
    out[0] = PAGE & 0xff;               /* little-endian, whatever the host */
    out[1] = (PAGE >> 8) & 0xff;
    out[2] = out[3] = 0;
}

int pages_values(const uint8_t *pages, const uint32_t *which, size_t k,
                 uint8_t *arena, uint32_t *ends)
{
    size_t bound = pages_bound(), at = 0;
    if (!have_state())
        return -1;
    for (size_t j = 0; j < k; j++) {
        const uint8_t *page = pages + (size_t)which[j] * PAGE;
        uint8_t *out = arena + at;
        int got = lib.compress(lz4_state, (const char *)page, (char *)out + 1 + SIZE_HEADER,
                               PAGE, (int)(bound - SIZE_HEADER), 1);
        if (got <= 0)
            return -1;
        if (SIZE_HEADER + got < PAGE - PAGE / 32) {
            out[0] = CODEC_LZ4;
            put_size_header(out + 1);
            at += 1 + SIZE_HEADER + (size_t)got;
        } else {                        /* not worth inflating on the way back */
            out[0] = CODEC_RAW;
            memcpy(out + 1, page, PAGE);
            at += 1 + PAGE;
        }
        ends[j] = (uint32_t)at;
    }
    return 0;
}

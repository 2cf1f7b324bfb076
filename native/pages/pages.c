/* pages.c: see pages.h.  The two libraries' functions are declared here with
 * the types of their stable ABIs (libcrypto.so.3, libzstd.so.1). */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include "pages.h"

#define PAGE 4096

typedef unsigned char *(*sha256_fn)(const unsigned char *data, size_t n, unsigned char *md);
typedef void *(*zstd_create_fn)(void);
typedef size_t (*zstd_compress_fn)(void *cctx, void *dst, size_t cap, const void *src, size_t n,
                                   int level);
typedef size_t (*zstd_bound_fn)(size_t n);
typedef unsigned (*zstd_is_error_fn)(size_t code);

static struct {
    sha256_fn sha256;
    zstd_create_fn create_cctx;
    zstd_compress_fn compress;
    zstd_bound_fn bound;
    zstd_is_error_fn is_error;
    char why[200];
    int ok;
} lib;

static pthread_once_t loaded = PTHREAD_ONCE_INIT;
static __thread void *cctx;     /* one zstd context per thread, kept for its life */

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
    static const char *const zstd[] = { "libzstd.so.1", "libzstd.so", NULL };
    void *c = open_first(crypto), *z = open_first(zstd);
    if (!c || !z) {
        snprintf(lib.why, sizeof lib.why, "%s is not installed", !c ? "libcrypto.so.3" : "libzstd.so.1");
        return;
    }
    lib.sha256 = (sha256_fn)dlsym(c, "SHA256");
    lib.create_cctx = (zstd_create_fn)dlsym(z, "ZSTD_createCCtx");
    lib.compress = (zstd_compress_fn)dlsym(z, "ZSTD_compressCCtx");
    lib.bound = (zstd_bound_fn)dlsym(z, "ZSTD_compressBound");
    lib.is_error = (zstd_is_error_fn)dlsym(z, "ZSTD_isError");
    if (!lib.sha256 || !lib.create_cctx || !lib.compress || !lib.bound || !lib.is_error) {
        snprintf(lib.why, sizeof lib.why, "libcrypto or libzstd lacks a function chrono uses");
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
    for (size_t i = 0; i < n; i++)
        if (nonzero[i])
            lib.sha256(pages + i * PAGE, PAGE, keys + i * 32);
}

size_t pages_bound(void)
{
    return lib.bound(PAGE);
}

int pages_compress(const uint8_t *pages, const uint32_t *which, size_t k, int level,
                   uint8_t *arena, uint32_t *sizes)
{
    size_t bound = lib.bound(PAGE);
    if (!cctx && !(cctx = lib.create_cctx()))
        return -1;
    memset(sizes, 0, k * sizeof *sizes);
    for (size_t j = 0; j < k; j++) {
        size_t got = lib.compress(cctx, arena + j * bound, bound, pages + (size_t)which[j] * PAGE,
                                  PAGE, level);
        if (lib.is_error(got))
            return -1;
        sizes[j] = (uint32_t)got;
    }
    return 0;
}

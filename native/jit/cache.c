/* cache.c: the JIT's code cache.
 *
 * One shared-memory object mapped twice: writable at `rw`, executable at
 * `rx`, so no page is ever writable and executable at once (W^X) and no
 * mprotect is needed per translation.  Translations are bump-allocated;
 * when the cache is full it starts over and bumps the epoch, which every
 * block compares its translation against (jit.h), so nothing has to walk
 * the blocks.  Code, once committed, is never rewritten.
 */
#define _GNU_SOURCE
#include "cache.h"

#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>

bool jit_cache_init(struct jit_cache *c)
{
    c->rw = c->rx = NULL;
    c->size = JIT_CACHE_SIZE;
    c->used = 0;
    c->epoch = 1;               /* blocks start at epoch 0: untranslated */
    c->flushes = 0;
    int fd = memfd_create("chrono-jit", MFD_CLOEXEC);
    if (fd < 0)
        return false;
    bool ok = ftruncate(fd, (off_t)c->size) == 0;
    if (ok) {
        void *rw = mmap(NULL, c->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        void *rx = mmap(NULL, c->size, PROT_READ | PROT_EXEC, MAP_SHARED, fd, 0);
        if (rw != MAP_FAILED && rx != MAP_FAILED) {
            c->rw = rw;
            c->rx = rx;
        } else {
            if (rw != MAP_FAILED) munmap(rw, c->size);
            if (rx != MAP_FAILED) munmap(rx, c->size);
            ok = false;
        }
    }
    close(fd);                  /* the mappings keep the memory */
    return ok;
}
#else
bool jit_cache_init(struct jit_cache *c)
{
    c->rw = c->rx = NULL;
    c->size = c->used = 0;
    c->epoch = 1;
    c->flushes = 0;
    return false;
}
#endif

void jit_cache_free(struct jit_cache *c)
{
#if defined(__linux__)
    if (c->rw) munmap(c->rw, c->size);
    if (c->rx) munmap(c->rx, c->size);
#endif
    c->rw = c->rx = NULL;
}

void jit_cache_flush(struct jit_cache *c)
{
    c->used = 0;
    c->epoch++;
    c->flushes++;
}

uint8_t *jit_cache_reserve(struct jit_cache *c, size_t max)
{
    if (!c->rw || c->used + max > c->size)
        return NULL;
    return c->rw + c->used;
}

const void *jit_cache_commit(struct jit_cache *c, size_t len)
{
    const void *code = c->rx + c->used;
    c->used = (c->used + len + 15) & ~(size_t)15;
    /* x86 keeps instruction fetch coherent with stores through any
     * mapping of the same memory: no flush needed before running it. */
    return code;
}

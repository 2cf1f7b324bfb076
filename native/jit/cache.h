/* cache.h: the JIT's code cache (see cache.c). */
#ifndef CHRONO_JIT_CACHE_H
#define CHRONO_JIT_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JIT_CACHE_SIZE (64u << 20)      /* bytes of host code before starting over (a Debian boot: 24 MiB) */

struct jit_cache {
    uint8_t *rw;                /* the code as written (never executable) */
    uint8_t *rx;                /* the same memory as run (never writable) */
    size_t size, used;
    uint32_t epoch;             /* bumped by every flush: translations of older epochs are gone */
    uint64_t flushes;
};

/* Map the cache; false if the host refuses (the JIT then stays off). */
bool jit_cache_init(struct jit_cache *c);
void jit_cache_free(struct jit_cache *c);
/* Forget every translation. */
void jit_cache_flush(struct jit_cache *c);
/* Room to write up to `max` bytes at the end (NULL if it would not fit). */
uint8_t *jit_cache_reserve(struct jit_cache *c, size_t max);
/* Keep `len` bytes written at the reserved place; returns their executable address. */
const void *jit_cache_commit(struct jit_cache *c, size_t len);

#endif

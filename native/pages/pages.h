/* pages.h: hashing and compressing 4 KiB pages for the snapshot store, a chunk
 * of pages per call, so that Python threads share the work without trading
 * the GIL for every page.  SHA-256 comes from the host's libcrypto and LZ4
 * from its liblz4, both opened with dlopen: building chrono needs neither's
 * headers, and a host without them keeps the pure-Python encoder.
 *
 * This is the cdef of chrono._pages (native/pages/build_pages.py); it is not
 * part of the emulator core, which must not load host libraries. */
#include <stddef.h>
#include <stdint.h>

/* 0 when both libraries are loaded (tried once), else -1 with the reason in why. */
int pages_init(char *why, size_t len);

/* keys[32 * i] = SHA-256 of page i, for each i < n with nonzero[i] set. */
void pages_hash(const uint8_t *pages, size_t n, const uint8_t *nonzero, uint8_t *keys);

/* Bytes one compressed page may take: the size header and LZ4's bound for 4 KiB. */
size_t pages_bound(void);

/* Each page pages[which[j]], j < k, as the store's stored value (blobs.py:
 * codec LZ4 with its payload, or codec RAW and the page when LZ4 saves less
 * than 1/32), back to back in arena (room for k * (1 + pages_bound()));
 * ends[j] is where value j ends.  0, or -1 if LZ4 failed. */
int pages_values(const uint8_t *pages, const uint32_t *which, size_t k,
                 uint8_t *arena, uint32_t *ends);

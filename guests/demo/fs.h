/* fs.h: on-disk format of the demo file system ("chronofs", version 1).
 *
 * All blocks are 512 bytes (one virtio-blk sector); integers little endian.
 *
 *   block 0                      superblock
 *   block 1                      inode map (1 bit per inode)
 *   blocks 2 ..                  block bitmap (1 bit per block, 3968 per block)
 *   next DIR_BLOCKS (8)          directory: 15 entries of {name[28], ino} each
 *   next NINODES (64)            inode table: ONE inode per block
 *   data_start .. total-1        file data (raw, no header)
 *
 * Every metadata block starts with a 16-byte header {type, own block number,
 * seq}.  The superblock's seq counts metadata updates: each create, replace
 * or remove takes seq+1 and stamps it on every block it changes.
 *
 * The file system sits behind a write-back block cache (cache.c), so at any
 * moment the real state is "disk + dirty cache blocks".  Chrono exists to
 * stop a classic accident: restoring a RAM-only snapshot (which includes
 * that cache) over a disk that has moved on.  The layout is chosen so that
 * this mixture is detectably inconsistent rather than silently a plausible
 * older file system:
 *
 *  - Allocation state is concentrated in a few blocks that any update
 *    dirties: the superblock (free counts, seq), the inode map and the block
 *    bitmap.  Whenever files were written shortly before the snapshot, the
 *    snapshot's cache holds these dirty, so the next writeback after a
 *    RAM-only restore (sync, eviction, the 5 s flush) puts the OLD versions
 *    on the disk.
 *
 *  - File descriptions, on the other hand, are spread out: one inode per
 *    block, and a new file's inode number starts from a hash of its name
 *    (then the first free one after it), its directory entry goes into the
 *    directory block chosen by other bits of the same hash.  A file created
 *    after the snapshot therefore lives in inode and directory blocks that
 *    the old cache does not hold dirty (a free inode's block is never read
 *    into the cache, since allocation consults only the inode map), so they
 *    survive on the disk while the allocation blocks are rolled back.
 *
 * After such a mixture fsck finds, for each file created after the snapshot:
 * an in-use inode that the inode map says is free, data blocks that the
 * bitmap says are free (or that a file created after the restore was also
 * given: double ownership), and often a directory entry pointing at an inode
 * the inode map disowns; removals after the snapshot leave the mirror image
 * (used bits without owners, i.e. leaks).  Free counts and seq add more:
 * a metadata block stamped with a seq newer than the superblock's proves the
 * superblock is older than the rest.  Restoring RAM and disk together, or
 * not restoring at all, always leaves fsck CLEAN, because the cache is then
 * a faithful overlay of its own disk.
 */
#ifndef FS_H
#define FS_H

#include <stdint.h>

#define FS_MAGIC            0x73666f6e6f726863ULL  /* "chronofs" */
#define FS_VERSION          1
#define FS_MAX_BLOCKS       32768u  /* larger disks: only the first 16 MiB are used */
#define FS_MIN_DATA_BLOCKS  16u
#define NINODES             64u
#define DIR_BLOCKS          8u
#define DIRENTS_PER_BLOCK   15u
#define NAME_MAX            27u     /* name[28] holds a NUL-terminated name */
#define INODE_NDIRECT       112u
#define MAX_FILE_SIZE       (INODE_NDIRECT * 512u)
#define BMAP_BITS_PER_BLOCK ((512u - 16u) * 8u)    /* 3968 */

#define FOURCC(a, b, c, d) ((uint32_t)(a) | (uint32_t)(b) << 8 | (uint32_t)(c) << 16 | (uint32_t)(d) << 24)
#define T_SUPER  FOURCC('S', 'U', 'P', 'R')
#define T_IMAP   FOURCC('I', 'M', 'A', 'P')
#define T_BMAP   FOURCC('B', 'M', 'A', 'P')
#define T_DIR    FOURCC('D', 'I', 'R', 'B')
#define T_INODE  FOURCC('I', 'N', 'O', 'D')

struct blkhdr {
    uint32_t type;          /* T_* */
    uint32_t blockno;       /* where this block belongs */
    uint64_t seq;           /* superblock seq of the update that last changed it */
};

struct superblock {
    struct blkhdr h;        /* h.seq: the file system's current seq */
    uint64_t magic;
    uint32_t version;
    uint32_t block_size;
    uint32_t total_blocks;  /* blocks in the file system (<= disk capacity) */
    uint32_t imap_block;
    uint32_t bmap_start;
    uint32_t bmap_blocks;
    uint32_t dir_start;
    uint32_t dir_blocks;
    uint32_t itable_start;
    uint32_t ninodes;
    uint32_t data_start;
    uint32_t free_blocks;   /* clear bits in the block bitmap */
    uint32_t free_inodes;   /* clear bits in the inode map */
    uint32_t reserved;
    uint8_t pad[512 - 80];
};

struct bitmap_block {       /* inode map and block bitmap blocks */
    struct blkhdr h;
    uint8_t bits[512 - 16]; /* bit i of byte j = item j*8+i (+ block offset) */
};

struct dirent {
    char name[28];          /* NUL-terminated, NUL-padded; name[0]==0: free */
    uint32_t ino;
};

struct dir_block {
    struct blkhdr h;
    struct dirent e[DIRENTS_PER_BLOCK];
    uint8_t pad[16];
};

#define INODE_FREE  0
#define INODE_USED  1

struct inode {
    struct blkhdr h;
    uint32_t flags;         /* INODE_FREE / INODE_USED */
    uint32_t ino;           /* its own number */
    uint32_t size;          /* bytes */
    uint32_t nblocks;       /* == ceil(size / 512) */
    char name[28];          /* back reference: the name in its directory entry */
    uint32_t reserved;
    uint32_t blocks[INODE_NDIRECT];
};

_Static_assert(sizeof(struct superblock) == 512, "superblock size");
_Static_assert(sizeof(struct bitmap_block) == 512, "bitmap size");
_Static_assert(sizeof(struct dir_block) == 512, "dir block size");
_Static_assert(sizeof(struct inode) == 512, "inode size");

struct fs_geom {
    uint32_t total_blocks, imap_block, bmap_start, bmap_blocks;
    uint32_t dir_start, dir_blocks, itable_start, ninodes, data_start;
};

/* fs.c helpers shared with fsck.c */
int fs_layout(uint32_t total_blocks, struct fs_geom *g);   /* 0 if big enough */
int fs_name_valid(const char *name);
int fs_name_field_valid(const char *field);                /* 28-byte on-disk field */
uint32_t fs_name_hash(const char *name);

#endif

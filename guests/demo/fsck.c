/* fsck.c: strict checker of the ON-DISK file system.
 *
 * The cache is flushed first; after that every block is read straight from
 * the device into fsck's own buffers, never through the cache, so fsck sees
 * exactly what a later boot would see.  Each problem is printed on its own
 * line; a consistent file system prints CLEAN. */
#include "demo.h"
#include "fs.h"

#define MAX_BMAP_BLOCKS ((FS_MAX_BLOCKS + BMAP_BITS_PER_BLOCK - 1) / BMAP_BITS_PER_BLOCK)
#define MAX_PRINTED 60

#define OWNER_NONE  (-1)

static struct superblock sb;
static struct bitmap_block imap;
static struct bitmap_block bmap[MAX_BMAP_BLOCKS];
static struct dir_block dirs[DIR_BLOCKS];
static struct inode inodes[NINODES];
static int16_t owner[FS_MAX_BLOCKS];    /* inode owning each block */
static uint8_t refs[NINODES];           /* directory entries per inode */
static unsigned errors;

static void err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void err(const char *fmt, ...)
{
    errors++;
    if (errors > MAX_PRINTED)
        return;
    va_list ap;
    va_start(ap, fmt);
    kputs("fsck: ");
    kvprintf(fmt, ap);
    va_end(ap);
    kputc('\n');
}

static int bit(const uint8_t *bits, uint32_t i)
{
    return (bits[i / 8] >> (i % 8)) & 1;
}

static int bmap_bit(uint32_t blk)
{
    return bit(bmap[blk / BMAP_BITS_PER_BLOCK].bits, blk % BMAP_BITS_PER_BLOCK);
}

static int all_zero(const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return 0;
    return 1;
}

/* Printable copy of an on-disk name field. */
static const char *show(const char field[28])
{
    static char out[4][32];
    static int which;
    char *o = out[which++ & 3];
    int i;
    for (i = 0; i < 27 && field[i]; i++)
        o[i] = (field[i] >= 0x20 && field[i] < 0x7f) ? field[i] : '?';
    o[i] = 0;
    return o;
}

static void check_header(const struct blkhdr *h, uint32_t type, uint32_t blk, const char *what)
{
    if (h->type != type || h->blockno != blk)
        err("block %u (%s): bad header (type 0x%08x, block %u)", blk, what, h->type, h->blockno);
    if (h->seq > sb.h.seq)
        err("block %u (%s) was updated at seq %lu, after the superblock (seq %lu): "
            "superblock is stale", blk, what, (unsigned long)h->seq, (unsigned long)sb.h.seq);
}

static int read_block(uint32_t blk, void *buf)
{
    if (disk_read(blk, buf) < 0) {
        err("cannot read block %u", blk);
        return -1;
    }
    return 0;
}

static void check(void)
{
    struct fs_geom g;

    /* ---- superblock ---- */
    if (read_block(0, &sb) < 0)
        return;
    if (sb.magic != FS_MAGIC) {
        err("superblock: bad magic 0x%016lx", (unsigned long)sb.magic);
        return;
    }
    if (sb.version != FS_VERSION) {
        err("superblock: unknown version %u", sb.version);
        return;
    }
    if (sb.h.type != T_SUPER || sb.h.blockno != 0)
        err("superblock: bad header");
    if (sb.block_size != BLOCK_SIZE)
        err("superblock: block size %u, expected %u", sb.block_size, BLOCK_SIZE);
    if (sb.total_blocks > vblk_capacity() || fs_layout(sb.total_blocks, &g) < 0) {
        err("superblock: impossible size %u blocks (disk has %lu)", sb.total_blocks,
            (unsigned long)vblk_capacity());
        return;
    }
#define GEOM(field) \
    if (sb.field != g.field) \
        err("superblock: " #field " is %u, expected %u", sb.field, g.field)
    GEOM(imap_block);
    GEOM(bmap_start);
    GEOM(bmap_blocks);
    GEOM(dir_start);
    GEOM(dir_blocks);
    GEOM(itable_start);
    GEOM(ninodes);
    GEOM(data_start);
#undef GEOM
    if (sb.reserved || !all_zero(sb.pad, sizeof(sb.pad)))
        err("superblock: reserved bytes are not zero");
    if (sb.free_blocks > g.total_blocks - g.data_start)
        err("superblock: free block count %u exceeds the data area (%u)", sb.free_blocks,
            g.total_blocks - g.data_start);
    if (sb.free_inodes > g.ninodes)
        err("superblock: free inode count %u exceeds %u inodes", sb.free_inodes, g.ninodes);

    /* ---- read all other metadata ---- */
    if (read_block(g.imap_block, &imap) < 0)
        return;
    check_header(&imap.h, T_IMAP, g.imap_block, "inode map");
    for (uint32_t k = 0; k < g.bmap_blocks; k++) {
        if (read_block(g.bmap_start + k, &bmap[k]) < 0)
            return;
        check_header(&bmap[k].h, T_BMAP, g.bmap_start + k, "block bitmap");
    }
    for (uint32_t d = 0; d < DIR_BLOCKS; d++) {
        if (read_block(g.dir_start + d, &dirs[d]) < 0)
            return;
        check_header(&dirs[d].h, T_DIR, g.dir_start + d, "directory");
    }
    for (uint32_t i = 0; i < NINODES; i++) {
        if (read_block(g.itable_start + i, &inodes[i]) < 0)
            return;
        check_header(&inodes[i].h, T_INODE, g.itable_start + i, "inode");
    }

    /* ---- inode map ---- */
    uint32_t used_inodes = 0;
    for (uint32_t i = 0; i < sizeof(imap.bits) * 8; i++) {
        if (!bit(imap.bits, i))
            continue;
        if (i >= NINODES)
            err("inode map: bit %u set beyond the %u inodes", i, NINODES);
        else
            used_inodes++;
    }
    if (sb.free_inodes != NINODES - used_inodes)
        err("superblock says %u free inodes, inode map has %u", sb.free_inodes,
            NINODES - used_inodes);

    /* ---- block bitmap ---- */
    uint32_t used_blocks = 0;
    for (uint32_t k = 0; k < g.bmap_blocks; k++) {
        for (uint32_t i = 0; i < BMAP_BITS_PER_BLOCK; i++) {
            uint32_t blk = k * BMAP_BITS_PER_BLOCK + i;
            int b = bit(bmap[k].bits, i);
            if (blk >= g.total_blocks) {
                if (b)
                    err("block bitmap: bit for block %u set beyond the end (%u)", blk,
                        g.total_blocks);
                continue;
            }
            if (b)
                used_blocks++;
            else if (blk < g.data_start)
                err("block bitmap: metadata block %u marked free", blk);
        }
    }
    if (sb.free_blocks != g.total_blocks - used_blocks)
        err("superblock says %u free blocks, bitmap has %u", sb.free_blocks,
            g.total_blocks - used_blocks);

    /* ---- inodes and block ownership ---- */
    for (uint32_t b = 0; b < g.total_blocks; b++)
        owner[b] = OWNER_NONE;
    for (uint32_t i = 0; i < NINODES; i++) {
        const struct inode *in = &inodes[i];
        int mapped = bit(imap.bits, i);
        refs[i] = 0;
        if (in->flags == INODE_FREE) {
            if (mapped)
                err("inode %u is free but marked in use in the inode map", i);
            if (in->ino || in->size || in->nblocks || in->reserved ||
                !all_zero(in->name, sizeof(in->name)) || !all_zero(in->blocks, sizeof(in->blocks)))
                err("inode %u is free but not cleared", i);
            continue;
        }
        if (in->flags != INODE_USED) {
            err("inode %u has bad flags 0x%x", i, in->flags);
            continue;
        }
        const char *nm = show(in->name);
        if (!mapped)
            err("inode %u ('%s') is in use but free in the inode map", i, nm);
        if (in->ino != i)
            err("inode %u ('%s') records number %u", i, nm, in->ino);
        if (!fs_name_field_valid(in->name))
            err("inode %u has an invalid name '%s'", i, nm);
        if (in->reserved)
            err("inode %u ('%s'): reserved field not zero", i, nm);
        uint32_t nb = in->nblocks;
        if (nb > INODE_NDIRECT) {
            err("inode %u ('%s'): %u blocks, more than %u", i, nm, nb, INODE_NDIRECT);
            nb = INODE_NDIRECT;
        }
        if (in->size > in->nblocks * BLOCK_SIZE ||
            (in->nblocks && in->size <= (in->nblocks - 1) * BLOCK_SIZE) ||
            (in->size == 0 && in->nblocks))
            err("inode %u ('%s'): size %u does not fit its %u blocks", i, nm, in->size,
                in->nblocks);
        for (uint32_t k = 0; k < INODE_NDIRECT; k++) {
            uint32_t b = in->blocks[k];
            if (k >= nb) {
                if (b)
                    err("inode %u ('%s'): unused block pointer %u is %u", i, nm, k, b);
                continue;
            }
            if (b < g.data_start || b >= g.total_blocks) {
                err("inode %u ('%s'): block pointer %u out of the data area", i, nm, b);
                continue;
            }
            if (!bmap_bit(b))
                err("block %u of inode %u ('%s') is marked free in the bitmap", b, i, nm);
            if (owner[b] != OWNER_NONE)
                err("block %u is owned by both inode %d ('%s') and inode %u ('%s')", b,
                    owner[b], show(inodes[owner[b]].name), i, nm);
            else
                owner[b] = (int16_t)i;
        }
    }

    /* ---- directory ---- */
    for (uint32_t d = 0; d < DIR_BLOCKS; d++) {
        const struct dir_block *db = &dirs[d];
        if (!all_zero(db->pad, sizeof(db->pad)))
            err("directory block %u: padding not zero", g.dir_start + d);
        for (uint32_t s = 0; s < DIRENTS_PER_BLOCK; s++) {
            const struct dirent *e = &db->e[s];
            if (!e->name[0]) {
                if (!all_zero(e, sizeof(*e)))
                    err("directory block %u slot %u: free entry not cleared", g.dir_start + d, s);
                continue;
            }
            const char *nm = show(e->name);
            if (!fs_name_field_valid(e->name))
                err("directory entry '%s' has an invalid name", nm);
            for (uint32_t d2 = 0; d2 <= d; d2++)
                for (uint32_t s2 = 0; s2 < (d2 == d ? s : DIRENTS_PER_BLOCK); s2++)
                    if (memcmp(dirs[d2].e[s2].name, e->name, 28) == 0)
                        err("directory entry '%s' appears twice", nm);
            if (e->ino >= NINODES) {
                err("directory entry '%s' points to inode %u, out of range", nm, e->ino);
                continue;
            }
            const struct inode *in = &inodes[e->ino];
            if (in->flags != INODE_USED) {
                err("directory entry '%s' points to inode %u, which is not in use", nm, e->ino);
                continue;
            }
            if (memcmp(in->name, e->name, 28) != 0)
                err("directory entry '%s' points to inode %u, which belongs to '%s'", nm,
                    e->ino, show(in->name));
            refs[e->ino]++;
        }
    }
    for (uint32_t i = 0; i < NINODES; i++) {
        if (inodes[i].flags != INODE_USED)
            continue;
        if (refs[i] == 0)
            err("inode %u ('%s') is in use but no directory entry refers to it", i,
                show(inodes[i].name));
        else if (refs[i] > 1)
            err("inode %u ('%s') is referred to by %u directory entries", i,
                show(inodes[i].name), refs[i]);
    }

    /* ---- leaks ---- */
    for (uint32_t b = g.data_start; b < g.total_blocks; b++)
        if (bmap_bit(b) && owner[b] == OWNER_NONE)
            err("block %u is marked used but no file owns it (leak)", b);
}

void fs_fsck(void)
{
    if (!vblk_present()) {
        kputs("no disk\n");
        return;
    }
    if (cache_flush() < 0)
        kputs("fsck: warning: flushing the cache failed\n");
    errors = 0;
    check();
    if (errors == 0) {
        kputs("CLEAN\n");
        return;
    }
    if (errors > MAX_PRINTED)
        kprintf("fsck: ... %u more not shown\n", errors - MAX_PRINTED);
    kprintf("fsck: %u error%s found\n", errors, errors == 1 ? "" : "s");
}

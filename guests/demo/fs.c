/* fs.c: the demo file system (format in fs.h), on top of the block cache.
 *
 * Every access goes through cache.c, including the superblock, so the cache
 * really holds the file system's dirty metadata between syncs.  An update
 * (write/rm) is a sequence of block modifications, each stamped with the
 * update's seq; the superblock is updated last. */
#include "demo.h"
#include "fs.h"

static int mounted;
static struct fs_geom G;
static uint64_t op_seq;            /* seq of the update in progress */
static int32_t d_free_blocks, d_free_inodes;

/* ---- helpers shared with fsck ---- */

int fs_layout(uint32_t total, struct fs_geom *g)
{
    g->total_blocks = total;
    g->bmap_blocks = (total + BMAP_BITS_PER_BLOCK - 1) / BMAP_BITS_PER_BLOCK;
    g->imap_block = 1;
    g->bmap_start = 2;
    g->dir_start = g->bmap_start + g->bmap_blocks;
    g->dir_blocks = DIR_BLOCKS;
    g->itable_start = g->dir_start + DIR_BLOCKS;
    g->ninodes = NINODES;
    g->data_start = g->itable_start + NINODES;
    return total >= g->data_start + FS_MIN_DATA_BLOCKS && total <= FS_MAX_BLOCKS ? 0 : -1;
}

static int name_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == '-';
}

int fs_name_valid(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!name_char_ok(name[i]))
            return 0;
    return 1;
}

int fs_name_field_valid(const char *f)
{
    size_t n = 0;
    while (n < 28 && f[n])
        n++;
    if (n == 0 || n > NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!name_char_ok(f[i]))
            return 0;
    for (size_t i = n; i < 28; i++)     /* NUL padding */
        if (f[i])
            return 0;
    return 1;
}

/* FNV-1a, then a 32-bit avalanche finaliser so that similar names
 * ("file1", "file2") still get unrelated inode hints and directory blocks. */
uint32_t fs_name_hash(const char *name)
{
    uint32_t h = 2166136261u;
    while (*name) {
        h ^= (uint8_t)*name++;
        h *= 16777619u;
    }
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

static uint32_t dir_home(const char *name) { return fs_name_hash(name) % DIR_BLOCKS; }
static uint32_t inode_hint(const char *name) { return (fs_name_hash(name) >> 16) % NINODES; }

static void set_name_field(char field[28], const char *name)
{
    memset(field, 0, 28);
    memcpy(field, name, strlen(name));
}

/* ---- block access ---- */

static void io_error(void)
{
    kputs("fs: I/O error\n");
}

static void *get(uint32_t blk, int fill, struct cblock **cb)
{
    *cb = cache_get(blk, fill);
    if (!*cb) {
        io_error();
        return 0;
    }
    return (*cb)->data;
}

/* Mark a metadata block modified by the current update. */
static void meta_dirty(struct cblock *cb, uint32_t type)
{
    struct blkhdr *h = (struct blkhdr *)cb->data;
    h->type = type;
    h->blockno = cb->blockno;
    h->seq = op_seq;
    cache_mark_dirty(cb);
}

static int op_begin(void)
{
    struct cblock *cb;
    struct superblock *sb = get(0, 1, &cb);
    if (!sb)
        return -1;
    op_seq = sb->h.seq + 1;
    d_free_blocks = d_free_inodes = 0;
    return 0;
}

static int op_end(void)
{
    struct cblock *cb;
    struct superblock *sb = get(0, 1, &cb);
    if (!sb)
        return -1;
    sb->free_blocks = (uint32_t)((int32_t)sb->free_blocks + d_free_blocks);
    sb->free_inodes = (uint32_t)((int32_t)sb->free_inodes + d_free_inodes);
    meta_dirty(cb, T_SUPER);
    return 0;
}

static int sb_counts(uint32_t *free_blocks, uint32_t *free_inodes)
{
    struct cblock *cb;
    struct superblock *sb = get(0, 1, &cb);
    if (!sb)
        return -1;
    *free_blocks = sb->free_blocks;
    *free_inodes = sb->free_inodes;
    return 0;
}

/* ---- bitmaps ---- */

static int bmap_set(uint32_t blk, int used)
{
    struct cblock *cb;
    struct bitmap_block *bm = get(G.bmap_start + blk / BMAP_BITS_PER_BLOCK, 1, &cb);
    if (!bm)
        return -1;
    uint32_t bit = blk % BMAP_BITS_PER_BLOCK;
    if (used)
        bm->bits[bit / 8] |= (uint8_t)(1u << (bit % 8));
    else
        bm->bits[bit / 8] &= (uint8_t)~(1u << (bit % 8));
    meta_dirty(cb, T_BMAP);
    return 0;
}

/* First fit over the data area. */
static int64_t bmap_alloc(void)
{
    for (uint32_t k = 0; k < G.bmap_blocks; k++) {
        uint32_t first = k * BMAP_BITS_PER_BLOCK;
        uint32_t lo = first > G.data_start ? first : G.data_start;
        uint32_t hi = first + BMAP_BITS_PER_BLOCK;
        if (hi > G.total_blocks)
            hi = G.total_blocks;
        if (lo >= hi)
            continue;
        struct cblock *cb;
        struct bitmap_block *bm = get(G.bmap_start + k, 1, &cb);
        if (!bm)
            return -1;
        for (uint32_t b = lo; b < hi; b++) {
            uint32_t bit = b - first;
            if (bm->bits[bit / 8] == 0xff) {
                b |= 7;     /* skip the rest of a full byte */
                continue;
            }
            if (!(bm->bits[bit / 8] & (1u << (bit % 8)))) {
                bm->bits[bit / 8] |= (uint8_t)(1u << (bit % 8));
                meta_dirty(cb, T_BMAP);
                d_free_blocks--;
                return b;
            }
        }
    }
    return -1;
}

static int imap_set(uint32_t ino, int used)
{
    struct cblock *cb;
    struct bitmap_block *im = get(G.imap_block, 1, &cb);
    if (!im)
        return -1;
    if (used)
        im->bits[ino / 8] |= (uint8_t)(1u << (ino % 8));
    else
        im->bits[ino / 8] &= (uint8_t)~(1u << (ino % 8));
    meta_dirty(cb, T_IMAP);
    return 0;
}

/* First free inode at or after the name's hash (wrapping). */
static int64_t imap_alloc(const char *name)
{
    struct cblock *cb;
    struct bitmap_block *im = get(G.imap_block, 1, &cb);
    if (!im)
        return -1;
    uint32_t hint = inode_hint(name);
    for (uint32_t i = 0; i < NINODES; i++) {
        uint32_t ino = (hint + i) % NINODES;
        if (!(im->bits[ino / 8] & (1u << (ino % 8)))) {
            im->bits[ino / 8] |= (uint8_t)(1u << (ino % 8));
            meta_dirty(cb, T_IMAP);
            d_free_inodes--;
            return ino;
        }
    }
    return -1;
}

/* ---- inodes ---- */

static int inode_read(uint32_t ino, struct inode *out)
{
    struct cblock *cb;
    struct inode *in = get(G.itable_start + ino, 1, &cb);
    if (!in)
        return -1;
    memcpy(out, in, sizeof(*out));
    return 0;
}

/* Whole-block write: no need to read the old contents (so a free inode's
 * block never enters the cache just because it is being allocated). */
static int inode_write(uint32_t ino, const struct inode *src)
{
    struct cblock *cb;
    struct inode *in = get(G.itable_start + ino, 0, &cb);
    if (!in)
        return -1;
    memcpy(in, src, sizeof(*in));
    meta_dirty(cb, T_INODE);
    return 0;
}

/* Sanity checks before trusting an inode for reading or freeing. */
static int inode_sane(const struct inode *in, uint32_t ino)
{
    if (in->flags != INODE_USED || in->ino != ino || in->nblocks > INODE_NDIRECT ||
        in->size > in->nblocks * BLOCK_SIZE)
        return 0;
    for (uint32_t i = 0; i < in->nblocks; i++)
        if (in->blocks[i] < G.data_start || in->blocks[i] >= G.total_blocks)
            return 0;
    return 1;
}

/* ---- directory ---- */

struct dirpos {
    uint32_t dblk;      /* index 0..DIR_BLOCKS-1 */
    uint32_t slot;
    uint32_t ino;
};

/* 1 = found, 0 = not found, -1 = I/O error.  Probes from the name's home
 * block through all directory blocks. */
static int dir_lookup(const char *name, struct dirpos *pos)
{
    uint32_t home = dir_home(name);
    for (uint32_t i = 0; i < DIR_BLOCKS; i++) {
        uint32_t d = (home + i) % DIR_BLOCKS;
        struct cblock *cb;
        struct dir_block *db = get(G.dir_start + d, 1, &cb);
        if (!db)
            return -1;
        for (uint32_t s = 0; s < DIRENTS_PER_BLOCK; s++) {
            if (db->e[s].name[0] && strncmp(db->e[s].name, name, 28) == 0) {
                pos->dblk = d;
                pos->slot = s;
                pos->ino = db->e[s].ino;
                return 1;
            }
        }
    }
    return 0;
}

static int dir_insert(const char *name, uint32_t ino)
{
    uint32_t home = dir_home(name);
    for (uint32_t i = 0; i < DIR_BLOCKS; i++) {
        uint32_t d = (home + i) % DIR_BLOCKS;
        struct cblock *cb;
        struct dir_block *db = get(G.dir_start + d, 1, &cb);
        if (!db)
            return -1;
        for (uint32_t s = 0; s < DIRENTS_PER_BLOCK; s++) {
            if (!db->e[s].name[0]) {
                set_name_field(db->e[s].name, name);
                db->e[s].ino = ino;
                meta_dirty(cb, T_DIR);
                return 0;
            }
        }
    }
    kputs("fs: directory full\n");
    return -1;
}

static int dir_remove(const struct dirpos *pos)
{
    struct cblock *cb;
    struct dir_block *db = get(G.dir_start + pos->dblk, 1, &cb);
    if (!db)
        return -1;
    memset(&db->e[pos->slot], 0, sizeof(struct dirent));
    meta_dirty(cb, T_DIR);
    return 0;
}

/* ---- format and mount ---- */

static uint8_t fmt_buf[BLOCK_SIZE] __attribute__((aligned(8)));

static int format(uint32_t total)
{
    struct fs_geom g;
    if (fs_layout(total, &g) < 0)
        return -1;
    struct blkhdr *h = (struct blkhdr *)fmt_buf;

    for (uint32_t b = 1; b < g.data_start; b++) {
        memset(fmt_buf, 0, BLOCK_SIZE);
        h->blockno = b;
        h->seq = 1;
        if (b == g.imap_block) {
            h->type = T_IMAP;
        } else if (b < g.dir_start) {
            struct bitmap_block *bm = (struct bitmap_block *)fmt_buf;
            h->type = T_BMAP;
            uint32_t first = (b - g.bmap_start) * BMAP_BITS_PER_BLOCK;
            for (uint32_t i = 0; i < BMAP_BITS_PER_BLOCK; i++)
                if (first + i < g.data_start)
                    bm->bits[i / 8] |= (uint8_t)(1u << (i % 8));
        } else if (b < g.itable_start) {
            h->type = T_DIR;
        } else {
            h->type = T_INODE;
        }
        if (disk_write(b, fmt_buf) < 0)
            return -1;
    }

    /* The superblock last: the disk becomes recognisable only when complete. */
    struct superblock *sb = (struct superblock *)fmt_buf;
    memset(fmt_buf, 0, BLOCK_SIZE);
    sb->h.type = T_SUPER;
    sb->h.blockno = 0;
    sb->h.seq = 1;
    sb->magic = FS_MAGIC;
    sb->version = FS_VERSION;
    sb->block_size = BLOCK_SIZE;
    sb->total_blocks = g.total_blocks;
    sb->imap_block = g.imap_block;
    sb->bmap_start = g.bmap_start;
    sb->bmap_blocks = g.bmap_blocks;
    sb->dir_start = g.dir_start;
    sb->dir_blocks = g.dir_blocks;
    sb->itable_start = g.itable_start;
    sb->ninodes = g.ninodes;
    sb->data_start = g.data_start;
    sb->free_blocks = g.total_blocks - g.data_start;
    sb->free_inodes = g.ninodes;
    return disk_write(0, fmt_buf);
}

static int geometry_ok(const struct superblock *sb)
{
    struct fs_geom g;
    if (sb->h.type != T_SUPER || sb->h.blockno != 0 || sb->block_size != BLOCK_SIZE ||
        sb->total_blocks > vblk_capacity() || fs_layout(sb->total_blocks, &g) < 0)
        return 0;
    return sb->imap_block == g.imap_block && sb->bmap_start == g.bmap_start &&
           sb->bmap_blocks == g.bmap_blocks && sb->dir_start == g.dir_start &&
           sb->dir_blocks == g.dir_blocks && sb->itable_start == g.itable_start &&
           sb->ninodes == g.ninodes && sb->data_start == g.data_start;
}

void fs_mount(void)
{
    mounted = 0;
    if (!vblk_present())
        return;

    struct cblock *cb = cache_get(0, 1);
    if (!cb) {
        io_error();
        return;
    }
    struct superblock *sb = (struct superblock *)cb->data;
    if (sb->magic != FS_MAGIC || sb->version != FS_VERSION) {
        uint64_t cap = vblk_capacity();
        uint32_t total = cap > FS_MAX_BLOCKS ? FS_MAX_BLOCKS : (uint32_t)cap;
        struct fs_geom g;
        if (fs_layout(total, &g) < 0) {
            kprintf("fs: disk too small for a file system (need %u sectors)\n",
                    g.data_start + FS_MIN_DATA_BLOCKS);
            return;
        }
        kprintf("fs: no file system found; formatting %u blocks...\n", total);
        if (format(total) < 0) {
            kputs("fs: format failed\n");
            return;
        }
        cache_init();   /* drop the stale copy of block 0 */
        cb = cache_get(0, 1);
        if (!cb) {
            io_error();
            return;
        }
        sb = (struct superblock *)cb->data;
    }
    if (!geometry_ok(sb)) {
        kputs("fs: superblock geometry is invalid; file system not mounted\n");
        return;
    }
    fs_layout(sb->total_blocks, &G);
    mounted = 1;
    kprintf("fs: mounted: %u files, %u of %u blocks free\n",
            sb->ninodes - sb->free_inodes, sb->free_blocks, sb->total_blocks - sb->data_start);
}

int fs_usable(void)
{
    if (!vblk_present()) {
        kputs("no disk\n");
        return 0;
    }
    if (!mounted) {
        kputs("no file system mounted\n");
        return 0;
    }
    return 1;
}

static int check_name(const char *name)
{
    if (!fs_name_valid(name)) {
        kprintf("invalid file name '%s' (1-%u characters from A-Z a-z 0-9 . _ -)\n",
                name, NAME_MAX);
        return 0;
    }
    return 1;
}

/* ---- commands ---- */

struct ls_entry {
    char name[28];
    uint32_t ino;
};
static struct ls_entry ls_entries[DIR_BLOCKS * DIRENTS_PER_BLOCK];

void fs_ls(void)
{
    if (!fs_usable())
        return;
    unsigned n = 0;
    for (uint32_t d = 0; d < DIR_BLOCKS; d++) {
        struct cblock *cb;
        struct dir_block *db = get(G.dir_start + d, 1, &cb);
        if (!db)
            return;
        for (uint32_t s = 0; s < DIRENTS_PER_BLOCK; s++) {
            if (!db->e[s].name[0])
                continue;
            memcpy(ls_entries[n].name, db->e[s].name, 28);
            ls_entries[n].name[27] = 0;
            ls_entries[n].ino = db->e[s].ino;
            n++;
        }
    }
    /* insertion sort by name */
    for (unsigned i = 1; i < n; i++) {
        struct ls_entry t = ls_entries[i];
        unsigned j = i;
        while (j > 0 && strcmp(ls_entries[j - 1].name, t.name) > 0) {
            ls_entries[j] = ls_entries[j - 1];
            j--;
        }
        ls_entries[j] = t;
    }
    uint64_t total = 0;
    for (unsigned i = 0; i < n; i++) {
        struct inode in;
        if (ls_entries[i].ino < NINODES && inode_read(ls_entries[i].ino, &in) == 0 &&
            inode_sane(&in, ls_entries[i].ino)) {
            kprintf("%8u  %s\n", in.size, ls_entries[i].name);
            total += in.size;
        } else {
            kprintf("%8s  %s (bad inode %u)\n", "?", ls_entries[i].name, ls_entries[i].ino);
        }
    }
    uint32_t fb, fi;
    if (sb_counts(&fb, &fi) < 0)
        return;
    kprintf("%u file%s, %lu bytes; %u blocks free\n", n, n == 1 ? "" : "s",
            (unsigned long)total, fb);
}

static int find_file(const char *name, struct dirpos *pos, struct inode *in)
{
    int r = dir_lookup(name, pos);
    if (r < 0)
        return -1;
    if (r == 0) {
        kprintf("%s: no such file\n", name);
        return -1;
    }
    if (pos->ino >= NINODES || inode_read(pos->ino, in) < 0 || !inode_sane(in, pos->ino)) {
        kprintf("%s: corrupt inode %u (run fsck)\n", name, pos->ino);
        return -1;
    }
    return 0;
}

void fs_cat(const char *name)
{
    if (!fs_usable() || !check_name(name))
        return;
    struct dirpos pos;
    struct inode in;
    if (find_file(name, &pos, &in) < 0)
        return;
    uint32_t left = in.size;
    for (uint32_t i = 0; i < in.nblocks && left; i++) {
        struct cblock *cb;
        const uint8_t *p = get(in.blocks[i], 1, &cb);
        if (!p)
            return;
        uint32_t n = left < BLOCK_SIZE ? left : BLOCK_SIZE;
        for (uint32_t j = 0; j < n; j++) {
            char c = (char)p[j];
            if (c == '\n' || c == '\t' || (c >= 0x20 && c < 0x7f))
                kputc(c);
            else
                kputc('.');
        }
        left -= n;
    }
}

void fs_write(const char *name, const char *text)
{
    if (!fs_usable() || !check_name(name))
        return;
    uint32_t tlen = (uint32_t)strlen(text);
    uint32_t len = tlen + 1;                    /* text plus newline */
    if (len > MAX_FILE_SIZE) {
        kprintf("file too large (max %u bytes)\n", MAX_FILE_SIZE);
        return;
    }
    uint32_t need = (len + BLOCK_SIZE - 1) / BLOCK_SIZE;

    struct dirpos pos;
    struct inode old;
    int found = dir_lookup(name, &pos);
    if (found < 0)
        return;
    if (found) {
        if (pos.ino >= NINODES || inode_read(pos.ino, &old) < 0 || !inode_sane(&old, pos.ino)) {
            kprintf("%s: corrupt inode %u (run fsck)\n", name, pos.ino);
            return;
        }
    }
    uint32_t fb, fi;
    if (sb_counts(&fb, &fi) < 0)
        return;
    if (!found && fi == 0) {
        kputs("no free inodes\n");
        return;
    }
    if (need > fb + (found ? old.nblocks : 0)) {
        kputs("disk full\n");
        return;
    }

    if (op_begin() < 0)
        return;
    struct inode in;
    memset(&in, 0, sizeof(in));
    if (found) {
        for (uint32_t i = 0; i < old.nblocks; i++) {
            if (bmap_set(old.blocks[i], 0) < 0)
                return;
            d_free_blocks++;
        }
        in.ino = pos.ino;
    } else {
        int64_t ino = imap_alloc(name);
        if (ino < 0) {
            kputs("no free inodes\n");
            return;
        }
        in.ino = (uint32_t)ino;
    }
    in.flags = INODE_USED;
    in.size = len;
    in.nblocks = need;
    set_name_field(in.name, name);
    for (uint32_t i = 0; i < need; i++) {
        int64_t b = bmap_alloc();
        if (b < 0) {
            kputs("disk full (bitmap)\n");
            return;
        }
        in.blocks[i] = (uint32_t)b;
        struct cblock *cb;
        uint8_t *p = get((uint32_t)b, 0, &cb);
        if (!p)
            return;
        for (uint32_t j = 0; j < BLOCK_SIZE; j++) {
            uint32_t off = i * BLOCK_SIZE + j;
            p[j] = off < tlen ? (uint8_t)text[off] : off == tlen ? '\n' : 0;
        }
        cache_mark_dirty(cb);
    }
    if (inode_write(in.ino, &in) < 0)
        return;
    if (!found && dir_insert(name, in.ino) < 0)
        return;
    op_end();
}

void fs_rm(const char *name)
{
    if (!fs_usable() || !check_name(name))
        return;
    struct dirpos pos;
    struct inode in;
    if (find_file(name, &pos, &in) < 0)
        return;
    if (op_begin() < 0)
        return;
    for (uint32_t i = 0; i < in.nblocks; i++) {
        if (bmap_set(in.blocks[i], 0) < 0)
            return;
        d_free_blocks++;
    }
    struct inode freed;
    memset(&freed, 0, sizeof(freed));
    if (inode_write(pos.ino, &freed) < 0)
        return;
    if (imap_set(pos.ino, 0) < 0)
        return;
    d_free_inodes++;
    if (dir_remove(&pos) < 0)
        return;
    op_end();
}

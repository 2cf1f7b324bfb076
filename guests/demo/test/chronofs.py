"""Host-side reader for the demo guest's file system (see ../fs.h).

Independent of the guest code: used by the tests to check that what the
guest wrote is really on the disk image, in the documented format.
    python3 chronofs.py disk.img        # lists files
"""
import struct
import sys

BS = 512
MAGIC = 0x73666f6e6f726863
SB_FMT = "<IIQQ14I"          # header (type, blockno, seq), magic, 14 u32 fields
SB_FIELDS = ("version", "block_size", "total_blocks", "imap_block", "bmap_start",
             "bmap_blocks", "dir_start", "dir_blocks", "itable_start", "ninodes",
             "data_start", "free_blocks", "free_inodes", "reserved")


def fourcc(s):
    return struct.unpack("<I", s.encode())[0]


class Image:
    def __init__(self, path):
        with open(path, "rb") as f:
            self.data = f.read()
        t, blk, seq, magic, *rest = struct.unpack_from(SB_FMT, self.data, 0)
        if magic != MAGIC:
            raise ValueError("no chronofs superblock")
        self.seq = seq
        self.sb = dict(zip(SB_FIELDS, rest))

    def block(self, n):
        return self.data[n * BS:(n + 1) * BS]

    def header(self, n):
        return struct.unpack_from("<IIQ", self.block(n), 0)

    def files(self):
        """{name: bytes} from the directory and inodes."""
        sb = self.sb
        out = {}
        for d in range(sb["dir_blocks"]):
            b = self.block(sb["dir_start"] + d)
            for s in range(15):
                raw = b[16 + 32 * s:16 + 32 * (s + 1)]
                name = raw[:28].split(b"\0", 1)[0].decode()
                if not name:
                    continue
                ino = struct.unpack_from("<I", raw, 28)[0]
                ib = self.block(sb["itable_start"] + ino)
                flags, ino2, size, nblocks = struct.unpack_from("<4I", ib, 16)
                assert flags == 1 and ino2 == ino, (name, ino, flags, ino2)
                iname = ib[32:60].split(b"\0", 1)[0].decode()
                assert iname == name, (iname, name)
                ptrs = struct.unpack_from("<112I", ib, 64)[:nblocks]
                content = b"".join(self.block(p) for p in ptrs)[:size]
                out[name] = content
        return out

    def used_inodes(self):
        bits = self.block(self.sb["imap_block"])[16:]
        return [i for i in range(self.sb["ninodes"]) if bits[i // 8] >> (i % 8) & 1]


if __name__ == "__main__":
    img = Image(sys.argv[1])
    print("seq %d, %s" % (img.seq, img.sb))
    for name, content in sorted(img.files().items()):
        print("%8d  %s  %r" % (len(content), name, content[:40]))

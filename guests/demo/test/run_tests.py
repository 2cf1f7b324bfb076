#!/usr/bin/env python3
"""QEMU tests for the chrono demo guest.

    python3 test/run_tests.py [--elf build/demo.elf] [-k substring]

Each test boots the guest in qemu-system-riscv64 -M virt (see qemu_guest.py).
Scratch disk images go to build/test-work/.  Ends with 'N passed, N failed'."""
import argparse
import os
import random
import re
import shutil
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qemu_guest import Guest  # noqa: E402
import chronofs  # noqa: E402
import bench_ref  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
WORK = os.path.join(HERE, "..", "build", "test-work")
ELF = None

# Expected benchmark checksums (deterministic; see README.md).
BENCH_CHECKSUM_1 = "0x293f286cb41ca541"
BENCH_CHECKSUM_DEFAULT = "0x2fadf5d06c4d47bb"

COMMANDS = ["help", "echo", "uptime", "bench", "ls", "cat", "write", "rm", "sync", "fsck",
            "crash", "poweroff"]


def disk(name, size="4M"):
    path = os.path.join(WORK, name)
    if os.path.exists(path):
        os.unlink(path)
    with open(path, "wb") as f:
        f.truncate(parse_size(size))
    return path


def parse_size(s):
    mult = {"K": 1024, "M": 1024 ** 2}
    return int(s[:-1]) * mult[s[-1]] if s[-1] in mult else int(s)


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def poweroff(g, expect_rc=0):
    g.send("poweroff\n")
    rc = g.wait_exit()
    check(rc == expect_rc, "poweroff exit code %r, expected %r" % (rc, expect_rc))
    return g.rest()


def parse_ls(out):
    files = {}
    for line in out.splitlines():
        m = re.match(r"^\s*(\d+)  (\S+)$", line)
        if m:
            files[m.group(2)] = int(m.group(1))
    return files


# ---------------------------------------------------------------- tests

def test_boot_and_basic_commands():
    d = disk("basic.img")
    t0 = time.time()
    g = Guest(ELF, d)
    banner = g.boot()
    boot_s = time.time() - t0
    check("chrono demo guest" in banner, "banner: %r" % banner)
    check("virtio-blk: slot 7, 8192 sectors" in banner, banner)
    check("formatting" in banner, "blank disk was not formatted: %r" % banner)
    out = g.cmd("help")
    for c in COMMANDS:
        check(re.search(r"^  %s\b.*\S" % c, out, re.M), "help lacks %s: %r" % (c, out))
    check(g.cmd("echo hello   world") == "hello   world\n", "echo")
    check(g.cmd("echo") == "\n", "empty echo")
    up = g.cmd("uptime")
    check(re.fullmatch(r"up \d+\.\d{3} s\n", up), "uptime: %r" % up)
    out = g.cmd("frobnicate now")
    check("unknown command 'frobnicate'" in out and "help" in out and out.count("\n") == 1,
          "unknown: %r" % out)
    check(g.cmd("") == "", "empty line")
    check(g.cmd("   ") == "", "blank line")
    out = poweroff(g)
    check("Powering off." in out, out)
    print("    boot to prompt (incl. format, QEMU start): %.0f ms" % (boot_s * 1000))


def test_line_editing():
    g = Guest(ELF, disk("edit.img"))
    g.boot()
    # DEL and BS both erase; escape sequences (arrow keys) are swallowed
    g.send(b"echo helx\x7flo wq\x08orld\x1b[A\r\n")
    out = g.expect(b"demo> ").replace("\r\n", "\n")
    check("\nhello world\n" in out, "backspace: %r" % out)
    # CR LF is one Enter (no extra prompt); bare CR and bare LF work too
    g.send(b"echo a\r\necho b\recho c\necho d\r\n")
    for want in "abcd":
        out = g.expect(b"demo> ").replace("\r\n", "\n")
        check(out.endswith("echo %s\n%s\ndemo> " % (want, want)), "enter %s: %r" % (want, out))
    g.send(b"echo sync\n")
    out = g.expect(b"demo> ")
    check("sync" in out, out)
    # Ctrl-C cancels, Ctrl-U erases
    g.send(b"echo zzz\x03echo keep\x15echo yes\n")
    out = g.expect(b"demo> ")     # after ^C
    out = g.expect(b"demo> ").replace("\r\n", "\n")
    check("\nyes\n" in out, "ctrl-u: %r" % out)
    poweroff(g)


def test_files_and_persistence():
    d = disk("files.img")
    g = Guest(ELF, d)
    g.boot()
    check(g.cmd("ls").startswith("0 files"), "empty ls")
    check(g.cmd("write a hello") == "", "write a")
    check(g.cmd("cat a") == "hello\n", "cat a")
    check(g.cmd("write notes.txt   two  spaces inside ") == "", "write notes")
    check(g.cmd("cat notes.txt") == "two  spaces inside \n", "cat notes")
    big = "".join(chr(ord("a") + i % 26) for i in range(1000))
    g.cmd("write big " + big)
    check(g.cmd("cat big") == big + "\n", "cat big")
    g.cmd("write empty")
    check(g.cmd("cat empty") == "\n", "empty file")
    g.cmd("write a replaced text")
    check(g.cmd("cat a") == "replaced text\n", "replace")
    out = g.cmd("ls")
    check(parse_ls(out) == {"a": 14, "notes.txt": 20, "big": 1001, "empty": 1}, "ls: %r" % out)
    check("4 files" in out, out)
    check("no such file" in g.cmd("cat nothere"), "cat missing")
    check("no such file" in g.cmd("rm nothere"), "rm missing")
    check("invalid file name" in g.cmd("write bad/name x"), "bad name")
    check("invalid file name" in g.cmd("write " + "x" * 28 + " y"), "long name")
    check("usage" in g.cmd("cat"), "cat usage")
    check("usage" in g.cmd("rm a b"), "rm usage")
    check("usage" in g.cmd("write"), "write usage")
    check(g.cmd("rm empty") == "", "rm")
    check("no such file" in g.cmd("cat empty"), "cat removed")
    out = g.cmd("sync")
    check(re.fullmatch(r"synced \d+ blocks?\n", out), "sync: %r" % out)
    check(g.cmd("fsck") == "CLEAN\n", "fsck")
    check(g.cmd("sync") == "synced 0 blocks\n", "second sync")
    g.cmd("write late unsynced-but-poweroff-syncs")
    poweroff(g)

    want = {"a": b"replaced text\n", "notes.txt": b"two  spaces inside \n",
            "big": big.encode() + b"\n", "late": b"unsynced-but-poweroff-syncs\n"}
    check(chronofs.Image(d).files() == want, "host-side view of the disk")

    g = Guest(ELF, d)
    banner = g.boot()
    check("formatting" not in banner and "mounted: 4 files" in banner, banner)
    check(parse_ls(g.cmd("ls")) == {k: len(v) for k, v in want.items()}, "ls after reboot")
    for k, v in want.items():
        check(g.cmd("cat " + k) == v.decode(), "cat %s after reboot" % k)
    check(g.cmd("fsck") == "CLEAN\n", "fsck after reboot")
    poweroff(g)


def test_random_operations():
    d = disk("random.img")
    rng = random.Random(1234)
    names = ["f%02d" % i for i in range(40)] + ["x.log", "data_1", "Z-9"]
    model = {}
    g = Guest(ELF, d)
    g.boot()
    for step in range(400):
        r = rng.random()
        name = rng.choice(names)
        if r < 0.55:
            n = rng.choice([0, 1, 5, 100, 510, 511, 512, 700, 1000])
            text = "".join(rng.choice("abcdefghij KLMNOP0123") for _ in range(n)).strip(" ")
            out = g.cmd("write %s %s" % (name, text))
            check(out == "", "write %s: %r" % (name, out))
            model[name] = text + "\n"
        elif r < 0.80:
            out = g.cmd("rm " + name)
            if name in model:
                check(out == "", "rm %s: %r" % (name, out))
                del model[name]
            else:
                check("no such file" in out, "rm missing %s: %r" % (name, out))
        elif r < 0.90:
            out = g.cmd("cat " + name)
            check(out == model.get(name, out if "no such file" in out else None),
                  "cat %s: %r vs %r" % (name, out, model.get(name)))
        elif r < 0.95:
            g.cmd("sync")
        else:
            out = g.cmd("fsck")
            check(out == "CLEAN\n", "fsck at step %d: %r" % (step, out))
    check(parse_ls(g.cmd("ls")) == {k: len(v) for k, v in model.items()}, "ls vs model")
    check(g.cmd("fsck") == "CLEAN\n", "final fsck")
    # fill the inode table
    for i in range(70):
        out = g.cmd("write fill%02d %d" % (i, i))
        if out:
            check("no free inodes" in out, "fill: %r" % out)
            break
        model["fill%02d" % i] = "%d\n" % i
    check(len(model) == 64, "inode table holds %d files" % len(model))
    check(g.cmd("fsck") == "CLEAN\n", "fsck when full")
    poweroff(g)
    host = chronofs.Image(d).files()
    check(host == {k: v.encode() for k, v in model.items()}, "host view vs model")
    g = Guest(ELF, d)
    g.boot()
    for k, v in model.items():
        check(g.cmd("cat " + k) == v, "cat %s after reboot" % k)
    check(g.cmd("fsck") == "CLEAN\n", "fsck after reboot")
    poweroff(g)


def test_disk_full():
    d = disk("small.img", "64K")         # 128 blocks: 53 data blocks
    g = Guest(ELF, d)
    g.boot()
    big = "y" * 1000                     # 2 blocks each
    n = 0
    while True:
        out = g.cmd("write b%d %s" % (n, big))
        if out:
            check("disk full" in out, out)
            break
        n += 1
    check(n == (128 - 75) // 2, "files before full: %d" % n)
    check(g.cmd("write b0 small") == "", "replace when full")
    check(g.cmd("fsck") == "CLEAN\n", "fsck when full")
    poweroff(g)


def test_disk_sizes():
    g = Guest(ELF, disk("tiny.img", "32K"))
    out = g.boot()
    check("too small" in out, out)
    check("no file system" in g.cmd("ls"), "ls on tiny disk")
    poweroff(g)
    d = disk("huge.img", "64M")
    g = Guest(ELF, d)
    out = g.boot()
    check("formatting 32768 blocks" in out, out)
    g.cmd("write x on a big disk")
    check(g.cmd("fsck") == "CLEAN\n", "fsck on big disk")
    poweroff(g)
    check(chronofs.Image(d).sb["total_blocks"] == 32768, "total blocks")


def test_no_disk():
    g = Guest(ELF, None)
    out = g.boot()
    check("no disk found" in out, out)
    for c in ["ls", "cat a", "write a b", "rm a", "sync", "fsck"]:
        check(g.cmd(c) == "no disk\n", "%s without disk" % c)
    out = poweroff(g)
    check("Powering off." in out, out)


def test_legacy_virtio_rejected():
    g = Guest(ELF, disk("legacy.img"), legacy=True)
    out = g.boot()
    check("legacy virtio-mmio (version 1), not supported" in out and "no disk found" in out, out)
    poweroff(g)


def test_crash():
    g = Guest(ELF, disk("crash.img"))
    g.boot()
    g.send("crash\n")
    rc = g.wait_exit()
    out = g.rest()
    check(rc == 1, "exit code %r" % rc)
    check(re.search(r"TRAP: cause=5 \(load access fault\) pc=0x8000[0-9a-f]+ tval=0xdeadbef[0-9a-f]+",
                    out), out)


def test_bench():
    g = Guest(ELF, disk("bench.img"), icount=True)
    g.boot()
    res = {}
    for arg, want in (("1", BENCH_CHECKSUM_1), ("", BENCH_CHECKSUM_DEFAULT)):
        t0 = time.time()
        out = g.cmd(("bench " + arg).strip(), timeout=120)
        wall = time.time() - t0
        check("checksum %s\n" % want in out, "bench %s: %r" % (arg, out))
        m = re.search(r"instructions (\d+)\n", out)
        check(m, out)
        check(re.search(r"elapsed \d+\.\d{3} s \(\d+ mtime ticks\)", out), out)
        res[arg or "default"] = (int(m.group(1)), wall)
    check(9e6 < res["1"][0] < 11e6, "bench 1 instructions %d" % res["1"][0])
    check(9e8 < res["default"][0] < 11e8, "bench instructions %d" % res["default"][0])
    check(bench_ref.checksum(1) == BENCH_CHECKSUM_1, "reference model disagrees for N=1")
    out = g.cmd("bench 7", timeout=60)
    check("checksum %s\n" % bench_ref.checksum(7) in out, "bench 7 vs reference: %r" % out)
    for bad in ["bench 0", "bench x", "bench 5 6"]:
        check("usage" in g.cmd(bad), bad)
    poweroff(g)
    # without icount: same checksum, real speed
    g = Guest(ELF, disk("bench2.img"))
    g.boot()
    t0 = time.time()
    out = g.cmd("bench", timeout=120)
    wall = time.time() - t0
    check("checksum %s\n" % BENCH_CHECKSUM_DEFAULT in out, out)
    poweroff(g)
    print("    bench 1: %d instructions; bench (100): %d instructions (QEMU -icount shift=0)"
          % (res["1"][0], res["default"][0]))
    print("    QEMU wall time for default bench: %.2f s plain TCG, %.2f s with -icount"
          % (wall, res["default"][1]))


def test_idle_and_periodic_flush():
    d = disk("idle.img")
    g = Guest(ELF, d)
    g.boot()
    time.sleep(0.5)
    c0 = g.cpu_seconds()
    time.sleep(3)
    idle = (g.cpu_seconds() - c0) / 3
    check(idle < 0.05, "QEMU uses %.1f%% CPU at the prompt" % (idle * 100))
    # a dirty block arms the 5 s flush; it must reach the disk without sync
    marker = b"periodic-flush-marker-1234"
    g.cmd("write pf " + marker.decode())
    time.sleep(2)
    with open(d, "rb") as f:
        check(marker not in f.read(), "written through before the flush timer")
    c0 = g.cpu_seconds()
    time.sleep(2)
    waiting = (g.cpu_seconds() - c0) / 2
    check(waiting < 0.05, "QEMU uses %.1f%% CPU with a flush scheduled" % (waiting * 100))
    time.sleep(2.5)
    with open(d, "rb") as f:
        check(marker in f.read(), "the periodic flush did not write the data")
    check(g.cmd("sync") == "synced 0 blocks\n", "cache clean after the periodic flush")
    c0 = g.cpu_seconds()
    time.sleep(2)
    after = (g.cpu_seconds() - c0) / 2
    check(after < 0.05, "QEMU uses %.1f%% CPU after the flush" % (after * 100))
    g.kill()      # no poweroff: the data must already be there
    check(chronofs.Image(d).files() == {"pf": marker + b"\n"}, "flushed file on disk")
    print("    QEMU CPU while idle: %.2f%% (no timer), %.2f%% (flush pending), %.2f%% (after)"
          % (idle * 100, waiting * 100, after * 100))


def stale_scenario(restore_disk_too, after_save, after_restore):
    """write files (dirty in the cache), save RAM+device state (a migration
    to a file: no disk contents), run `after_save` and sync, then restore the
    RAM state over that newer disk (or over a copy of the disk taken at the
    save), run `after_restore` and sync, and return fsck's output."""
    d = disk("stale.img")
    state = os.path.join(WORK, "stale.state")
    g = Guest(ELF, d)
    g.boot()
    g.cmd("write base1 committed before the snapshot")
    g.cmd("write base2 also committed")
    g.cmd("sync")
    g.cmd("write a1 dirty at snapshot")
    g.cmd("write a2 dirty at snapshot too")
    check(g.cmd("ls").count("\n") == 5, "files before save")
    check(g.cmd("cat base1") == "committed before the snapshot\n", "cat before save")
    g.save_ram_state(state)
    disk_at_save = os.path.join(WORK, "stale-at-save.img")
    shutil.copyfile(d, disk_at_save)
    for c in after_save:
        g.cmd(c)
    g.cmd("sync")
    check(g.cmd("fsck") == "CLEAN\n", "fsck on the newer disk before the restore")
    poweroff(g)
    if restore_disk_too:
        shutil.copyfile(disk_at_save, d)
    g = Guest(ELF, d, incoming=state)
    g.resume_incoming()
    g.send("\n")
    g.expect(b"demo> ")
    for c in after_restore:
        g.cmd(c)
    g.cmd("sync")
    out = g.cmd("fsck")
    poweroff(g)
    return out


STALE_VARIANTS = [
    # (after save, after restore)
    (["write c1 created after the snapshot", "write c2 created after the snapshot",
      "write c3 created after the snapshot", "rm base2"], ["write e1 written after the restore"]),
    (["write c1 created after the snapshot"], ["write e1 written after the restore"]),
    (["write c1 created after the snapshot"], []),
    (["write notes.txt one", "write todo two", "write log three"], ["write a1 replaced"]),
    (["rm base1"], ["write e1 x"]),
]


def test_stale_cache_ram_only_restore_detected():
    for i, (after_save, after_restore) in enumerate(STALE_VARIANTS):
        out = stale_scenario(False, after_save, after_restore)
        check(out != "CLEAN\n" and re.search(r"fsck: \d+ errors? found", out),
              "variant %d: %r" % (i, out))
        n = int(re.search(r"fsck: (\d+) errors? found", out).group(1))
        print("    variant %d (%s | %s): %d errors" % (i, "; ".join(after_save),
                                                       "; ".join(after_restore) or "sync", n))
        if i == 0:
            for line in out.splitlines():
                print("      " + line)


def test_stale_cache_full_restore_clean():
    for after_save, after_restore in STALE_VARIANTS:
        out = stale_scenario(True, after_save, after_restore)
        check(out == "CLEAN\n", out)


def _corrupt_cases(img):
    """(description, patch function, expected fsck substring) on an image with
    files a (1 block), big (2 blocks) and c."""
    import struct
    sb = img.sb
    files = {}
    for d in range(sb["dir_blocks"]):
        blk = sb["dir_start"] + d
        for s_ in range(15):
            off = blk * 512 + 16 + 32 * s_
            name = img.data[off:off + 28].split(b"\0")[0].decode()
            if name:
                ino = struct.unpack_from("<I", img.data, off + 28)[0]
                files[name] = (off, ino, (sb["itable_start"] + ino) * 512)

    def u32(buf, off, val):
        struct.pack_into("<I", buf, off, val)

    def ptr(name, k):
        return struct.unpack_from("<I", img.data, files[name][2] + 64 + 4 * k)[0]

    def bmap_bit(buf, blk, val):
        byte = (sb["bmap_start"] + blk // 3968) * 512 + 16 + (blk % 3968) // 8
        if val:
            buf[byte] |= 1 << (blk % 8)
        else:
            buf[byte] &= ~(1 << (blk % 8)) & 0xff

    free_off = 16 + 8 + 11 * 4          # superblock free_blocks
    cases = [
        ("free block count", lambda b: u32(b, free_off, sb["free_blocks"] + 1),
         "free blocks, bitmap has"),
        ("free inode count", lambda b: u32(b, free_off + 4, sb["free_inodes"] - 1),
         "free inodes, inode map has"),
        ("data block freed", lambda b: bmap_bit(b, ptr("big", 1), 0),
         "of inode %d ('big') is marked free in the bitmap" % files["big"][1]),
        ("leaked block", lambda b: (bmap_bit(b, sb["total_blocks"] - 1, 1),
                                    u32(b, free_off, sb["free_blocks"] - 1)),
         "block %d is marked used but no file owns it (leak)" % (sb["total_blocks"] - 1)),
        ("double ownership", lambda b: u32(b, files["c"][2] + 64, ptr("a", 0)),
         "is owned by both inode"),
        ("size vs blocks", lambda b: u32(b, files["a"][2] + 24, 600),
         "('a'): size 600 does not fit its 1 blocks"),
        ("bad pointer", lambda b: u32(b, files["a"][2] + 64, 3),
         "block pointer 3 out of the data area"),
        ("invalid dir name", lambda b: b.__setitem__(files["a"][0], ord("/")),
         "has an invalid name"),
        ("dir entry to free inode", lambda b: u32(b, files["a"][0] + 28, 5 if files["a"][1] != 5 else 6),
         "which is not in use"),
        ("entry removed", lambda b: b.__setitem__(slice(files["c"][0], files["c"][0] + 32), bytes(32)),
         "('c') is in use but no directory entry refers to it"),
        ("inode map bit cleared", lambda b: b.__setitem__(
            sb["imap_block"] * 512 + 16 + files["a"][1] // 8,
            b[sb["imap_block"] * 512 + 16 + files["a"][1] // 8] & ~(1 << files["a"][1] % 8) & 0xff),
         "('a') is in use but free in the inode map"),
        ("header", lambda b: u32(b, sb["dir_start"] * 512, 0x12345678), "bad header"),
        ("metadata marked free", lambda b: bmap_bit(b, sb["itable_start"], 0),
         "metadata block %d marked free" % sb["itable_start"]),
        ("seq from the future", lambda b: struct.pack_into("<Q", b, sb["itable_start"] * 512 + 8, 10 ** 6),
         "after the superblock"),
        ("inode name mismatch", lambda b: b.__setitem__(files["c"][2] + 32, ord("d")),
         "which belongs to 'd'"),
        ("geometry", lambda b: u32(b, 16 + 8 + 10 * 4, sb["data_start"] + 1), "data_start is"),
    ]
    return cases


def test_fsck_detects_manual_corruption():
    d = disk("corrupt-base.img")
    g = Guest(ELF, d)
    g.boot()
    g.cmd("write a one")
    g.cmd("write big " + "b" * 700)
    g.cmd("write c three")
    check(g.cmd("fsck") == "CLEAN\n", "clean base")
    poweroff(g)
    img = chronofs.Image(d)
    for desc, patch, want in _corrupt_cases(img):
        buf = bytearray(img.data)
        patch(buf)
        path = os.path.join(WORK, "corrupt.img")
        with open(path, "wb") as f:
            f.write(buf)
        g = Guest(ELF, path)
        banner = g.boot()
        check("formatting" not in banner, desc + ": reformatted")
        out = g.cmd("fsck")
        poweroff(g)
        check(want in out and "CLEAN" not in out, "%s: wanted %r in %r" % (desc, want, out))
        with open(path, "rb") as f:
            on_disk = f.read()
        check(on_disk == bytes(buf), "%s: fsck or boot modified the disk" % desc)


TESTS = [v for k, v in list(globals().items()) if k.startswith("test_")]


def main():
    global ELF
    ap = argparse.ArgumentParser()
    ap.add_argument("--elf", default=os.path.join(HERE, "..", "build", "demo.elf"))
    ap.add_argument("-k", default="")
    args = ap.parse_args()
    ELF = os.path.abspath(args.elf)
    os.makedirs(WORK, exist_ok=True)
    passed = failed = 0
    for t in TESTS:
        if args.k not in t.__name__:
            continue
        t0 = time.time()
        try:
            t()
            passed += 1
            print("PASS %s (%.1f s)" % (t.__name__, time.time() - t0))
        except Exception:
            failed += 1
            print("FAIL %s" % t.__name__)
            traceback.print_exc()
        sys.stdout.flush()
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

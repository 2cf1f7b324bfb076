"""qcow2 disks (QEMU's format): `--disk IMAGE.qcow2` reads exactly what qemu-img reads.

Every image here is made by the real qemu-img (and qemu-io) from a real ext4
image that mkfs.ext4 -d filled from a folder: converted (version 3 and 2,
several cluster sizes), with backing chains (qcow2 and raw backing files,
written through by qemu-io, a converted overlay, a relative name resolved
from the image's folder).  `qemu-img convert -O raw` is the reference: the
disk the guest gets hashes the same, sparse areas included.  Damaged and
unsupported images are refused by the CLI with one line and status 3, and
--commit onto a qcow2 is refused with the advice to commit into a raw copy.
The Debian guest's tests (at the end) boot on the images and read the files.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from chrono.core.disk import Disk
from chrono.units import format_size
from chronocmd import CHRONO

HOST_TOOLS = {"PATH": os.environ["PATH"] + ":/usr/sbin:/sbin"}
DISK = 64 << 20
REFUSAL_TIMEOUT = 30


def tool(*args, cwd=None) -> str:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **HOST_TOOLS})
    assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return proc.stdout


def qemu_io(image: Path, *commands: str, fmt: str = "qcow2") -> None:
    args = ["qemu-io", "-f", fmt]
    for c in commands:
        args += ["-c", c]
    tool(*args, image)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def reference(image: Path, tmp: Path) -> str:
    """SHA-256 of what qemu-img reads from ``image`` (its raw conversion)."""
    out = tmp / (image.name + ".reference.raw")
    tool("qemu-img", "convert", "-O", "raw", image, out)
    try:
        return sha256_file(out)
    finally:
        out.unlink()


def guest_view(image: Path, said: list | None = None) -> tuple[str, Disk]:
    """SHA-256 of the disk a guest gets with --disk IMAGE (what chrono says
    meanwhile is added to ``said``)."""
    disk = Disk.open(image, progress=(said if said is not None else []).append)
    return hashlib.sha256(disk.data).hexdigest(), disk


# --- Images --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """A folder of files: text, random data across many clusters, empty, nested."""
    folder = tmp_path_factory.mktemp("files") / "root"
    (folder / "nested" / "deeper").mkdir(parents=True)
    (folder / "hello.txt").write_text("hello from the host\n")
    (folder / "random-300k.bin").write_bytes(os.urandom(300_000))
    (folder / "random-5m.bin").write_bytes(os.urandom(5 << 20))
    (folder / "empty").write_bytes(b"")
    (folder / "nested" / "deeper" / "leaf.txt").write_text("a leaf\n" * 1000)
    return folder


@pytest.fixture(scope="module")
def raw(files, tmp_path_factory) -> Path:
    """A 64 MiB ext4 image holding ``files``."""
    image = tmp_path_factory.mktemp("raw") / "base.img"
    tool("mkfs.ext4", "-q", "-F", "-d", files, image, f"{DISK >> 20}M")
    return image


def host_listing(folder: Path) -> str:
    """`sha256sum` of every file under ``folder``, sorted by path, as the guest prints it."""
    lines = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = "./" + path.relative_to(folder).as_posix()
        lines.append(f"{sha256_file(path)}  {rel}")
    return "\n".join(sorted(lines, key=lambda line: line.split("  ", 1)[1]))


def convert(raw: Path, out: Path, *options: str) -> Path:
    tool("qemu-img", "convert", "-O", "qcow2", *options, raw, out)
    return out


def largest_data_extent(image: Path) -> tuple[int, int]:
    """(start, length) of the longest range holding data, as qemu-img map says."""
    ranges = json.loads(tool("qemu-img", "map", "--output=json", image))
    best = max((r for r in ranges if r["data"]), key=lambda r: r["length"])
    return best["start"], best["length"]


def chain_with_writes(raw: Path, folder: Path, top_options=(), base_options=()) -> Path:
    """base.qcow2 (converted) <- top.qcow2, with qemu-io writes in top: data at
    odd offsets across cluster boundaries, ranges zeroed and discarded over the
    base's data, the last sector."""
    base = convert(raw, folder / "base.qcow2", *base_options)
    top = folder / "top.qcow2"
    tool("qemu-img", "create", "-q", "-f", "qcow2", *top_options, "-b", "base.qcow2",
         "-F", "qcow2", top, cwd=folder)
    start, length = largest_data_extent(base)
    zeroed = (start + length // 4) // 65536 * 65536
    discarded = (start + length // 2) // 65536 * 65536
    qemu_io(top, "write -P 0xab 1M 64k", "write -P 0x5a 65000 9000", f"write -z {zeroed} 192k",
            "write -P 0x11 3000 512", f"discard {discarded} 128k",
            f"write -P 0xee {DISK - 512} 512")
    return top


def make(kind: str, raw: Path, folder: Path) -> Path:
    folder.mkdir()
    if kind == "version 3":
        return convert(raw, folder / "v3.qcow2")
    if kind == "version 2":
        return convert(raw, folder / "v2.qcow2", "-o", "compat=0.10")
    if kind == "512-byte clusters":
        return convert(raw, folder / "c512.qcow2", "-o", "cluster_size=512")
    if kind == "2 MiB clusters":
        return convert(raw, folder / "c2m.qcow2", "-o", "cluster_size=2M")
    if kind == "metadata preallocated":
        return convert(raw, folder / "prealloc.qcow2", "-o", "preallocation=metadata")
    if kind == "backing file, qemu-io writes":
        return chain_with_writes(raw, folder)
    if kind == "version 2 chain":
        return chain_with_writes(raw, folder, ("-o", "compat=0.10"), ("-o", "compat=0.10"))
    if kind == "raw backing file":
        shutil.copy(raw, folder / "base.img")
        top = folder / "top.qcow2"
        tool("qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.img", "-F", "raw", top,
             cwd=folder)
        qemu_io(top, "write -P 0x77 100k 300k", "write -z 8M 64k")
        return top
    if kind == "raw backing file of an odd size":
        base = folder / "odd.img"
        shutil.copy(raw, base)
        with open(base, "ab") as f:
            f.write(os.urandom(1536))                   # ends mid-cluster, mid-page
        top = folder / "top.qcow2"
        tool("qemu-img", "create", "-q", "-f", "qcow2", "-b", "odd.img", "-F", "raw", top,
             f"{(DISK >> 20) + 1}M", cwd=folder)
        qemu_io(top, f"write -P 0x33 {DISK + 4096} 4k")
        return top
    if kind == "backing file smaller than the image":
        convert(raw, folder / "base.qcow2")
        top = folder / "big.qcow2"
        tool("qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", top,
             f"{(DISK >> 20) + 32}M", cwd=folder)
        qemu_io(top, f"write -P 0x42 {DISK + (8 << 20)} 64k")
        return top
    if kind == "three levels, mixed cluster sizes":
        convert(raw, folder / "base.qcow2")
        mid, top = folder / "mid.qcow2", folder / "top.qcow2"
        tool("qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", "-b",
             "base.qcow2", "-F", "qcow2", mid, cwd=folder)
        qemu_io(mid, "write -P 0x01 10k 100k", "write -z 1M 8k")
        tool("qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=1M", "-b",
             "mid.qcow2", "-F", "qcow2", top, cwd=folder)
        qemu_io(top, "write -P 0x02 50k 4k", "write -P 0x03 3M 5k")
        return top
    if kind == "converted overlay":
        convert(raw, folder / "base.qcow2")
        changed = folder / "changed.img"
        shutil.copy(raw, changed)
        (folder / "new.txt").write_text("added after the base was made\n")
        tool("debugfs", "-w", "-R", f"write {folder / 'new.txt'} new.txt", changed)
        top = convert(changed, folder / "top.qcow2", "-B", "base.qcow2", "-F", "qcow2")
        changed.unlink()
        return top
    if kind == "relative backing name, other folder":
        (folder / "bases").mkdir()
        (folder / "images").mkdir()
        convert(raw, folder / "bases" / "base.qcow2")
        top = folder / "images" / "top.qcow2"
        tool("qemu-img", "create", "-q", "-f", "qcow2", "-b", "../bases/base.qcow2", "-F",
             "qcow2", top, cwd=folder / "images")
        qemu_io(top, "write -P 0x99 5M 64k")
        return top
    if kind == "backing named without a format":
        top = chain_with_writes(raw, folder)
        data = bytearray(top.read_bytes())
        at = data.index(struct.pack(">I", 0xE2792ACA), 104, 65536)
        data[at:at + 4] = struct.pack(">I", 0x0BADF00D)     # an unknown extension: QEMU probes
        top.write_bytes(bytes(data))
        return top
    raise AssertionError(kind)


KINDS = ["version 3", "version 2", "512-byte clusters", "2 MiB clusters", "metadata preallocated",
         "backing file, qemu-io writes", "version 2 chain", "raw backing file", "raw backing file of an odd size",
         "backing file smaller than the image", "three levels, mixed cluster sizes",
         "converted overlay", "relative backing name, other folder",
         "backing named without a format"]


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """chrono's cache in the test's folder."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "chrono"


@pytest.mark.parametrize("kind", KINDS)
def test_the_guest_reads_exactly_what_qemu_img_reads(kind, raw, tmp_path, cache, monkeypatch):
    image = make(kind, raw, tmp_path / "images")
    monkeypatch.chdir(tmp_path)                         # not the image's folder
    expected = reference(image, tmp_path)
    got, disk = guest_view(image.relative_to(tmp_path))
    assert disk.format == "qcow2"
    assert disk.size == int(json.loads(tool("qemu-img", "info", "--output=json", image))
                            ["virtual-size"])
    assert got == expected, kind
    assert got != hashlib.sha256(bytes(disk.size)).hexdigest()   # not just zeros


def test_the_raw_copy_is_sparse_made_once_and_renewed_when_the_image_changes(raw, tmp_path,
                                                                          cache):
    image = chain_with_writes(raw, tmp_path)
    said = []
    first, disk = guest_view(image, said)
    copies = list((cache / "disks").glob("*.raw"))
    assert len(copies) == 1
    data = sum(r["length"] for r in json.loads(tool("qemu-img", "map", "--output=json", image))
               if r["data"])
    assert said == [f"{image}: qcow2 image: laying it out once as a raw file ({format_size(data)} "
                    f"of data) in {copies[0]}; later runs reuse it"]
    # Sparse: only the data takes room.
    assert copies[0].stat().st_blocks * 512 < 8 << 20

    said = []
    again, disk = guest_view(image, said)
    assert again == first and said == [] and disk.raw_copy.reused
    assert list((cache / "disks").glob("*.raw")) == copies

    qemu_io(image, "write -P 0xcd 7M 4k")               # the image changes
    changed, disk = guest_view(image, said)
    assert changed != first and changed == reference(image, tmp_path)
    assert len(said) == 1 and not disk.raw_copy.reused
    now = list((cache / "disks").glob("*.raw"))
    assert len(now) == 1 and now != copies              # the stale copy is gone

    qemu_io(tmp_path / "base.qcow2", "write -P 0x0f 9M 4k")   # so does its backing file
    assert guest_view(image)[0] == reference(image, tmp_path)


def test_a_cache_that_cannot_be_written_is_one_line(raw, tmp_path):
    image = convert(raw, tmp_path / "v3.qcow2")
    (tmp_path / "xdg").write_text("a file where the cache folder would be")
    line = refused(tmp_path, "--disk", image)
    assert line.startswith(f"chrono: error: --disk {image}: cannot lay it out as a raw file in "
                           f"{tmp_path / 'xdg' / 'chrono' / 'disks'}"), line
    assert "XDG_CACHE_HOME" in line, line


def test_run_says_when_it_lays_an_image_out(raw, tmp_path):
    image = convert(raw, tmp_path / "v3.qcow2")
    first = chrono(tmp_path, "run", "--disk", image, "--max-insns", "1000")
    assert first.returncode == 124, first.stderr
    assert first.stderr.startswith(f"chrono: {image}: qcow2 image: laying it out once as a "
                                   f"raw file"), first.stderr
    again = chrono(tmp_path, "run", "--disk", image, "--max-insns", "1000")
    assert again.returncode == 124 and "laying it out" not in again.stderr, again.stderr


def test_guest_writes_stay_in_memory_and_the_image_is_untouched(raw, tmp_path, cache):
    image = convert(raw, tmp_path / "v3.qcow2")
    before = sha256_file(image)
    disk = Disk.open(image)
    disk.data[:4096] = 0xAA                             # what a guest write does to the overlay
    assert sha256_file(image) == before
    copy, = (cache / "disks").glob("*.raw")
    assert open(copy, "rb").read(4096) != b"\xaa" * 4096
    assert guest_view(image)[0] == reference(image, tmp_path)


# --- Refusals --------------------------------------------------------------------------------

def chrono(cwd: Path, *args, script: str = "poweroff\n", timeout: float = 120):
    proc = subprocess.run(CHRONO + [str(a) for a in args], input=script.encode(),
                          capture_output=True, timeout=timeout, cwd=cwd,
                          env={**os.environ, "XDG_CACHE_HOME": str(cwd / "xdg")})
    proc.stdout = proc.stdout.decode("utf-8", "replace").replace("\r\n", "\n")
    proc.stderr = proc.stderr.decode("utf-8", "replace")
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def refused(cwd: Path, *args) -> str:
    """`chrono run ARGS`, refused before the guest runs with one line and status 3."""
    proc = chrono(cwd, "run", *args, timeout=REFUSAL_TIMEOUT)
    assert proc.returncode == 3, (proc.returncode, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("chrono: error: "), proc.stderr
    assert proc.stdout == "", "the guest ran"
    return lines[0]


def patched(image: Path, offset: int, fmt: str, value: int) -> Path:
    data = bytearray(image.read_bytes())
    struct.pack_into(fmt, data, offset, value)
    image.write_bytes(bytes(data))
    return image


def header(image: Path) -> dict:
    fields = struct.unpack_from(">4sIQIIQIIQ", image.read_bytes())
    return {"cluster_bits": fields[4], "l1_offset": fields[8]}


def first_l2_entry(image: Path) -> int:
    """File offset of the first allocated L2 entry of a converted image."""
    data = image.read_bytes()
    l1 = header(image)["l1_offset"]
    (entry,) = struct.unpack_from(">Q", data, l1)
    table = entry & 0x00FF_FFFF_FFFF_FE00
    for i in range(1 << (header(image)["cluster_bits"] - 3)):
        (e,) = struct.unpack_from(">Q", data, table + 8 * i)
        if e & 0x00FF_FFFF_FFFF_FE00:
            return table + 8 * i
    raise AssertionError("no allocated cluster")


def damage(kind: str, raw: Path, folder: Path) -> tuple[Path, list[str]]:
    """An image damaged or unsupported in one way, and words its refusal must contain."""
    v3 = folder / "d.qcow2"
    if kind == "compressed clusters":
        convert(raw, v3, "-c")
        return v3, ["compressed clusters", f"qemu-img convert -O qcow2 {v3}"]
    if kind == "encrypted":
        # AES, not LUKS: qemu-img times LUKS's key derivation on the CPU, which fails on a
        # loaded machine ("Unable to get accurate CPU usage"); both are refused alike.
        tool("qemu-img", "create", "-q", "--object", "secret,id=s0,data=pw", "-f", "qcow2", "-o",
             "encrypt.format=aes,encrypt.key-secret=s0", v3, "16M")
        return v3, ["is encrypted (AES)", "qemu-img convert --object secret"]
    if kind == "external data file":
        tool("qemu-img", "create", "-q", "-f", "qcow2", "-o", f"data_file={folder / 'd.data'}",
             v3, "16M")
        return v3, ["external data file"]
    if kind == "extended L2 entries":
        tool("qemu-img", "create", "-q", "-f", "qcow2", "-o", "extended_l2=on", v3, "16M")
        return v3, ["extended L2 entries"]
    convert(raw, v3)
    if kind == "bad magic":
        return patched(v3, 0, ">I", 0x51464900), ["not a qcow2 image", "qemu-img info"]
    if kind == "version 4":
        return patched(v3, 4, ">I", 4), ["qcow2 version 4 is not supported"]
    if kind == "version 1":
        return patched(v3, 4, ">I", 1), ["qcow version 1"]
    if kind == "unknown incompatible feature":
        return patched(v3, 72, ">Q", 1 << 9), ["incompatible features", "bit 9"]
    if kind == "dirty bit":
        return patched(v3, 72, ">Q", 1), ["not closed cleanly", "qemu-img check -r all"]
    if kind == "corrupt bit":
        return patched(v3, 72, ">Q", 2), ["marked corrupt", "qemu-img check -r all"]
    if kind == "cluster_bits out of range":
        return patched(v3, 20, ">I", 30), ["damaged qcow2 image", "cluster_bits 30"]
    if kind == "L1 table truncated":
        with open(v3, "r+b") as f:
            f.truncate(header(v3)["l1_offset"] + 4)
        return v3, ["truncated", "L1 table", "beyond the end of the file"]
    if kind == "L1 reserved bits":
        (entry,) = struct.unpack_from(">Q", v3.read_bytes(), header(v3)["l1_offset"])
        return patched(v3, header(v3)["l1_offset"], ">Q", entry | 1), ["L1 entry 0",
                                                                       "reserved bits"]
    if kind == "L2 pointing beyond the file":
        at = first_l2_entry(v3)
        return patched(v3, at, ">Q", (1 << 63) | (1 << 40)), ["guest offset", "beyond the end "
                                                                "of the file"]
    if kind == "L2 entry misaligned":
        at = first_l2_entry(v3)
        (entry,) = struct.unpack_from(">Q", v3.read_bytes(), at)
        return patched(v3, at, ">Q", entry + 512), ["not cluster-aligned"]
    if kind == "data clusters cut off":
        with open(v3, "r+b") as f:
            f.truncate(v3.stat().st_size // 2)
        return v3, ["truncated", "beyond the end of the file"]
    if kind == "backing file missing":
        top = chain_with_writes(raw, folder)
        (folder / "base.qcow2").unlink()
        return top, ["backing file 'base.qcow2'", "is missing", "qemu-img rebase"]
    if kind == "backing files loop":
        a, b = folder / "a.qcow2", folder / "b.qcow2"
        shutil.copy(v3, a)
        tool("qemu-img", "create", "-q", "-f", "qcow2", "-b", "a.qcow2", "-F", "qcow2", b,
             cwd=folder)
        tool("qemu-img", "rebase", "-u", "-b", "b.qcow2", "-F", "qcow2", a, cwd=folder)
        return b, ["form a loop"]
    raise AssertionError(kind)


DAMAGES = ["compressed clusters", "encrypted", "external data file", "extended L2 entries",
           "bad magic", "version 4", "version 1", "unknown incompatible feature", "dirty bit",
           "corrupt bit", "cluster_bits out of range", "L1 table truncated", "L1 reserved bits",
           "L2 pointing beyond the file", "L2 entry misaligned", "data clusters cut off",
           "backing file missing", "backing files loop"]


@pytest.mark.parametrize("kind", DAMAGES)
def test_a_damaged_or_unsupported_qcow2_is_refused_with_one_line(kind, raw, tmp_path):
    image, words = damage(kind, raw, tmp_path)
    line = refused(tmp_path, "--disk", image)
    assert line.startswith(f"chrono: error: --disk {image}"), line
    for word in words:
        assert word in line, (word, line)
    assert not list((tmp_path / "xdg").rglob("*.raw")), "a raw copy was left behind"


def test_commit_onto_a_qcow2_is_refused_with_the_advice(raw, tmp_path):
    image = convert(raw, tmp_path / "v3.qcow2")
    before = sha256_file(image)
    line = refused(tmp_path, "--disk", image, "--commit")
    assert f"--disk {image}: --commit cannot write into a qcow2 image" in line, line
    assert f"qemu-img convert -O raw {image} {tmp_path / 'v3.img'}" in line, line
    assert f"--disk {tmp_path / 'v3.img'} --commit" in line, line
    assert sha256_file(image) == before


def test_disk_commit_into_a_qcow2_is_refused(raw, tmp_path):
    """`chrono disk commit OVERLAY IMAGE.qcow2` would write raw blocks into qcow2
    metadata: refused, the image unchanged, the overlay kept."""
    demo = tmp_path / "d.img"
    demo.write_bytes(bytes(4 << 20))
    proc = subprocess.Popen([*CHRONO, "run", "--disk", str(demo), "--commit"], cwd=tmp_path,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdin.write(b"write a hello\nsync\n")
    proc.stdin.flush()
    seen = b""
    while b"synced" not in seen:
        chunk = os.read(proc.stdout.fileno(), 4096)
        assert chunk, seen
        seen += chunk
    demo.unlink()                                       # the commit at exit fails: an overlay
    proc.communicate(b"poweroff\n", timeout=60)
    overlay = tmp_path / "d.img.chrono-overlay"
    assert overlay.exists()
    image = convert(raw, tmp_path / "v3.qcow2")
    before = sha256_file(image)
    applied = chrono(tmp_path, "disk", "commit", overlay, image)
    assert applied.returncode == 3, applied.stderr
    line, = applied.stderr.splitlines()
    assert f"image {image}: is a qcow2 image" in line and "qemu-img convert -O raw" in line, line
    assert sha256_file(image) == before and overlay.exists()


def test_a_raw_image_named_qcow2_is_refused_but_any_name_works_for_a_qcow2(raw, tmp_path):
    named = tmp_path / "really-raw.qcow2"
    shutil.copy(raw, named)
    line = refused(tmp_path, "--disk", named)
    assert "not a qcow2 image" in line and "raw image with another name" in line, line
    plain = convert(raw, tmp_path / "disk.img")         # a qcow2 whatever its name
    got, disk = guest_view(plain)
    assert disk.format == "qcow2" and got == reference(plain, tmp_path)
    line = refused(tmp_path, "--disk", plain, "--commit")
    assert f"qemu-img convert -O raw {plain} {plain}.raw" in line, line


# --- Record and replay, on the demo guest -------------------------------------------------

def test_record_and_replay_on_a_qcow2_disk(tmp_path):
    demo = tmp_path / "demo.img"
    demo.write_bytes(bytes(8 << 20))
    made = chrono(tmp_path, "run", "--disk", demo, "--commit",
                  script="write keep kept-in-qcow2\npoweroff\n")
    assert made.returncode == 0, made.stderr
    image = tmp_path / "demo.qcow2"
    tool("qemu-img", "convert", "-f", "raw", "-O", "qcow2", demo, image)
    demo.unlink()
    store = tmp_path / "store"
    rec = chrono(tmp_path, "record", "--disk", image, "--store", store, "--name", "q",
                 script="cat keep\nwrite more x\nsync\npoweroff\n")
    assert rec.returncode == 0, rec.stderr
    assert "kept-in-qcow2" in rec.stdout
    assert "laying it out once as a raw file" in rec.stderr
    image.unlink()                          # a recording needs nothing but the store
    shutil.rmtree(tmp_path / "xdg")
    replay = chrono(tmp_path, "replay", "q", "--store", store)
    assert replay.returncode == 0, replay.stderr
    assert "kept-in-qcow2" in replay.stdout


# --- The Debian guest on qcow2 disks ---------------------------------------------------------
# Needs the fetched Debian guest (tests/test_guest_debian.py's fixture: marked network).

from test_guest_debian import debian, xdg_cache  # noqa: E402,F401 - fixtures

READY = "chrono-debian: shell ready"
MONITOR = "\x01c"
LIST_FILES = "cd /mnt && find . -type f | sort | xargs sha256sum; cd /"


def wrapped(n: int, command: str) -> str:
    """A script line whose output is framed by markers the typed echo cannot match."""
    return f"echo @B$(({n}))@; {command}; echo @E$(({n}))@\n"


def framed(out: str, n: int) -> str:
    import re
    found = re.search(rf"@B{n}@\n(.*?)@E{n}@\n", out, re.S)
    assert found, f"no output framed @B{n}@..@E{n}@; the console ends with:\n{out[-3000:]}"
    return found.group(1).strip()


def boot_args(debian) -> list:
    m, folder = debian.manifest, debian.path
    return ["--bios", folder / m.firmware, "--kernel", folder / m.kernel, "--initrd",
            folder / m.initrd, "--append", m.append, "--ram", m.ram]


def boot(debian, cwd: Path, disk: Path, script: str, *extra):
    proc = chrono(cwd, "run", *boot_args(debian), "--disk", disk, *extra,
                  script=script + "poweroff\n", timeout=300)
    assert READY in proc.stdout, (proc.stdout[-3000:], proc.stderr)
    assert "EXT4-fs error" not in proc.stdout
    return proc


@pytest.fixture(scope="module")
def debian_images(raw, files, tmp_path_factory):
    """The ext4 image raw, as a qcow2, and as a converted overlay on a qcow2 base
    (the overlay adds new.txt); the listing a guest should print for each."""
    folder = tmp_path_factory.mktemp("debian-images")
    plain = folder / "disk.img"
    shutil.copy(raw, plain)
    listing = host_listing(files)
    chain = make("converted overlay", raw, folder / "chain")
    added = f"{sha256_file(folder / 'chain' / 'new.txt')}  ./new.txt"
    with_new = "\n".join(sorted(listing.splitlines() + [added],
                                key=lambda line: line.split("  ", 1)[1]))
    return {"raw": (plain, listing), "qcow2": (convert(raw, folder / "disk.qcow2"), listing),
            "chain": (chain, with_new)}


@pytest.mark.network
@pytest.mark.parametrize("which", ["raw", "qcow2", "chain"])
def test_debian_boots_on_the_image_and_reads_the_same_files(which, debian, debian_images,
                                                            tmp_path):
    image, listing = debian_images[which]
    proc = boot(debian, tmp_path, image, wrapped(1, LIST_FILES) + wrapped(2, "cat /mnt/hello.txt"))
    assert proc.returncode == 0, proc.stderr
    assert framed(proc.stdout, 1) == listing
    assert framed(proc.stdout, 2) == "hello from the host"


@pytest.mark.network
def test_a_snapshot_taken_on_a_qcow2_disk_restores_without_the_image(debian, debian_images,
                                                                     tmp_path):
    source, listing = debian_images["chain"]
    image = tmp_path / "chain"
    shutil.copytree(source.parent, image)               # this test removes its copy
    store = tmp_path / "store"
    script = (wrapped(1, "echo written > /mnt/after.txt && sync")
              + MONITOR + "savevm on-qcow2\n" + MONITOR
              + wrapped(2, "rm /mnt/hello.txt && sync"))
    proc = boot(debian, tmp_path, image / "top.qcow2", script, "--store", store)
    assert proc.returncode == 0, proc.stderr
    assert "saved on-qcow2" in proc.stdout, proc.stdout[-3000:]

    shutil.rmtree(image)                                # the image and its backing file
    shutil.rmtree(tmp_path / "xdg")                     # and the raw copy
    info = chrono(tmp_path, "snap", "info", "on-qcow2", "--store", store, "--json")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["disk_bytes"] == [DISK]     # the virtual size

    restored = chrono(tmp_path, "run", "--from", "on-qcow2", "--store", store,
                      script=wrapped(3, LIST_FILES) + wrapped(4, "cat /mnt/after.txt")
                      + "poweroff\n", timeout=300)
    assert restored.returncode == 0, restored.stderr
    after = hashlib.sha256(b"written\n").hexdigest() + "  ./after.txt"
    assert framed(restored.stdout, 3) == "\n".join(
        sorted(listing.splitlines() + [after], key=lambda line: line.split("  ", 1)[1]))
    assert framed(restored.stdout, 4) == "written"


@pytest.mark.network
def test_a_qcow2_header_written_by_the_guest_into_a_raw_image_is_not_committed(
        debian, raw, tmp_path):
    """Else the raw image would open as a qcow2 next time, and the header's backing
    file could name any file of the host (QEMU guards probed raw images the same way)."""
    image = tmp_path / "disk.img"
    shutil.copy(raw, image)
    before = sha256_file(image)
    proc = boot(debian, tmp_path, image,
                wrapped(1, "printf 'QFI\\373\\0\\0\\0\\3' | dd of=/dev/vda conv=notrunc && sync"),
                "--commit")
    assert proc.returncode == 3, proc.stderr
    line = proc.stderr.splitlines()[-1]
    assert line.startswith(f"chrono: error: --disk {image}: not committed"), proc.stderr
    assert "qcow2 header" in line
    assert sha256_file(image) == before
    saved = tmp_path / "disk.img.chrono-overlay"
    assert f"saved in {saved}" in line and saved.exists()
    applied = chrono(tmp_path, "disk", "commit", saved)
    assert applied.returncode == 3 and "qcow2 header" in applied.stderr, applied.stderr
    assert sha256_file(image) == before

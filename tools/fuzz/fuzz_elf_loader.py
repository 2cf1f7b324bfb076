#!/usr/bin/env python3
"""Fuzz the ELF loader: damaged ELF files handed to `chrono run --kernel`.

Each case mutates a real ELF (the demo guest, or files given with --elf): bit
flips and random bytes in its headers, program and section header fields set
to edge values (addresses below and above RAM, huge sizes, offsets past the
end), truncation.  The boot planner must either refuse it with one ImageError
or UsageError line, or accept it with every loaded byte inside RAM and no two
pieces overlapping.  Anything else (another exception, a message of several
lines, a piece outside RAM) is a break.

    python3 tools/fuzz/fuzz_elf_loader.py --seed 1 --count 2000 --time-limit 60
"""
from __future__ import annotations

import argparse
import random
import struct
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

RAM_SIZE = 128 << 20

# (offset in the ELF header, struct format) of the fields worth breaking.
_EHDR_FIELDS = [(24, "<Q"), (32, "<Q"), (40, "<Q"), (54, "<H"), (56, "<H"), (58, "<H"),
                (60, "<H"), (62, "<H")]
# Fields of a program header (56 bytes) and of a section header (64 bytes).
_PHDR_FIELDS = [(0, "<I"), (8, "<Q"), (16, "<Q"), (24, "<Q"), (32, "<Q"), (40, "<Q")]
_SHDR_FIELDS = [(4, "<I"), (8, "<Q"), (16, "<Q"), (24, "<Q"), (32, "<Q")]


@dataclass
class Summary:
    cases: int = 0
    accepted: int = 0
    refused: int = 0
    breaks: list[str] = field(default_factory=list)

    def line(self, seed: int, seconds: float) -> str:
        return (f"fuzz_elf_loader: seed {seed}, {self.cases} cases in {seconds:.1f} s: "
                f"{self.accepted} accepted, {self.refused} refused, {len(self.breaks)} broke")


def _edge_values(rng: random.Random, width: int, old: int) -> int:
    ram = 0x8000_0000
    choices = [0, 1, old + 1, max(old - 1, 0), old ^ (1 << rng.randrange(8 * width)),
               (1 << (8 * width)) - 1, 1 << (8 * width - 1), rng.getrandbits(8 * width),
               ram - 0x1000, ram - 1, ram + RAM_SIZE - 4, ram + RAM_SIZE, 0x7FFF_F000, 1 << 63]
    return rng.choice(choices) % (1 << (8 * width))


def mutate(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """A damaged copy of an ELF64 little-endian file: (what was done, bytes)."""
    body = bytearray(data)
    phoff, shoff = struct.unpack_from("<QQ", data, 32)
    phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", data, 54)
    kind = rng.choice(["ehdr", "phdr", "phdr", "shdr", "shdr", "flips", "truncate"])
    if kind == "truncate":
        cut = rng.randrange(len(body))
        return f"truncated to {cut} bytes", bytes(body[:cut])
    if kind == "flips":
        for _ in range(rng.randint(1, 8)):
            at = rng.randrange(min(len(body), max(phoff + phnum * phentsize, 64)))
            body[at] ^= 1 << rng.randrange(8)
        return "bit flips in the headers", bytes(body)
    if kind == "ehdr" or (kind == "phdr" and not phnum) or (kind == "shdr" and not shnum):
        at, fmt = rng.choice(_EHDR_FIELDS)
    elif kind == "phdr":
        at, fmt = rng.choice(_PHDR_FIELDS)
        at += phoff + rng.randrange(phnum) * phentsize
    else:
        at, fmt = rng.choice(_SHDR_FIELDS)
        at += shoff + rng.randrange(shnum) * shentsize
    if at + struct.calcsize(fmt) > len(body):
        return "nothing to change (short file)", bytes(body)
    (old,) = struct.unpack_from(fmt, body, at)
    new = _edge_values(rng, struct.calcsize(fmt), old)
    struct.pack_into(fmt, body, at, new)
    return f"{kind} field at {at}: {old:#x} -> {new:#x}", bytes(body)


def check_case(path: Path) -> tuple[str, str | None]:
    """("accepted" or "refused", None) when the planner handled the file
    properly; ("broke", what) otherwise."""
    from chrono.core.loader import plan_boot
    from chrono.errors import ImageError, UsageError

    try:
        image, _ = plan_boot(RAM_SIZE, kernel=path)
    except (ImageError, UsageError) as e:
        if "\n" in e.message or not e.message:
            return "broke", f"message is not one line: {e.message!r}"
        return "refused", None
    except Exception:                   # noqa: BLE001 -- finding these is the point
        return "broke", "raised " + traceback.format_exc(limit=3).strip().splitlines()[-1]
    ram = (0x8000_0000, 0x8000_0000 + RAM_SIZE)
    pieces = sorted((a, a + len(d)) for a, d in image.segments)
    for start, end in pieces:
        if not ram[0] <= start <= end <= ram[1]:
            return "broke", f"accepted a piece at {start:#x}-{end:#x}, outside RAM"
    for (a0, a1), (b0, b1) in zip(pieces, pieces[1:]):
        if b0 < a1:
            return "broke", f"accepted overlapping pieces {a0:#x}-{a1:#x} and {b0:#x}-{b1:#x}"
    return "accepted", None


def run(seed: int, count: int, time_limit: float, elves: list[Path] | None = None,
        out=None) -> Summary:
    """Fuzz ``count`` cases (or until ``time_limit`` seconds); the summary."""
    from chrono.core.launch import demo_guest_path

    sources = [p.read_bytes() for p in (elves or [demo_guest_path()])]
    rng = random.Random(seed)
    summary = Summary()
    deadline = time.monotonic() + time_limit
    with tempfile.TemporaryDirectory(prefix="fuzz-elf-") as tmp:
        path = Path(tmp) / "mutant.elf"
        while summary.cases < count and time.monotonic() < deadline:
            what, mutant = mutate(rng.choice(sources), rng)
            for _ in range(rng.randint(0, 2)):         # sometimes several changes at once
                more, mutant = mutate(mutant, rng) if len(mutant) >= 64 else (None, mutant)
                what += f"; {more}" if more else ""
            path.write_bytes(mutant)
            summary.cases += 1
            verdict, problem = check_case(path)
            if verdict == "accepted":
                summary.accepted += 1
            elif verdict == "refused":
                summary.refused += 1
            else:
                summary.breaks.append(f"case {summary.cases - 1} ({what}): {problem}")
                if out:
                    print(summary.breaks[-1], file=out)
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds")
    parser.add_argument("--elf", type=Path, action="append", help="an ELF to mutate (default: the demo guest)")
    args = parser.parse_args(argv)
    t0 = time.monotonic()
    summary = run(args.seed, args.count, args.time_limit, args.elf, out=sys.stdout)
    print(summary.line(args.seed, time.monotonic() - t0))
    return 1 if summary.breaks else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Malformed gdb remote-protocol packets against chrono's gdb stub, on both targets.

    python3 tools/fuzz/rsp_packets.py --seed 1 --count 10000 --time-limit 1800

Setup (in a temporary directory): the demo guest is recorded with the real
CLI; then each target is started as a user would start it, as a subprocess:

- replay: `chrono debug REC --port 0` (a bare stub on a recording);
- live:   `chrono run --gdb 0` (the demo guest, its console on pipes).

The fuzzer connects over TCP (half of its connections switch to no-ack mode
first) and sends one mutant at a time, made from the packets gdb sends: bad
or missing checksums, truncated payloads and frames, oversized packets,
M/X/G/P data that disagrees with its header, bad hex, unknown commands,
X binary data with escapes (some broken), huge and overflowing addresses,
qXfer windows, vCont action lists, Ctrl-C (0x03) before, inside and after a
packet, monitor lines, random byte flips.  After each mutant the stub must
answer (a reply, or a nak) within --timeout seconds -- a mutant that may
resume the guest is followed by a Ctrl-C after a second, as gdb would send
-- except for a frame left unfinished, where silence is right; then a valid
`?` or `g` must get a well-formed reply (resent on a nak, as gdb does).
Detach and kill end a connection on the recording (the fuzzer reconnects:
`chrono debug --port` serves on); on the live guest they are not sent.

A failure is: the server process gone, no answer within the timeout, a
malformed reply, a probe that fails, or "Traceback" on the server's stderr.
Prints the packets sent per mutation and target, and every failure with its
mutant; the exit status is 1 if anything failed.
"""
from __future__ import annotations

import argparse
import os
import random
import re
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

CHRONO = [sys.executable, "-P", "-m", "chrono.cli"]
SESSION = "write a hello\nsync\nbench 1\nls\npoweroff\n"
RAM = 0x80000000
MAX_PACKET = 0x4000                 # what the stub advertises
RESUMING = (b"c", b"s", b"vCont", b"bc", b"bs")


# ---- the wire -------------------------------------------------------------------------
def checksum(data: bytes) -> bytes:
    return b"%02x" % (sum(data) & 0xFF)


def frame(payload: bytes) -> bytes:
    return b"$" + payload + b"#" + checksum(payload)


def escape(data: bytes) -> bytes:
    out = bytearray()
    for b in data:
        out += bytes((0x7D, b ^ 0x20)) if b in b"#$}*" else bytes((b,))
    return bytes(out)


class Closed(Exception):
    """The stub closed the connection."""


class Client:
    """One RSP connection: frames out; acks, naks and replies in."""

    def __init__(self, port: int, no_ack: bool):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = bytearray()
        self.acks = True
        if no_ack:
            self.sock.sendall(frame(b"QStartNoAckMode"))
            if self.response(10) != b"OK":
                raise RuntimeError("QStartNoAckMode was not accepted")
            self.acks = False

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as e:
            raise Closed() from e

    def response(self, timeout: float):
        """The next reply payload, "-" for a nak, or None if nothing came in time."""
        deadline = time.monotonic() + timeout
        while True:
            while self.buf[:1] == b"+":
                del self.buf[0]
            if self.buf[:1] == b"-":
                del self.buf[0]
                return "-"
            if self.buf[:1] == b"$":
                end = self.buf.find(b"#")
                if end >= 0 and len(self.buf) >= end + 3:
                    payload, sent = bytes(self.buf[1:end]), bytes(self.buf[end + 1:end + 3])
                    del self.buf[:end + 3]
                    if sent != checksum(payload):
                        raise ValueError(f"reply {payload[:60]!r} has checksum {sent!r}")
                    if self.acks:
                        self.send(b"+")
                    return payload
            elif self.buf:
                raise ValueError(f"stray bytes from the stub: {bytes(self.buf[:60])!r}")
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.sock], [], [], left)
            if ready:
                try:
                    data = self.sock.recv(65536)
                except OSError as e:
                    raise Closed() from e
                if not data:
                    raise Closed()
                self.buf += data

    def drain(self, quiet: float = 0.05) -> None:
        """Read and drop whatever the stub still sends."""
        while self.response(quiet) is not None:
            pass

    def request(self, payload: bytes, timeout: float, tries: int = 3):
        """Send a packet and return its reply, sending it again after a nak."""
        for _ in range(tries):
            self.send(frame(payload))
            reply = self.response(min(0.3, timeout))
            if reply is None:
                self.send(b"\x03")      # it may have completed a resume left unfinished: stop it
                reply = self.response(timeout)
            if reply != "-":
                return reply
        return "-"


# ---- the targets ----------------------------------------------------------------------
class Server:
    """A chrono process serving the stub; its stderr is collected to look for tracebacks."""

    def __init__(self, args: list[str], cwd: Path):
        self.proc = subprocess.Popen(CHRONO + args, cwd=cwd, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.stderr = bytearray()
        self.port = None
        found = threading.Event()

        def collect():
            for line in self.proc.stderr:
                self.stderr += line
                m = re.search(rb"waiting for gdb on [\d.]+:(\d+)", line)
                if m and self.port is None:
                    self.port = int(m[1])
                    found.set()
            found.set()

        threading.Thread(target=collect, daemon=True).start()
        threading.Thread(target=lambda: self.proc.stdout.read(), daemon=True).start()
        found.wait(120)
        if self.port is None:
            self.stop()
            raise RuntimeError(f"`chrono {' '.join(args)}` did not listen: {self.stderr.decode()}")

    def problem(self) -> str | None:
        if b"Traceback" in self.stderr:
            return "traceback on stderr: " + self.stderr.decode("utf-8", "replace")[-1500:]
        if self.proc.poll() is not None:
            return f"server exited with status {self.proc.returncode}"
        return None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def record(work: Path) -> None:
    proc = subprocess.run(CHRONO + ["record", "--store", str(work / "store"), "--name", "g",
                                    "--keyframe-interval", "1048576"],
                          input=SESSION.encode(), capture_output=True, cwd=work, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"recording failed: {proc.stderr.decode()}")


TARGETS = {
    "replay": ["debug", "--store", "store", "--port", "0", "g"],
    "live": ["run", "--gdb", "0", "--store", "store"],
}


# ---- mutants --------------------------------------------------------------------------
@dataclass
class Mutant:
    kind: str
    data: bytes                     # the bytes sent
    silent_ok: bool = False         # an unfinished frame: no answer is right
    resumes: bool = False           # may run the guest: follow with a Ctrl-C
    must_refuse: bool = False       # its data disagrees with its header: the reply must be E..


def hexnum(rng: random.Random) -> str:
    return rng.choice([f"{RAM + rng.randrange(0x10000):x}", f"{rng.getrandbits(64):x}",
                       "ffffffffffffffff", "0", f"{rng.getrandbits(80):x}", "8000000" + "0" * 12,
                       f"{RAM + rng.randrange(128 << 20):x}", "-1", ""])


def valid_packets(rng: random.Random, registers: int) -> bytes:
    """A packet gdb could send (some of them, e.g. writes, refused on a recording)."""
    address = RAM + 0x1000 + rng.randrange(0x4000)
    data = bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 24)))
    reg = rng.randrange(registers + 4)
    monitor = rng.choice(["when", "help", "goto 1000", f"goto {rng.randrange(4_000_000)}",
                          "goto abc", "goto -5", "last-write 0x80005710 8", "phys on",
                          "phys off", "savevm fz", "loadvm fz", "info", "frobnicate"])
    choices = [
        b"?", b"g", b"p%x" % reg, b"P%x=%016x" % (reg, rng.getrandbits(64)),
        b"m%x,%x" % (address, rng.randrange(1, 64)), b"M%x,%x:%s" % (address, len(data), data.hex().encode()),
        b"X%x,%x:" % (address, len(data)) + escape(data),
        b"G" + b"".join(b"%016x" % rng.getrandbits(64) for _ in range(registers)),
        b"Z0,%x,4" % address, b"z0,%x,4" % address, b"Z1,%x,2" % address, b"z1,%x,2" % address,
        b"Z2,%x,8" % address, b"z2,%x,8" % address, b"Z3,%x,4" % address, b"Z4,%x,1" % address,
        b"s", b"vCont;s:1", b"vCont;c", b"vCont;t", b"vCont?", b"c", b"bs", b"bc",
        b"qSupported:multiprocess+;swbreak+;hwbreak+;qRelocInsn+",
        b"qXfer:features:read:target.xml:%x,%x" % (rng.randrange(0x1000), rng.randrange(1, 0x1000)),
        b"qRcmd," + monitor.encode().hex().encode(), b"Hg0", b"Hc-1", b"Hg1", b"T1", b"qAttached",
        b"qC", b"qfThreadInfo", b"qsThreadInfo", b"vMustReplyEmpty", b"qTStatus", b"D", b"k",
    ]
    return rng.choice(choices)


def _flip(rng, payload: bytes) -> bytes:
    if not payload:
        return bytes((rng.getrandbits(8),))
    b = bytearray(payload)
    for _ in range(rng.randrange(1, 4)):
        b[rng.randrange(len(b))] = rng.getrandbits(8)
    return bytes(b)


def mutate(rng: random.Random, registers: int) -> Mutant:
    base = valid_packets(rng, registers)
    refuse = False
    kind = rng.choice(["valid", "checksum", "no-checksum", "truncated", "unfinished", "oversized",
                       "length", "bad-hex", "unknown", "binary", "address", "qxfer", "vcont",
                       "interrupt", "flip", "monitor", "registers"])
    if kind == "valid":
        payload = base
    elif kind == "checksum":
        bad = rng.choice([b"%02x" % ((sum(base) + rng.randrange(1, 256)) & 0xFF), b"zz", b"G5", b"  "])
        return Mutant(kind, b"$" + base + b"#" + bad, resumes=base.startswith(RESUMING))
    elif kind == "no-checksum":
        return Mutant(kind, b"$" + base + b"#" + rng.choice([b"", b"0"]), silent_ok=True)
    elif kind == "truncated":
        payload = base[:rng.randrange(len(base) + 1)]
    elif kind == "unfinished":
        return Mutant(kind, b"$" + base[:rng.randrange(len(base) + 1)], silent_ok=True)
    elif kind == "oversized":
        size = MAX_PACKET + rng.choice([1, 2, 100, MAX_PACKET, 5 * MAX_PACKET])
        head = rng.choice([b"M80001000,%x:" % (size // 2), b"X80001000,%x:" % size, b"G", b"qRcmd,", b""])
        payload = head + bytes(rng.choice(b"0123456789abcdef") for _ in range(size))
    elif kind == "length":
        data = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 40)))
        declared = rng.choice([0, 1, len(data) - 1, len(data) + 1, 2 * len(data), 0xFFFFFFFF,
                               rng.getrandbits(64)]) & (2**64 - 1)
        payload, refuse = rng.choice([
            (b"M80001000,%x:%s" % (declared, data.hex().encode()), declared != len(data)),
            (b"X80001000,%x:" % declared + escape(data), declared != len(data)),
            (b"m80001000,%x" % declared, False),
            (b"G" + data.hex().encode(), len(data) != 8 * registers),
            (b"P%x=%s" % (rng.randrange(40), data.hex().encode()), len(data) != 8),
            (b"M80001000,%x:%s" % (len(data), data.hex().encode()[:-1]), bool(data)),
        ])
    elif kind == "bad-hex":
        bad = rng.choice(["zz", "0x10", " 1", "g", "-", "+5", "1_0", "\xff", ""])
        payload = rng.choice([b"m%s,4", b"M%s,1:00", b"p%s", b"P%s=0000000000000000", b"Z0,%s,4",
                              b"X%s,0:", b"qRcmd,%s", b"M80001000,1:%s", b"Hg%s", b"T%s",
                              b"qXfer:features:read:target.xml:%s,10", b"s%s", b"c%s"])
        payload = payload.replace(b"%s", bad.encode("latin-1"))
        refuse = bool(bad)
    elif kind == "unknown":
        payload = bytes(rng.choice(b"abefhijlnortuwxyABEFIJKLNOQRSUVWYZ!_v") for _ in range(rng.randrange(1, 12)))
        payload += bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 8)))
        payload = payload.replace(b"#", b"").replace(b"$", b"")
    elif kind == "binary":
        data = bytes(rng.choice([0x23, 0x24, 0x7D, 0x2A, 0x03, 0x00, rng.getrandbits(8)])
                     for _ in range(rng.randrange(0, 64)))
        body = escape(data)
        cut = rng.random() < 0.3
        if cut:
            body += b"}"                                # an escape cut short
        length = len(data) if rng.random() < 0.7 else rng.randrange(70)
        payload = b"X%x,%x:" % (RAM + 0x2000 + rng.randrange(0x1000), length) + body
        refuse = cut or length != len(data)
    elif kind == "address":
        payload = rng.choice([b"m%s,%s", b"M%s,1:aa", b"X%s,1:a", b"Z0,%s,4", b"Z2,%s,%s",
                              b"z2,%s,%s", b"Z3,%s,%s", b"m%s,1"])
        payload = payload.replace(b"%s", hexnum(rng).encode(), 1).replace(b"%s", hexnum(rng).encode())
    elif kind == "qxfer":
        annex = rng.choice([b"target.xml", b"other.xml", b"", b"target.xml:x"])
        obj = rng.choice([b"features", b"libraries", b"memory-map", b"threads"])
        payload = b"qXfer:%s:read:%s:%s,%s" % (obj, annex, hexnum(rng).encode(), hexnum(rng).encode())
    elif kind == "vcont":
        actions = [rng.choice([b"c", b"s", b"t", b"C05", b"S02", b"Cxx", b"r0,10", b"x", b"", b"s:1",
                               b"c:-1", b"s:2", b"t:0", b"c:zz", b"S"]) for _ in range(rng.randrange(1, 4))]
        payload = rng.choice([b"vCont;", b"vCont", b"vCont?", b"vCont;;"]) + b";".join(actions)
    elif kind == "interrupt":
        where = rng.choice(["before", "inside", "after", "lone"])
        if where == "lone":
            return Mutant(kind, b"\x03", silent_ok=True)
        if where == "inside":
            cut = rng.randrange(len(base) + 1)
            payload = base[:cut] + b"\x03" + base[cut:]
        else:
            f = frame(base)
            return Mutant(kind, b"\x03" + f if where == "before" else f + b"\x03",
                          resumes=base.startswith(RESUMING))
    elif kind == "flip":
        payload = _flip(rng, base).replace(b"#", b"").replace(b"$", b"")
    elif kind == "monitor":
        line = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 30)))
        words = rng.choice([b"goto ", b"last-write ", b"savevm ", b"loadvm ", b"phys ", b"", b"when "])
        payload = b"qRcmd," + (words + line).hex().encode()
        if rng.random() < 0.2:
            payload = payload[:-1]                      # an odd count of hex digits
    else:                                               # registers
        width = rng.choice([registers, registers - 1, registers + 1, 1, 0])
        body = b"".join(rng.choice([b"x" * 16, b"%016x" % rng.getrandbits(64), b"xx" * 7 + b"00"])
                        for _ in range(max(width, 0)))
        payload = rng.choice([b"G" + body, b"G" + body[:-1], b"P20=" + body[:16], b"P21=0300000000000000",
                              b"P41=0200000000000000", b"p%x" % rng.randrange(0x200), b"p" + b"f" * 20])
    return Mutant(kind, frame(payload), resumes=payload.startswith(RESUMING), must_refuse=refuse)


def detaches(m: Mutant) -> bool:
    """Could the stub take this mutant as detach or kill (with no-ack mode, even with a bad checksum)?"""
    payload = m.data.lstrip(b"\x03")[1:].split(b"#")[0]
    return payload in (b"D", b"k") or payload.startswith(b"D;")


# ---- one target -----------------------------------------------------------------------
@dataclass
class Report:
    target: str
    sent: Counter = field(default_factory=Counter)
    answered: Counter = field(default_factory=Counter)   # reply, nak, silent, closed
    failures: list = field(default_factory=list)
    connections: int = 0


def probe_ok(reply, registers: int | None, probe: bytes) -> bool:
    if not isinstance(reply, bytes):
        return False
    if probe == b"?":
        return re.fullmatch(rb"(T[0-9a-f]{2}.*|W[0-9a-f]{2}|S[0-9a-f]{2})", reply) is not None
    return registers is not None and len(reply) == registers * 16 and \
        re.fullmatch(rb"[0-9a-fx]+", reply) is not None


def fuzz_target(name: str, work: Path, rng: random.Random, count: int, deadline: float,
                timeout: float, echo) -> Report:
    report = Report(name)
    server = Server(TARGETS[name], work)
    client = None
    registers = None
    try:
        i = 0
        while sum(report.sent.values()) < count:
            i += 1
            if time.monotonic() > deadline:
                break
            problem = server.problem()
            if problem:
                report.failures.append((i, "-", b"", problem))
                break
            if client is None:
                try:
                    client = Client(server.port, no_ack=rng.random() < 0.5)
                except (OSError, Closed, RuntimeError) as e:
                    time.sleep(0.5)                 # let the server's state settle, then say why
                    report.failures.append((i, "-", b"", server.problem() or f"cannot connect: {e}"))
                    break
                report.connections += 1
                regs = client.request(b"g", timeout)
                registers = len(regs) // 16 if isinstance(regs, bytes) else None
            m = mutate(rng, registers or 80)
            if name == "live" and detaches(m):
                continue
            report.sent[m.kind] += 1
            try:
                outcome = exchange(client, m, timeout)
                report.answered[outcome] += 1
                if outcome == "accepted":
                    report.failures.append((i, m.kind, m.data, "a packet that disagrees with its "
                                            "header was not refused"))
                if outcome == "no answer":
                    report.failures.append((i, m.kind, m.data, f"no answer within {timeout} s"))
                    client.close()
                    client = None
                    continue
                probe = rng.choice([b"?", b"g"])
                reply = None
                for _ in range(4):                  # a probe may merge with an unfinished frame
                    reply = client.request(probe, timeout)
                    if probe_ok(reply, registers, probe):
                        break
                    client.drain()
                else:
                    report.failures.append((i, m.kind, m.data, f"probe {probe!r} got {reply!r:.200}"))
            except Closed:
                report.answered["closed"] += 1
                if not detaches(m):
                    report.failures.append((i, m.kind, m.data, "connection closed"))
                client.close()
                client = None
                time.sleep(0.05)
            except ValueError as e:
                report.failures.append((i, m.kind, m.data, f"malformed reply: {e}"))
                client.close()
                client = None
        problem = server.problem()
        if problem and not any(why == problem for *_, why in report.failures):
            report.failures.append((count, "-", b"", problem))
    finally:
        if client is not None:
            client.close()
        server.stop()
    return report


def exchange(client: Client, m: Mutant, timeout: float) -> str:
    """Send a mutant; what came back: reply, nak, silent (allowed), or no answer."""
    client.send(m.data)
    first = min(0.3, timeout) if (m.resumes or m.silent_ok) else timeout
    reply = client.response(first)
    if reply is None and not m.silent_ok:
        client.send(b"\x03")                         # gdb's Ctrl-C: stop a running guest
        reply = client.response(timeout)
    if reply is None:
        return "silent" if m.silent_ok else "no answer"
    if m.resumes:
        client.drain()                               # a stop reply may follow the Ctrl-C's
    if m.must_refuse and reply != "-" and not reply.startswith(b"E"):
        return "accepted"
    return "nak" if reply == "-" else "reply"


# ---- all of it ------------------------------------------------------------------------
def fuzz(seed: int, count: int, time_limit: float, targets=("replay", "live"),
         timeout: float = 30.0, work: Path | None = None, echo=print) -> dict:
    """Run `count` mutants against each target; a summary dict (reports by target)."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="rsp-fuzz-") as tmp:
        work = Path(work or tmp)
        record(work)
        reports = {}
        for n, name in enumerate(targets):
            share = (time_limit - (time.monotonic() - started)) / (len(targets) - n)
            rng = random.Random(f"{seed}:{name}")
            reports[name] = fuzz_target(name, work, rng, count, time.monotonic() + share,
                                        timeout, echo)
            r = reports[name]
            echo(f"{name}: {sum(r.sent.values())} packets over {r.connections} connections, "
                 f"{len(r.failures)} failures; answers {dict(r.answered)}; "
                 f"sent {dict(sorted(r.sent.items()))}")
            for i, kind, data, why in r.failures[:20]:
                echo(f"  FAIL #{i} {kind} {data[:120]!r}: {why}")
    total = sum(sum(r.sent.values()) for r in reports.values())
    failures = sum(len(r.failures) for r in reports.values())
    echo(f"rsp_packets seed {seed}: {total} packets, {failures} failures, "
         f"{time.monotonic() - started:.0f} s")
    return {"reports": reports, "packets": total, "failures": failures}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--count", type=int, default=1000, help="mutants per target")
    parser.add_argument("--time-limit", type=float, default=600, help="seconds, all targets")
    parser.add_argument("--timeout", type=float, default=30, help="seconds an answer may take")
    parser.add_argument("--target", choices=["replay", "live", "both"], default="both")
    args = parser.parse_args()
    targets = ("replay", "live") if args.target == "both" else (args.target,)
    result = fuzz(args.seed, args.count, args.time_limit, targets, args.timeout)
    return 1 if result["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())

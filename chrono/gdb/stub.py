"""The gdb remote stub: RSP packets in, target actions and stop replies out.

The stub is one thread serving one gdb at a time; the target (targets.py)
does the work: registers, memory, breakpoints, and moving (step, continue,
and, on a recording, reverse step and reverse continue).  Supported:

    ?  g G p P m M X  Z0/z0 Z1/z1 (software and hardware breakpoints)
    Z2/z2 Z3/z3 Z4/z4 (write, read, access watchpoints; when the target has them)
    s c vCont (c, s, t) bs bc  qSupported qXfer:features:read (target.xml)
    qRcmd (monitor commands)  QStartNoAckMode  H qC qfThreadInfo qsThreadInfo
    qAttached T D k

Stop replies carry `swbreak`, `hwbreak`, `watch`/`rwatch`/`awatch` and
`replaylog:begin`/`replaylog:end` (reverse or forward execution reached an end
of the recording).
"""
from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from chrono.errors import ChronoError
from chrono.gdb.registers import target_xml
from chrono.gdb.rsp import INTERRUPT, MAX_PACKET, Connection, ConnectionClosed

THREAD = "1"


@dataclass(frozen=True)
class StopEvent:
    """Why the target stopped (targets return these)."""

    kind: str               # step, breakpoint, watch, rwatch, awatch, begin, end, interrupt, exited
    address: int = 0        # the data address of a watchpoint hit
    code: int = 0           # exit code for "exited"


def stop_reply(event: StopEvent, hardware_breakpoint: bool = False) -> str:
    if event.kind == "exited":
        return f"W{event.code & 0xFF:02x}"
    signal = "02" if event.kind == "interrupt" else "05"
    extra = ""
    if event.kind == "breakpoint":
        extra = "hwbreak:;" if hardware_breakpoint else "swbreak:;"
    elif event.kind in ("watch", "rwatch", "awatch"):
        extra = f"{event.kind}:{event.address:x};"
    elif event.kind in ("begin", "end"):
        extra = f"replaylog:{event.kind};"
    return f"T{signal}{extra}thread:{THREAD};"


def _hex64(value: int | None) -> str:
    if value is None:
        return "xx" * 8
    return struct.pack("<Q", value & (2**64 - 1)).hex()


class GdbStub:
    def __init__(self, target):
        self.target = target
        self.regs = target.registers()
        self.xml = target_xml(self.regs).encode()
        self.conn: Connection | None = None
        self.last_stop = StopEvent("step")
        self._acks_off = False
        self.killed = False             # gdb sent `k` (kill), not `D` (detach)

    # ---- serving -------------------------------------------------------------------
    def serve(self, sock: socket.socket) -> None:
        """Serve one connected gdb until it detaches, kills or disconnects."""
        self.conn = Connection(sock)
        try:
            while True:
                packet = self.conn.read_packet()
                if packet is INTERRUPT:
                    continue            # already stopped
                reply = self.handle(packet)
                if reply is None:       # detach or kill: the reply was sent
                    return
                self.conn.send(reply)
                if self._acks_off:
                    self.conn.acks = self._acks_off = False
        except (ConnectionClosed, ConnectionResetError, BrokenPipeError):
            return

    def handle(self, packet: bytes) -> str | bytes | None:
        text = packet.decode("latin-1")
        head = text[:1]
        try:
            if text.startswith("qSupported"):
                reverse = "ReverseStep+;ReverseContinue+;" if self.target.reversible else ""
                return (f"PacketSize={MAX_PACKET:x};qXfer:features:read+;{reverse}"
                        f"swbreak+;hwbreak+;vContSupported+;QStartNoAckMode+")
            if text == "QStartNoAckMode":
                self._acks_off = True       # after this reply, which gdb still acks
                return "OK"
            if text.startswith("qXfer:features:read:target.xml:"):
                return self._xfer(text.rsplit(":", 1)[1])
            if text.startswith("qRcmd,"):
                try:
                    output = self.target.monitor(bytes.fromhex(text[6:]).decode("utf-8", "replace"))
                except ChronoError as e:          # a bad name or address: say so, go on
                    output = f"error: {e.message}\n"
                return (output.encode().hex() if output else "OK")
            if text in ("qC",):
                return f"QC{THREAD}"
            if text == "qfThreadInfo":
                return f"m{THREAD}"
            if text == "qsThreadInfo":
                return "l"
            if text == "qAttached":
                return "1"
            if text.startswith(("H", "T")):
                return "OK"
            if text == "?":
                return stop_reply(self.last_stop)
            if text == "vCont?":
                return "vCont;c;C;s;S;t"
            if text.startswith("vCont;"):
                return self._vcont(text[6:])
            if text == "vMustReplyEmpty":
                return ""
            if head == "g":
                return "".join(_hex64(self.target.read_register(r)) for r in self.regs)
            if head == "G":
                return self._write_all(text[1:])
            if head == "p":
                r = self._register(int(text[1:], 16))
                return _hex64(self.target.read_register(r)) if r else "E45"
            if head == "P":
                number, value = text[1:].split("=")
                r = self._register(int(number, 16))
                value = struct.unpack("<Q", bytes.fromhex(value).ljust(8, b"\0")[:8])[0]
                return "OK" if r and self.target.write_register(r, value) else "E45"
            if head == "m":
                address, length = (int(v, 16) for v in text[1:].split(","))
                data = self.target.read_memory(address, min(length, MAX_PACKET // 2))
                return data.hex() if data is not None else "E14"
            if head == "M":
                where, data = text[1:].split(":", 1)
                address, _ = (int(v, 16) for v in where.split(","))
                return self._write_memory(address, bytes.fromhex(data))
            if head == "X":
                where, _, data = packet[1:].partition(b":")
                address, _ = (int(v, 16) for v in where.decode().split(","))
                return self._write_memory(address, data)
            if head in ("Z", "z"):
                kind, address, length = text[1:].split(",")[:3]
                ok = self.target.set_point(head == "Z", int(kind), int(address, 16),
                                           int(length.split(";")[0], 16))
                return "" if ok is None else "OK" if ok else "E01"    # "": not supported
            if head == "s":
                return self._resume("step")
            if head == "c":
                return self._resume("cont")
            if text in ("bs", "bc") and self.target.reversible:
                return self._resume("reverse-step" if text == "bs" else "reverse-cont")
            if head == "D":
                self.conn.send("OK")
                self.target.detach()
                return None
            if head == "k":
                self.killed = True
                self.target.detach()
                return None
        except (ValueError, IndexError):
            return "E01"
        return ""           # not supported

    def _xfer(self, window: str) -> str:
        offset, length = (int(v, 16) for v in window.split(","))
        chunk = self.xml[offset:offset + length]
        return ("l" if offset + length >= len(self.xml) else "m") + chunk.decode()

    def _register(self, number: int):
        return next((r for r in self.regs if r.number == number), None)

    def _write_all(self, data: str) -> str:
        raw = bytes.fromhex(data)
        for i, r in enumerate(self.regs):
            chunk = raw[i * 8:(i + 1) * 8]
            if len(chunk) == 8:
                self.target.write_register(r, struct.unpack("<Q", chunk)[0])
        return "OK"

    def _write_memory(self, address: int, data: bytes) -> str:
        problem = self.target.write_memory(address, data)
        return "OK" if problem is None else problem

    def _vcont(self, actions: str) -> str:
        action = actions.split(";")[0].split(":")[0]
        if action in ("s", "S"):
            return self._resume("step")
        if action in ("c", "C"):
            return self._resume("cont")
        if action == "t":
            return stop_reply(StopEvent("interrupt"))
        return ""

    def _resume(self, how: str) -> str:
        event = self.target.resume(how, self.conn.interrupted)
        self.last_stop = event
        return stop_reply(event, self.target.hardware_breakpoint_hit())


def listen(host: str, port: int) -> socket.socket:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((host, port))
    server.listen(1)
    return server

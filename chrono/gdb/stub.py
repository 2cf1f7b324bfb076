"""The gdb remote stub: RSP packets in, target actions and stop replies out.

The stub is one thread serving one gdb at a time; the target (targets.py)
does the work: registers, memory, breakpoints, and moving (step, continue,
and, on a recording, reverse step and reverse continue).  Supported:

    ?  g G p P m M X  Z0/z0 Z1/z1 (software and hardware breakpoints)
    Z2/z2 Z3/z3 Z4/z4 (write, read, access watchpoints; when the target has them)
    s c vCont (c, C, s, S, t) bs bc  qSupported qXfer:features:read (target.xml)
    qRcmd (monitor commands)  QStartNoAckMode  H qC qfThreadInfo qsThreadInfo
    qAttached T D k

Stop replies carry `swbreak`, `hwbreak`, `watch`/`rwatch`/`awatch` and
`replaylog:begin`/`replaylog:end` (reverse or forward execution reached an end
of the recording).
"""
from __future__ import annotations

import errno
import socket
import struct
from dataclasses import dataclass

from chrono.errors import ChronoError, UsageError
from chrono.gdb import packets
from chrono.gdb.registers import target_xml
from chrono.gdb.rsp import (INTERRUPT, MAX_PACKET, TOO_LONG, Connection, ConnectionClosed,
                             PacketError)

THREAD = "1"
PC = 32                     # gdb's number for pc (registers.py)


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
        """Serve one connected gdb until it detaches, kills or disconnects; then
        its break- and watchpoints go (a next gdb starts without them)."""
        self.conn = Connection(sock)
        try:
            while True:
                packet = self.conn.read_packet()
                if packet is INTERRUPT:
                    continue            # already stopped
                reply = "E01" if packet is TOO_LONG else self.handle(packet)
                if reply is None:       # detach or kill: the reply was sent
                    return
                self.conn.send(reply)
                if self._acks_off:
                    self.conn.acks = self._acks_off = False
        except (ConnectionClosed, ConnectionResetError, BrokenPipeError):
            return
        finally:
            self.target.detach()

    def handle(self, packet: bytes) -> str | bytes | None:
        """The reply to one packet (None: detach or kill, answered already).
        A packet that does not parse, or a write the target refuses, is E01."""
        try:
            return self._dispatch(packet.decode("latin-1"), packet)
        except (PacketError, ChronoError):
            return "E01"

    def _dispatch(self, text: str, packet: bytes) -> str | None:
        head, body = text[:1], text[1:]
        if text == "qSupported" or text.startswith("qSupported:"):
            reverse = "ReverseStep+;ReverseContinue+;" if self.target.reversible else ""
            return (f"PacketSize={MAX_PACKET:x};qXfer:features:read+;{reverse}"
                    f"swbreak+;hwbreak+;vContSupported+;QStartNoAckMode+")
        if text == "QStartNoAckMode":
            self._acks_off = True       # after this reply, which gdb still acks
            return "OK"
        if text.startswith("qXfer:features:read:"):
            annex, _, window = text[len("qXfer:features:read:"):].rpartition(":")
            return self._xfer(*packets.xfer_window(window)) if annex == "target.xml" else "E00"
        if text.startswith("qRcmd,"):
            line = packets.monitor_line(text[6:])
            try:
                output = self.target.monitor(line)
            except ChronoError as e:          # a bad name, position or address: say so, go on
                output = f"error: {e.message}\n"
            return output.encode().hex() if output else "OK"
        if text == "qC":
            return f"QC{THREAD}"
        if text == "qfThreadInfo":
            return f"m{THREAD}"
        if text == "qsThreadInfo":
            return "l"
        if text == "qAttached":
            return "1"
        if head == "H":
            packets.thread_select(body)
            return "OK"
        if head == "T":
            return "OK" if packets.thread_is_ours(body) else "E01"
        if text == "?":
            return stop_reply(self.last_stop)
        if text == "vCont?":
            return "vCont;c;C;s;S;t"
        if text.startswith("vCont;"):
            return self._vcont(packets.vcont(text[6:]))
        if text == "g":
            return "".join(_hex64(self.target.read_register(r)) for r in self.regs)
        if head == "G":
            values = packets.all_registers(body, len(self.regs))
            changes = [(r, v) for r, v in zip(self.regs, values) if v is not None]
            return "OK" if self.target.write_registers(changes) else "E01"
        if head == "p":
            r = self._register(packets.number(body, 32))
            return _hex64(self.target.read_register(r)) if r else "E45"
        if head == "P":
            number, value = packets.register_write(body)
            r = self._register(number)
            return "OK" if r and self.target.write_registers([(r, value)]) else "E45"
        if head == "m":
            address, length = packets.address_length(body)
            data = self.target.read_memory(address, min(length, MAX_PACKET // 2))
            return data.hex() if data is not None else "E14"
        if head == "M":
            return self._write_memory(*packets.memory_write(body))
        if head == "X":
            return self._write_memory(*packets.binary_write(packet[1:]))
        if head in ("Z", "z"):
            kind, address, length = packets.point(body)
            ok = self.target.set_point(head == "Z", kind, address, length)
            return "" if ok is None else "OK" if ok else "E01"    # "": not supported
        if head in ("s", "c"):
            return self._resume("step" if head == "s" else "cont", packets.resume_address(body))
        if text in ("bs", "bc") and self.target.reversible:
            return self._resume("reverse-step" if text == "bs" else "reverse-cont")
        if text == "D" or text.startswith("D;"):
            self.conn.send("OK")
            return None
        if text == "k":
            self.killed = True
            return None
        return ""           # not supported (vMustReplyEmpty, and whatever we do not know)

    def _xfer(self, offset: int, length: int) -> str:
        length = min(length, MAX_PACKET - 1)
        chunk = self.xml[offset:offset + length]
        return ("l" if offset + length >= len(self.xml) else "m") + chunk.decode()

    def _register(self, number: int):
        return next((r for r in self.regs if r.number == number), None)

    def _write_memory(self, address: int, data: bytes) -> str:
        problem = self.target.write_memory(address, data)
        return "OK" if problem is None else problem

    def _vcont(self, action: str) -> str:
        if action == "t":
            return stop_reply(StopEvent("interrupt"))
        return self._resume("step" if action == "s" else "cont")

    def _resume(self, how: str, address: int | None = None) -> str:
        if address is not None and not self.target.write_registers([(self._register(PC), address)]):
            return "E01"                # cannot resume elsewhere (a recording's pc is its past)
        event = self.target.resume(how, self.conn.interrupted)
        self.last_stop = event
        return stop_reply(event, self.target.hardware_breakpoint_hit())


def listen(host: str, port: int, option: str = "--port") -> socket.socket:
    """A socket listening on host:port for one gdb; `option` is how the user
    chooses the port, named in the error when it cannot be used."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    server = socket.socket(family, socket.SOCK_STREAM)
    try:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((host, port))
        server.listen(1)
    except OSError as e:
        server.close()
        raise UsageError(_bind_problem(host, port, option, e)) from None
    return server


def _bind_problem(host: str, port: int, option: str, e: OSError) -> str:
    if isinstance(e, socket.gaierror):
        return f"cannot listen on {host!r}: not a host name or address here; use --host 127.0.0.1"
    if e.errno == errno.EADDRINUSE:
        return (f"port {port} on {host} is in use; choose another with {option} "
                f"({option} 0 picks a free one)")
    if e.errno == errno.EADDRNOTAVAIL:
        return (f"cannot listen on {host}: it is not an address of this machine; "
                f"use --host 127.0.0.1 (or one of this machine's addresses)")
    if e.errno == errno.EACCES:
        return (f"port {port} on {host}: permission denied (ports below 1024 need root); "
                f"choose another with {option}")
    return f"cannot listen on {host}:{port} ({e.strerror or e}); choose another with {option}"

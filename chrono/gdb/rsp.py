"""The GDB Remote Serial Protocol on a socket: packets, acks, escapes, interrupts.

A packet is `$payload#cc` (cc = the payload's byte sum mod 256 in hex); the
receiver answers `+` (or `-` to have it sent again) until no-ack mode is
agreed.  Binary data (gdb's X packets, our replies) escapes `#`, `$`, `}` and
`*` as `}` + (byte ^ 0x20); the packets themselves are not unescaped here,
only the fields that carry binary data (packets.py).  A 0x03 byte outside a
packet means "stop now" (Ctrl-C).
"""
from __future__ import annotations

import select
import socket

INTERRUPT = object()        # what read_packet returns for gdb's Ctrl-C
TOO_LONG = object()         # ... for a packet longer than we advertised (it was skipped)
MAX_PACKET = 0x4000         # what we advertise (PacketSize)


class ConnectionClosed(Exception):
    """gdb went away."""


class PacketError(Exception):
    """A packet whose contents do not match its form; answered with an error reply."""


def checksum(data: bytes) -> int:
    return sum(data) & 0xFF


def escape(data: bytes) -> bytes:
    out = bytearray()
    for b in data:
        if b in b"#$}*":
            out += bytes((0x7D, b ^ 0x20))
        else:
            out.append(b)
    return bytes(out)


def unescape(data: bytes) -> bytes:
    out = bytearray()
    it = iter(data)
    for b in it:
        if b == 0x7D:
            escaped = next(it, None)
            if escaped is None:
                raise PacketError("binary data ends in the middle of an escape")
            b = escaped ^ 0x20
        out.append(b)
    return bytes(out)


class Connection:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.acks = True
        self._buf = bytearray()
        self._interrupted = False
        self._skipping = False      # inside a too long packet, dropping it up to its '#cc'

    def _fill(self, timeout: float | None) -> bool:
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            return False
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionClosed()
        self._buf += data
        return True

    def read_packet(self):
        """The next packet's payload (raw bytes, checksum verified), INTERRUPT, or TOO_LONG."""
        while True:
            if self._interrupted:
                self._interrupted = False
                return INTERRUPT
            if self._skipping:
                if self._skip_rest():
                    return TOO_LONG
                self._fill(None)
                continue
            while self._buf and self._buf[0] in b"+-":
                del self._buf[0]
            if self._buf and self._buf[0] == 0x03:
                del self._buf[0]
                return INTERRUPT
            start = self._buf.find(b"$")
            junk = len(self._buf) if start < 0 else start     # bytes before any packet
            if 0x03 in self._buf[:junk]:
                del self._buf[:junk]
                return INTERRUPT
            end = self._buf.find(b"#", start) if start >= 0 else -1
            if start >= 0 and (end - start - 1 if end >= 0 else len(self._buf) - start) > MAX_PACKET:
                del self._buf[:start]
                self._skipping = True
                continue
            if start >= 0 and end >= 0 and len(self._buf) >= end + 3:
                payload = bytes(self._buf[start + 1:end])
                sent = bytes(self._buf[end + 1:end + 3])
                del self._buf[:end + 3]
                if self.acks:
                    good = sent.lower() == f"{checksum(payload):02x}".encode()
                    self.sock.sendall(b"+" if good else b"-")
                    if not good:
                        continue
                return payload
            if start < 0:
                self._buf.clear()           # no packet begins here: nothing to keep
            self._fill(None)

    def _skip_rest(self) -> bool:
        """Drop a too long packet: True once its '#cc' has gone too."""
        end = self._buf.find(b"#")
        if end < 0 or len(self._buf) < end + 3:
            if end < 0:
                self._buf.clear()
            return False
        del self._buf[:end + 3]
        self._skipping = False
        if self.acks:
            self.sock.sendall(b"+")         # received; the reply says it was refused
        return True

    def send(self, payload: bytes | str) -> None:
        if isinstance(payload, str):
            payload = payload.encode()
        body = escape(payload)
        self.sock.sendall(b"$" + body + b"#" + f"{checksum(body):02x}".encode())

    def interrupted(self) -> bool:
        """Has gdb sent Ctrl-C (checked without blocking, while the target runs)?"""
        try:
            while self._fill(0):
                pass
        except ConnectionClosed:
            self._interrupted = True
            return True
        stop = self._buf.find(0x03)
        start = self._buf.find(b"$")
        if stop >= 0 and (start < 0 or stop < start):     # a Ctrl-C, not a byte of a packet
            del self._buf[stop]
            self._interrupted = False
            return True
        return False

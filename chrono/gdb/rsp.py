"""The GDB Remote Serial Protocol on a socket: packets, acks, escapes, interrupts.

A packet is `$payload#cc` (cc = the payload's byte sum mod 256 in hex); the
receiver answers `+` (or `-` to have it sent again) until no-ack mode is
agreed.  In the payload, `#`, `$`, `}` and `*` are escaped as `}` + (byte ^
0x20).  A lone 0x03 byte from gdb means "stop now" (Ctrl-C).
"""
from __future__ import annotations

import select
import socket

INTERRUPT = object()        # what read_packet returns for gdb's Ctrl-C
MAX_PACKET = 0x4000         # what we advertise (PacketSize)


class ConnectionClosed(Exception):
    """gdb went away."""


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
            b = next(it, 0x20) ^ 0x20
        out.append(b)
    return bytes(out)


class Connection:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.acks = True
        self._buf = bytearray()
        self._interrupted = False

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
        """The next packet's payload (unescaped bytes), or INTERRUPT."""
        while True:
            if self._interrupted:
                self._interrupted = False
                return INTERRUPT
            while self._buf and self._buf[0] in b"+-":
                del self._buf[0]
            if self._buf and self._buf[0] == 0x03:
                del self._buf[0]
                return INTERRUPT
            start = self._buf.find(b"$")
            if start > 0 and 0x03 in self._buf[:start]:
                self._buf[:start] = b""
                return INTERRUPT
            end = self._buf.find(b"#", start) if start >= 0 else -1
            if start >= 0 and end >= 0 and len(self._buf) >= end + 3:
                payload = bytes(self._buf[start + 1:end])
                sent = bytes(self._buf[end + 1:end + 3])
                del self._buf[:end + 3]
                if self.acks:
                    good = sent.lower() == f"{checksum(payload):02x}".encode()
                    self.sock.sendall(b"+" if good else b"-")
                    if not good:
                        continue
                return unescape(payload)
            self._fill(None)

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
        if 0x03 in self._buf:
            self._buf.remove(0x03)
            self._interrupted = False
            return True
        return False

"""The fields of the packets gdb sends, parsed strictly, in one place.

Each parser takes a packet's body (what follows its command letters) and
returns its values, or raises PacketError when the body does not say exactly
what its header promises: hex digits only, numbers within 64 bits, data as
long as its declared length, no stray fields.  The stub answers a PacketError
with an error reply and acts on nothing: a write that is not what gdb meant
must never be half done.
"""
from __future__ import annotations

from chrono.gdb.rsp import PacketError, unescape

HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
REGISTER_BYTES = 8          # every register gdb sees here is 64 bits (registers.py)
POINT_KINDS = range(5)      # Z0..Z4: software, hardware breakpoint; write, read, access watch
ALL_THREADS = ("-1", "0")   # "any" and "all" thread ids
OUR_THREAD = 1


def number(text: str, bits: int = 64) -> int:
    """A hex number of at most `bits` bits (no sign, prefix, spaces or empty field)."""
    if not text or not HEX_DIGITS.issuperset(text):
        raise PacketError(f"{text!r} is not a hex number")
    value = int(text, 16)
    if value >> bits:
        raise PacketError(f"{text} does not fit in {bits} bits")
    return value


def hex_bytes(text: str) -> bytes:
    if len(text) % 2 or not HEX_DIGITS.issuperset(text):
        raise PacketError("data is not an even count of hex digits")
    return bytes.fromhex(text)


def address_length(text: str) -> tuple[int, int]:
    """`ADDR,LENGTH` (m, and the head of M and X)."""
    fields = text.split(",")
    if len(fields) != 2:
        raise PacketError("expected ADDR,LENGTH")
    return number(fields[0]), number(fields[1])


def memory_write(body: str) -> tuple[int, bytes]:
    """M: `ADDR,LENGTH:HEXDATA`, the data exactly LENGTH bytes."""
    head, colon, data = body.partition(":")
    if not colon:
        raise PacketError("M without ':' before its data")
    address, length = address_length(head)
    return address, _exactly(hex_bytes(data), length)


def binary_write(body: bytes) -> tuple[int, bytes]:
    """X: `ADDR,LENGTH:BINARY` (escaped with '}'), the data exactly LENGTH bytes."""
    head, colon, data = body.partition(b":")
    if not colon:
        raise PacketError("X without ':' before its data")
    address, length = address_length(head.decode("latin-1"))
    return address, _exactly(unescape(data), length)


def _exactly(data: bytes, length: int) -> bytes:
    if len(data) != length:
        raise PacketError(f"{len(data)} bytes of data where the header says {length}")
    return data


def register_value(text: str) -> int:
    """One register as gdb sends it: 8 bytes, little-endian, in hex."""
    if len(text) != 2 * REGISTER_BYTES:
        raise PacketError(f"a register value is {2 * REGISTER_BYTES} hex digits")
    return int.from_bytes(hex_bytes(text), "little")


def register_write(body: str) -> tuple[int, int]:
    """P: `NUMBER=VALUE`."""
    fields = body.split("=")
    if len(fields) != 2:
        raise PacketError("expected NUMBER=VALUE")
    return number(fields[0], 32), register_value(fields[1])


def all_registers(body: str, count: int) -> list[int | None]:
    """G: every register in `g` order; None where gdb sent `xx...` (unknown: unchanged)."""
    width = 2 * REGISTER_BYTES
    if len(body) != count * width:
        raise PacketError(f"G carries {len(body)} hex digits; {count} registers take {count * width}")
    chunks = [body[i:i + width] for i in range(0, len(body), width)]
    return [None if chunk == "x" * width else register_value(chunk) for chunk in chunks]


def point(body: str) -> tuple[int, int, int]:
    """Z/z: `KIND,ADDR,LENGTH` (no conditions: ConditionalBreakpoints is not offered)."""
    fields = body.split(",")
    if len(fields) != 3 or fields[0] not in tuple(map(str, POINT_KINDS)):
        raise PacketError("expected KIND,ADDR,LENGTH with KIND 0-4")
    return int(fields[0]), number(fields[1]), number(fields[2])


def resume_address(body: str) -> int | None:
    """s/c: an optional address to resume at."""
    return number(body) if body else None


def xfer_window(text: str) -> tuple[int, int]:
    """qXfer's `OFFSET,LENGTH`."""
    return address_length(text)


def thread_is_ours(text: str) -> bool:
    """A thread id (in H, T, vCont): ours, or "any"/"all"."""
    if text in ALL_THREADS:
        return True
    return number(text) == OUR_THREAD


def thread_select(body: str) -> None:
    """H: `OPTHREAD`, OP one of g, c (and m, s); the thread must be ours."""
    if len(body) < 2 or body[0] not in "gcms" or not thread_is_ours(body[1:]):
        raise PacketError("expected Hg/Hc with thread -1, 0 or 1")


def vcont(body: str) -> str:
    """vCont;ACTION[:THREAD]...: the action for our thread: 'c', 's' or 't'."""
    chosen = None
    for item in body.split(";"):
        action, colon, thread = item.partition(":")
        if action in ("c", "s", "t"):
            kind = action
        elif len(action) == 3 and action[0] in "CS":
            number(action[1:], 8)           # a signal number: the guest has no signals
            kind = action[0].lower()
        else:
            raise PacketError(f"vCont action {action!r} is not c, Csig, s, Ssig or t")
        if colon and not thread_is_ours(thread):
            continue
        chosen = chosen or kind             # the first action that applies wins
    if chosen is None:
        raise PacketError("no vCont action applies to thread 1")
    return chosen


def monitor_line(body: str) -> str:
    """qRcmd,HEX: the command line gdb's `monitor` was given."""
    return hex_bytes(body).decode("utf-8", "replace")

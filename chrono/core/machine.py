"""The Python face of the native core: one Machine = one hart + the virt board.

Machine wraps the C handle (chrono._core) and exposes guest RAM, the disk and
the dirty maps as numpy views over the native buffers (no copies), `run(n)`
that executes exactly n steps or stops earlier and says why, registers, the
console, and the complete CPU/device state as bytes.

numpy is imported where it is used, and the views are made on first use:
importing numpy costs more than half of a fast boot's budget (`chrono run
--from`, whose restore, lazy page loads and runs need none of it).
"""
from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from chrono._core import ffi, lib
from chrono.core.board import RAM_BASE
from chrono.errors import GuestError, UsageError

if TYPE_CHECKING:
    import numpy as np

PAGE_SIZE = 4096
_ZERO_PAGE = bytes(PAGE_SIZE)


class Stop(enum.IntEnum):
    """Why Machine.run returned (mirrors enum chrono_stop)."""

    BUDGET = lib.CHRONO_STOP_BUDGET
    POWEROFF = lib.CHRONO_STOP_POWEROFF
    REBOOT = lib.CHRONO_STOP_REBOOT
    HTIF_EXIT = lib.CHRONO_STOP_HTIF_EXIT
    BREAKPOINT = lib.CHRONO_STOP_BREAKPOINT
    IDLE = lib.CHRONO_STOP_IDLE
    OUTPUT = lib.CHRONO_STOP_OUTPUT
    INPUT = lib.CHRONO_STOP_INPUT
    FATAL = lib.CHRONO_STOP_FATAL
    ENTROPY = lib.CHRONO_STOP_ENTROPY       # the guest wants entropy: code = bytes wanted
    WATCHPOINT = lib.CHRONO_STOP_WATCHPOINT  # a watched access completed: code = its address
    NET = lib.CHRONO_STOP_NET               # the guest sent frames, or posted receive buffers


NO_DEADLINE = (1 << 64) - 1

# CHRONO_JIT=0 makes every machine use the interpreter only; CHRONO_JIT_THRESHOLD=N
# translates blocks after N runs (tests set 1 to put the JIT under every program).
JIT_ENV = "CHRONO_JIT"
JIT_THRESHOLD_ENV = "CHRONO_JIT_THRESHOLD"


def jit_wanted() -> bool:
    """Whether new machines translate guest code to host code (the default)."""
    return os.environ.get(JIT_ENV, "1") != "0"


def jit_threshold_wanted() -> int:
    """CHRONO_JIT_THRESHOLD, or 0 (the core's default)."""
    text = os.environ.get(JIT_THRESHOLD_ENV, "")
    if not text:
        return 0
    if not text.isdigit():
        raise UsageError(f"{JIT_THRESHOLD_ENV} must be a whole number of runs, not {text!r}")
    return int(text)


def force_interpreter() -> None:
    """Use the interpreter only, in this process and the ones it starts
    (--no-jit).  Results never depend on it, only speed does."""
    os.environ[JIT_ENV] = "0"


@ffi.def_extern()
def chrono_provide_page(ctx, page_index):
    """C asks for a page that is not present: hand it to the machine's provider."""
    machine = ffi.from_handle(ctx)
    try:
        machine._provide_page(page_index)
        return 0
    except Exception as e:      # noqa: BLE001 - reported through the run result
        machine.provider_error = e
        return -1


class Watch(enum.IntEnum):
    """What a watchpoint catches (mirrors enum chrono_watch)."""

    WRITE = lib.CHRONO_WATCH_WRITE
    READ = lib.CHRONO_WATCH_READ
    ACCESS = lib.CHRONO_WATCH_ACCESS


@dataclass(frozen=True)
class WatchHit:
    pc: int                 # the instruction that made the access
    address: int            # the first watched byte it touched (physical)
    access: Watch           # WRITE or READ: what the access was
    watchpoint: Watch       # the kind of the watchpoint it hit
    device: bool            # device DMA (during the instruction at pc), not the hart

@dataclass(frozen=True)
class RunResult:
    reason: Stop
    executed: int           # steps executed by this call
    code: int = 0           # poweroff / HTIF exit code; ENTROPY: bytes wanted
    deadline: int = NO_DEADLINE  # IDLE: virtual clock of the next timer event

    @property
    def has_deadline(self) -> bool:
        return self.deadline != NO_DEADLINE


# The longest frame the network device carries (NET_FRAME_MAX in native/machine.h).
NET_FRAME_MAX = 65550


class Received(enum.IntEnum):
    """What Machine.net_receive did with a frame (machine_net_receive's result)."""

    DELIVERED = 1           # in the guest's next receive buffer
    NO_BUFFER = 0           # the guest has posted none: nothing changed, offer it again later
    DROPPED = -1            # it did not fit that buffer (or the queue is broken): buffer returned empty


_RECEIVED = (Received.DROPPED, Received.NO_BUFFER, Received.DELIVERED)   # by result + 1


# Register numbering of machine_get_reg / machine_set_reg.
REG_PC = 32
REG_PRIV = 33
REG_F0 = 34             # f0..f31 follow, raw 64-bit contents


class Machine:
    """A RISC-V RV64 machine on chrono's QEMU-virt-compatible board."""

    timebase_hz = lib.machine_timebase_hz()
    steps_per_tick = lib.machine_steps_per_tick()

    def __init__(self, ram_size: int, tohost: int | None = None, fromhost: int | None = None,
                 rtc_epoch_ns: int = 0, jit: bool | None = None, jit_threshold: int = 0,
                 virtio: str = "mmio"):
        """rtc_epoch_ns is the wall-clock time the guest's RTC shows at virtual
        time 0: an input like console bytes (record/replay logs it).  virtio says
        where the virtio devices sit: "mmio" (their virtio-mmio slots) or "pci"
        (the PCIe bus, virtio-pci); it is part of the board.  jit=False
        forces the interpreter (None: as jit_wanted() says); jit_threshold is
        how often a block runs before it is translated (0: the core's default;
        tests lower it to translate more)."""
        if ram_size <= 0 or ram_size % PAGE_SIZE:
            raise UsageError(f"RAM size {ram_size} is not a positive multiple of 4 KiB")
        cfg = ffi.new("struct chrono_config *")
        cfg.ram_size = ram_size
        cfg.htif_tohost = tohost or 0
        cfg.htif_fromhost = fromhost or 0
        cfg.rtc_epoch_ns = rtc_epoch_ns
        cfg.no_jit = 0 if (jit_wanted() if jit is None else jit) else 1
        cfg.jit_threshold = jit_threshold or jit_threshold_wanted()
        if virtio not in ("mmio", "pci"):
            raise UsageError(f"virtio transport {virtio!r}: use mmio or pci")
        cfg.virtio_pci = 1 if virtio == "pci" else 0
        self.virtio = virtio
        self.rtc_epoch_ns = rtc_epoch_ns
        handle = lib.machine_new(cfg)
        if handle == ffi.NULL:
            raise UsageError(f"cannot allocate a machine with {ram_size >> 20} MiB of RAM")
        self._m = ffi.gc(handle, lib.machine_free)
        self.ram_size = ram_size
        self._pages = ram_size // PAGE_SIZE
        self._ram_base = lib.machine_ram(self._m)
        # One byte per page, 1 = present (lazy restore); memoryviews need no numpy.
        self._present = memoryview(ffi.buffer(lib.machine_ram_present(self._m), self._pages))
        self._dirty = memoryview(ffi.buffer(lib.machine_ram_dirty(self._m), self._pages))
        self._absent_from = 0           # no absent page below this index (prefetch's cursor)
        self.faults: list[int] = []     # pages the guest touched while absent (note_faults)
        self._faults_limit = 0
        self.disk = None
        self._result = ffi.new("struct chrono_result *")
        self._console_buf = ffi.new("uint8_t[]", 8192)
        self._provider = None
        self._provider_handle = None
        self._maybe_absent = False      # some RAM page may still be absent
        self.provider_error: Exception | None = None

    # ---- numpy views over the native buffers (made on first use) -----------------
    @cached_property
    def _ram(self) -> np.ndarray:
        import numpy as np
        return np.frombuffer(ffi.buffer(self._ram_base, self.ram_size), dtype=np.uint8)

    @cached_property
    def ram(self) -> np.ndarray:
        """Guest RAM, read-only: host writes go through write_phys/fill_page/
        zero_ram, which tell the core (its decoded code must be rechecked)."""
        view = self._ram.view()
        view.flags.writeable = False
        return view

    @cached_property
    def ram_dirty(self) -> np.ndarray:
        """One byte per page: written since the last clear_ram_dirty."""
        import numpy as np
        return np.frombuffer(self._dirty, dtype=np.uint8)

    @cached_property
    def ram_present(self) -> np.ndarray:
        """One byte per page: 0 = absent, its content comes from the page provider."""
        import numpy as np
        return np.frombuffer(self._present, dtype=np.uint8)

    # ---- memory -----------------------------------------------------------
    def write_phys(self, address: int, data: bytes) -> None:
        """Copy bytes into guest RAM at a physical address (host side, marks dirty)."""
        offset = address - RAM_BASE
        if offset < 0 or offset + len(data) > self.ram_size:
            raise UsageError(f"{len(data)} bytes at {address:#x} do not fit in guest RAM")
        if not data:
            return
        first, last = offset // PAGE_SIZE, (offset + len(data) - 1) // PAGE_SIZE
        self.materialize(range(first, last + 1))
        lib.machine_host_will_write(self._m, 0, offset, len(data))
        ffi.memmove(self._ram_base + offset, data, len(data))
        self._dirty[first:last + 1] = b"\x01" * (last + 1 - first)
        lib.machine_host_wrote(self._m)

    def fill_page(self, page: int, data) -> None:
        """A page provider's write: the content page `page` had all along (a
        restore), so it is not marked dirty.  `data`: 4 KiB, or None for zeros."""
        data = _ZERO_PAGE if data is None else data
        if len(data) != PAGE_SIZE:
            raise ValueError(f"a page is {PAGE_SIZE} bytes, not {len(data)}")
        ffi.memmove(self._ram_base + page * PAGE_SIZE, data, PAGE_SIZE)
        lib.machine_host_wrote(self._m)

    def zero_ram(self) -> None:
        """All of RAM to zeros, every page dirty (a guest-requested reset)."""
        lib.machine_host_will_write(self._m, 0, 0, self.ram_size)
        self._ram[:] = 0
        self.ram_dirty[:] = 1
        lib.machine_host_wrote(self._m)

    def read_phys(self, address: int, length: int) -> bytes:
        offset = address - RAM_BASE
        if offset < 0 or offset + length > self.ram_size:
            raise UsageError(f"{length} bytes at {address:#x} are not in guest RAM")
        if not length:
            return b""
        self.materialize(range(offset // PAGE_SIZE, (offset + length - 1) // PAGE_SIZE + 1))
        return ffi.buffer(self._ram_base + offset, length)[:]

    def clear_ram_dirty(self) -> None:
        lib.machine_clear_ram_dirty(self._m)

    # ---- lazy RAM ---------------------------------------------------------------
    def set_page_provider(self, provider) -> None:
        """provider(page_index) must write that page into self.ram; it is called
        the first time anything touches a page whose ram_present byte is 0."""
        self._provider = provider
        self._provider_handle = ffi.new_handle(self) if provider else None
        lib.machine_set_page_provider(self._m, lib.chrono_provide_page if provider else ffi.NULL,
                                      self._provider_handle or ffi.NULL)

    def _provide_page(self, page_index: int) -> None:
        if len(self.faults) < self._faults_limit:
            self.faults.append(page_index)
        self._provider(page_index)

    def note_faults(self, limit: int) -> None:
        """From now on, list in self.faults the first `limit` pages the guest
        touches while they are absent, in that order (pages the host
        materializes do not count); 0 stops (the list stays)."""
        if limit:
            self.faults = []
        self._faults_limit = limit

    def mark_absent(self, pages) -> None:
        """Mark pages as not present (their content will come from the provider).
        `pages` indexes ram_present: page numbers, a mask or a slice."""
        self.ram_present[pages] = 0
        self._absent_changed()

    def mark_absent_ranges(self, ranges) -> None:
        """mark_absent for runs of pages (`range`s), without numpy: how a fast
        boot marks the pages under each stored leaf of its snapshot."""
        for run in ranges:
            self._present[run.start:run.stop] = bytes(len(run))
        self._absent_changed()

    def _absent_changed(self) -> None:
        self._maybe_absent = True
        self._absent_from = 0
        lib.machine_invalidate_ram(self._m)

    def _absent_pages(self, limit: int | None = None) -> list[int]:
        """Up to `limit` absent pages, lowest first (a scan of the present map,
        from where the last one found none: pages only become absent through
        mark_absent*)."""
        present = self._present.tobytes()
        found = []
        page = present.find(0, self._absent_from)
        if page < 0:
            self._absent_from = len(present)
        while page >= 0 and (limit is None or len(found) < limit):
            found.append(page)
            page = present.find(0, page + 1)
        if found:
            self._absent_from = found[0]
        return found

    def prefetch(self, limit: int) -> int:
        """Materialize up to `limit` absent pages now (e.g. while the guest
        idles), so lazily restored RAM fills in before it is touched.  Never
        changes what the guest sees; returns how many pages it loaded."""
        if not self._maybe_absent:
            return 0
        absent = self._absent_pages(limit)
        if not absent:
            self._maybe_absent = False
            return 0
        self.materialize(absent)
        return len(absent)

    def materialize(self, pages=None) -> None:
        """Make pages (default: all) present now, e.g. before reading RAM from Python."""
        present = self._present
        if pages is None:
            absent = self._absent_pages()
        else:
            absent = [p for p in pages if not present[p]]
        for page in absent:
            present[page] = 1
            self._provider(int(page))

    def invalidate_ram(self) -> None:
        """After writing RAM from the host: drop cached translations."""
        lib.machine_invalidate_ram(self._m)

    # ---- disk -------------------------------------------------------------
    def attach_disk(self, disk) -> None:
        """Attach a chrono.core.disk.Disk as the virtio-blk device (slot 7)."""
        if lib.machine_attach_disk(self._m, disk.pointer, disk.size) != 0:
            raise UsageError("a disk is already attached, or its size is not a multiple of 512 bytes")
        blocks = lib.machine_disk_blocks(self._m)
        disk.bind(ffi.buffer(lib.machine_disk_dirty(self._m), blocks),
                  ffi.buffer(lib.machine_disk_written(self._m), blocks))
        self.disk = disk

    def clear_disk_dirty(self) -> None:
        lib.machine_clear_disk_dirty(self._m)

    def host_will_write_disk(self, offset: int, length: int) -> None:
        """Call before writing the disk buffer from the host (a capture may need it)."""
        lib.machine_host_will_write(self._m, 1, offset, length)

    # ---- copy-on-write capture (capture.c) ----------------------------------
    def capture_begin(self, ram_mask: np.ndarray, disk_mask: np.ndarray | None) -> None:
        """From now on the RAM pages and disk blocks set in the masks (a byte per
        page / block, like ram_dirty) keep this instant's content for
        capture_read, whatever the guest (or DMA, or the host) writes; the
        dirty maps are cleared.  The guest may run on at once."""
        import numpy as np
        ram = np.ascontiguousarray(ram_mask, dtype=np.uint8)
        if len(ram) != len(self.ram_dirty) or (
                disk_mask is not None and len(disk_mask) != lib.machine_disk_blocks(self._m)):
            raise UsageError("a capture mask does not have a byte per page or block")
        disk = ffi.NULL if disk_mask is None else ffi.from_buffer(
            "uint8_t[]", np.ascontiguousarray(disk_mask, dtype=np.uint8))
        if lib.machine_capture_begin(self._m, ffi.from_buffer("uint8_t[]", ram), disk) != 0:
            raise UsageError("a capture is still in progress (or a disk mask without a disk)")

    def capture_read(self, disk: bool, units) -> np.ndarray:
        """The captured content of RAM pages (or disk blocks): (len(units), 4096).
        Safe from another thread while the machine runs."""
        import numpy as np
        out = np.empty((len(units), PAGE_SIZE), dtype=np.uint8)
        self.capture_read_into(disk, units, out)
        return out

    def capture_read_into(self, disk: bool, units, out: np.ndarray,
                          nonzero: np.ndarray | None = None) -> None:
        """capture_read into `out` (a C-contiguous uint8 array of at least
        len(units) rows of 4096 bytes, reused by the caller); `nonzero` (a uint8
        array as long) gets 1 for each unit holding a non-zero byte."""
        import numpy as np
        u = np.ascontiguousarray(units, dtype=np.uint64)
        if out.dtype != np.uint8 or not out.flags.c_contiguous or out.size < len(u) * PAGE_SIZE \
                or (nonzero is not None and (nonzero.dtype != np.uint8 or len(nonzero) < len(u))):
            raise UsageError("capture_read_into needs uint8 buffers as long as the units")
        flags = ffi.NULL if nonzero is None else ffi.from_buffer("uint8_t[]", nonzero)
        if lib.machine_capture_read(self._m, 1 if disk else 0, ffi.from_buffer("uint64_t[]", u),
                                    len(u), ffi.from_buffer("uint8_t[]", out), flags) != 0:
            raise GuestError("a captured page was lost (out of memory while the guest wrote it)")

    def capture_pending(self) -> int:
        return lib.machine_capture_pending(self._m)

    def capture_abandon(self) -> None:
        lib.machine_capture_abandon(self._m)

    # ---- network (virtio-net) ------------------------------------------------------
    def attach_net(self) -> None:
        """Give the machine its network device (virtio-mmio slot 5, or PCI
        00:02.0 with virtio="pci"; MAC 52:54:00:12:34:56).  Frames move only through net_receive / net_sent."""
        if lib.machine_net_attach(self._m) != 0:
            raise UsageError("the network device is already attached (or out of memory)")
        self._tx_frame = ffi.new("uint8_t[]", NET_FRAME_MAX)
        self._tx_steps = ffi.new("uint64_t *")

    @property
    def has_net(self) -> bool:
        return bool(lib.machine_net_present(self._m))

    def net_receive(self, frame: bytes) -> Received:
        """Offer one Ethernet frame to the guest (see Received): an input to log
        unless NO_BUFFER."""
        return _RECEIVED[lib.machine_net_receive(self._m, frame, len(frame)) + 1]

    def net_set_rx_waiting(self, waiting: bool) -> None:
        """Frames wait on the host: stop (Stop.NET) when the guest posts receive buffers."""
        lib.machine_net_set_rx_waiting(self._m, 1 if waiting else 0)

    def net_sent(self) -> list[tuple[bytes, int]]:
        """The frames the guest sent since the last call, oldest first, each with
        the position (steps) of the instruction that sent it."""
        if not self.has_net:
            return []
        out = []
        while n := lib.machine_net_tx_read(self._m, self._tx_frame, NET_FRAME_MAX, self._tx_steps):
            out.append((ffi.buffer(self._tx_frame, n)[:], self._tx_steps[0]))
        return out

    @property
    def net_tx_dropped(self) -> int:
        """Frames the guest sent that nobody took before the buffer filled."""
        return lib.machine_net_tx_dropped(self._m)

    # ---- execution ----------------------------------------------------------
    def reset(self, pc: int, a0: int = 0, a1: int = 0, a2: int = 0) -> None:
        lib.machine_reset(self._m, pc, a0, a1, a2)

    def run(self, max_steps: int) -> RunResult:
        """Execute exactly max_steps steps, or stop earlier and say why."""
        lib.machine_run(self._m, max_steps, self._result)
        r = self._result
        if r.reason == lib.CHRONO_STOP_FATAL:
            error, self.provider_error = self.provider_error, None
            if error is not None:
                raise error
            raise GuestError(ffi.string(lib.machine_error(self._m)).decode())
        return RunResult(Stop(r.reason), r.executed, r.code, r.deadline)

    @property
    def jit_enabled(self) -> bool:
        """Whether this machine translates guest code (asked for, and an x86-64 host)."""
        return bool(lib.machine_jit_enabled(self._m))

    @property
    def jit_translated(self) -> int:
        """Blocks translated to host code so far."""
        return lib.machine_jit_translated(self._m)

    def jit_stats(self) -> dict[str, int]:
        """The JIT's counters (names as struct chrono_jit_stats in chrono_core.h)."""
        out = ffi.new("struct chrono_jit_stats *")
        lib.machine_jit_stats(self._m, out)
        return {name: getattr(out, name) for name in
                ("translated", "declined", "guest_ops", "code_bytes", "cache_used",
                 "cache_size", "flushes")}

    def jit_code(self) -> bytes:
        """The code cache's bytes in use, as they run (b"" without the JIT)."""
        code = lib.machine_jit_code(self._m)
        used = self.jit_stats()["cache_used"]
        return ffi.buffer(code, used)[:] if code != ffi.NULL and used else b""

    @property
    def steps(self) -> int:
        """Position: instructions executed or trapped since reset."""
        return lib.machine_steps(self._m)

    @property
    def vclock(self) -> int:
        """Virtual clock in step units (steps plus idle time skipped)."""
        return lib.machine_vclock(self._m)

    @property
    def mtime(self) -> int:
        return lib.machine_mtime(self._m)

    def skip_to(self, vclock: int) -> None:
        """Jump the virtual clock forward to vclock (idle time; never backwards)."""
        lib.machine_skip_to(self._m, vclock)

    def add_breakpoint(self, pc: int) -> None:
        if lib.machine_add_breakpoint(self._m, pc) != 0:
            raise UsageError("too many breakpoints (the core holds 64)")

    def remove_breakpoint(self, pc: int) -> bool:
        return lib.machine_remove_breakpoint(self._m, pc) == 0

    def pass_breakpoints(self, on: bool) -> None:
        """On: breakpoints stop nothing, the core counts their hits (see
        breakpoint_hits); on clears the count, off keeps it."""
        lib.machine_pass_breakpoints(self._m, 1 if on else 0)

    def breakpoint_hits(self) -> tuple[int, int, int]:
        """(hits, steps before the last one, its pc) since pass_breakpoints."""
        out = ffi.new("struct chrono_breakpoint_hits *")
        lib.machine_breakpoint_hits(self._m, out)
        return out.count, out.last_steps, out.last_pc

    def add_watchpoint(self, address: int, length: int, kind: Watch) -> None:
        """Stop after any instruction or DMA that accesses physical [address, +length)."""
        if lib.machine_add_watchpoint(self._m, address, length, int(kind)) != 0:
            raise UsageError(f"cannot watch {length} bytes at {address:#x}: too many "
                             f"watchpoints (the core holds 16), or an empty range")

    def remove_watchpoint(self, address: int, length: int, kind: Watch) -> bool:
        return lib.machine_remove_watchpoint(self._m, address, length, int(kind)) == 0

    def watch_hit(self) -> WatchHit | None:
        """The first watchpoint hit since the last run() began, or None."""
        hit = ffi.new("struct chrono_watch_hit *")
        lib.machine_watch_hit(self._m, hit)
        if hit.kind == 0:
            return None
        return WatchHit(hit.pc, hit.addr, Watch(hit.kind), Watch(hit.watch_kind), bool(hit.device))

    # ---- registers ----------------------------------------------------------
    def reg(self, index: int) -> int:
        return lib.machine_get_reg(self._m, index)

    def xregs(self) -> list[int]:
        """x0..x31 in one call."""
        out = ffi.new("uint64_t[32]")
        lib.machine_get_xregs(self._m, out)
        return list(out)

    def set_reg(self, index: int, value: int) -> None:
        lib.machine_set_reg(self._m, index, value & (2**64 - 1))

    @property
    def pc(self) -> int:
        return self.reg(REG_PC)

    @property
    def priv(self) -> int:
        return self.reg(REG_PRIV)

    def registers(self) -> list[int]:
        """x0..x31 followed by pc."""
        return [self.reg(i) for i in range(33)]

    def csr(self, number: int) -> int | None:
        value = ffi.new("uint64_t *")
        return value[0] if lib.machine_get_csr(self._m, number, value) == 0 else None

    # ---- console ------------------------------------------------------------
    def console_read(self) -> bytes:
        n = lib.machine_console_read(self._m, self._console_buf, 8192)
        return ffi.buffer(self._console_buf, n)[:] if n else b""

    def console_read_steps(self) -> tuple[bytes, np.ndarray]:
        """Console output and, per byte, the steps at which its instruction ran."""
        import numpy as np
        buf = ffi.new("uint8_t[]", 8192)
        steps = np.zeros(8192, dtype=np.uint64)
        n = lib.machine_console_read_steps(self._m, buf, ffi.cast("uint64_t *", steps.ctypes.data), 8192)
        return ffi.buffer(buf, n)[:], steps[:n]

    def console_write(self, data: bytes) -> int:
        """Offer bytes to the UART receive FIFO; returns how many it took."""
        return lib.machine_console_write(self._m, data, len(data))

    def console_ready(self) -> bool:
        """The guest is ready for console input (receive interrupt on, or polling)."""
        return bool(lib.machine_console_ready(self._m))

    def console_returned(self) -> bytes:
        """Host input the guest discarded unread (it reset the receive FIFO):
        the host must deliver it again, before anything still queued."""
        buf = ffi.new("uint8_t[]", 64)
        n = lib.machine_console_returned(self._m, buf, 64)
        return ffi.buffer(buf, n)[:]

    def set_input_waiting(self, waiting: bool) -> None:
        lib.machine_set_input_waiting(self._m, 1 if waiting else 0)

    # ---- entropy (virtio-rng) ------------------------------------------------------
    def entropy_wanted(self) -> int:
        """Bytes the guest's pending entropy requests can take now (at most 4096;
        0 = none).  Only reads guest state."""
        return lib.machine_entropy_wanted(self._m)

    def entropy_write(self, data: bytes) -> int:
        """Fill the guest's pending entropy requests, in order, with up to
        len(data) bytes; returns how many it took (the rest are the caller's).
        The only way host randomness enters the guest: an input to log."""
        data = bytes(data)
        return lib.machine_entropy_write(self._m, data, len(data))

    # ---- state ----------------------------------------------------------------
    def save_state(self) -> bytes:
        """CPU and device state (not RAM or disk) as bytes."""
        size = lib.machine_state_size(self._m)
        buf = ffi.new("uint8_t[]", size)
        lib.machine_save_state(self._m, buf, size)
        return ffi.buffer(buf, size)[:]

    def load_state(self, state: bytes) -> None:
        if lib.machine_load_state(self._m, state, len(state)) != 0:
            raise UsageError("cannot load CPU/device state: "
                             + ffi.string(lib.machine_error(self._m)).decode())

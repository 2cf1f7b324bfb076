"""libslirp (user-mode TCP/IP for the guest, as QEMU, podman and slirp4netns use
it) through cffi in ABI mode: the library is opened with dlopen at run time, so
installing chrono needs neither its headers nor a compiler for it.  Debian's
package is `libslirp0`; the declarations below follow libslirp 4.x's public
header (SlirpConfig version 4), which is what that package ships.

slirp is a host-side thing: it turns the guest's frames into host socket
calls and host socket data into frames.  Its clock is the guest's virtual
clock (`clock` below gives nanoseconds of it), never the host's, so its TCP
timers and its own timers fire at points of guest time: a recording stays
exact and a fast-running guest sees timeouts as it would at its own speed.

CHRONO_LIBSLIRP names another library file to open (a build of one's own);
by default it is libslirp.so.0.
"""
from __future__ import annotations

import os
import select
import socket
import struct
from collections import deque
from typing import Callable

from cffi import FFI

from chrono.errors import NetworkError
from chrono.net import config

LIBRARY_ENV = "CHRONO_LIBSLIRP"
LIBRARY = "libslirp.so.0"

_ffi = FFI()
_ffi.cdef("""
typedef struct Slirp Slirp;
struct in_addr { uint32_t s_addr; };
struct in6_addr { uint32_t s6_addr32[4]; };

typedef ssize_t (*SlirpWriteCb)(const void *buf, size_t len, void *opaque);
typedef void (*SlirpTimerCb)(void *opaque);
typedef int (*SlirpAddPollCb)(int fd, int events, void *opaque);
typedef int (*SlirpGetREventsCb)(int idx, void *opaque);

typedef struct SlirpCb {
    SlirpWriteCb send_packet;
    void (*guest_error)(const char *msg, void *opaque);
    int64_t (*clock_get_ns)(void *opaque);
    void *(*timer_new)(SlirpTimerCb cb, void *cb_opaque, void *opaque);
    void (*timer_free)(void *timer, void *opaque);
    void (*timer_mod)(void *timer, int64_t expire_time, void *opaque);
    void (*register_poll_fd)(int fd, void *opaque);
    void (*unregister_poll_fd)(int fd, void *opaque);
    void (*notify)(void *opaque);
    void (*init_completed)(Slirp *slirp, void *opaque);
    void *(*timer_new_opaque)(int id, void *cb_opaque, void *opaque);
} SlirpCb;

typedef struct SlirpConfig {
    uint32_t version;
    int restricted;
    bool in_enabled;
    struct in_addr vnetwork;
    struct in_addr vnetmask;
    struct in_addr vhost;
    bool in6_enabled;
    struct in6_addr vprefix_addr6;
    uint8_t vprefix_len;
    struct in6_addr vhost6;
    const char *vhostname;
    const char *tftp_server_name;
    const char *tftp_path;
    const char *bootfile;
    struct in_addr vdhcp_start;
    struct in_addr vnameserver;
    struct in6_addr vnameserver6;
    const char **vdnssearch;
    const char *vdomainname;
    size_t if_mtu;
    size_t if_mru;
    bool disable_host_loopback;
    bool enable_emu;
    void *outbound_addr;
    void *outbound_addr6;
    bool disable_dns;
    bool disable_dhcp;
} SlirpConfig;

Slirp *slirp_new(const SlirpConfig *cfg, const SlirpCb *callbacks, void *opaque);
void slirp_cleanup(Slirp *slirp);
void slirp_pollfds_fill(Slirp *slirp, uint32_t *timeout, SlirpAddPollCb add_poll, void *opaque);
void slirp_pollfds_poll(Slirp *slirp, int select_error, SlirpGetREventsCb get_revents, void *opaque);
void slirp_input(Slirp *slirp, const uint8_t *pkt, int pkt_len);
int slirp_add_hostfwd(Slirp *slirp, int is_udp, struct in_addr host_addr, int host_port,
                      struct in_addr guest_addr, int guest_port);
const char *slirp_version_string(void);
""")

CONFIG_VERSION = 4
POLL_IN, POLL_OUT, POLL_PRI, POLL_ERR, POLL_HUP = 1, 2, 4, 8, 16
MTU = 1500
# slirp_pollfds_fill never asks to be polled later than this (ms) when none of
# its timers is due sooner; a longer answer means "no timer of mine pending".
IDLE_TIMEOUT_MS = 1000

_TO_POLL = ((POLL_IN, select.POLLIN), (POLL_OUT, select.POLLOUT), (POLL_PRI, select.POLLPRI))
_FROM_POLL = ((select.POLLIN, POLL_IN), (select.POLLOUT, POLL_OUT), (select.POLLPRI, POLL_PRI),
              (select.POLLERR, POLL_ERR), (select.POLLHUP, POLL_HUP), (select.POLLNVAL, POLL_ERR))

_lib = None


def library():
    """The opened libslirp (NetworkError with what to install when it cannot be)."""
    global _lib
    if _lib is None:
        name = os.environ.get(LIBRARY_ENV) or LIBRARY
        try:
            _lib = _ffi.dlopen(name)
        except OSError:
            raise NetworkError(
                f"--net user needs libslirp ({name} could not be loaded): install Debian's "
                f"libslirp0 (apt-get install libslirp0)") from None
    return _lib


def version() -> str:
    return _ffi.string(library().slirp_version_string()).decode()


def _in_addr(text: str):
    return {"s_addr": struct.unpack("<I", socket.inet_aton(text))[0]}


class Slirp:
    """One slirp instance on QEMU's addresses.  Frames for the guest collect in
    `outbox` (oldest first); `input` hands it a frame from the guest; `poll`
    services the host sockets and slirp's timers."""

    def __init__(self, clock: Callable[[], int], guest_error: Callable[[str], None] = lambda m: None):
        lib = library()
        self.clock = clock
        self.outbox: deque[bytes] = deque()
        self._guest_error = guest_error
        self._timers: dict[int, list] = {}      # id -> [callback, cb_opaque, expiry ns or None]
        self._poll: list[tuple[int, int]] = []  # (fd, slirp events) of the current fill
        self._revents: list[int] = []
        self._keep = [                          # callbacks must outlive the slirp
            _ffi.callback("SlirpWriteCb", self._send_packet),
            _ffi.callback("void(const char *, void *)", self._on_guest_error),
            _ffi.callback("int64_t(void *)", self._clock_ns),
            _ffi.callback("void *(SlirpTimerCb, void *, void *)", self._timer_new),
            _ffi.callback("void(void *, void *)", self._timer_free),
            _ffi.callback("void(void *, int64_t, void *)", self._timer_mod),
            _ffi.callback("void(int, void *)", lambda fd, opaque: None),
            _ffi.callback("void(int, void *)", lambda fd, opaque: None),
            _ffi.callback("void(void *)", lambda opaque: None),
        ]
        self._add_poll = _ffi.callback("SlirpAddPollCb", self._on_add_poll)
        self._get_revents = _ffi.callback("SlirpGetREventsCb", self._on_get_revents)
        cb = _ffi.new("SlirpCb *")
        (cb.send_packet, cb.guest_error, cb.clock_get_ns, cb.timer_new, cb.timer_free,
         cb.timer_mod, cb.register_poll_fd, cb.unregister_poll_fd, cb.notify) = self._keep
        cfg = _ffi.new("SlirpConfig *")
        cfg.version = CONFIG_VERSION
        cfg.in_enabled = True
        cfg.vnetwork = _in_addr(config.NETWORK)
        cfg.vnetmask = _in_addr(config.NETMASK)
        cfg.vhost = _in_addr(config.HOST)
        cfg.in6_enabled = False
        cfg.vdhcp_start = _in_addr(config.DHCP_START)
        cfg.vnameserver = _in_addr(config.DNS)
        cfg.if_mtu = cfg.if_mru = MTU
        self._callbacks = cb
        self._config = cfg
        self._timeout = _ffi.new("uint32_t *")
        self._lib = lib
        handle = lib.slirp_new(cfg, cb, _ffi.NULL)
        if handle == _ffi.NULL:
            raise NetworkError("libslirp could not start a network (slirp_new failed)")
        self._slirp = handle

    def close(self) -> None:
        """Close every connection and listening socket."""
        if self._slirp is not None:
            self._lib.slirp_cleanup(self._slirp)
            self._slirp = None

    # ---- callbacks from slirp ---------------------------------------------------------
    def _send_packet(self, buf, length, opaque):
        self.outbox.append(_ffi.buffer(buf, length)[:])
        return length

    def _on_guest_error(self, msg, opaque):
        self._guest_error(_ffi.string(msg).decode(errors="replace"))

    def _clock_ns(self, opaque):
        return self.clock()

    def _timer_new(self, callback, cb_opaque, opaque):
        handle = len(self._timers) + 1
        while handle in self._timers:
            handle += 1
        self._timers[handle] = [callback, cb_opaque, None]
        return _ffi.cast("void *", handle)

    def _timer_free(self, timer, opaque):
        self._timers.pop(int(_ffi.cast("uintptr_t", timer)), None)

    def _timer_mod(self, timer, expire_ms, opaque):
        entry = self._timers.get(int(_ffi.cast("uintptr_t", timer)))
        if entry is not None:
            entry[2] = expire_ms * 1_000_000

    def _on_add_poll(self, fd, events, opaque):
        self._poll.append((fd, events))
        return len(self._poll) - 1

    def _on_get_revents(self, index, opaque):
        return self._revents[index] if 0 <= index < len(self._revents) else 0

    # ---- what the host does ---------------------------------------------------------
    def input(self, frame: bytes) -> None:
        """A frame the guest sent."""
        self._lib.slirp_input(self._slirp, frame, len(frame))

    def add_forward(self, f: config.Forward) -> None:
        """Listen on the host for forward f (NetworkError naming the port if it cannot)."""
        if self._lib.slirp_add_hostfwd(self._slirp, 1 if f.udp else 0, _in_addr(f.host_addr),
                                       f.host_port, _in_addr(f.guest_addr), f.guest_port) != 0:
            raise NetworkError(f"--net user,hostfwd={f}: cannot listen on {f.host_addr}:"
                               f"{f.host_port} ({_bind_problem(f)}); pick another host port")

    def fill(self) -> tuple[list[tuple[int, int]], int | None]:
        """The host sockets slirp waits on, as (fd, select.poll events), and the
        guest-clock nanoseconds until one of its timers is due (None: none)."""
        self._poll = []
        self._timeout[0] = 0xFFFFFFFF
        self._lib.slirp_pollfds_fill(self._slirp, self._timeout, self._add_poll, _ffi.NULL)
        wanted = [(fd, _events(ev)) for fd, ev in self._poll]
        due = None if self._timeout[0] >= IDLE_TIMEOUT_MS else self._timeout[0] * 1_000_000
        now = self.clock()
        for _, _, expiry in self._timers.values():
            if expiry is not None:
                due = max(0, expiry - now) if due is None else min(due, max(0, expiry - now))
        return wanted, due

    def serviced(self, ready: dict[int, int]) -> None:
        """After waiting on fill()'s sockets: `ready` maps fd -> select.poll
        revents.  slirp reads and writes its sockets and runs its timers."""
        self._revents = [_revents(ready.get(fd, 0)) for fd, _ in self._poll]
        self._lib.slirp_pollfds_poll(self._slirp, 0, self._get_revents, _ffi.NULL)
        now = self.clock()
        for entry in list(self._timers.values()):
            if entry[2] is not None and entry[2] <= now:
                entry[2] = None
                entry[0](entry[1])

    def poll(self, timeout: float = 0.0, also: tuple[int, ...] = ()) -> set[int]:
        """Wait up to `timeout` host seconds for a slirp socket (or one of the fds
        `also`) to be ready, then service slirp; returns the `also` fds that are."""
        wanted, _ = self.fill()
        poller = select.poll()
        for fd, events in wanted:
            poller.register(fd, events)
        for fd in also:
            poller.register(fd, select.POLLIN)
        try:
            events = poller.poll(max(0, int(timeout * 1000 + 0.999)) if timeout > 0 else 0)
        except InterruptedError:
            events = []
        ready: dict[int, int] = {}
        for fd, revents in events:
            ready[fd] = ready.get(fd, 0) | revents
        self.serviced(ready)
        return {fd for fd in also if ready.get(fd)}


def _events(slirp_events: int) -> int:
    out = 0
    for mine, theirs in _TO_POLL:
        if slirp_events & mine:
            out |= theirs
    return out


def _revents(poll_revents: int) -> int:
    out = 0
    for theirs, mine in _FROM_POLL:
        if poll_revents & theirs:
            out |= mine
    return out


def _bind_problem(f: config.Forward) -> str:
    """Why slirp could not listen there, in words (it only says it failed)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if f.udp else socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((f.host_addr, f.host_port))
        if not f.udp:
            s.listen(1)
    except OSError as e:
        if e.errno == 98:
            return "the port is in use by another program"
        return e.strerror or str(e)
    finally:
        s.close()
    return "libslirp refused it"

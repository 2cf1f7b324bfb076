"""The link between a machine's network device and a slirp: the host side of
`--net user`.

Between run slices the session calls pump(): the frames the guest sent go to
slirp, slirp services its host sockets (without waiting, or up to a timeout
when the guest idles), and the frames slirp has for the guest are delivered
into its receive buffers, oldest first, as far as it has posted buffers.
What does not fit waits here (the core stops the run once the guest posts
more, see Stop.NET); past MAX_QUEUED frames the oldest are dropped, as a
switch drops what a busy port cannot take (TCP sends them again).

`machine` is whatever the session drives: while recording, the recorder's
proxy, which logs every delivered frame (chrono.replay.recorder).  slirp's
clock is that machine's virtual clock.
"""
from __future__ import annotations

from collections import deque
from typing import Callable

from chrono.core.machine import Received
from chrono.net.config import NetConfig
from chrono.net.slirp import Slirp

MAX_QUEUED = 4096

RESTARTED = ("the network is new: connections open before this point are gone (as after a "
             "cable pull); the guest keeps its address")
UNPLUGGED = ("this machine has a network device, and without --net user nothing is behind it: "
             "what the guest sends goes nowhere")


class NetLink:
    def __init__(self, machine, net: NetConfig, message: Callable[[str], None] = lambda t: None):
        self.machine = machine
        self.config = net
        self._message = message
        self.slirp = self._new_slirp()
        self.queue: deque[bytes] = deque()     # frames for the guest, not taken yet
        self.delivered = 0                      # frames put into the guest's buffers
        self.dropped = 0                        # frames dropped here (queue full)

    def _new_slirp(self) -> Slirp:
        slirp = Slirp(clock=lambda: self.machine.vclock,
                      guest_error=lambda text: self._message(f"network: {text}"))
        try:
            for forward in self.config.forwards:
                slirp.add_forward(forward)
        except BaseException:
            slirp.close()
            raise
        return slirp

    def close(self) -> None:
        self.slirp.close()

    def restart(self) -> None:
        """A fresh network for a guest that went back in time (loadvm): slirp's
        connections belong to a past the guest no longer has."""
        self.slirp.close()
        self.queue.clear()
        self.machine.net_sent()             # what the old guest sent is moot
        self.slirp = self._new_slirp()
        self.machine.net_set_rx_waiting(False)

    def pump(self, wait: float = 0.0, also: tuple[int, ...] = ()) -> tuple[set[int], int]:
        """Move frames both ways; with `wait`, wait up to that many host seconds
        for a host socket (or one of the fds `also`) to be ready first, unless
        frames were delivered already.  Returns the fds of `also` that are
        ready, and how many frames the guest was given."""
        before = self.delivered
        for frame, _ in self.machine.net_sent():
            self.slirp.input(frame)
        self._collect()
        self._deliver()
        ready = self.slirp.poll(0.0 if self.delivered != before else wait, also)
        self._collect()
        self._deliver()
        return ready, self.delivered - before

    def due(self) -> int | None:
        """Guest-clock nanoseconds until slirp's next timer (None: none pending)."""
        return self.slirp.fill()[1]

    def _collect(self) -> None:
        outbox = self.slirp.outbox
        while outbox:
            self.queue.append(outbox.popleft())
        while len(self.queue) > MAX_QUEUED:
            self.queue.popleft()
            self.dropped += 1

    def _deliver(self) -> None:
        m = self.machine
        while self.queue:
            if m.net_receive(self.queue[0]) == Received.NO_BUFFER:
                break
            self.queue.popleft()
            self.delivered += 1
        m.net_set_rx_waiting(bool(self.queue))

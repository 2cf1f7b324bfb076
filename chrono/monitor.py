"""The `(chrono)` monitor (Ctrl-A c): snapshot and control commands on the
console, in the spirit of QEMU's human monitor.

Each command is one line; the reply is text plus an action for the session
(quit, stop, cont, restored, or pending: savevm's report comes later, from
poll()).  Errors caused by the user (unknown snapshot, damaged store...) are
replies, not exceptions: the guest keeps running.
The store is opened on first use, so a run that never saves creates nothing.
"""
from __future__ import annotations

import shlex
import time
from typing import TYPE_CHECKING, Callable

from chrono.core.session import MonitorReply
from chrono.errors import ChronoError

if TYPE_CHECKING:
    from chrono.store.capture import Snapshots

HELP = """\
savevm NAME       save the whole machine (CPU, devices, RAM, disk) as snapshot NAME
loadvm NAME       restore snapshot NAME (RAM and disk together)
info snapshots    list the named snapshots in the store (as `chrono snap list`)
delvm NAME        remove the name NAME; `chrono store gc` frees what nothing else keeps
stop              pause the guest
cont              resume the guest (and go back to its console: Ctrl-A c)
quit              exit chrono
help              this list"""


class Monitor:
    def __init__(self, open_snapshots: Callable[[], "Snapshots"], recorder=None):
        """`recorder` (a chrono.replay.recorder.Recorder) makes savevm a keyframe
        and loadvm a logged input of the recording."""
        self._open_snapshots = open_snapshots
        self._recorder = recorder
        self._snapshots = None
        self._saving = None             # (name, start) of a savevm still committing
        self._warming = None            # the thread of prepare()

    def prepare(self) -> None:
        """The monitor was entered: load what a first savevm needs (numpy, the
        store, the page encoder: 70-100 ms) in a thread while the user types,
        rather than in the savevm.  Opens nothing: a run that never saves
        still creates no store."""
        if self._warming is None:
            import threading
            from chrono.store.capture import warm_up
            self._warming = threading.Thread(target=warm_up, name="chrono-warm-up", daemon=True)
            self._warming.start()

    @property
    def snapshots(self) -> "Snapshots":
        if self._snapshots is None:
            self._snapshots = self._open_snapshots()
        return self._snapshots

    def settle(self) -> str:
        """Finish a pending savevm; returns its report (or '')."""
        return self._finish_pending() if self._snapshots is not None else ""

    def close(self) -> str:
        """Finish a pending save and close the store; returns its report."""
        report = ""
        if self._warming is not None:
            self._warming.join()        # an import must not be cut by the interpreter's exit
        if self._snapshots is not None:
            report = self._finish_pending()
            self._snapshots.close()
            self._snapshots.store.close()
        return report

    def __call__(self, line: str) -> MonitorReply:
        try:
            words = shlex.split(line)
        except ValueError as e:
            return MonitorReply(f"cannot parse {line!r}: {e}")
        if not words:
            return MonitorReply()
        command, args = words[0], words[1:]
        # Every command sees the store after a pending save finished.
        earlier = self._finish_pending()
        reply = self._dispatch(command, args)
        if earlier:
            return MonitorReply(earlier + ("\n" + reply.text if reply.text else ""), reply.action)
        return reply

    def _dispatch(self, command: str, args: list[str]) -> MonitorReply:
        handler = getattr(self, "cmd_" + command, None)
        if handler is None:
            return MonitorReply(f"unknown command {command!r}; type `help` for the list")
        try:
            return handler(*args)
        except TypeError:
            return MonitorReply(f"usage: {self._usage(command)}")
        except ChronoError as e:
            return MonitorReply(f"error: {e.message}")

    @staticmethod
    def _usage(command: str) -> str:
        for row in HELP.splitlines():
            if row.split()[0] == command:
                return row.split("  ")[0].strip()
        return command

    # ---- commands -----------------------------------------------------------------
    def cmd_help(self) -> MonitorReply:
        return MonitorReply(HELP)

    def cmd_savevm(self, name: str) -> MonitorReply:
        # The guest is paused only while its dirty pages are copied; hashing,
        # compression and the commit run beside it, and poll() reports.
        from chrono.store.store import check_ref_name   # the store loads on first use

        check_ref_name(name)
        self._saving = (name, time.perf_counter())
        if self._recorder is not None:
            self._recorder.savevm(name)
        else:
            self.snapshots.save(name, background=True)
        return MonitorReply("", "pending")

    def busy(self) -> bool:
        """A savevm is still committing: its report is due."""
        return self._saving is not None

    def poll(self) -> str:
        """A finished background savevm's report (or error), once; else ''."""
        snaps = self._snapshots
        if self._saving is None or snaps is None or (snaps._pending and not snaps._pending.done()):
            return ""
        return self._finish_pending()

    def _finish_pending(self) -> str:
        if self._saving is None:
            return ""
        name, start = self._saving
        self._saving = None
        try:
            sid = self.snapshots.wait()
        except ChronoError as e:
            return f"error: savevm {name} failed: {e.message}"
        from chrono.render import plural     # not at the top: fast boot does without it

        t = self.snapshots.times
        total = (time.perf_counter() - start) * 1000
        return (f"saved {name} ({sid[:12]}): {plural(t.pages, 'RAM page')}, "
                f"{plural(t.blocks, 'disk block')}, "
                f"{t.new_bytes / 1024:,.0f} KiB new in the store; guest paused "
                f"{t.paused * 1000:.1f} ms, {total:.1f} ms in all")

    def cmd_loadvm(self, name: str) -> MonitorReply:
        start = time.perf_counter()
        if self._recorder is not None:
            manifest = self._recorder.loadvm(name)
        else:
            manifest = self.snapshots.load(name)
        took = (time.perf_counter() - start) * 1000
        return MonitorReply(f"restored {name} at instruction {manifest.steps:,} in {took:.1f} ms",
                            "restored")

    def cmd_delvm(self, name: str) -> MonitorReply:
        sid, names = self.snapshots.store.remove(name)
        return MonitorReply(f"removed {', '.join(names) or sid[:12]}")

    def cmd_info(self, what: str) -> MonitorReply:
        if what != "snapshots":
            return MonitorReply("usage: info snapshots")
        store = self.snapshots.store
        refs = store.refs()
        if not refs:
            return MonitorReply(f"no snapshots in {store.path}")
        # The words and columns of `chrono snap list`, aligned for the console.
        from chrono.render import Grid, aligned_lines, columns, vtime, when
        grid = Grid("", columns("name", "id", "created", ">instructions", ">virtual time"))
        for name, sid in sorted(refs.items()):
            m = store.get_snapshot(sid)
            grid.add(name, sid[:12], when(m.created), f"{m.steps:,}", vtime(m.vclock))
        return MonitorReply("\n".join(aligned_lines(grid)))

    def cmd_stop(self) -> MonitorReply:
        return MonitorReply("guest stopped; `cont` resumes it", "stop")

    def cmd_cont(self) -> MonitorReply:
        return MonitorReply("", "cont")

    def cmd_quit(self) -> MonitorReply:
        return MonitorReply("", "quit")

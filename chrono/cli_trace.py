"""The `chrono` commands for recordings: record, replay, export, import, trace.

Thin, like chrono.cli: parse options, call chrono.replay, print.
"""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from chrono.cli import (connect_net, finish_run, guest_options, jit_option, json_option, main,
                        start_guest, store_option)
from chrono.cliparams import ADDRESS, COUNT, NET, Count, PathParam
from chrono.errors import UsageError

if TYPE_CHECKING:
    from pathlib import Path

KEYFRAME_INTERVAL_DEFAULT = 1 << 30     # chrono.replay.recorder.KEYFRAME_INTERVAL (no import: fast --help)
DIGEST_INTERVAL = 1 << 20


@main.command()
@guest_options
@click.option("--name", metavar="NAME",
              help="Name of the recording (default: rec-N, the first free N).")
@click.option("--keyframe-interval", type=Count(min=DIGEST_INTERVAL), metavar="N",
              default=KEYFRAME_INTERVAL_DEFAULT, show_default=True,
              help="Instructions between keyframe snapshots: shorter makes seeking back "
                   "faster and the store bigger.")
@store_option
@click.pass_context
def record(ctx, guest_name, kernel, bios, initrd, append, disk, commit, ram_size, net, virtio,
           max_insns, pace, gdb_port, from_snapshot, name, keyframe_interval, store_path):
    """Run a guest like `chrono run`, recording it for exact replay.

    Every input the guest gets from the host -- console bytes, entropy, the
    RTC's wall clock, idle time, network frames (--net user) -- is logged at
    the instruction where it arrived, and keyframe snapshots are taken every --keyframe-interval
    instructions, at each savevm and at the end.  `chrono replay NAME` then
    re-executes the session bit for bit, and `chrono export NAME` makes one
    file anyone can replay.  The console and the Ctrl-A c monitor work as in
    `chrono run`.
    """
    from chrono.store.capture import Snapshots
    from chrono.store.store import Store

    if gdb_port is not None:
        raise UsageError("--gdb is for `chrono run`; debug a recording with `chrono debug NAME`, "
                         "which goes back in time as well")
    started = start_guest(ctx, guest_name, from_snapshot, commit, store_path, net,
                          kernel=kernel, bios=bios, initrd=initrd, append=append, disk=disk,
                          ram_size=ram_size, virtio=virtio)
    snapshots = started.snapshots or Snapshots(Store.open(store_path, create=True), started.guest)
    try:
        outcome = record_session(snapshots, name, keyframe_interval, started.reboot, max_insns,
                                 pace, announce=started.announce,
                                 restored=started.restored is not None, net=net)
    finally:
        snapshots.close()               # releases the lease on the last keyframe
        snapshots.store.close()
    finish_run(_Messages(), outcome, started, commit)


def record_session(snapshots, name, keyframe_interval, reboot, max_insns, pace,
                   announce=lambda console: None, parent: dict | None = None,
                   restored: bool = False, net=None):
    """Record the guest of `snapshots` at the console until it ends; the outcome.
    `net`: a NetConfig (its network is connected before anything is recorded)."""
    from chrono.core.console import Console
    from chrono.core.session import Session
    from chrono.monitor import Monitor
    from chrono.replay.catalog import check_new_name, free_name
    from chrono.replay.recorder import Recorder

    store = snapshots.store
    name = check_new_name(store, name) if name else free_name(store)
    recorder = Recorder(snapshots, name, keyframe_interval, reboot=reboot, parent=parent)
    link = connect_net(recorder.proxy, net)     # a busy host port: nothing is recorded
    try:
        recorder.start()
    except BaseException:
        if link is not None:
            link.close()
        raise
    monitor = Monitor(lambda: snapshots, recorder=recorder)
    console = Console()
    outcome = None
    try:
        announce(console)
        console.message(f"recording {name} (Ctrl-A x ends it)")
        session = Session(recorder.proxy, monitor=monitor,
                          reboot=recorder.reboot if reboot else None, restored=restored,
                          net=link)
        outcome = session.run(console, max_steps=max_insns, paced=pace)
    finally:
        if link is not None:
            link.close()
        console.close()
        report = monitor.settle()
        if report:
            console.monitor_output(report)
        manifest = recorder.finish(outcome.kind if outcome else "interrupted")
        monitor.close()
        console.message(_recorded_line(manifest))
    return outcome


class _Messages:
    """finish_run's console: only its message() is used after the session."""

    @staticmethod
    def message(text: str) -> None:
        click.echo(f"chrono: {text}", err=True)


def _recorded_line(m) -> str:
    from chrono.render import instructions, plural
    per_k = m.log_bytes / max(m.length, 1) * 1000
    frames = m.inputs.get("frames", 0)
    return (f"recorded {m.name}: {instructions(m.length)}, {plural(len(m.keyframes), 'keyframe')}, "
            f"{plural(m.inputs['console'], 'console byte')}, "
            f"{plural(m.inputs['entropy'], 'entropy byte')}, "
            + (f"{plural(frames, 'network frame')}, " if frames else "")
            + f"{plural(m.inputs['skips'], 'idle skip')}; log {plural(m.log_bytes, 'byte')} "
            f"({per_k:.3f} per 1,000 instructions). Replay it with `chrono replay {m.name}`")


@main.command()
@click.argument("recording")
@click.option("--to", "to_position", type=COUNT, metavar="POSITION",
              help="Stop at instruction POSITION of the recording and leave a snapshot "
                   "there (named RECORDING@POSITION).")
@click.option("--quiet", "-q", is_flag=True, help="Do not write the guest's console output.")
@click.option("--live", is_flag=True,
              help="At --to POSITION, leave the recording and go on live at the console, "
                   "recording a new branch from there (see --name).")
@click.option("--name", "branch", metavar="NAME",
              help="With --live: the new branch's name (default: rec-N).")
@click.option("--keyframe-interval", type=Count(min=DIGEST_INTERVAL), metavar="N",
              default=KEYFRAME_INTERVAL_DEFAULT, help="With --live: as for `chrono record`.")
@click.option("--net", default="none", type=NET, metavar="NET",
              help="With --live: the network the live guest gets from there, as for `chrono "
                   "run` (a fresh one: connections of the recording are gone). A replay "
                   "itself never uses the network: the recording supplies every frame.")
@jit_option
@store_option
def replay(recording, to_position, quiet, live, branch, keyframe_interval, net, store_path):
    """Re-execute a recording and check that it matches, bit for bit.

    RECORDING is a name in the store, or a bundle file (FILE.chrono, from
    `chrono export`).  The guest's console output is written as it was
    recorded.  The state is checked against the recording's light digests
    (every 2^20 instructions), its keyframes (every page) and its console
    output; the first mismatch ends the replay with exit status 9, naming
    the last instruction that matched and what differs.

    With --to POSITION --live, the replay stops there and the guest goes on
    live: new console input, recorded as a new branch whose first keyframe
    is the state at POSITION (it shares every page with the original).
    `chrono trace list` shows branches under the recording they left.
    """
    from chrono.replay.replay import Replayer

    if (live or branch) and to_position is None:
        raise UsageError("--live and --name need --to POSITION: where to leave the recording")
    if branch and not live:
        raise UsageError("--name names the branch --live records; add --live")
    if net.enabled and not live:
        raise UsageError("--net is for --live: a replay gets every network frame from the "
                         "recording and never uses the network")
    if net.enabled:
        from chrono.net.slirp import library
        library()

    def write(data: bytes) -> None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()

    with _opened_recording(recording, store_path, to_position is not None) as (store, name):
        replayer = Replayer(store, name, output=(lambda b: None) if quiet else write)
        try:
            report = replayer.replay(to_position, snapshot_name=(
                None if to_position is None or live else f"{name}@{to_position}"))
            if live:
                click.echo(f"replayed {name} to instruction {report.end}; live from here",
                           err=True)
                if net.enabled and not replayer.machine.has_net:
                    raise UsageError(f"recording {name!r} was made without a network device, so "
                                     f"--net {net.mode} has nothing to connect")
                if net.enabled:
                    from chrono.net.link import RESTARTED
                    click.echo(f"chrono: {RESTARTED}", err=True)
                elif replayer.machine.has_net:
                    from chrono.net.link import UNPLUGGED
                    click.echo(f"chrono: {UNPLUGGED}", err=True)
                outcome = record_session(replayer.snapshots, branch, keyframe_interval, None,
                                         None, None,
                                         parent={"trace": name, "position": report.end},
                                         net=net)
                sys.exit(outcome.exit_code if outcome else 130)
        finally:
            replayer.close()
    from chrono.render import instructions, mips, plural
    checked = f"{plural(report.keyframes, 'keyframe')} and {plural(report.digests, 'digest')}"
    if report.snapshot:
        click.echo(f"replayed {name} to instruction {report.end:,} ({checked} matched); saved "
                   f"snapshot {report.snapshot}: `chrono run --from {report.snapshot}` "
                   f"continues from there", err=True)
    elif not report.complete:
        click.echo(f"recording {name} was cut short (its recorder stopped without finishing); "
                   f"replayed to its last keyframe, which matched: "
                   f"{instructions(report.instructions)}, {checked} verified; "
                   f"{report.seconds:.2f} s", err=True)
    else:
        click.echo(f"replay of {name} matched the recording: {instructions(report.instructions)}, "
                   f"{checked} verified, console output identical "
                   f"({plural(report.output_bytes, 'byte')}); {report.seconds:.2f} s, "
                   f"{mips(report.instructions, report.seconds)}", err=True)


@main.command("export")
@click.argument("recording")
@click.option("-o", "--output", required=True, type=PathParam(), metavar="FILE",
              help="The bundle file to write (e.g. NAME.chrono); replaced if it exists.")
@click.option("--from", "start", type=COUNT, metavar="POSITION",
              help="Trim: start at the last keyframe at or before instruction POSITION.")
@click.option("--to", "end", type=COUNT, metavar="POSITION",
              help="Trim: end at instruction POSITION (a keyframe is made there by replaying).")
@store_option
def export(recording, output, start, end, store_path):
    """Write a recording as one portable bundle file.

    The bundle holds the recording's log, its keyframe and loaded snapshots
    and every page they need, with a checksum over the whole; `chrono replay
    FILE` replays it anywhere, `chrono import FILE` adds it to a store.  With
    --from/--to it holds only that window of the recording: it starts at a
    keyframe, and the window is replayed (and verified) while exporting to
    make a keyframe at its end, so the bundle replays as exactly as the
    original.
    """
    from chrono.render import instructions, plural
    from chrono.units import format_size as size
    from chrono.store.store import Store
    from chrono.replay.bundle import export_bundle

    trimmed = start is not None or end is not None
    with Store(store_path, readonly=not trimmed) as store:
        info = export_bundle(store, recording, output, start, end)
    window = f"; asked for {start if start is not None else 'the start'} to " \
             f"{end if end is not None else 'the end'}" if trimmed else ""
    click.echo(f"wrote {info.path}: {size(info.bytes)} ({plural(info.bytes, 'byte')}), recording "
               f"{info.name}, {instructions(info.instructions)} (positions {info.start:,} to "
               f"{info.end:,}{window}), {plural(info.keyframes, 'keyframe')}, "
               f"{plural(info.snapshots, 'snapshot')}, {plural(info.blobs, 'blob')}. "
               f"Replay it with `chrono replay {info.path}`")


@main.command("import")
@click.argument("bundle", type=PathParam())
@click.option("--name", metavar="NAME", help="Name of the recording in the store "
              "(default: the name it was recorded under).")
@store_option
def import_(bundle, name, store_path):
    """Add the recording in a bundle file (from `chrono export`) to the store.

    Everything in the file is checked before anything is written: its
    checksum and format, every page against its hash, every snapshot against
    its id, the event log against the recording's manifest.  A damaged or
    unsafe bundle is refused with exit status 7, and the store is unchanged.
    """
    from chrono.store.store import Store
    from chrono.replay.bundle import import_bundle

    with Store(store_path, create=True) as store:
        with store.reader() as r:
            before = {n for n, _ in r.traces()}
        m = import_bundle(store, bundle, name)
    if m.name in before:
        click.echo(f"recording {m.name} from {bundle} is in store {store_path} already "
                   f"(identical); nothing was imported")
        return
    from chrono.render import instructions, plural
    click.echo(f"imported recording {m.name} from {bundle}: {instructions(m.length)}, "
               f"{plural(len(m.keyframes), 'keyframe')}, {plural(m.events, 'event')}. "
               f"Replay it with `chrono replay {m.name}`")


class _opened_recording:
    """A recording by name in a store, or from a bundle file (imported into a
    temporary store, or into the store when something will be saved there)."""

    def __init__(self, recording: str, store_path: Path, keep: bool):
        self.recording, self.store_path, self.keep = recording, store_path, keep
        self._tmp = None
        self.store = None

    def __enter__(self):
        from chrono.store.store import Store
        from pathlib import Path
        path = Path(self.recording)
        if self.recording.endswith(".chrono") or (path.is_file()):
            from chrono.replay.bundle import import_bundle
            if self.keep:
                self.store = Store.open(self.store_path, create=True)
            else:
                import tempfile
                self._tmp = tempfile.TemporaryDirectory(prefix="chrono-replay-")
                self.store = Store.open(self._tmp.name, create=True)
            name = import_bundle(self.store, path).name
            return self.store, name
        self.store = Store.open(self.store_path)
        return self.store, self.recording

    def __exit__(self, *exc):
        if self.store is not None:
            self.store.close()
        if self._tmp is not None:
            self._tmp.cleanup()


@main.group("trace")
def trace_group():
    """List, inspect, remove and check recordings (`chrono record` makes them)."""


@trace_group.command("list")
@store_option
@json_option
def trace_list(store_path, as_json):
    """Every recording: length in instructions, virtual time, keyframes, inputs, log size."""
    from chrono.render import show
    from chrono.render_traces import trace_record, traces_table
    from chrono.store.store import Store
    from chrono.replay.catalog import list_traces

    with Store(store_path, readonly=True) as store:
        rows = list_traces(store)
    if not rows and not as_json:
        click.echo(f"no recordings in store {store_path}")
        return
    show(traces_table(rows, store_path),
         {"store": str(store_path), "recordings": [trace_record(m) for m in rows]}, as_json)


@trace_group.command("info")
@click.argument("name")
@store_option
@json_option
def trace_info(name, store_path, as_json):
    """Everything about one recording, with every keyframe snapshot it keeps."""
    from chrono.render import show
    from chrono.render_traces import trace_info_record, trace_table
    from chrono.store.gc import reachable
    from chrono.store.store import Store
    from chrono.store.traces import read_trace

    with Store(store_path, readonly=True) as store, store.reader() as r:
        manifest = read_trace(r, name)
        blobs = reachable(r, manifest.snapshot_ids())
        stored = sum(len(r.get_raw(key) or b"") for key in blobs)
        names: dict[str, list[str]] = {}
        for ref, sid in r.refs(strict=False).items():
            names.setdefault(sid, []).append(ref)
    facts = (manifest, stored, len(blobs), names)
    show(trace_table(*facts), trace_info_record(*facts), as_json)


@trace_group.command("verify")
@click.argument("names", nargs=-1, metavar="[NAME...]")
@store_option
def trace_verify(names, store_path):
    """Check recordings (all of them by default): log, keyframes, snapshots, pages.

    Every event chunk must decode and agree with the recording's manifest,
    and every keyframe and loaded snapshot must be in the store with every
    blob it needs sound.  Changes nothing.  Exit status 0 when every
    recording is sound, 7 when something is damaged (one line per problem).
    """
    from chrono.errors import StoreCorruptError
    from chrono.render import plural
    from chrono.store.store import Store
    from chrono.replay.verify import verify_traces

    with Store(store_path, readonly=True) as store:
        reports = verify_traces(store, list(names) or None)
    if not reports:
        click.echo(f"no recordings in store {store_path}")
        return
    for report in reports:
        for problem in report.problems:
            click.echo(f"recording {report.name}: {problem}")
        if report.ok:
            m = report.manifest
            click.echo(f"recording {report.name} is sound: {plural(m.chunks, 'event chunk')}, "
                       f"{plural(m.events, 'event')}, {plural(len(m.keyframes), 'keyframe')}, "
                       f"{plural(report.snapshots, 'snapshot')}, {plural(report.blobs, 'blob')}")
    damaged = [r for r in reports if not r.ok]
    if damaged:
        problems = sum(len(r.problems) for r in damaged)
        raise StoreCorruptError(f"{len(damaged)} of {plural(len(reports), 'recording')} in "
                                f"store {store_path} {'is' if len(damaged) == 1 else 'are'} "
                                f"damaged ({plural(problems, 'problem')})")


@trace_group.command("rm")
@click.argument("names", nargs=-1, required=True, metavar="NAME...")
@store_option
def trace_rm(names, store_path):
    """Remove recordings; `chrono store gc` then frees their snapshots."""
    from chrono.store.store import Store
    from chrono.replay.catalog import remove_trace

    with Store(store_path) as store:
        for name in names:
            remove_trace(store, name)
            click.echo(f"removed recording {name}")
    click.echo("run `chrono store gc` to free the space of its keyframes")


@main.command()
@click.argument("recording")
@click.argument("gdb_args", nargs=-1, type=click.UNPROCESSED, metavar="[-- GDB_ARGS...]")
@click.option("--elf", type=PathParam(exists=True, dir_okay=False),
              metavar="FILE", help="The guest's ELF, for gdb's symbols (the demo guest's is "
                                   "found by itself).")
@click.option("--port", type=click.IntRange(0, 65535), default=None, metavar="PORT",
              help="Do not start gdb: serve a bare stub on PORT for another debugger, one "
                   "connection after another, until Ctrl-C (0: any free port, printed).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Only loopback by default: anyone who can "
                   "connect controls the debugger.")
@jit_option
@store_option
def debug(recording, gdb_args, elf, port, host, store_path):
    """Debug a recording with gdb, forwards and backwards in time.

    Opens RECORDING (a name, or a FILE.chrono bundle) at its first instruction
    and starts gdb-multiarch on it, with the guest's symbols when known
    (--elf FILE; the demo guest's automatically).  stepi, continue,
    breakpoints, watchpoints, reverse-stepi and reverse-continue work
    anywhere in the recording; every position is exact replay.  chrono's
    own commands in gdb:

    \b
      goto POSITION           go to that position (an instruction count)
      when                    the current position and pc
      last-write ADDR [SIZE]  who last wrote ADDR before here
      savevm NAME / loadvm NAME

    Arguments after -- go to gdb, e.g. a script:

    \b
      chrono debug crash -- -batch -ex 'goto 380000' -ex stepi -ex 'p/x $pc'

    With --port, chrono starts no gdb and serves any gdb remote front end
    (`monitor help` lists the commands there).
    """
    import shlex

    from chrono.gdb import frontend
    from chrono.gdb.stub import GdbStub, listen
    from chrono.gdb.targets import ReplayTarget
    from chrono.replay.timeline import Timeline

    if port is not None and gdb_args:
        raise UsageError("arguments after -- go to the gdb that chrono starts; with --port it "
                         "starts none: give them to your debugger")
    gdb = frontend.find_gdb() if port is None else None
    with _opened_recording(recording, store_path, False) as (store, name):
        timeline = Timeline(store, name)
        try:
            symbols = frontend.symbols_for(timeline.machine, elf)
            server = listen(host, 0 if port is None else port)
            chosen = server.getsockname()[1]
            target = ReplayTarget(timeline)
            length = f"recording {name}: {timeline.end - timeline.start:,} instructions"
            if gdb is not None:
                click.echo(f"{length}; starting gdb (chrono's commands: goto, when, last-write, "
                           f"savevm, loadvm)", err=True)
                sys.exit(frontend.run_gdb(server, frontend.gdb_arguments(
                    gdb, host, chosen, symbols, gdb_args), GdbStub(target).serve))
            command = shlex.join(frontend.gdb_arguments(frontend.GDB, host, chosen, symbols))
            click.echo(f"{length}; waiting for gdb on {host}:{chosen} (Ctrl-C stops)\n"
                       f"  {command}", err=True)
            while True:
                connection, peer = server.accept()
                click.echo(f"gdb connected from {peer[0]}", err=True)
                with connection:
                    GdbStub(target).serve(connection)
                click.echo(f"gdb disconnected; waiting for the next on {host}:{chosen}", err=True)
        finally:
            timeline.close()


@main.group("query", invoke_without_command=False)
@click.argument("recording")
@store_option
@click.pass_context
def query_group(ctx, recording, store_path):
    """Ask a recording where something happened, without stepping by hand.

    \b
      chrono query REC last-write ADDR [--size N] [--before POS]
      chrono query REC output TEXT
      chrono query REC hits --pc ADDR [--from POS] [--to POS]
      chrono query REC diff POS1 POS2
    """
    ctx.obj = (recording, store_path)


def _here_too(command):
    """--store after the subcommand as well (`chrono query REC hits --store DIR`)."""
    return click.option("--store", "store_here", metavar="DIR", type=PathParam(),
                        help="Store directory (as before RECORDING).")(command)


def _timeline(ctx, store_here=None):
    from chrono.replay.timeline import Timeline
    recording, store_path = ctx.obj
    store_path = store_here or store_path
    opened = _opened_recording(recording, store_path, False)
    store, name = opened.__enter__()
    ctx.call_on_close(lambda: opened.__exit__(None, None, None))
    timeline = Timeline(store, name)
    ctx.call_on_close(timeline.close)
    return timeline


@query_group.command("hits")
@click.option("--pc", required=True, type=ADDRESS, metavar="ADDR",
              help="The (virtual) address of the instruction.")
@click.option("--from", "start", type=COUNT, metavar="POS")
@click.option("--to", "end", type=COUNT, metavar="POS")
@_here_too
@click.pass_context
def query_hits(ctx, pc, start, end, store_here):
    """Every position where the hart is about to execute the instruction at ADDR."""
    from chrono.replay.query import hits
    t = _timeline(ctx, store_here)
    found = hits(t, pc, start, end)
    for position in found.positions:
        click.echo(position)
    more = f" (only the first {len(found.positions)} listed)" if found.truncated else ""
    from chrono.render import plural
    click.echo(f"{plural(len(found.positions), 'hit')} of pc {pc:#x}{more}", err=True)


@query_group.command("diff")
@click.argument("first", type=COUNT, metavar="POS1")
@click.argument("second", type=COUNT, metavar="POS2")
@_here_too
@click.pass_context
def query_diff(ctx, first, second, store_here):
    """Which RAM pages, disk blocks and CPU/device state differ between two positions."""
    from chrono.render import show
    from chrono.render_store import diff_table
    from chrono.replay.query import diff
    t = _timeline(ctx, store_here)
    result, a, b = diff(t, first, second)
    show(diff_table(result, a, b, f"position {first:,}", f"position {second:,}"))


PRIVILEGE = {0: "U", 1: "S", 3: "M"}


@query_group.command("last-write")
@click.argument("address", type=ADDRESS, metavar="ADDR")
@click.option("--size", type=Count(min=1, max=1 << 20), default=1, show_default=True,
              help="Bytes from ADDR.")
@click.option("--before", type=COUNT, metavar="POS",
              help="The last write before this position (default: the end).")
@click.option("--physical", is_flag=True,
              help="ADDR is physical (default: virtual, through the page tables at --before).")
@_here_too
@click.pass_context
def query_last_write(ctx, address, size, before, physical, store_here):
    """Who wrote ADDR last: the position, pc, instruction and privilege, or device DMA.

    The first query of a recording builds its write index (one replay); later
    ones, in any process, replay only the intervals that wrote the page.
    """
    from chrono.replay.writes import last_write
    t = _timeline(ctx, store_here)
    hit = last_write(t, address, size, before, physical)
    where = f"before instruction {before}" if before is not None else "in the recording"
    if hit is None:
        click.echo(f"nothing wrote {size} bytes at {address:#x} {where}")
        return
    width = 8 if hit.instruction > 0xFFFF else 4
    who = ("device DMA, during the instruction" if hit.device else "the instruction")
    click.echo(f"position {hit.position}: {who} at pc {hit.pc:#x} "
               f"({hit.instruction:0{width}x}, {PRIVILEGE.get(hit.priv, hit.priv)}-mode) wrote "
               f"{hit.address:#x}")


@query_group.command("output")
@click.argument("text")
@_here_too
@click.pass_context
def query_output(ctx, text, store_here):
    """Where the guest's console printed TEXT: the positions of the instructions
    that wrote its first and last bytes, for every occurrence."""
    from chrono.replay.query import output
    t = _timeline(ctx, store_here)
    found = output(t, text)
    for p in found:
        click.echo(f"position {p.last} (from {p.first}): {p.context}")
    from chrono.render import plural
    click.echo(f"{plural(len(found), 'occurrence')} of {text!r}", err=True)

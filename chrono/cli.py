"""The `chrono` command line.  Thin: parse options, call the library, print.

Errors caused by input are ChronoError subclasses: printed as one line,
exit code from the error class, no traceback.
"""
from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Callable

import click
from click.core import ParameterSource

from chrono import __version__
from chrono.cliparams import NET, SIZE, Count, PathParam
from chrono.errors import ChronoError, Terminated, UsageError

if TYPE_CHECKING:
    from pathlib import Path


# Commands defined in other modules, imported when one of them is asked for
# (or listed, by --help): a `chrono run` need not import the others.
LAZY_COMMANDS = {"disk": "chrono.cli_disk",
                 **{name: "chrono.cli_trace" for name in
                    ("record", "replay", "export", "import", "trace", "debug", "query")}}


class ChronoGroup(click.Group):
    """Turns library errors into one-line messages; loads LAZY_COMMANDS on demand."""

    def list_commands(self, ctx):
        return sorted(set(self.commands) | set(LAZY_COMMANDS))

    def get_command(self, ctx, name):
        if name not in self.commands and name in LAZY_COMMANDS:
            import importlib
            importlib.import_module(LAZY_COMMANDS[name])     # it registers with `main`
        return super().get_command(ctx, name)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ChronoError as e:
            click.echo(f"chrono: error: {e.message}", err=True)
            ctx.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("chrono: interrupted", err=True)
            ctx.exit(130)
        except Terminated as e:
            try:
                click.echo(f"chrono: terminated by {e.name}", err=True)
            except OSError:
                pass                    # SIGHUP: the terminal may be gone
            ctx.exit(128 + e.signum)


@click.group(cls=ChronoGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__)
def main():
    """chrono: run, snapshot, record and replay RISC-V guests on a deterministic emulator.

    chrono runs a RISC-V RV64 computer (a board compatible with QEMU's
    `virt` machine) on its own emulator core.  Everything the guest sees
    is a function of its starting state and its inputs, so runs can be
    repeated exactly.  Disks are copy-on-write: the image file is never
    written unless you ask for it with --commit.  Snapshots save CPU,
    devices, RAM and disk together, so a restored guest's page cache
    always matches its disk.

    \b
    Start here:
      chrono run                 boot the built-in demo guest (type `help`)
      chrono run --kernel T.elf  run a bare-metal ELF (riscv-tests run as-is)
      chrono run --bios fw_jump.bin --kernel Image --initrd initrd --disk d.img
                                 boot Linux the way QEMU -M virt does
      chrono guest fetch debian  build a Debian riscv64 guest; then `chrono run debian`
      Ctrl-A c, savevm NAME      save the running machine at the (chrono) monitor
      chrono run --from NAME     start from that snapshot in milliseconds
      chrono record --name bug   run and record every input; then
      chrono replay bug          re-execute it bit for bit, verified
    """


def store_option(command):
    """--store DIR: the snapshot store a command uses (CHRONO_STORE, else .chrono).

    The names match chrono.store.store (STORE_ENV_VAR, DEFAULT_DIR); they are
    spelled out here so that `chrono --help` does not import LMDB and LZ4.
    """
    return click.option("--store", "store_path", metavar="DIR", envvar="CHRONO_STORE",
                        default=".chrono", show_default=True, show_envvar=True,
                        type=PathParam(),
                        help="Snapshot store directory.")(command)


def json_option(command):
    """--json: the command's output as JSON (docs/output.md gives each shape)."""
    return click.option("--json", "as_json", is_flag=True,
                        help="Print JSON instead of a table (shapes: docs/output.md).")(command)


def _no_jit(ctx, param, value):
    if value:
        from chrono.core.machine import force_interpreter
        force_interpreter()


def jit_option(command):
    """--no-jit: the interpreter only, as CHRONO_JIT=0 (results are the same, only slower)."""
    return click.option("--no-jit", is_flag=True, expose_value=False, callback=_no_jit,
                        help="Interpret guest code instead of translating it to host code "
                             "(the same as CHRONO_JIT=0; results are identical, only slower).")(command)


def guest_options(command):
    """The options that say which guest to start (shared by run and record)."""
    for option in reversed(_GUEST_OPTIONS):
        command = option(command)
    return jit_option(command)


_GUEST_OPTIONS = [
    click.argument("guest_name", metavar="[GUEST]", required=False),
    click.option("--kernel", type=PathParam(), metavar="FILE",
                 help="Kernel or bare-metal program: an RV64 ELF, or a raw Linux Image (with --bios)."),
    click.option("--bios", type=PathParam(), metavar="FILE",
                 help="M-mode firmware (e.g. OpenSBI fw_jump.bin), loaded at 0x80000000."),
    click.option("--initrd", type=PathParam(), metavar="FILE",
                 help="Initial RAM disk handed to the kernel."),
    click.option("--append", default="", metavar="ARGS", help="Kernel command line."),
    click.option("--disk", type=PathParam(), metavar="IMAGE",
                 help="Disk image for the virtio block device: raw, or qcow2 (QEMU's format, "
                      "with its backing files). Opened copy-on-write: guest writes are kept "
                      "in memory and discarded at exit unless --commit."),
    click.option("--commit", is_flag=True,
                 help="At exit, write the guest's disk writes back into the --disk image "
                      "(a raw one: convert a qcow2 with qemu-img convert -O raw first)."),
    click.option("--ram", "ram_size", default="128M", show_default=True, type=SIZE,
                 metavar="SIZE", help="Guest RAM, e.g. 256M or 1G."),
    click.option("--net", default="none", show_default=True, type=NET, metavar="NET",
                 help="The guest's network: none, or user (user-mode networking through "
                      "libslirp, QEMU's addresses: the guest gets 10.0.2.15 by DHCP, the host "
                      "is 10.0.2.2, DNS 10.0.2.3); user,hostfwd=tcp:127.0.0.1:HOSTPORT-:GUESTPORT "
                      "forwards a host port to a guest port (add more ,hostfwd=... for more)."),
    click.option("--virtio", default="mmio", show_default=True, metavar="mmio|pci",
                 help="Where the virtio disk, network and entropy devices sit: mmio (their "
                      "virtio-mmio slots) or pci (virtio-pci on the PCIe host bridge, as QEMU's "
                      "-device virtio-blk-pci / virtio-net-pci / virtio-rng-pci give; interrupts "
                      "are INTx). Part of the machine: snapshots and recordings keep it."),
    click.option("--max-insns", type=Count(min=1), metavar="N",
                 help="Stop after N instructions (exit status 124)."),
    click.option("--pace/--no-pace", default=None,
                 help="Keep guest time in step with the host clock. Default: paced at a "
                      "terminal; with piped input, as fast as possible until the input ends."),
    click.option("--gdb", "gdb_port", type=click.IntRange(0, 65535), is_flag=False,
                 flag_value=1234, default=None, metavar="[PORT]",
                 help="Wait for gdb on loopback PORT (1234 if not given) before the guest "
                      "starts; the console stays live while gdb lets the guest run."),
    click.option("--from", "from_snapshot", metavar="SNAPSHOT",
                 help="Start from a saved snapshot (fast boot): the whole machine — CPU, "
                      "devices, RAM, disk — comes from the store; the console is live at once. "
                      "With GUEST, from that guest's own store (debian-full: `booted`, saved "
                      "by its fetch)."),
]


@main.command()
@guest_options
@store_option
@click.pass_context
def run(ctx, guest_name, kernel, bios, initrd, append, disk, commit, ram_size, net, virtio,
        max_insns, pace, gdb_port, from_snapshot, store_path):
    """Boot a guest on an interactive console.

    With no options, boots the built-in demo guest with a blank in-memory
    disk.  GUEST names a fetched guest (`chrono guest fetch debian`, then
    `chrono run debian`): its firmware, kernel, initrd, command line, disk and
    RAM size come from the guest, and options given here override them.
    Keys at a terminal: Ctrl-A x quits, Ctrl-A h lists the keys, Ctrl-A c
    opens the (chrono) monitor: savevm NAME, loadvm NAME, info snapshots,
    delvm NAME, stop, cont, quit.  stdin and stdout may be pipes or files, so
    scripts can drive the guest (and the monitor: a monitor command in piped
    input runs once the guest has taken the input before it and settled).

    With --net user the guest has a network device (virtio-net) behind
    user-mode networking: it reaches the host as 10.0.2.2 and, through it,
    what the host reaches; hostfwd=... lets the host connect to the guest.

    The exit status is the guest's: its poweroff code (sifive,test0), or its
    HTIF exit code (riscv-tests); 124 when --max-insns stopped it.
    """
    from chrono.core.console import Console
    from chrono.core.session import Session
    from chrono.monitor import Monitor

    server = None
    if gdb_port is not None:
        from chrono.gdb.stub import listen      # only with --gdb: fast boot does not pay for it
        # Bound first: a port that cannot be used is said before anything boots.
        server = listen("127.0.0.1", gdb_port, "--gdb")
    started = start_guest(ctx, guest_name, from_snapshot, commit, store_path, net,
                          kernel=kernel, bios=bios, initrd=initrd, append=append, disk=disk,
                          ram_size=ram_size, virtio=virtio)
    guest, snapshots = started.guest, started.snapshots

    def open_snapshots():
        from chrono.store.capture import Snapshots
        from chrono.store.store import Store
        return snapshots or Snapshots(Store.open(store_path, create=True), guest)

    monitor = Monitor(open_snapshots)
    link = None
    try:
        link = started.connect(guest.machine)   # a busy host port is said before the console opens
        console = Console()
    except BaseException:
        if link is not None:
            link.close()
        started.close()
        raise
    try:
        started.announce(console)
        session = Session(guest.machine, reboot=started.reboot, monitor=monitor,
                          restored=started.restored is not None, net=link)
        outcome = None
        if server is not None:
            outcome = _under_gdb(server, guest, session, console, open_snapshots)
        if outcome is None:
            outcome = session.run(console, max_steps=max_insns, paced=pace)
    finally:
        console.close()
        report = monitor.close()        # a savevm still committing finishes first
        if report:
            console.monitor_output(report)
        if link is not None:
            link.close()
        started.close()
    finish_run(console, outcome, started, commit)


def _under_gdb(server, guest, session, console, open_snapshots):
    """Serve one gdb on the listening socket `server`; the session's outcome if
    the guest ended (or gdb killed it) meanwhile, None if gdb detached."""
    from chrono.core.session import Outcome
    from chrono.gdb.frontend import commands_script
    from chrono.gdb.stub import GdbStub
    from chrono.gdb.targets import LiveTarget

    chosen = server.getsockname()[1]
    script = commands_script()          # savevm/loadvm as gdb commands that refresh gdb's view
    console.message(f"waiting for gdb on 127.0.0.1:{chosen}: "
                    f"gdb-multiarch -x {script} -ex 'target remote 127.0.0.1:{chosen}'")
    try:
        connection, _ = server.accept()
    finally:
        server.close()
    target = LiveTarget(guest, session, console, open_snapshots)
    stub = GdbStub(target)
    try:
        stub.serve(connection)
    finally:
        connection.close()
    if target.ended is not None:
        return target.ended
    if stub.killed:
        return Outcome("quit", 0, guest.machine.steps, "gdb killed the guest")
    console.message("gdb detached; the guest runs on")
    return None


class StartedGuest:
    """The guest `run` and `record` start, and what they must say and release.
    (A plain class: importing dataclasses would cost every command, --help too.)"""

    def __init__(self, guest, snapshots, reboot: Callable[[], None] | None,
                 restored: str | None = None, disk: Path | None = None, net=None):
        self.guest = guest                  # chrono.core.launch.Guest
        self.snapshots = snapshots          # chrono.store.capture.Snapshots, with --from
        self.reboot = reboot                # None: a restored guest cannot reboot (no images)
        self.restored = restored            # "restored NAME in N ms" with --from
        self.disk = disk
        self.net = net                      # chrono.net.config.NetConfig

    def announce(self, console) -> None:
        if self.restored:
            console.message(self.restored)
        if self.restored and self.net is not None and self.net.enabled:
            from chrono.net.link import RESTARTED
            console.message(RESTARTED)
        elif self.restored and self.guest.machine.has_net:
            from chrono.net.link import UNPLUGGED
            console.message(UNPLUGGED)

    def connect(self, machine):
        """The guest's network (a chrono.net.link.NetLink on `machine`), or None."""
        return connect_net(machine, self.net)

    def close(self) -> None:
        """Release what --from holds in the store (the lease on its snapshot)."""
        if self.snapshots is not None:
            self.snapshots.close()
            self.snapshots.store.close()


def connect_net(machine, net):
    """A NetLink for `machine` when `net` asks for a network, else None."""
    if net is None or not net.enabled:
        return None
    from chrono.net.link import NetLink
    return NetLink(machine, net, lambda text: click.echo(f"chrono: {text}", err=True))


def start_guest(ctx, guest_name, from_snapshot, commit, store_path, net=None,
                **options) -> StartedGuest:
    """The guest `run` and `record` start: booted from images, or from a snapshot."""
    import dataclasses

    from chrono.net.config import NO_NET

    net = net or NO_NET
    if net.enabled:
        from chrono.net.slirp import library
        library()                       # a missing libslirp is said before anything starts

    if from_snapshot is not None:
        clashing = [f"--{name.replace('_size', '')}" for name in options if _given(ctx, name)]
        clashing += ["--commit"] if commit else []
        why = "--from restores the whole machine from the snapshot"
        if guest_name and ctx.get_parameter_source("store_path") == ParameterSource.COMMANDLINE:
            why += " (GUEST --from NAME takes NAME from the guest's own store)"
            clashing += ["--store"]
        if clashing:
            raise UsageError(f"{why}; drop {', '.join(clashing)}")
        if guest_name:
            from chrono.guests import guest_store
            store_path = guest_store(guest_name)
        from chrono.store.capture import guest_from_snapshot
        from chrono.store.store import Store
        t0 = time.perf_counter()
        guest, snapshots = guest_from_snapshot(Store.open(store_path), from_snapshot)
        ms = (time.perf_counter() - t0) * 1000
        if net.enabled and not guest.machine.has_net:
            snapshots.close()
            snapshots.store.close()
            raise UsageError(f"snapshot {from_snapshot!r} was taken on a machine without a "
                             f"network device, so --net {net.mode} has nothing to connect; "
                             f"boot with --net {net.mode} to have one")
        return StartedGuest(guest, snapshots, None,
                            f"restored {from_snapshot} in {ms:.1f} ms "
                            f"(RAM pages load as the guest touches them)", net=net)
    from chrono.core.launch import GuestSpec, launch    # the image loader: not for --from
    if guest_name is not None:
        from chrono.guests import guest_spec
        spec = guest_spec(guest_name, **{k: v for k, v in options.items() if _given(ctx, k)})
    else:
        spec = GuestSpec(**options)
    if commit and spec.disk is None:
        raise UsageError("--commit needs --disk IMAGE: there is no image to write the overlay to")
    guest = launch(dataclasses.replace(spec, net=net.enabled), commit=commit,
                   progress=lambda text: click.echo(f"chrono: {text}", err=True))
    return StartedGuest(guest, None, guest.reboot, disk=spec.disk, net=net)


def finish_run(console, outcome, started: StartedGuest, commit: bool) -> None:
    """The closing messages and exit status of run and record."""
    if outcome.detail:
        console.message(outcome.detail)
    if commit:
        written = started.guest.disk.commit()
        console.message(f"committed {written} bytes of guest writes to {started.disk}")
    sys.exit(outcome.exit_code)


def _given(ctx: click.Context, param: str) -> bool:
    """Whether the user set option ``param`` (rather than leaving its default)."""
    source = ctx.get_parameter_source(param)
    return source not in (None, ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)


# --- Ready-made guests -----------------------------------------------------------------

@main.group()
def guest():
    """Ready-made guests: fetch one once, then boot it by name.

    \b
      chrono guest fetch debian   build a Debian 13 riscv64 guest from Debian's packages
      chrono guest list           what is cached, and where
      chrono run debian           boot it (its disk is copy-on-write, as for any --disk)
    """


@guest.command("fetch")
@click.argument("name", metavar="NAME")
@click.option("--force", is_flag=True, help="Rebuild it even if it is already cached.")
@click.option("--mirror", metavar="URI",
              help="Debian mirror to download from. Default: the one in the system's "
                   "apt configuration.")
@click.option("--size", type=SIZE, metavar="SIZE",
              help="Root disk size of debian-full (default 4G); sparse, so it costs "
                   "only what is written.")
def guest_fetch(name, force, mirror, size):
    """Download and build guest NAME into the cache (known: debian, debian-full).

    The debian guest is OpenSBI, Debian's riscv64 kernel, a busybox shell in an
    initramfs and a blank 256 MiB ext4 disk (mounted on /mnt), assembled from
    Debian 13 (trixie) packages by a private apt: nothing is installed on this
    machine.

    \b
    debian-full is Debian 13 with systemd on a 4 GiB ext4 root disk (--size),
    root logged in on the console: debootstrap unpacks it on this machine (as
    root), then chrono boots it to configure its packages (about 6 minutes,
    once), and saves the booted system as snapshot `booted` for
    `chrono run debian-full --from booted`.

    Guests live in $XDG_CACHE_HOME/chrono (default ~/.cache/chrono); a second
    fetch reuses them.
    """
    from rich.console import Console

    from chrono.guests import fetch_guest
    from chrono.render_guests import progress_view

    with progress_view(Console(stderr=True)) as progress:
        result = fetch_guest(name, force=force, mirror=mirror, size=size, progress=progress)
    versions = ", ".join(f"{p} {v}" for p, v in result.manifest.packages.items())
    if result.refreshed:
        click.echo(f"guest {name} is cached in {result.path} ({versions}); its saved "
                   "snapshots were made again for this chrono")
    elif result.reused:
        click.echo(f"guest {name} is already cached in {result.path} ({versions}); "
                   "--force rebuilds it")
    else:
        click.echo(f"guest {name} built in {result.path} ({versions})")
    click.echo(f"boot it with: chrono run {name}")


@guest.command("list")
@json_option
def guest_list(as_json):
    """List the guests in the cache: name, size on disk, package versions, path."""
    from chrono.guests import list_guests
    from chrono.guests.cache import cache_root
    from chrono.render import show
    from chrono.render_guests import guest_record, guests_table

    guests = list_guests()
    if not guests and not as_json:
        click.echo(f"no guests cached in {cache_root()}; fetch one with "
                   "`chrono guest fetch debian`")
        return
    show(guests_table(guests), {"cache": str(cache_root()),
                                "guests": [guest_record(g) for g in guests]}, as_json)


# ---- the snapshot store ------------------------------------------------------------------

@main.group("store")
def store_group():
    """Maintain the snapshot store: stats, verify, gc, compact.

    A store is one directory (.chrono in the working directory, or --store
    DIR, or $CHRONO_STORE) holding every snapshot's RAM pages, disk blocks and
    CPU/device state, each distinct page stored once.
    """


@store_group.command("stats")
@store_option
@json_option
def store_stats(store_path, as_json):
    """Counts and sizes: snapshots, blobs, logical vs stored bytes, dedup ratio."""
    from chrono.render import show
    from chrono.render_store import stats_record, stats_table
    from chrono.store import Store, stats

    with Store(store_path, readonly=True) as store:
        s = stats(store)
    show(stats_table(s), stats_record(s), as_json)


@store_group.command("verify")
@store_option
@json_option
def store_verify(store_path, as_json):
    """Check every blob's hash and codec, every snapshot's references, every ref
    and every recording's log.

    Changes nothing.  Exit status 0 when the store is sound, 7 when something
    is damaged (each problem is listed with the name of the damaged object).
    """
    from chrono.errors import StoreCorruptError
    from chrono.render import plural, show
    from chrono.render_store import problems_table, verify_progress, verify_record
    from chrono.store import Store
    from chrono.store.verify import verify
    from chrono.store.verify import Problem
    from chrono.replay.verify import verify_traces

    with Store(store_path, readonly=True) as store, verify_progress() as progress:
        report = verify(store, progress)
        traces = verify_traces(store)
    report.problems += [Problem("recording", t.name, p) for t in traces for p in t.problems]
    show(problems_table(report) if report.problems else None,
         verify_record(report, len(traces)), as_json)
    if report.problems:
        first = report.problems[0]
        raise StoreCorruptError(f"store {store_path} is damaged: "
                                f"{plural(len(report.problems), 'problem')}, the first: {first}")
    if not as_json:
        click.echo(f"store {store_path} is sound: {plural(report.blobs, 'blob')}, "
                   f"{plural(report.snapshots, 'snapshot')} "
                   f"({plural(report.pages, 'page reference')}), {plural(report.refs, 'name')}, "
                   f"{plural(len(traces), 'recording')} checked")


@store_group.command("gc")
@store_option
def store_gc(store_path):
    """Delete the snapshots that no name, recording or running guest keeps, and
    the pages only they used.

    Names come from savevm and `chrono snap tag` (`chrono snap rm` removes
    them); a recording keeps its keyframes and the snapshots its log loads
    until `chrono trace rm`.  `chrono snap list --all` shows what keeps each
    snapshot.
    """
    from chrono.render import plural
    from chrono.units import format_size as size
    from chrono.store import Store
    from chrono.store.gc import gc

    with Store(store_path) as store:
        report = gc(store)
    click.echo(f"removed {plural(report.snapshots_removed, 'snapshot')} and "
               f"{plural(report.blobs_removed, 'blob')} ({size(report.bytes_freed)}); kept "
               f"{plural(report.snapshots_kept, 'snapshot')} and "
               f"{plural(report.blobs_kept, 'blob')}")
    if report.bytes_freed:
        click.echo("the freed space is reused by later snapshots; `chrono store compact` "
                   "shrinks the file and gives back what packs no longer use")
    for name in report.dangling_refs:
        click.echo(f"warning: {name!r} names a snapshot that is not in the store; "
                   f"`chrono store verify` for details", err=True)


@store_group.command("compact")
@store_option
def store_compact(store_path):
    """Rewrite the store file without its free space, and the packs without
    the pages gc removed (after gc), atomically."""
    from chrono.units import format_size as size
    from chrono.store import Store

    with Store(store_path) as store:
        before, after = store.compact()
    click.echo(f"store {store_path}: {size(before)} -> {size(after)}")


@main.group("snap")
def snap_group():
    """List, inspect, name, remove and compare snapshots.

    A snapshot is named by a ref (e.g. `booted`), by its id, or by a unique
    prefix of its id (at least 4 hex digits).  Recordings keep snapshots of
    their own (keyframes): `chrono snap list --all` shows them under their
    recording.
    """


@snap_group.command("list")
@click.option("--all", "show_all", is_flag=True,
              help="Every snapshot in the store: also the keyframes of recordings (grouped "
                   "by recording), those running guests hold, and those gc removes.")
@store_option
@json_option
def snap_list(show_all, store_path, as_json):
    """The named snapshots, oldest first: names, id, creation time, position
    (instructions and virtual time), and what keeps each one.

    `chrono store gc` removes the snapshots nothing keeps: no name (savevm,
    `snap tag`), no recording, no running guest.
    """
    from chrono.render import plural, show
    from chrono.render_store import snapshot_order, snapshot_record, snapshots_table
    from chrono.store import Store
    from chrono.store.holders import snapshot_holders

    with Store(store_path, readonly=True) as store, store.reader() as r:
        holders = snapshot_holders(r)
        everything = list(r.snapshots())
    rows = [(sid, m) for sid, m in everything if show_all or holders.of(sid).names]
    groups = snapshot_order(rows, holders, grouped=show_all)
    hidden = len(everything) - len(rows)
    more = f"; --all shows {plural(hidden, 'more snapshot')}" if hidden else ""
    if not rows and not as_json:
        click.echo(f"no {'' if show_all else 'named '}snapshots in store {store_path}{more}")
        return
    title = f"{plural(len(rows), 'snapshot' if show_all else 'named snapshot')} in store " \
            f"{store_path}{more}"
    show(snapshots_table(groups, holders, title),
         {"store": str(store_path), "all": show_all,
          "snapshots": [snapshot_record(sid, m, holders) for group in groups for sid, m in group]},
         as_json)


@snap_group.command("info")
@click.argument("name")
@store_option
@json_option
def snap_info(name, store_path, as_json):
    """Everything about one snapshot, and what keeps it in the store."""
    from chrono.render import show
    from chrono.render_store import snapshot_info_record, snapshot_table
    from chrono.store import Store, stored_size
    from chrono.store.holders import snapshot_holders

    with Store(store_path, readonly=True) as store, store.reader() as r:
        sid = r.resolve(name)
        manifest = r.get_snapshot(sid)
        holders = snapshot_holders(r)
        nonzero = {what: len(table.nonzero_pages(r)) for what, table in manifest.tables()}
        sizes = {}
        for what, key in (("state", manifest.state), ("device tree", manifest.dtb)):
            raw = r.get_raw(key) if key else None
            sizes[what] = stored_size(raw) if raw is not None else None
        parent_present = bool(manifest.parent) and r.has_snapshot(manifest.parent)
    facts = (sid, manifest, holders, parent_present, nonzero, sizes)
    show(snapshot_table(*facts), snapshot_info_record(*facts), as_json)


@snap_group.command("rm")
@click.argument("names", nargs=-1, required=True, metavar="NAME...")
@store_option
def snap_rm(names, store_path):
    """Remove snapshot names (a ref, or every ref of an id); `chrono store gc` then
    frees the snapshots nothing else keeps (a recording keeps its keyframes)."""
    from chrono.store import Store

    with Store(store_path) as store:
        for name in names:
            sid, removed = store.remove(name)
            what = ", ".join(repr(n) for n in removed) or "no names"
            click.echo(f"removed {what} from snapshot {sid[:12]}")
    click.echo("run `chrono store gc` to free the snapshots nothing keeps now "
               "(`chrono snap list --all` shows what keeps each)")


@snap_group.command("tag")
@click.argument("name")
@click.argument("new_name", metavar="NEWNAME")
@click.option("--force", is_flag=True, help="Move NEWNAME if it already names another snapshot.")
@store_option
def snap_tag(name, new_name, force, store_path):
    """Give the snapshot NAME another name, NEWNAME."""
    from chrono.store import Store

    with Store(store_path) as store:
        sid = store.tag(name, new_name, force=force)
    click.echo(f"{new_name} -> {sid[:12]}")


@snap_group.command("diff")
@click.argument("a")
@click.argument("b")
@store_option
def snap_diff(a, b, store_path):
    """Which RAM pages, disk blocks and state differ between snapshots A and B."""
    from chrono.render import show
    from chrono.render_store import diff_table
    from chrono.store import Store, snapshot_diff

    with Store(store_path, readonly=True) as store, store.reader() as r:
        ma, mb = r.snapshot(a), r.snapshot(b)
        result = snapshot_diff(r, ma, mb)
    show(diff_table(result, ma, mb, a, b))


if __name__ == "__main__":
    # `python -m chrono.cli`: run the imported module's group, which the
    # command modules register with (not this __main__ copy's).
    from chrono.cli import main as _main
    _main()

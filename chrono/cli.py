"""The `chrono` command line.  Thin: parse options, call the library, print.

Errors caused by input are ChronoError subclasses: printed as one line,
exit code from the error class, no traceback.
"""
from __future__ import annotations

import sys
from pathlib import Path

import click

from chrono.core.board import parse_ram_size
from chrono.errors import ChronoError, UsageError


class ChronoGroup(click.Group):
    """Turns library errors into one-line messages."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ChronoError as e:
            click.echo(f"chrono: error: {e.message}", err=True)
            ctx.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("chrono: interrupted", err=True)
            ctx.exit(130)


@click.group(cls=ChronoGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="chrono")
def main():
    """chrono: run RISC-V guests on a deterministic emulator.

    chrono runs a RISC-V RV64 computer (a board compatible with QEMU's
    `virt` machine) on its own emulator core.  Everything the guest sees
    is a function of its starting state and its inputs, so runs can be
    repeated exactly.  Disks are copy-on-write: the image file is never
    written unless you ask for it with --commit.

    \b
    Start here:
      chrono run                 boot the built-in demo guest (type `help`)
      chrono run --kernel T.elf  run a bare-metal ELF (riscv-tests run as-is)
      chrono run --bios fw_jump.bin --kernel Image --initrd initrd --disk d.img
                                 boot Linux the way QEMU -M virt does
    """


def _ram_option(ctx, param, value):
    try:
        return parse_ram_size(value)
    except ChronoError as e:
        raise click.BadParameter(e.message) from None


@main.command()
@click.option("--kernel", type=click.Path(path_type=Path), metavar="FILE",
              help="Kernel or bare-metal program: an RV64 ELF, or a raw Linux Image (with --bios).")
@click.option("--bios", type=click.Path(path_type=Path), metavar="FILE",
              help="M-mode firmware (e.g. OpenSBI fw_jump.bin), loaded at 0x80000000.")
@click.option("--initrd", type=click.Path(path_type=Path), metavar="FILE",
              help="Initial RAM disk handed to the kernel.")
@click.option("--append", default="", metavar="ARGS", help="Kernel command line.")
@click.option("--disk", type=click.Path(path_type=Path), metavar="IMAGE",
              help="Raw disk image for the virtio block device. Opened copy-on-write: "
                   "guest writes are kept in memory and discarded at exit unless --commit.")
@click.option("--commit", is_flag=True,
              help="At exit, write the guest's disk writes back into the --disk image.")
@click.option("--ram", "ram_size", default="128M", show_default=True, callback=_ram_option,
              metavar="SIZE", help="Guest RAM, e.g. 256M or 1G.")
@click.option("--max-insns", type=click.IntRange(min=1), metavar="N",
              help="Stop after N instructions (exit status 124).")
@click.option("--pace/--no-pace", default=None,
              help="Keep guest time in step with the host clock. Default: paced at a "
                   "terminal; with piped input, as fast as possible until the input ends.")
def run(kernel, bios, initrd, append, disk, commit, ram_size, max_insns, pace):
    """Boot a guest on an interactive console.

    With no options, boots the built-in demo guest with a blank in-memory
    disk.  Keys at a terminal: Ctrl-A x quits, Ctrl-A h lists the keys.
    stdin and stdout may be pipes or files, so scripts can drive the guest.

    The exit status is the guest's: its poweroff code (sifive,test0), or its
    HTIF exit code (riscv-tests); 124 when --max-insns stopped it.
    """
    from chrono.core.console import Console
    from chrono.core.launch import GuestSpec, launch
    from chrono.core.session import Session

    if commit and disk is None:
        raise UsageError("--commit needs --disk IMAGE: there is no image to write the overlay to")
    guest = launch(GuestSpec(kernel=kernel, bios=bios, initrd=initrd, append=append,
                             disk=disk, ram_size=ram_size))
    console = Console()
    try:
        outcome = Session(guest.machine, reboot=guest.reboot).run(
            console, max_steps=max_insns, paced=pace)
    finally:
        console.close()
    if outcome.detail:
        console.message(outcome.detail)
    if commit:
        written = guest.disk.commit()
        console.message(f"committed {written} bytes of guest writes to {disk}")
    sys.exit(outcome.exit_code)


if __name__ == "__main__":
    main()

"""gdb-multiarch started on a recording, attached to chrono's stub over loopback.

`chrono debug REC` runs gdb itself (as rr and UDB do) so that gdb comes with
what it needs: the recording's symbols when chrono knows them, and chrono's
own commands (gdb_commands.py) that refresh gdb's view after moving in time.
While gdb runs, Ctrl-C belongs to it: gdb turns it into the protocol's
interrupt, so chrono ignores the signal.
"""
from __future__ import annotations

import select
import shutil
import signal
import subprocess
from pathlib import Path

from chrono.errors import ChronoError, UsageError
from chrono.gdb import memory

GDB = "gdb-multiarch"
PF_X = 1                    # an executable ELF segment


def commands_script() -> Path:
    return Path(__file__).with_name("gdb_commands.py")


def find_gdb() -> str:
    found = shutil.which(GDB)
    if found is None:
        raise UsageError(f"{GDB} is not installed: install it (`apt install gdb-multiarch`), or "
                         f"serve a bare stub for another debugger with --port PORT")
    return found


def gdb_arguments(gdb: str, host: str, port: int, elf: Path | None, extra=()) -> list[str]:
    """gdb's command line: symbols, chrono's commands, connected; then `extra`."""
    args = [gdb, "-q"] + ([str(elf)] if elf else ["-ex", "set architecture riscv:rv64"])
    address = f"[{host}]" if ":" in host else host
    return args + ["-x", str(commands_script()), "-ex", f"target remote {address}:{port}",
                   *extra]


def symbols_for(machine, elf: Path | None) -> Path | None:
    """The ELF whose symbols gdb loads: `elf` if given, else the demo guest's
    when the machine runs its code (checked against RAM, so a rebuilt demo
    guest is never paired with an older recording)."""
    if elf is not None:
        return elf
    from chrono.core.launch import demo_guest_path
    try:
        demo = demo_guest_path()
    except ChronoError:
        return None
    return demo if runs_elf(machine, demo) else None


def runs_elf(machine, path: Path) -> bool:
    """Does RAM hold the executable segments of the ELF at `path`, as loaded?"""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile
    try:
        with open(path, "rb") as f:
            code = [(s["p_paddr"], s.data()) for s in ELFFile(f).iter_segments()
                    if s["p_type"] == "PT_LOAD" and s["p_flags"] & PF_X and s["p_filesz"]]
    except (OSError, ELFError):
        return False
    return bool(code) and all(memory.read(machine, address, len(data), physical=True) == data
                              for address, data in code)


def run_gdb(server, gdb_args: list[str], serve) -> int:
    """Start gdb and serve (serve(connection)) each connection it makes on the
    listening socket `server` until gdb exits; gdb's exit status."""
    gdb = subprocess.Popen(gdb_args)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        while gdb.poll() is None:
            ready, _, _ = select.select([server], [], [], 0.2)
            if ready:
                connection, _ = server.accept()
                with connection:
                    serve(connection)
        return gdb.returncode
    finally:
        signal.signal(signal.SIGINT, previous)
        if gdb.poll() is None:          # chrono failed while serving: do not leave gdb behind
            gdb.terminate()
            gdb.wait()

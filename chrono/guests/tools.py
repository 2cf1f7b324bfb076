"""The host programs a guest build runs (apt-get, dpkg-deb, mkfs.ext4): finding them,
and failing with a message that says what to install instead."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from chrono.errors import GuestFetchError

# Every fetch error ends with the way around it: boot files of your own.
OWN_FILES = ("or boot files you supply: "
             "chrono run --bios FW --kernel IMAGE --initrd INITRD --disk DISK")

# Where Debian puts mkfs.ext4; ordinary users often lack these in PATH.
SBIN_DIRS = ("/usr/sbin", "/sbin")


def find_tool(name: str) -> str | None:
    search = os.pathsep.join([os.environ.get("PATH", os.defpath), *SBIN_DIRS])
    return shutil.which(name, path=search)


def require_tool(name: str, job: str, fix: str) -> str:
    """The path of ``name``, or a GuestFetchError: '<name> not found: <job>; <fix>, or ...'."""
    path = find_tool(name)
    if path is None:
        raise GuestFetchError(f"{name} not found: {job}; {fix}, {OWN_FILES}")
    return path


def run_tool(args: list[str | Path], what: str, **kwargs) -> subprocess.CompletedProcess:
    """Run a host program to completion, output captured as text.  The caller judges
    the exit status; only a program that cannot be started raises here."""
    try:
        return subprocess.run([str(a) for a in args], capture_output=True, text=True,
                              check=False, **kwargs)
    except OSError as e:
        raise GuestFetchError(f"cannot run {args[0]} ({what}): {e.strerror}; {OWN_FILES}") from None


def last_words(output: str, limit: int = 200) -> str:
    """The most telling line of a failed program's output, shortened: its first
    error line if it has one, else its last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    if not lines:
        return "no output"
    errors = [line for line in lines if line.startswith(("E:", "error", "dpkg-deb: error"))]
    line = errors[0] if errors else lines[-1]
    return line if len(line) <= limit else line[:limit - 3] + "..."

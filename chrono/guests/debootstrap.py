"""The host half of a Debian root file system: Debian's `debootstrap --foreign`
downloads the packages (checked against Debian's keyring) and unpacks them into a
folder without running any of their code; the second stage, which configures
them, has to run riscv64 code and runs inside the guest (chrono.guests.secondstage).

debootstrap keeps the packages it downloads in ``cache_dir`` (its --cache-dir),
so a rebuild downloads nothing new.  It has to run as root (it makes device nodes
and gives files their owners).
"""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from chrono.errors import GuestFetchError
from chrono.guests.apt import KEYRING
from chrono.guests.progress import ProgressEvent, ProgressFn
from chrono.guests.tools import OWN_FILES, last_words, require_tool

# debootstrap's own progress lines.
_RETRIEVING = re.compile(r"^I: (Retrieving|Validating) (\S+) ")
_EXTRACTING = re.compile(r"^I: Extracting (\S+)\.\.\.")


def first_stage(target: Path, *, suite: str, arch: str, mirror: str, variant: str,
                include: list[str], cache_dir: Path, progress: ProgressFn) -> list[str]:
    """Unpack a ``variant`` Debian ``suite`` for ``arch`` into ``target`` (which must
    not exist), with ``include`` added; the packages the second stage will configure."""
    tool = require_tool("debootstrap", "it unpacks the Debian root file system",
                        "install it (apt-get install debootstrap)")
    if os.geteuid() != 0:
        raise GuestFetchError("debootstrap must run as root (it makes device nodes and sets "
                              "owners): run the fetch as root (e.g. with sudo), " + OWN_FILES)
    cache_dir.mkdir(parents=True, exist_ok=True)
    args = [tool, "--foreign", f"--arch={arch}", f"--variant={variant}", f"--keyring={KEYRING}",
            f"--include={','.join(include)}", f"--cache-dir={cache_dir.resolve()}",
            suite, str(target), mirror]
    step = f"unpacking Debian {suite} {arch} ({variant} + {len(include)} packages) with debootstrap"
    progress(ProgressEvent(step))
    try:
        child = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, errors="replace")
    except OSError as e:
        raise GuestFetchError(f"cannot run debootstrap: {e.strerror}; {OWN_FILES}") from None
    lines: list[str] = []
    retrieved: set[str] = set()
    extracted = 0
    try:
        for line in child.stdout:
            lines.append(line.rstrip("\n"))
            if m := _RETRIEVING.match(line):
                retrieved.add(m.group(2))
            elif _EXTRACTING.match(line) and retrieved:
                extracted += 1
                progress(ProgressEvent(step, min(extracted / len(retrieved), 1.0)))
    except BaseException:
        child.kill()
        child.wait()
        raise
    if child.wait() != 0:
        log = target / "debootstrap" / "debootstrap.log"
        detail = last_words("\n".join(l for l in lines if l.startswith(("E:", "W:")))
                            or "\n".join(lines))
        raise GuestFetchError(f"debootstrap --foreign failed ({detail}; its log: {log}): check "
                              f"the network or pass another Debian mirror with --mirror URI, "
                              f"{OWN_FILES}")
    # --foreign leaves /proc a symbolic link to /proc (for a chroot on the host);
    # the guest mounts its own proc there, so it must be a directory.
    proc = target / "proc"
    if proc.is_symlink():
        proc.unlink()
        proc.mkdir(mode=0o555)
    names = packages_to_configure(target)
    trim_package_index(target, set(names))
    return names


def trim_package_index(target: Path, keep: set[str]) -> None:
    """Cut the archive's package index that --foreign leaves in the target (about
    54 MB for trixie riscv64) down to the stanzas of the packages being installed.

    The second stage reads it with perl for every pre-dependency it resolves and
    to build dpkg's available list, several passes over the whole file in the
    emulated guest.  Only these packages' stanzas can matter: the first stage
    already resolved the complete set, and nothing outside it was downloaded.
    The second stage deletes the index when it is done either way."""
    for index in (target / "var/lib/apt/lists").glob("*_Packages"):
        stanzas = index.read_text(errors="surrogateescape").split("\n\n")
        kept = [st for st in stanzas if _package_name(st) in keep]
        index.write_text("\n\n".join(kept) + "\n\n", errors="surrogateescape")


def _package_name(stanza: str) -> str | None:
    for line in stanza.lstrip("\n").split("\n", 1)[:1]:
        if line.startswith("Package:"):
            return line[len("Package:"):].strip()
    return None


def packages_to_configure(target: Path) -> list[str]:
    """The packages the second stage installs, as debootstrap wrote them down."""
    names: list[str] = []
    for part in ("required", "base"):
        path = target / "debootstrap" / part
        if path.is_file():
            names += path.read_text().split()
    return names

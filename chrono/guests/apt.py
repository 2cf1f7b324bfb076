"""apt with a private state folder: Debian packages for another architecture and
release, fetched without touching the system's apt configuration or package state.

Layout under the folder (e.g. ~/.cache/chrono/apt):

    sources.list        one line: deb [arch=.. signed-by=<Debian's keyring>] MIRROR SUITE main
    status              empty: the host's installed packages are none of our business
    lists/              package indexes (Dir::State::Lists)
    cache/              apt's binary cache (Dir::Cache)
    debs/               downloaded .deb files (apt-get download runs here)

The mirror comes from the system's own apt configuration (or --mirror); the archive's
signature is checked against Debian's keyring, already on a Debian machine.
"""
from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Callable

from chrono.errors import GuestFetchError
from chrono.guests.deb import control_stanzas
from chrono.guests.progress import ProgressEvent, ProgressFn
from chrono.guests.tools import OWN_FILES, last_words, require_tool, run_tool

KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
APT_ETC = Path("/etc/apt")

_DLSTATUS = re.compile(r"dlstatus:[^:]*:([0-9.]+):")


# --- The mirror, from the system's configuration ------------------------------------

def system_mirror(etc: Path = APT_ETC) -> str | None:
    """The first Debian archive URI the system's apt uses (security archives skipped):
    from sources.list, then sources.list.d/*.list and *.sources, in apt's order."""
    files = [etc / "sources.list"]
    parts = etc / "sources.list.d"
    if parts.is_dir():
        files += sorted(p for p in parts.iterdir() if p.suffix in (".list", ".sources"))
    for path in files:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        parse = _deb822_uris if path.suffix == ".sources" else _one_line_uris
        for uri, suites in parse(text):
            if not all(s.endswith("-security") for s in suites) and not uri.startswith("cdrom:"):
                return uri
    return None


def choose_mirror(mirror: str | None) -> str:
    """The mirror given (checked to be a URI), else the system's."""
    if mirror is None:
        mirror = system_mirror()
        if mirror is None:
            raise GuestFetchError(
                "no Debian mirror found in the system's apt configuration (/etc/apt/sources.list"
                " and /etc/apt/sources.list.d): pass one with --mirror URI, " + OWN_FILES)
    elif "://" not in mirror and not mirror.startswith("file:"):
        raise GuestFetchError(f"--mirror {mirror!r}: not a URI; write it like "
                              f"http://HOST/debian, {OWN_FILES}")
    return mirror.rstrip("/")


def _one_line_uris(text: str):
    """('URI', [suite]) for each `deb [options] URI suite components` line."""
    for line in text.splitlines():
        words = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
        if len(words) >= 3 and words[0] == "deb":
            yield words[1], [words[2]]


def _deb822_uris(text: str):
    """('URI', [suites]) for each enabled stanza of Types: deb (RFC 822 style)."""
    for stanza in re.split(r"\n\s*\n", text):
        fields, key = {}, None
        for line in stanza.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            if line[0] in " \t" and key:            # continuation line
                fields[key] += " " + line.strip()
                continue
            key, _, value = line.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()
        if ("deb" in fields.get("types", "").split() and fields.get("uris")
                and fields.get("enabled", "yes").lower() != "no"):
            yield fields["uris"].split()[0], fields.get("suites", "").split()


# --- Running apt ------------------------------------------------------------------

class PrivateApt:
    """apt-get / apt-cache for one architecture and suite, with state under ``root``."""

    def __init__(self, root: Path, mirror: str | None, suite: str, arch: str):
        """``mirror`` None: the system's.  Checks the tools, the keyring and the mirror."""
        self.root, self.suite, self.arch = root, suite, arch
        self.apt_get = require_tool(
            "apt-get", "it downloads the Debian packages the guest is built from",
            "run the fetch on a Debian or Ubuntu machine")
        self.apt_cache = require_tool(
            "apt-cache", "it reads Debian's package index", "install apt")
        if not KEYRING.is_file():
            raise GuestFetchError(
                f"Debian's archive keyring {KEYRING} is missing: it checks the packages' "
                f"signatures; install debian-archive-keyring, {OWN_FILES}")
        self.mirror = choose_mirror(mirror)

    @property
    def debs(self) -> Path:
        return self.root / "debs"

    def options(self) -> list[str]:
        r = self.root
        return [f"-oAPT::Architecture={self.arch}", f"-oAPT::Architectures={self.arch}",
                f"-oDir::State::Lists={r / 'lists'}", f"-oDir::Etc::SourceList={r / 'sources.list'}",
                "-oDir::Etc::SourceParts=/dev/null", f"-oDir::Cache={r / 'cache'}",
                # Neither the host's installed packages nor its pins (a common
                # `Pin-Priority: -1` on a newer release, say) may pick our versions.
                f"-oDir::State::status={r / 'status'}",
                "-oDir::Etc::Preferences=/dev/null", "-oDir::Etc::PreferencesParts=/dev/null"]

    def prepare(self) -> None:
        for d in ("lists/partial", "cache/archives/partial", "debs"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        (self.root / "status").touch()
        (self.root / "sources.list").write_text(
            f"deb [arch={self.arch} signed-by={KEYRING}] {self.mirror} {self.suite} main\n")

    def update(self, progress: ProgressFn) -> None:
        """Fetch the package index.  apt-get update exits 0 when the archive cannot be
        reached (it warns and keeps old lists), so its warnings are judged too."""
        self.prepare()
        step = f"reading Debian {self.suite} {self.arch} package list from {self.mirror}"
        proc = self._apt_get(["update"], step, progress)
        failed = [line for line in proc.stderr.splitlines()
                  if line.startswith(("E:", "W: Failed to fetch"))]
        if proc.returncode != 0 or failed:
            reason = _fetch_reason(failed[0]) if failed else last_words(proc.stderr + proc.stdout)
            raise GuestFetchError(
                f"cannot read Debian {self.suite} for {self.arch} at {self.mirror} ({reason}): "
                f"check the network, or pass another Debian mirror with --mirror URI, {OWN_FILES}")

    def show(self, *packages: str) -> dict[str, dict[str, str]]:
        """Package name -> index fields (Version, Depends, Size, ...) of the version
        apt would download, for each of ``packages``."""
        proc = run_tool([self.apt_cache, *self.options(), "show", "--no-all-versions",
                         *packages], "apt-cache show")
        found = {s.get("Package"): s for s in control_stanzas(proc.stdout) if "Version" in s}
        for package in packages:
            if package not in found:
                raise GuestFetchError(
                    f"package {package} not found for {self.arch} in Debian {self.suite} at "
                    f"{self.mirror} ({last_words(proc.stderr + proc.stdout)}): try another "
                    f"mirror with --mirror URI, {OWN_FILES}")
        return found

    def download(self, packages: list[str], progress: ProgressFn) -> None:
        """Download into ``debs/`` (apt-get download skips files already there and
        checks every file against the signed index)."""
        self.prepare()
        step = f"downloading {', '.join(packages)}"
        proc = self._apt_get(["download", *packages], step, progress, cwd=self.debs)
        if proc.returncode != 0:
            raise GuestFetchError(
                f"downloading {', '.join(packages)} failed "
                f"({_fetch_reason(last_words(proc.stderr + proc.stdout))}): check the network "
                f"or pass another Debian mirror with --mirror URI, {OWN_FILES}")

    def _apt_get(self, args: list[str], step: str, progress: ProgressFn,
                 cwd: Path | None = None) -> subprocess.CompletedProcess:
        """apt-get with its machine-readable progress (APT::Status-Fd) turned into
        ProgressEvents as it runs."""
        progress(ProgressEvent(step))
        read_fd, write_fd = os.pipe()
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            try:
                child = subprocess.Popen(
                    [self.apt_get, *self.options(), f"-oAPT::Status-Fd={write_fd}", "-q", *args],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=cwd,
                    pass_fds=(write_fd,), text=True)
            except OSError as e:
                os.close(read_fd)
                raise GuestFetchError(f"cannot run apt-get: {e.strerror}; {OWN_FILES}") from None
            finally:
                os.close(write_fd)
            try:
                with os.fdopen(read_fd, errors="replace") as status:
                    _relay_status(status, lambda f: progress(ProgressEvent(step, f)))
            except BaseException:           # Ctrl-C, or the progress display failed
                child.kill()
                child.wait()
                raise
            returncode = child.wait()
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(child.args, returncode, out.read(), err.read())


def _relay_status(lines, report: Callable[[float], None]) -> None:
    last = -1.0
    for line in lines:
        match = _DLSTATUS.match(line)
        if match:
            fraction = min(float(match.group(1)) / 100.0, 1.0)
            if fraction != last:
                report(fraction)
                last = fraction


def _fetch_reason(line: str) -> str:
    """'W: Failed to fetch URL  Could not resolve ...' -> 'Could not resolve ...'."""
    line = re.sub(r"^[EW]: ", "", line.strip())
    head, sep, reason = line.partition("  ")
    return reason.strip() if sep and head.startswith("Failed to fetch") else line


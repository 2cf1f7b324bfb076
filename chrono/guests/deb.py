"""Debian package files (.deb): read their control fields, unpack them without
installing anything (`dpkg-deb`)."""
from __future__ import annotations

from pathlib import Path

from chrono.errors import GuestFetchError
from chrono.guests.tools import OWN_FILES, last_words, require_tool, run_tool


def dpkg_deb() -> str:
    return require_tool("dpkg-deb", "it unpacks the downloaded Debian packages",
                        "install dpkg (apt-get install dpkg)")


def control_stanzas(text: str) -> list[dict[str, str]]:
    """The 'Key: value' stanzas of a control text (apt-cache show, dpkg-deb -f),
    separated by blank lines; continuation lines are folded into their field."""
    stanzas: list[dict[str, str]] = [{}]
    key = None
    for line in text.splitlines():
        if not line.strip():
            if stanzas[-1]:
                stanzas.append({})
        elif line[0] in " \t" and key:
            stanzas[-1][key] += "\n" + line.strip()
        else:
            key, _, value = line.partition(":")
            stanzas[-1][key] = value.strip()
    return [s for s in stanzas if s]


def control_fields(text: str) -> dict[str, str]:
    """The first stanza of a control text."""
    stanzas = control_stanzas(text)
    return stanzas[0] if stanzas else {}


def package_fields(deb: Path) -> dict[str, str]:
    """Package, Version, Architecture of a .deb file."""
    proc = run_tool([dpkg_deb(), "-f", deb, "Package", "Version", "Architecture"], "dpkg-deb -f")
    if proc.returncode != 0:
        raise GuestFetchError(f"{deb} is not a readable Debian package "
                              f"({last_words(proc.stderr)}): delete it and fetch again, {OWN_FILES}")
    return control_fields(proc.stdout)


def unpack(deb: Path, dest: Path) -> None:
    """Extract the package's files under ``dest`` (dpkg-deb -x: no scripts, no root)."""
    dest.mkdir(parents=True, exist_ok=True)
    proc = run_tool([dpkg_deb(), "-x", deb, dest], "dpkg-deb -x")
    if proc.returncode != 0:
        raise GuestFetchError(f"cannot unpack {deb.name} ({last_words(proc.stderr)}): "
                              f"delete it and fetch again, {OWN_FILES}")

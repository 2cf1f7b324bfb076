"""Kernel modules from a Debian kernel package: find them, read what they depend
on, decide the order to load them in.

Debian ships modules as ``usr/lib/modules/<release>/kernel/**/<name>.ko.xz`` without
the ``modules.dep`` index that depmod would write at install time.  Each module
carries its own dependencies instead: the ELF section ``.modinfo`` is a run of
NUL-terminated ``key=value`` strings, one of them ``depends=a,b,c`` (module names,
possibly empty).  That is all a load order needs.
"""
from __future__ import annotations

import io
import lzma
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile


class ModuleError(Exception):
    """A module is missing, unreadable or part of a dependency cycle."""


def module_name(filename: str) -> str:
    """'crc32c-generic.ko.xz' -> 'crc32c_generic': the kernel treats - and _ alike."""
    for suffix in (".ko.xz", ".ko"):
        if filename.endswith(suffix):
            filename = filename[:-len(suffix)]
            break
    return filename.replace("-", "_")


def read_modinfo(elf: bytes) -> dict[str, str]:
    """The ``.modinfo`` fields of an (uncompressed) module.  Repeated keys (alias=,
    softdep=) keep their last value, which is enough for ``depends`` and ``name``."""
    try:
        section = ELFFile(io.BytesIO(elf)).get_section_by_name(".modinfo")
    except ELFError as e:
        raise ModuleError(f"not an ELF module ({e})") from None
    if section is None:
        raise ModuleError("no .modinfo section")
    fields = {}
    for item in section.data().split(b"\0"):
        key, sep, value = item.decode("utf-8", "replace").partition("=")
        if sep:
            fields[key] = value
    return fields


def depends_of(modinfo: dict[str, str]) -> list[str]:
    return [module_name(d) for d in modinfo.get("depends", "").split(",") if d]


def load_order(wanted: Iterable[str], depends: Callable[[str], list[str]]) -> list[str]:
    """Every module in ``wanted`` plus what it needs, each after its dependencies.

    Depth-first, in the order ``wanted`` and each ``depends=`` list name them, so the
    result is deterministic and keeps the caller's order where dependencies allow.
    """
    order: list[str] = []
    state: dict[str, str] = {}        # name -> "visiting" | "done"

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            cycle = " -> ".join(chain[chain.index(name):] + (name,))
            raise ModuleError(f"dependency cycle: {cycle}")
        state[name] = "visiting"
        for dep in depends(name):
            visit(dep, chain + (name,))
        state[name] = "done"
        order.append(name)

    for name in wanted:
        visit(module_name(name), ())
    return order


@dataclass
class Module:
    name: str
    path: Path            # the .ko.xz (or .ko) in the unpacked package
    elf: bytes            # uncompressed
    depends: list[str]


class ModuleTree:
    """The modules of one unpacked kernel package, read on demand."""

    def __init__(self, modules_dir: Path):
        self.root = modules_dir
        self._paths = {module_name(p.name): p
                       for pattern in ("*.ko.xz", "*.ko") for p in modules_dir.rglob(pattern)}
        self._loaded: dict[str, Module] = {}

    def get(self, name: str) -> Module:
        name = module_name(name)
        if name not in self._loaded:
            path = self._paths.get(name)
            if path is None:
                raise ModuleError(f"no module {name} in {self.root}")
            raw = path.read_bytes()
            try:
                elf = lzma.decompress(raw) if path.name.endswith(".xz") else raw
            except lzma.LZMAError as e:
                raise ModuleError(f"{path.name}: cannot decompress ({e})") from None
            try:
                deps = depends_of(read_modinfo(elf))
            except ModuleError as e:
                raise ModuleError(f"{path.name}: {e}") from None
            self._loaded[name] = Module(name, path, elf, deps)
        return self._loaded[name]

    def resolve(self, wanted: Iterable[str]) -> list[Module]:
        """``wanted`` and their dependencies, in load order, decompressed."""
        return [self.get(n) for n in load_order(wanted, lambda n: self.get(n).depends)]

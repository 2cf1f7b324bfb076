"""The guest manifest: ``guest.json`` in a cached guest's folder says what is in it
and how to boot it.  File names are relative to that folder, so it can be moved.

    {
      "format": 1,
      "name": "debian",
      "description": "...",
      "firmware": "fw_jump.bin", "kernel": "Image", "initrd": "initrd.cpio.gz",
      "disk": "disk.img",
      "append": "console=ttyS0 rdinit=/init",
      "ram": "256M",
      "ready_marker": "chrono-debian: shell ready",
      "packages": {"linux-image-...": "6.12.117-1", "busybox-static": "...", ...},
      "built": "2026-11-26T10:22:00Z",
      "recipe": 2,
      "build_seconds": {"second_stage": 812.4}
    }

``recipe`` is the version of the recipe that built the guest (absent in manifests
written before it existed: 1); `chrono guest fetch` rebuilds a guest whose recipe
version is not the current one.  ``build_seconds`` records how long the slow steps
of a build took (the debian-full guest's second stage), for the user's information.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from chrono.units import parse_size
from chrono.errors import ChronoError, ImageError

MANIFEST_NAME = "guest.json"
FORMAT = 1
FILE_KEYS = ("firmware", "kernel", "initrd", "disk")


@dataclass
class GuestManifest:
    name: str
    description: str
    firmware: str
    kernel: str
    initrd: str
    disk: str
    append: str
    ram: str
    ready_marker: str
    packages: dict[str, str] = field(default_factory=dict)
    built: str = ""
    format: int = FORMAT
    recipe: int = 1
    build_seconds: dict[str, float] = field(default_factory=dict)   # how long build steps took

    def save(self, directory: Path) -> None:
        """Written last during a build; the write goes through a temporary name."""
        temp = directory / (MANIFEST_NAME + ".tmp")
        temp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        os.replace(temp, directory / MANIFEST_NAME)

    @classmethod
    def load(cls, directory: Path) -> "GuestManifest":
        """The manifest of the guest in ``directory``, checked for use: ImageError
        naming what is wrong and how to rebuild."""
        name = directory.name
        path = directory / MANIFEST_NAME
        try:
            data = json.loads(path.read_text())
            if data.get("format") != FORMAT:
                raise ValueError(f"format {data.get('format')!r}, expected {FORMAT}")
            known = {f.name for f in fields(cls)}
            manifest = cls(**{k: v for k, v in data.items() if k in known})
            parse_size(manifest.ram, "ram")
        except (OSError, ValueError, TypeError, AttributeError, ChronoError) as e:
            detail = "no guest.json" if isinstance(e, FileNotFoundError) else str(e)
            raise ImageError(f"cached guest {name!r} in {directory} is damaged ({detail}): "
                             f"rebuild it with `chrono guest fetch {name} --force`") from None
        for key in FILE_KEYS:
            if not (directory / getattr(manifest, key)).is_file():
                raise ImageError(f"cached guest {name!r} in {directory} is missing its {key} "
                                 f"({getattr(manifest, key)}): rebuild it with "
                                 f"`chrono guest fetch {name} --force`")
        return manifest

    def spec(self, directory: Path):
        """The GuestSpec `chrono run NAME` boots."""
        from chrono.core.launch import GuestSpec      # the native core, only when booting

        return GuestSpec(bios=directory / self.firmware, kernel=directory / self.kernel,
                         initrd=directory / self.initrd, disk=directory / self.disk,
                         append=self.append, ram_size=parse_size(self.ram, "ram"))

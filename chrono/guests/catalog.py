"""Ready-made guests by name: fetch them into the cache, list what is cached, and turn
a name into the GuestSpec that boots it."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from chrono.errors import ChronoError, ImageError, UsageError
from chrono.guests import cache, debian, debian_full
from chrono.guests.manifest import GuestManifest
from chrono.guests.progress import ProgressFn, silent


GUEST_STORE = "store"       # a guest folder's own snapshot store, if its recipe saves one


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    download_hint: str
    # (out, scratch, apt_root, mirror, progress[, size]) -> manifest
    build: Callable[..., GuestManifest]
    # What build() makes; a cached guest built by another version is rebuilt.
    version: int = 1
    sized: bool = False                 # build() takes size= (its disk's size: --size)
    # (folder, manifest, progress) -> bool: bring a cached guest's saved states up
    # to this chrono (True: it changed something); None: it has none.
    refresh: Callable[..., bool] | None = None


RECIPES = {
    debian.NAME: Recipe(debian.NAME, debian.DESCRIPTION, "about 115 MB of Debian packages",
                        debian.build, debian.RECIPE_VERSION),
    debian_full.NAME: Recipe(debian_full.NAME, debian_full.DESCRIPTION,
                             "about 60 MB of Debian packages and configures them in the guest "
                             "(about 6 minutes here)",
                             debian_full.build, debian_full.RECIPE_VERSION, sized=True,
                             refresh=debian_full.refresh),
}


@dataclass
class FetchResult:
    name: str
    path: Path
    manifest: GuestManifest
    reused: bool            # True: it was already cached and nothing was built
    refreshed: bool = False # reused, but its saved states were made again for this chrono


@dataclass
class CachedGuest:
    name: str
    path: Path
    size: int                           # bytes on disk
    manifest: GuestManifest | None      # None when the folder is damaged
    problem: str = ""
    outdated: bool = False              # built by another version of its recipe: fetch rebuilds it


def recipe(name: str, root: Path | None = None) -> Recipe:
    if name not in RECIPES:
        raise UsageError(f"unknown guest {name!r}: known guests are {_known(root)}; "
                         f"fetch one with `chrono guest fetch NAME`")
    return RECIPES[name]


def fetch_guest(name: str, *, force: bool = False, mirror: str | None = None,
                root: Path | None = None, size: int | None = None,
                progress: ProgressFn = silent) -> FetchResult:
    """Build guest ``name`` into the cache, unless a usable one is there already
    (``force`` rebuilds, and so does a guest an older or newer recipe built, or one
    whose disk is not ``size`` bytes).  The previous guest stays in place until the
    new one is complete."""
    r = recipe(name)
    if size is not None and not r.sized:
        raise UsageError(f"guest {name} has no disk size to choose: drop --size")
    root = root or cache.cache_root()
    target = cache.guests_dir(root) / name
    if not force:
        try:
            manifest = GuestManifest.load(target)
            same_size = size is None or (target / manifest.disk).stat().st_size == size
            if manifest.recipe == r.version and same_size:
                refreshed = r.refresh is not None and r.refresh(target, manifest, progress)
                return FetchResult(name, target, manifest, reused=True, refreshed=refreshed)
        except ImageError:
            pass                        # absent or damaged: build it
    extra = {"size": size} if r.sized else {}
    with cache.building(target) as (out, scratch):
        manifest = r.build(out, scratch, cache.apt_dir(root), mirror, progress, **extra)
        manifest.recipe = r.version
        manifest.save(out)
    return FetchResult(name, target, manifest, reused=False)


def list_guests(root: Path | None = None) -> list[CachedGuest]:
    """Every guest folder in the cache, damaged ones included (with the problem)."""
    folder = cache.guests_dir(root or cache.cache_root())
    if not folder.is_dir():
        return []
    guests = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_dir():
            continue                    # builds in progress or interrupted
        try:
            manifest, problem = GuestManifest.load(path), ""
        except ChronoError as e:
            manifest, problem = None, e.message
        outdated = (manifest is not None and path.name in RECIPES
                    and manifest.recipe != RECIPES[path.name].version)
        guests.append(CachedGuest(path.name, path, cache.allocated_size(path), manifest, problem,
                                  outdated))
    return guests


def guest_spec(name: str, root: Path | None = None, **overrides):
    """The GuestSpec that boots cached guest ``name``; keyword arguments (GuestSpec
    fields, e.g. ram_size) replace what the manifest says."""
    folder = cache.guests_dir(root or cache.cache_root())
    path = folder / name
    if name.startswith(".") or "/" in name or not path.is_dir():
        recipe(name, root)              # unknown names end here
        raise ImageError(f"guest {name!r} is not fetched yet: run `chrono guest fetch {name}` "
                         f"first (it downloads {RECIPES[name].download_hint} once)")
    spec = GuestManifest.load(path).spec(path)
    return dataclasses.replace(spec, **overrides)


def guest_store(name: str, root: Path | None = None) -> Path:
    """The snapshot store cached with guest ``name`` (debian-full's holds `booted`),
    for `chrono run NAME --from SNAPSHOT`."""
    folder = cache.guests_dir(root or cache.cache_root()) / name
    guest_spec(name, root)              # unknown, unfetched or damaged guests end here
    store = folder / GUEST_STORE
    if not store.is_dir():
        raise ImageError(f"guest {name!r} has no snapshots of its own (no {store}): run "
                         f"`chrono run {name}` and savevm, then `chrono run --from NAME`")
    return store


def _known(root: Path | None) -> str:
    """Names that can be fetched, and any other guest already in the cache."""
    cached = {g.name for g in list_guests(root)}
    return ", ".join(sorted(RECIPES.keys() | cached))

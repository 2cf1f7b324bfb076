"""The snapshot store: one LMDB environment in one directory.

    DIR/data.mdb     LMDB data file: named databases meta, blobs, snapshots, refs
    DIR/lock.mdb     LMDB reader table
    DIR/packs/       blobs of big captures, appended (chrono.store.packs)
    DIR/compact-<pid>.tmp/   only while `compact` runs (removed, or cleaned up by the next compact)

Databases (docs/store.md has the byte layouts):

    meta       ASCII key -> ASCII value: "format" (store format, an integer) and
               "features.incompat" / "features.ro_compat" / "features.compat"
               (comma-separated flags, ext4-style: an unknown incompat flag
               refuses the store, an unknown ro_compat flag refuses writes, an
               unknown compat flag is ignored)
    blobs      32-byte key -> codec byte + payload (chrono.store.blobs), or a
               pointer into a pack (chrono.store.packs)
    snapshots  32-byte id  -> manifest (chrono.store.manifest)
    refs       UTF-8 name  -> 32-byte snapshot id

max_dbs leaves room for the events and traces databases to come.

The environment is opened without writemap (a stray write from C cannot land
in the database), with reader_check() to clear reader slots of dead processes,
and with a 1 TiB map: on 64-bit hosts the map is only reserved address space
and the file grows with use, while growing the map later would invalidate
every open transaction.  A smaller map can be asked for (tests do).

A Store belongs to the process that opened it: after fork() the child must
open its own (using the parent's raises StoreError).  Threads may share one:
any number of readers, and writers one at a time (LMDB serializes them; a
write transaction must stay on the thread that began it).

Every process holding the store open keeps a shared flock() on DIR; `compact`
takes it exclusively, so it never swaps the file under another process.
"""
from __future__ import annotations

import errno
import fcntl
import os
import resource
import threading
import time
import unicodedata
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import lmdb

from chrono.errors import (RefNameError, StoreCorruptError, StoreError, StoreFormatError,
                           StoreFullError, UnknownSnapshotError)
from chrono.store.blobs import CODEC_LZ4, HASH_SIZE, ZERO_HASH, ZERO_PAGE, decode_blob, encode_blob
from chrono.store.lmdbfile import DataFileProblem, check_data_file, read_meta, walk
from chrono.store import packs
from chrono.store.manifest import Manifest, ManifestFormatError, snapshot_id
from chrono.store.pagetable import LEAF_BYTES, LEAF_PAGES, PageTable

DEFAULT_DIR = ".chrono"
# Leases: refs a running guest holds on the snapshot its memory is based on
# (lazily restored pages and incremental saves read it), so that gc keeps it
# even after its names are removed.  Users cannot make such names ('/' is
# refused), listings hide them, and gc drops those of dead processes.
LEASE_PREFIX = "lease/"
STORE_ENV_VAR = "CHRONO_STORE"
FORMAT = 1
# Feature flags this code understands.  "lz4": blobs of codec LZ4 (older chronos
# know only raw and zstd, so they must refuse the store rather than call such
# a blob damaged); set by the first write of one.
LZ4_FEATURE = "lz4"
KNOWN_INCOMPAT: frozenset[str] = frozenset({LZ4_FEATURE, packs.FEATURE})
KNOWN_RO_COMPAT: frozenset[str] = frozenset()
DEFAULT_MAP_SIZE = 1 << 40
_MIN_MAP_SIZE = 1 << 30
MAX_DBS = 16
DATABASES = (b"meta", b"blobs", b"snapshots", b"refs")
_READ_BY_KEY = frozenset({"blobs"})     # never walked by a cursor outside verify and gc
# Added with recordings; a store made before them gets them on first open.
TRACE_DATABASES = (b"traces", b"events")
MAX_REF_LENGTH = 128
_LOCK_WAIT = 30.0
_LOW_SPACE = 64 << 20      # less free space than this after a failed write: the disk was full
_LEAF_CACHE = 1024          # leaves (16 KiB each): 16 MiB


def default_store_path() -> Path:
    """$CHRONO_STORE, or .chrono in the working directory."""
    return Path(os.environ.get(STORE_ENV_VAR) or DEFAULT_DIR)


def check_ref_name(name: str) -> str:
    """Return `name` if it can name a snapshot, else raise RefNameError saying why."""
    problem = ref_name_problem(name)
    if problem:
        raise RefNameError(f"{name!r} cannot name a snapshot: {problem} (use up to "
                           f"{MAX_REF_LENGTH} letters, digits and punctuation other than '/')")
    return name


def ref_name_problem(name) -> str | None:
    """Why `name` cannot name a snapshot or a recording (None: it can)."""
    problem = None
    if not isinstance(name, str) or not name:
        problem = "it is empty"
    elif len(name) > MAX_REF_LENGTH:
        problem = f"it is longer than {MAX_REF_LENGTH} characters"
    elif "/" in name:
        problem = "it contains '/'"
    elif "\ufffd" in name or any("\ud800" <= c <= "\udfff" for c in name):
        # U+FFFD is what decoding left of bytes that were not UTF-8 (surrogates
        # what the command line left of them): such a name could never be typed again.
        problem = "it is not valid UTF-8 text"
    elif any(unicodedata.category(c)[0] == "C" or unicodedata.category(c) in ("Zl", "Zp")
             for c in name):
        problem = "it contains control characters"
    elif name != name.strip():
        problem = "it begins or ends with white space"
    elif name.startswith("-"):
        problem = "it begins with '-'"
    return problem


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def _id_key(sid: str) -> bytes | None:
    if isinstance(sid, str) and len(sid) == 2 * HASH_SIZE and _is_hex(sid):
        return bytes.fromhex(sid)
    return None


class _LeafCache:
    """Decoded, verified leaves by key.  Content-addressed, so never stale."""

    def __init__(self, capacity: int = _LEAF_CACHE):
        self._items: OrderedDict[bytes, bytes] = OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    def get(self, key: bytes) -> bytes | None:
        with self._lock:
            leaf = self._items.get(key)
            if leaf is not None:
                self._items.move_to_end(key)
            return leaf

    def put(self, key: bytes, leaf: bytes) -> None:
        with self._lock:
            self._items[key] = leaf
            self._items.move_to_end(key)
            while len(self._items) > self._capacity:
                self._items.popitem(last=False)


class Store:
    """An open snapshot store.  Use as a context manager, or call close()."""

    def __init__(self, path: str | os.PathLike | None = None, *, create: bool = False,
                 readonly: bool = False, map_size: int = DEFAULT_MAP_SIZE):
        self.path = Path(path) if path is not None else default_store_path()
        self.readonly = readonly
        self.map_size = map_size
        self._pid = os.getpid()
        self._local = threading.local()
        self._leaves = _LeafCache()
        self._preloaded: dict[bytes, bytes] = {}
        self._packs = packs.PackReader(self.path)
        self._env: lmdb.Environment | None = None
        self._dirfd: int | None = None
        self._write_refusal: str | None = None
        self._open(create)

    @classmethod
    def open(cls, path: str | os.PathLike | None = None, **options) -> "Store":
        return cls(path, **options)

    def __repr__(self):
        return f"Store({str(self.path)!r})"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    # ---- opening --------------------------------------------------------------------
    def _open(self, create: bool) -> None:
        data = self.path / "data.mdb"
        if self.path.exists() and not self.path.is_dir():
            raise StoreError(f"{self.path} is not a directory: --store (or CHRONO_STORE) must "
                             f"name a store directory")
        if not data.exists():
            if not create or self.readonly:
                raise StoreError(f"no chrono store at {self.path}: nothing has been saved there "
                                 f"(use --store DIR or CHRONO_STORE to name another store)")
            try:
                self.path.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StoreError(f"cannot create store {self.path}: {e.strerror}") from None
        try:
            self._dirfd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as e:
            raise StoreError(f"cannot open store {self.path}: {e.strerror}") from None
        try:
            self._lock_shared()
            self._check_files(create)
            self._env = self._open_env()
            self._env.reader_check()
            self._check_trees_quickly()
            self._open_databases()
            self._check_format()
        except lmdb.Error as e:
            error = self._translate(e)
            self.close()
            raise error from None
        except BaseException:
            self.close()
            raise

    def _check_files(self, create: bool) -> None:
        """Refuse files LMDB would crash on or misreport (see chrono.store.lmdbfile):
        checked before LMDB maps data.mdb, so no read can fault."""
        data, lock = self.path / "data.mdb", self.path / "lock.mdb"
        advice = self._DAMAGED_ADVICE.format(path=self.path)
        try:
            # An empty file is what LMDB leaves if its creator stopped before
            # writing the header: a new store may be made in it, nothing is lost.
            check_data_file(data, allow_empty=create and not self.readonly)
        except DataFileProblem as e:
            raise StoreCorruptError(f"store {self.path} is damaged: {data} {e}; {advice}") from None
        except FileNotFoundError:
            if not create or self.readonly:
                raise StoreCorruptError(f"store {self.path} is damaged: {data} has gone; "
                                        f"{advice}") from None
        except OSError as e:
            raise StoreError(f"cannot read store {self.path}: {data}: {e.strerror}") from None
        if os.path.lexists(lock) and not lock.is_file():
            raise StoreCorruptError(f"store {self.path} is damaged: {lock} is not a regular "
                                    f"file; remove it (it holds only the table of open readers)")

    _DAMAGED_ADVICE = "restore the store from a backup, or move {path} away to start an empty store there"

    def check_trees(self, r: "Reader") -> None:
        """Check every B-tree page of data.mdb as `r` sees it, with plain reads
        (chrono.store.lmdbfile.walk): LMDB aborts or faults on a damaged page, so
        whatever walks the whole store (verify, gc) calls this first."""
        self._walk_trees(r._txn.id(), quick=False)

    def _walk_trees(self, txnid: int, quick: bool) -> None:
        data = self.path / "data.mdb"
        try:
            meta = read_meta(data, txnid)
            if meta is None:
                if quick:
                    return              # a writer committed meanwhile: its pages are newer
                raise StoreError(f"store {self.path} changed while it was being checked "
                                 f"(another process writes to it): try again")
            if quick:
                walk(data, meta, overflow_headers=False, skip=_READ_BY_KEY)
            else:
                walk(data, meta)
        except DataFileProblem as e:
            raise StoreCorruptError(f"store {self.path} is damaged: {data}: {e}; "
                                    f"{self._DAMAGED_ADVICE.format(path=self.path)}") from None
        except OSError as e:
            raise StoreError(f"cannot read store {self.path}: {data}: {e.strerror}") from None

    def _check_trees_quickly(self) -> None:
        """Every open: the trees LMDB's cursors walk (all but the blobs), before
        any database is opened -- a fraction of a millisecond (walk's docstring)."""
        txn = self._env.begin()
        try:
            self._walk_trees(txn.id(), quick=True)
        finally:
            txn.abort()

    def _open_env(self) -> lmdb.Environment:
        size = self.map_size
        while True:
            try:
                # metasync=False: a commit syncs the data pages but not the meta
                # page (one fdatasync, not two).  LMDB stays atomic and
                # consistent; a power cut (not a killed process) may undo
                # the last commit, which the next commit makes durable.
                return lmdb.open(str(self.path), map_size=size, subdir=True, create=False,
                                 readonly=self.readonly, max_dbs=MAX_DBS, writemap=False,
                                 readahead=False, lock=True, max_spare_txns=0,
                                 metasync=False)
            except lmdb.MemoryError:
                # Address space limited (ulimit -v): ask for less.
                if size <= _MIN_MAP_SIZE:
                    raise StoreError(f"cannot map store {self.path}: not enough address space") from None
                size //= 4
            except lmdb.Error as e:
                if "already open in this process" in str(e):
                    raise StoreError(f"store {self.path} is already open in this process: "
                                     f"share that Store object") from None
                raise self._translate(e) from None

    def _open_databases(self) -> None:
        env = self._env
        with env.begin() as txn:
            names = {bytes(k) for k in txn.cursor().iternext(values=False)}
        if b"meta" not in names:
            if not names and self.readonly:     # created, but nothing committed yet
                raise StoreError(f"no chrono store at {self.path}: nothing has been saved there "
                                 f"(use --store DIR or CHRONO_STORE to name another store)")
            if names:
                raise StoreFormatError(
                    f"{self.path} is not a chrono store (an LMDB environment without chrono's "
                    f"format record): name another directory with --store or CHRONO_STORE")
            self._initialize()
        if not set(TRACE_DATABASES) <= names and b"meta" in names and not self.readonly:
            self._add_trace_databases()
        try:
            self._meta, self._blobs, self._snapshots, self._refs = (
                env.open_db(name, create=False) for name in DATABASES)
            self._traces, self._events = (self._optional_db(name) for name in TRACE_DATABASES)
        except lmdb.NotFoundError:
            raise StoreCorruptError(f"store {self.path} is damaged: a database is missing "
                                    f"(expected {', '.join(n.decode() for n in DATABASES)})") from None
        except lmdb.Error as e:
            raise self._translate(e) from None

    def _optional_db(self, name: bytes):
        """A database an older store may lack (None when read-only and absent)."""
        try:
            return self._env.open_db(name, create=False)
        except lmdb.NotFoundError:
            if self.readonly:
                return None
            raise

    def _add_trace_databases(self) -> None:
        try:
            with self._env.begin(write=True) as txn:
                for name in TRACE_DATABASES:
                    self._env.open_db(name, txn=txn, create=True)
        except lmdb.Error as e:
            raise self._translate(e) from None

    def _initialize(self) -> None:
        """Create the databases and the format record, all in one transaction."""
        env = self._env
        try:
            with env.begin(write=True) as txn:
                if txn.get(b"meta") is not None:      # another process got there first
                    return
                for name in DATABASES + TRACE_DATABASES:
                    env.open_db(name, txn=txn, create=True)
                meta = env.open_db(b"meta", txn=txn)
                records = {"format": str(FORMAT), "features.incompat": "",
                           "features.ro_compat": "", "features.compat": "",
                           "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
                for key, value in records.items():
                    txn.put(key.encode(), value.encode(), db=meta)
        except lmdb.Error as e:
            raise self._translate(e) from None

    def meta(self) -> dict[str, str]:
        with self._env.begin(db=self._meta) as txn:
            return {bytes(k).decode("ascii", "replace"): bytes(v).decode("ascii", "replace")
                    for k, v in txn.cursor()}

    def _check_format(self) -> None:
        meta = self.meta()
        what = "use a chrono that reads it, or name another store with --store or CHRONO_STORE"
        try:
            version = int(meta.get("format", ""))
        except ValueError:
            raise StoreCorruptError(f"store {self.path} is damaged: its format record "
                                    f"{meta.get('format')!r} is not a number") from None
        if version != FORMAT:
            age = "newer" if version > FORMAT else "older"
            raise StoreFormatError(f"store {self.path} has format {version}, {age} than the format "
                                   f"this chrono reads ({FORMAT}): {what}")

        def flags(name: str) -> set[str]:
            return {f for f in meta.get(name, "").split(",") if f}

        unknown = sorted(flags("features.incompat") - KNOWN_INCOMPAT)
        if unknown:
            raise StoreFormatError(f"store {self.path} uses features this chrono does not know "
                                   f"({', '.join(unknown)}): {what}")
        unknown = sorted(flags("features.ro_compat") - KNOWN_RO_COMPAT)
        if unknown:
            self._write_refusal = (f"store {self.path} uses features this chrono can read but not "
                                   f"write ({', '.join(unknown)}): {what}")

    # ---- locking, lifetime ----------------------------------------------------------
    def _lock_shared(self) -> None:
        deadline = time.monotonic() + _LOCK_WAIT
        while True:
            try:
                fcntl.flock(self._dirfd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StoreError(f"store {self.path} is being compacted by another process; "
                                     f"try again when it finishes") from None
                time.sleep(0.05)
            except OSError:
                return          # no flock on this file system: nothing to coordinate with

    def close(self) -> None:
        """Close the store.  Open readers and writers must be finished."""
        if getattr(self, "_pid", None) != os.getpid():
            self._env = self._dirfd = None   # a forked child: never touch the parent's env
            return
        if self._env is not None:
            self._env.close()
            self._env = None
        self._packs.close()
        if self._dirfd is not None:
            os.close(self._dirfd)
            self._dirfd = None

    def _usable(self) -> lmdb.Environment:
        if os.getpid() != self._pid:
            raise StoreError(f"store {self.path} was opened by process {self._pid} before a fork(); "
                             f"open it again in this process")
        if self._env is None:
            raise StoreError(f"store {self.path} is closed")
        return self._env

    # ---- errors ---------------------------------------------------------------------
    def _translate(self, e: lmdb.Error) -> StoreError:
        """The user-facing error for an LMDB failure."""
        text = str(e)
        if isinstance(e, lmdb.MapFullError):
            try:
                size = self._env.info()["map_size"]
            except Exception:
                size = self.map_size
            return StoreFullError(f"store {self.path} is full: its {size >> 20} MiB map is "
                                  f"used up; free space or run `chrono store gc`")
        if isinstance(e, lmdb.DiskError) or self._out_of_room(text):
            return StoreFullError(f"store {self.path} is full: the file system has no room "
                                  f"({text}); free space there, or remove snapshots you do not "
                                  f"need (`chrono snap rm NAME`, then `chrono store gc`, which "
                                  f"works on a full disk)")
        if isinstance(e, (lmdb.CorruptedError, lmdb.PageNotFoundError, lmdb.InvalidError,
                          lmdb.VersionMismatchError, lmdb.BadChecksumError,
                          lmdb.IncompatibleError)):
            return StoreCorruptError(f"store {self.path} is damaged (LMDB: {text}); run "
                                     f"`chrono store verify`, or restore it from a backup")
        if isinstance(e, lmdb.PanicError):
            return StoreError(f"store {self.path}: LMDB stopped after an earlier failure; "
                              f"open the store again (committed snapshots are safe)")
        if isinstance(e, lmdb.ReadonlyError):
            return StoreError(f"store {self.path} cannot be written here (permission denied)")
        if isinstance(e, lmdb.ReadersFullError):
            return StoreError(f"store {self.path} has too many readers open at once")
        return StoreError(f"store {self.path}: {text}")

    def _out_of_room(self, text: str) -> bool:
        """Was this failure a full disk?  LMDB reports a short write (what a full
        file system or a file size limit gives) as EIO, so look at the room left."""
        if any(os.strerror(code) in text for code in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)):
            return True
        if os.strerror(errno.EIO) not in text:
            return False
        import shutil
        try:
            if shutil.disk_usage(self.path).free < _LOW_SPACE:
                return True
            limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
            return limit != resource.RLIM_INFINITY and self.file_size() + _LOW_SPACE > limit
        except OSError:
            return False

    # ---- transactions ---------------------------------------------------------------
    @contextmanager
    def reader(self) -> Iterator["Reader"]:
        """A consistent read-only view.  Keep it short: it pins freed pages."""
        env = self._usable()
        try:
            txn = env.begin(buffers=True)
        except lmdb.Error as e:
            raise self._translate(e) from None
        try:
            yield Reader(self, txn)
        except lmdb.Error as e:
            raise self._translate(e) from None
        finally:
            txn.abort()

    @contextmanager
    def writer(self) -> Iterator["Writer"]:
        """One write transaction: committed when the block ends, aborted if it raises.

        Everything a snapshot consists of (blobs, leaves, manifest, ref) goes
        into one writer, so it is stored completely or not at all.
        """
        env = self._usable()
        if self.readonly:
            raise StoreError(f"store {self.path} was opened read-only")
        if self._write_refusal:
            raise StoreFormatError(self._write_refusal)
        if getattr(self._local, "writing", False):
            raise StoreError("a write transaction is already open in this thread (a second one "
                             "would wait for it forever): use that writer")
        try:
            txn = env.begin(write=True, buffers=True)
        except lmdb.Error as e:
            raise self._translate(e) from None
        self._local.writing = True
        writer = Writer(self, txn)
        try:
            try:
                yield writer
                writer.finish_packs()
            except BaseException:
                txn.abort()
                raise
            txn.commit()
        except lmdb.Error as e:
            txn.abort()
            raise self._translate(e) from None
        finally:
            writer.close_packs()
            self._local.writing = False

    def preload(self, blobs) -> None:
        """Serve these stored values ({key: value}, e.g. a boot set: see
        chrono.store.bootset) from memory instead of the file.  Each is still
        decoded and verified against the key it is read by."""
        self._preloaded.update(blobs)

    # ---- one-shot conveniences (each its own short transaction) -----------------------
    def get_blob(self, key: bytes) -> bytes:
        if key == ZERO_HASH:
            return ZERO_PAGE
        data = self._from_preloaded(key)    # a fast boot's pages: no transaction needed
        if data is not None:
            return data
        with self.reader() as r:
            return r.get_blob(key)

    def _from_preloaded(self, key: bytes) -> bytes | None:
        """The content of a preloaded blob, verified (None: not preloaded, or
        its copy was damaged and is dropped: the store has the blob itself)."""
        preloaded = self._preloaded.get(key)
        if preloaded is None:
            return None
        try:
            return decode_blob(key, preloaded, str(self.path))
        except StoreCorruptError:
            self._preloaded.pop(key, None)
            return None

    def get_leaf(self, key: bytes) -> bytes:
        leaf = self._leaves.get(key)
        if leaf is not None:
            return leaf
        with self.reader() as r:
            return r.get_leaf(key)

    def page(self, table: PageTable, index: int) -> bytes:
        """Content of one page of `table` (for lazy restore)."""
        key = table.lookup(self, index)
        return ZERO_PAGE if key == ZERO_HASH else self.get_blob(key)

    def resolve(self, name: str) -> str:
        with self.reader() as r:
            return r.resolve(name)

    def snapshot(self, name: str) -> Manifest:
        """The manifest of a snapshot given by ref name, id or unique id prefix."""
        with self.reader() as r:
            return r.snapshot(name)

    def get_snapshot(self, sid: str) -> Manifest:
        with self.reader() as r:
            return r.get_snapshot(sid)

    def refs(self) -> dict[str, str]:
        with self.reader() as r:
            return r.refs()

    def set_ref(self, name: str, sid: str) -> None:
        with self.writer() as w:
            w.set_ref(name, sid)

    def delete_ref(self, name: str) -> str:
        with self.writer() as w:
            return w.delete_ref(name)

    def tag(self, name: str, new_name: str, force: bool = False) -> str:
        """Give the snapshot `name` (ref, id or prefix) the ref `new_name`; returns its id."""
        check_ref_name(new_name)
        with self.writer() as w:
            sid = w.resolve(name)
            existing = w.get_ref(new_name)
            if existing is not None and existing != sid and not force:
                raise StoreError(f"a snapshot named {new_name!r} already exists in store "
                                 f"{self.path} ({existing[:12]}); remove it first, or use --force")
            w.set_ref(new_name, sid)
            return sid

    def remove(self, name: str) -> tuple[str, list[str]]:
        """Remove a snapshot's names: the ref `name`, or every ref of the snapshot
        `name` identifies by id.  Returns (id, removed refs).  Its data stays
        until `gc` finds nothing else reaching it."""
        with self.writer() as w:
            if w.get_ref(name) is not None:
                return w.delete_ref(name), [name]
            sid = w.resolve(name)
            names = [n for n, target in w.refs(strict=False).items() if target == sid]
            for n in names:
                w.delete_ref(n)
            return sid, names

    # ---- maintenance ------------------------------------------------------------------
    def file_size(self) -> int:
        """Bytes of data.mdb."""
        return (self.path / "data.mdb").stat().st_size

    def disk_bytes(self) -> int:
        """Bytes of data.mdb and the packs together."""
        return self.file_size() + self.info()["pack_bytes"]

    def info(self) -> dict:
        """LMDB environment facts (map size, page size, pages in use) and the
        packs' (bytes on disk, bytes still named)."""
        env = self._usable()
        info, stat = env.info(), env.stat()
        with self.reader() as r:
            sizes = packs.pack_sizes(r._txn, self._meta)
        return {"map_size": info["map_size"], "page_size": stat["psize"],
                "used_bytes": (info["last_pgno"] + 1) * stat["psize"],
                "file_bytes": self.file_size(),
                "pack_bytes": packs.total_size(self.path, sizes),
                "pack_live_bytes": sum(live for _, live in sizes.values())}

    def compact(self) -> tuple[int, int]:
        """Rewrite the packs that have dead bytes (chrono.store.packs.rewrite)
        and data.mdb without free pages; returns (bytes before, bytes after),
        data.mdb and packs together.

        A compacting copy (env.copy(compact=True)) is written into
        DIR/compact-<pid>.tmp/ -- beside data.mdb, so on the same file system --,
        synced, then renamed over data.mdb, which is atomic: a crash leaves
        either the old file or the new one.  Needs the store to be open in no
        other process (it holds the directory lock exclusively meanwhile).
        """
        env = self._usable()
        if self.readonly:
            raise StoreError(f"store {self.path} was opened read-only")
        if getattr(self._local, "writing", False):
            raise StoreError("cannot compact inside a write transaction")
        data = self.path / "data.mdb"
        before = data.stat().st_size + self.info()["pack_bytes"]
        try:
            fcntl.flock(self._dirfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fcntl.flock(self._dirfd, fcntl.LOCK_SH)
            raise StoreError(f"store {self.path} is open in another process; close it there "
                             f"and run compact again") from None
        import shutil
        try:
            with self.reader() as r:
                self.check_trees(r)     # the copy walks every page: LMDB must not meet a damaged one
            packs.rewrite(self)
            for stale in self.path.glob("compact-*.tmp"):
                shutil.rmtree(stale, ignore_errors=True)
            tmp = self.path / f"compact-{os.getpid()}.tmp"
            tmp.mkdir()
            try:
                try:
                    env.copy(str(tmp), compact=True)
                except lmdb.Error as e:
                    error = self._translate(e)
                    if isinstance(error, StoreFullError):
                        raise self._no_room_to_compact(str(e)) from None
                    raise error from None
                copy = tmp / "data.mdb"
                packs.fsync_path(copy)
                self._env.close()
                self._env = None
                os.replace(copy, data)
                packs.fsync_path(self.path)
            except OSError as e:
                raise (self._no_room_to_compact(e.strerror)
                       if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) else
                       StoreError(f"cannot compact store {self.path}: {e.strerror}")) from None
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
                if self._env is None:
                    self._env = self._open_env()
                    self._open_databases()
        finally:
            fcntl.flock(self._dirfd, fcntl.LOCK_SH)
        return before, data.stat().st_size + self.info()["pack_bytes"]


    def _no_room_to_compact(self, why: str) -> StoreFullError:
        used = self.info()["used_bytes"] if self._env is not None else self.file_size()
        return StoreFullError(f"store {self.path} was not compacted: the copy it writes beside "
                              f"data.mdb (up to {used >> 20} MiB) found no room ({why}); free "
                              f"space on that file system and run compact again (the store "
                              f"is unchanged)")


def _hostname() -> str:
    # What socket.gethostname() returns on POSIX, without importing socket
    # (and selectors): that cost a fast boot 2-4 ms.
    return os.uname().nodename


def lease_holder(tag: str) -> str:
    """A lease name for this process: host/pid/tag."""
    return f"{_hostname()}/{os.getpid()}/{tag}"


def lease_alive(holder: str) -> bool:
    """Whether the process holding a lease (its ref name after LEASE_PREFIX:
    host/pid/tag) may still run.  Only a process of this host that has ended
    is known dead; gc drops those leases and `snap list` shows them as such."""
    host, _, rest = holder.partition("/")
    pid = rest.partition("/")[0]
    if host != _hostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Reader:
    """Reads inside one transaction (see Store.reader)."""

    def __init__(self, store: Store, txn: lmdb.Transaction):
        self.store = store
        self._txn = txn
        self._where = str(store.path)

    # ---- blobs ----------------------------------------------------------------------
    def get_raw(self, key: bytes) -> bytes | None:
        """The stored value (codec byte + payload), unverified, or None.  For
        decoding in other threads with decode_blob()."""
        value = self._txn.get(key, db=self.store._blobs)
        return None if value is None else self.deref(value)

    def deref(self, value) -> bytes:
        """A blobs-database value as the stored value it is or points to."""
        if packs.is_pointer(value):
            return self.store._packs.read(value, self._where)
        return bytes(value)

    def has_blob(self, key: bytes) -> bool:
        return key == ZERO_HASH or self._txn.get(key, db=self.store._blobs) is not None

    def stored_among(self, keys: list[bytes]) -> set[bytes]:
        """The keys among `keys` whose blobs are stored (one call for them all:
        a capture asks about thousands)."""
        cursor = self._txn.cursor(db=self.store._blobs)
        return {bytes(key) for key, _ in cursor.getmulti(keys)}

    def get_blob(self, key: bytes) -> bytes:
        """Content of a blob, verified against its key (StoreCorruptError if not)."""
        if key == ZERO_HASH:
            return ZERO_PAGE
        data = self.store._from_preloaded(key)
        if data is not None:
            return data
        value = self._txn.get(key, db=self.store._blobs)
        if value is None:
            raise StoreCorruptError(f"blob {key.hex()} is missing from store {self._where}; run "
                                    f"`chrono store verify` to see what it affects")
        return decode_blob(key, self.deref(value), self._where)

    def get_leaf(self, key: bytes) -> bytes:
        """A page-table leaf (cached by the store)."""
        leaf = self.store._leaves.get(key)
        if leaf is None:
            leaf = self.get_blob(key)
            if len(leaf) != LEAF_BYTES:
                raise StoreCorruptError(f"blob {key.hex()} in store {self._where} is not a "
                                        f"page-table leaf ({len(leaf)} bytes, not {LEAF_BYTES}); "
                                        f"run `chrono store verify`")
            self.store._leaves.put(key, leaf)
        return leaf

    def page(self, table: PageTable, index: int) -> bytes:
        """Content of one page of `table`."""
        return self.get_blob(table.lookup(self, index))

    def pages(self, table: PageTable, indices) -> list[bytes]:
        """Contents of several pages of `table`."""
        return [self.get_blob(key) for key in table.lookup_many(self, indices)]

    # ---- snapshots -------------------------------------------------------------------
    def has_snapshot(self, sid: str) -> bool:
        key = _id_key(sid)
        return key is not None and self._txn.get(key, db=self.store._snapshots) is not None

    def get_snapshot(self, sid: str) -> Manifest:
        """The manifest with id `sid` (64 hex digits), verified against its id."""
        key = _id_key(sid)
        value = None if key is None else self._txn.get(key, db=self.store._snapshots)
        if value is None:
            raise UnknownSnapshotError(f"no snapshot {sid} in store {self._where}")
        return self._decode_manifest(key, value)

    def _decode_manifest(self, key: bytes, value) -> Manifest:
        sid = key.hex()
        data = bytes(value)
        if snapshot_id(data) != sid:
            raise StoreCorruptError(f"snapshot {sid} in store {self._where} is damaged (its "
                                    f"manifest does not match its id); run `chrono store verify`")
        try:
            return Manifest.decode(data)
        except ManifestFormatError as e:
            raise StoreFormatError(f"snapshot {sid} in store {self._where} was written by a newer "
                                   f"chrono ({e}): upgrade chrono to read it") from None
        except ValueError as e:
            raise StoreCorruptError(f"snapshot {sid} in store {self._where} is damaged "
                                    f"({e}); run `chrono store verify`") from None

    def snapshot(self, name: str) -> Manifest:
        """The manifest of the snapshot `name` (ref, id or unique id prefix)."""
        return self.get_snapshot(self.resolve(name))

    def snapshot_ids(self) -> list[str]:
        return [bytes(k).hex() for k in self._txn.cursor(db=self.store._snapshots).iternext(values=False)]

    def snapshots(self) -> Iterator[tuple[str, Manifest]]:
        """(id, manifest) of every snapshot, in id order."""
        for key, value in self._txn.cursor(db=self.store._snapshots):
            key = bytes(key)
            yield key.hex(), self._decode_manifest(key, value)

    # ---- refs -----------------------------------------------------------------------
    def get_ref(self, name: str) -> str | None:
        try:
            encoded = name.encode()
        except UnicodeEncodeError:
            return None
        if not encoded or len(encoded) > 511:
            return None
        value = self._txn.get(encoded, db=self.store._refs)
        if value is None:
            return None
        if len(value) != HASH_SIZE:
            raise StoreCorruptError(f"ref {name!r} in store {self._where} is damaged; remove it "
                                    f"with `chrono snap rm {name}`")
        return bytes(value).hex()

    def refs(self, strict: bool = True, leases: bool = False) -> dict[str, str]:
        """{name: snapshot id}, sorted by name.  strict=False skips damaged refs;
        leases=True includes the leases of running guests (see Writer.set_lease)."""
        out = {}
        for key, value in self._txn.cursor(db=self.store._refs):
            name = bytes(key).decode("utf-8", "replace")
            if name.startswith(LEASE_PREFIX) and not leases:
                continue
            if len(value) != HASH_SIZE:
                if strict:
                    raise StoreCorruptError(f"ref {name!r} in store {self._where} is damaged; "
                                            f"remove it with `chrono snap rm {name}`")
                continue
            out[name] = bytes(value).hex()
        return out

    def resolve(self, name: str) -> str:
        """Snapshot id for a ref name, a full id, or an id prefix of at least 4 hex digits.

        Refs win over ids.  Raises UnknownSnapshotError for no match or an
        ambiguous prefix.
        """
        target = self.get_ref(name)
        if target is not None:
            return target
        prefix = name.lower()
        if 4 <= len(prefix) <= 2 * HASH_SIZE and _is_hex(prefix):
            matches = []
            cursor = self._txn.cursor(db=self.store._snapshots)
            if cursor.set_range(bytes.fromhex(prefix[:len(prefix) // 2 * 2])):
                for key in cursor.iternext(values=False):
                    hexkey = bytes(key).hex()
                    if not hexkey.startswith(prefix) or len(matches) == 2:
                        break
                    matches.append(hexkey)
            if len(matches) == 1:
                return matches[0]
            if matches:
                raise UnknownSnapshotError(
                    f"{name!r} is ambiguous in store {self._where}: more than one snapshot id "
                    f"begins with it ({matches[0][:16]}, {matches[1][:16]}, ...); give more digits")
        raise UnknownSnapshotError(f"no snapshot named {name!r} in store {self._where} "
                                   f"(`chrono snap list` shows them)")


    # ---- recordings (chrono.replay keeps their format) ---------------------------------
    def get_trace(self, name: str) -> bytes | None:
        """The stored manifest of recording `name`, or None."""
        if self.store._traces is None:
            return None
        try:
            key = name.encode()
        except UnicodeEncodeError:
            return None
        if not key or len(key) > 511:
            return None
        value = self._txn.get(key, db=self.store._traces)
        return None if value is None else bytes(value)

    def traces(self) -> Iterator[tuple[str, bytes]]:
        """(name, stored manifest) of every recording, in name order."""
        if self.store._traces is None:
            return
        for key, value in self._txn.cursor(db=self.store._traces):
            yield bytes(key).decode("utf-8", "replace"), bytes(value)

    def chunks(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) of event chunks whose key begins with `prefix`, in key
        order, from the last key <= `start` on (range lookups), or all."""
        if self.store._events is None:
            return
        cursor = self._txn.cursor(db=self.store._events)
        if start is None:
            found = cursor.set_range(prefix)
        else:
            found = cursor.set_range(start)
            if not found or bytes(cursor.key()) != start:
                found = cursor.prev() if found else cursor.last()
                if not found or not bytes(cursor.key()).startswith(prefix):
                    found = cursor.set_range(prefix)
        while found:
            key = bytes(cursor.key())
            if not key.startswith(prefix):
                return
            if len(key) == len(prefix) + 12:    # event chunks; other records share the prefix
                yield key, bytes(cursor.value())
            found = cursor.next()

    def keys_with_prefix(self, prefix: bytes) -> list[bytes]:
        """Every key of the events database that begins with `prefix` (a
        recording's chunks and the records kept beside them)."""
        if self.store._events is None:
            return []
        cursor = self._txn.cursor(db=self.store._events)
        out = []
        found = cursor.set_range(prefix)
        while found and bytes(cursor.key()).startswith(prefix):
            out.append(bytes(cursor.key()))
            found = cursor.next()
        return out

    def get_event_record(self, key: bytes) -> bytes | None:
        value = None if self.store._events is None else self._txn.get(key, db=self.store._events)
        return None if value is None else bytes(value)

    def get_chunk(self, key: bytes) -> bytes:
        value = None if self.store._events is None else self._txn.get(key, db=self.store._events)
        if value is None:
            raise StoreCorruptError(f"event chunk {key.hex()} is missing from store {self._where}; "
                                    f"run `chrono trace verify`")
        return bytes(value)

    def chunk_keys(self) -> Iterator[bytes]:
        if self.store._events is None:
            return
        for key in self._txn.cursor(db=self.store._events).iternext(values=False):
            yield bytes(key)


class Writer(Reader):
    """Writes inside one write transaction (see Store.writer); reads see them."""

    _marked: frozenset[str] = frozenset()      # incompat flags already set in this transaction
    _appender: packs.PackAppender | None = None

    def packs(self, fresh: bool = False) -> packs.PackAppender:
        """This transaction's appender to the store's packs (made on first
        use; `fresh`: one that starts a new pack)."""
        if self._appender is None:
            self._appender = packs.PackAppender(self, fresh)
        return self._appender

    def finish_packs(self) -> None:
        if self._appender is not None:
            self._appender.finish()

    def close_packs(self) -> None:
        if self._appender is not None:
            self._appender.close()

    def put_blobs(self, blobs) -> int:
        """Store already-encoded (key, value) pairs, skipping keys already
        present and None values (zero pages).  Returns how many were new."""
        items = sorted((k, v) for k, v in blobs if v is not None)    # keys are unique
        if not items:
            return 0
        for key, _ in items:
            if len(key) != HASH_SIZE or key == ZERO_HASH:
                raise ValueError(f"{key!r} is not a blob key")
        if LZ4_FEATURE not in self._marked and any(v[0] == CODEC_LZ4 for _, v in items):
            self.require_feature(LZ4_FEATURE)
        _, added = self._txn.cursor(db=self.store._blobs).putmulti(items, overwrite=False)
        return added

    def require_feature(self, flag: str) -> None:
        """Add incompat `flag` to the store's meta record in this transaction
        (so it lands with the first record that needs it)."""
        raw = self._txn.get(b"features.incompat", db=self.store._meta)
        flags = [f for f in bytes(raw or b"").decode("ascii", "replace").split(",") if f]
        if flag not in flags:
            self._txn.put(b"features.incompat", ",".join([*flags, flag]).encode(),
                          db=self.store._meta)
        self._marked = self._marked | {flag}    # asked once a transaction, not per put

    def remember_leaf(self, key: bytes, leaf: bytes) -> None:
        """Cache a leaf this writer built (key = its SHA-256, computed by the
        caller), so the next capture need not read it back and decode it."""
        self.store._leaves.put(key, leaf)

    def get_leaf(self, key: bytes) -> bytes:
        """A leaf, checked to be in the store *in this transaction*: with_changes()
        copies page keys out of it, and those pages are only known to be present
        while the leaf is (gc deletes a leaf's pages only with the leaf)."""
        if not self.has_blob(key):
            raise StoreError(f"page-table leaf {key.hex()} is no longer in store {self._where} "
                             f"(removed by gc since it was read?): save a full snapshot instead "
                             f"of one based on it")
        return super().get_leaf(key)

    def put_blob(self, data) -> bytes:
        """Encode and store one blob; returns its key."""
        key, value = encode_blob(data)
        self.put_blobs([(key, value)])
        return key

    def put_snapshot(self, manifest: Manifest) -> str:
        """Store a manifest; returns its id.

        The blobs it names directly (state, device tree, leaves) must be in the
        store or in this transaction: checked here.  The pages under its
        leaves are the caller's duty: the pages it changed are put in this
        transaction, the others come from leaves of its parent, present as long
        as the parent is (see gc).  If the parent is gone (gc removed it since
        it was read), every page under the leaves is checked.
        """
        for key in manifest.blob_keys():
            if not self.has_blob(key):
                raise StoreError(f"snapshot names blob {key.hex()}, which is not in store "
                                 f"{self._where} (removed by gc since it was read?): put its "
                                 f"blobs in the same write transaction, or save a full snapshot")
        if manifest.parent and not self.has_snapshot(manifest.parent):
            self._check_pages(manifest)
        encoded = manifest.encode()
        sid = snapshot_id(encoded)
        self._txn.put(bytes.fromhex(sid), encoded, db=self.store._snapshots)
        return sid

    def _check_pages(self, manifest: Manifest) -> None:
        for what, table in manifest.tables():
            for leaf in table.leaf_keys:
                for index, key in PageTable(LEAF_PAGES, [leaf]).items(self):
                    if self._txn.get(key, db=self.store._blobs) is None:
                        raise StoreError(
                            f"snapshot names {what} page blob {key.hex()}, which is not in store "
                            f"{self._where}: its parent {manifest.parent[:12]} was removed "
                            f"(by gc?) with pages it shared; save a full snapshot")

    def set_ref(self, name: str, sid: str) -> None:
        """Point the ref `name` at snapshot `sid` (which must exist)."""
        check_ref_name(name)
        if not self.has_snapshot(sid):
            raise UnknownSnapshotError(f"no snapshot {sid} in store {self._where}")
        self._txn.put(name.encode(), bytes.fromhex(sid), db=self.store._refs)

    def delete_ref(self, name: str) -> str:
        """Remove the ref `name`; returns the id it pointed at."""
        try:
            encoded = name.encode()
        except UnicodeEncodeError:
            encoded = b""
        value = self._txn.get(encoded, db=self.store._refs) if encoded else None
        if value is None:
            raise UnknownSnapshotError(f"no snapshot named {name!r} in store {self._where} "
                                       f"(`chrono snap list` shows them)")
        target = bytes(value).hex()
        self._txn.delete(encoded, db=self.store._refs)
        return target

    def set_lease(self, holder: str, sid: str) -> None:
        """Hold snapshot `sid` for `holder` (lease_holder()) until released."""
        key = (LEASE_PREFIX + holder).encode()
        self._txn.put(key, bytes.fromhex(sid), db=self.store._refs)

    def release_lease(self, holder: str) -> None:
        self._txn.delete((LEASE_PREFIX + holder).encode(), db=self.store._refs)

    def drop_dead_leases(self) -> int:
        """Remove leases whose process no longer runs on this host; returns how many."""
        dead = []
        for name in self.refs(strict=False, leases=True):
            if not name.startswith(LEASE_PREFIX):
                continue
            if not lease_alive(name[len(LEASE_PREFIX):]):
                dead.append(name)
        for name in dead:
            self._txn.delete(name.encode(), db=self.store._refs)
        return len(dead)

    def delete_snapshot(self, sid: str) -> bool:
        key = _id_key(sid)
        return key is not None and self._txn.delete(key, db=self.store._snapshots)

    def delete_blob(self, key: bytes) -> bool:
        value = self._txn.get(key, db=self.store._blobs)
        if value is not None and packs.is_pointer(value):
            self.packs().dead(value)
        return self._txn.delete(key, db=self.store._blobs)

    def put_trace(self, name: str, value: bytes) -> None:
        check_ref_name(name)
        self._txn.put(name.encode(), value, db=self.store._traces)

    def delete_trace(self, name: str) -> bool:
        return self._txn.delete(name.encode(), db=self.store._traces)

    def put_chunk(self, key: bytes, value: bytes) -> None:
        self._txn.put(key, value, db=self.store._events)

    def delete_chunk(self, key: bytes) -> bool:
        return self._txn.delete(key, db=self.store._events)

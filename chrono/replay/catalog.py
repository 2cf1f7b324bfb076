"""The recordings in a store: names, listing, removal."""
from __future__ import annotations

from chrono.errors import UsageError
from chrono.store.store import Store, check_ref_name
from chrono.store.traces import TraceManifest, all_traces, read_trace


def check_new_name(store: Store, name: str) -> str:
    """`name` if it can name a new recording in `store`."""
    check_ref_name(name)
    with store.reader() as r:
        if r.get_trace(name) is not None:
            raise UsageError(f"a recording named {name!r} already exists in store {store.path}: "
                             f"choose another --name, or remove it with `chrono trace rm {name}`")
    return name


def free_name(store: Store) -> str:
    """rec-N for the first N not taken."""
    with store.reader() as r:
        n = 1
        while r.get_trace(f"rec-{n}") is not None:
            n += 1
    return f"rec-{n}"


def list_traces(store: Store) -> list[TraceManifest]:
    with store.reader() as r:
        return sorted(all_traces(r), key=lambda m: (m.created, m.name))


def get_trace(store: Store, name: str) -> TraceManifest:
    with store.reader() as r:
        return read_trace(r, name)


def remove_trace(store: Store, name: str) -> TraceManifest:
    """Remove a recording and its log; its snapshots go at the next gc."""
    with store.writer() as w:
        manifest = read_trace(w, name)
        for key in w.keys_with_prefix(manifest.id_bytes):     # its log and what is kept beside it
            w.delete_chunk(key)
        w.delete_trace(name)
    return manifest

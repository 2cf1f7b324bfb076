"""Child of test_store_crash: saves snapshots in a loop until it is killed.

Each snapshot id is printed (and flushed) only after its commit returned, so
every id the parent read was committed before the kill.

    store_crash_child.py STORE ROUND store    pages straight into the store
    store_crash_child.py STORE ROUND guest    background savevms of a running
                                              demo guest (copy-on-write capture)
    store_crash_child.py STORE ROUND packs    the same, every capture's pages
                                              appended to a pack (chrono.store.packs)
"""
import sys


def pages_loop(path: str, round_: int) -> None:
    from chrono.store import Store
    from storehelp import RAM_PAGES, page, save

    with Store(path, create=True) as store:
        base = parent = None
        n = 0
        print("saving", flush=True)
        while True:
            pages = {(n * 97 + i * 31) % RAM_PAGES: page((round_, n, i), compressible=i % 3 != 0)
                     for i in range(48)}
            sid, manifest = save(store, pages, f"r{round_}-{n}", base=base, parent=parent, steps=n)
            print(sid, flush=True)
            base, parent = manifest.ram, sid
            n += 1


def guest_loop(path: str, round_: int, packs: bool = False) -> None:
    from pathlib import Path
    import chrono.store.capture as capture
    from chrono.core.launch import GuestSpec, launch
    from chrono.store import Store
    from chrono.store.capture import Snapshots

    if packs:
        capture.INLINE_PAGES = 1        # every capture goes over the pool, into a pack
    image = Path(path).parent / f"disk-{round_}.img"
    image.write_bytes(bytes(1 << 20))
    guest = launch(GuestSpec(disk=image))
    m = guest.machine
    with Store(path, create=True) as store:
        snaps = Snapshots(store, guest)
        m.run(5_000_000)
        m.console_write(b"write f" + str(round_).encode() + b" x\nsync\nbench 500\n")
        print("saving", flush=True)
        n = 0
        while True:
            # The guest runs (RAM changes, the disk at first) while the last
            # capture is read and committed; wait() then says it is durable.
            snaps.save(f"r{round_}-{n}", background=True)
            m.run(1_000_000)
            m.console_read()
            print(snaps.wait(), flush=True)
            n += 1


if __name__ == "__main__":
    if sys.argv[3] == "store":
        pages_loop(sys.argv[1], int(sys.argv[2]))
    else:
        guest_loop(sys.argv[1], int(sys.argv[2]), packs=sys.argv[3] == "packs")

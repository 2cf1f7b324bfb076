"""Child of test_store_crash: saves snapshots in a loop until it is killed.

Each snapshot id is printed (and flushed) only after its commit returned, so
every id the parent read was committed before the kill.
"""
import sys

from chrono.store import Store
from storehelp import RAM_PAGES, page, save


def main(path: str, round_: int) -> None:
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


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))

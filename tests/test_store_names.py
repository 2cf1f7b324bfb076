"""Names that are not valid text (bytes that are not UTF-8) are refused where
names enter the store -- savevm at the monitor, `snap tag`, `record --name` --
since a name saved as U+FFFD could never be typed again."""
import os
import subprocess

import pytest

from chrono.errors import RefNameError
from chrono.store import Store, check_ref_name
from chronocmd import CHRONO


def _chrono(store, *args, stdin=b""):
    return subprocess.run([*CHRONO, *args], input=stdin, capture_output=True, timeout=120,
                          env={**os.environ, "CHRONO_STORE": str(store)})


def _names(store):
    with Store(store, readonly=True) as s:
        return sorted(s.refs())


@pytest.mark.parametrize("name", ["\ufffd\ufffd", "a\udcffb"])
def test_the_store_refuses_names_that_are_not_text(name):
    with pytest.raises(RefNameError, match="not valid UTF-8 text"):
        check_ref_name(name)


def test_savevm_at_the_monitor_refuses_bytes_that_are_not_utf8(tmp_path):
    store = tmp_path / "store"
    done = _chrono(store, "run", stdin=b"write a x\n\x01csavevm ok\nsavevm \xff\xfe\n"
                                       b"\x01cpoweroff\n")
    assert done.returncode == 0, done.stderr
    errors = [l for l in done.stdout.decode(errors="replace").splitlines()
              if "not valid UTF-8 text" in l]
    assert len(errors) == 1, done.stdout
    assert _names(store) == ["ok"]


def test_snap_tag_and_record_refuse_bytes_that_are_not_utf8(tmp_path):
    store = tmp_path / "store"
    assert _chrono(store, "run", stdin=b"\x01csavevm ok\n\x01cpoweroff\n").returncode == 0
    for args in (["snap", "tag", "ok", b"\xff".decode(errors="surrogateescape")],
                 ["record", "--name", b"r\xff".decode(errors="surrogateescape")]):
        done = _chrono(store, *args, stdin=b"poweroff\n")
        assert done.returncode == 2, done.stderr
        lines = [l for l in done.stderr.decode(errors="replace").splitlines()
                 if l.startswith("chrono: error:")]
        assert len(lines) == 1 and "not valid UTF-8 text" in lines[0], done.stderr
    assert _names(store) == ["ok"]

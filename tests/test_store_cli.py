"""`chrono store ...` and `chrono snap ...` the way a user runs them: click's
CliRunner for the everyday commands, a real subprocess where the store is
damaged (one clear line, an exit status, no traceback, nothing changed)."""
import hashlib
import json
import subprocess
import sys

import lmdb
import pytest
from click.testing import CliRunner

from chrono.cli import main
from chrono.store import STORE_ENV_VAR, DEFAULT_DIR, Store, encode_blob
from chrono.store.verify import verify
from storehelp import flip_everywhere, page, save

from chronocmd import CHRONO


@pytest.fixture
def snapshots(tmp_path):
    """A store with `booted` -> `work` (two RAM pages and a disk block changed) and an
    unnamed snapshot; returns (path, {name: (id, manifest)})."""
    path = tmp_path / "store"
    with Store(path, create=True) as store:
        booted = save(store, {i: page(("boot", i)) for i in range(64)}, "booted",
                      disk={0: page("super"), 1: page("inode")})
        work = save(store, {3: page("edit"), 4: page("edit2"), 9: page("edit3")}, "work",
                    base=booted[1].ram, parent=booted[0], disk={1: page("inode'")},
                    disk_base=booted[1].disks[0].table, steps=1000, state=b"later state")
        loose = save(store, {1: page("loose")})
    return path, {"booted": booted, "work": work, "loose": loose}


def run(*args, env=None):
    result = CliRunner().invoke(main, [str(a) for a in args], env=env)
    assert "Traceback" not in result.output
    return result


def chrono(*args):
    proc = subprocess.run(CHRONO + [str(a) for a in args], capture_output=True, text=True,
                          timeout=60)
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    return proc


def one_error_line(text):
    lines = [line for line in text.splitlines() if line.startswith("chrono: error: ")]
    assert len(lines) == 1, text
    return lines[0]


def test_store_option_defaults_and_environment_variable_match_the_library():
    assert (DEFAULT_DIR, STORE_ENV_VAR) == (".chrono", "CHRONO_STORE")


def test_snap_list_shows_the_named_snapshots_and_all_shows_the_unnamed_one(snapshots):
    path, snaps = snapshots
    result = run("snap", "list", "--store", path)
    assert result.exit_code == 0, result.output
    header, *rows = result.output.splitlines()
    assert header.split("\t") == ["name", "id", "created", "instructions", "virtual time",
                                  "kept by"]
    assert [row.split("\t")[:2] for row in rows] == [["booted", snaps["booted"][0][:12]],
                                                     ["work", snaps["work"][0][:12]]]
    assert rows[1].split("\t")[3:5] == ["1,000", "0.000 s"]
    everything = run("snap", "list", "--all", "--store", path).output.splitlines()
    loose = next(line for line in everything if snaps["loose"][0][:12] in line)
    assert loose.split("\t")[0] == "-" and loose.endswith("nothing: `chrono store gc` removes it")


def test_the_store_can_be_named_by_the_environment(snapshots):
    path, snaps = snapshots
    result = run("snap", "info", "work", env={"CHRONO_STORE": str(path)})
    assert result.exit_code == 0, result.output
    assert snaps["work"][0] in result.output
    assert "instructions\t1,000\n" in result.output and "2 of 64 blocks non-zero" in result.output


def test_snap_info_accepts_names_ids_and_prefixes(snapshots):
    path, snaps = snapshots
    sid = snaps["booted"][0]
    for name in ("booted", sid, sid[:8]):
        result = run("snap", "info", name, "--store", path)
        assert result.exit_code == 0, result.output
        assert sid in result.output and "64 of 2,048 pages non-zero" in result.output


def test_snap_diff_prints_counts_and_ranges_of_pages_and_blocks(snapshots):
    path, _ = snapshots
    result = run("snap", "diff", "booted", "work", "--store", path)
    assert result.exit_code == 0, result.output
    ram = next(line for line in result.output.splitlines() if line.startswith("RAM\t"))
    assert "3 of 2,048 pages" in ram and "pages 3-4" in ram and "page 9" in ram
    assert "0x80003000" in ram
    disk = next(line for line in result.output.splitlines() if "disk 0" in line)
    assert "1 of 64 blocks" in disk and "block 1" in disk
    assert "differs" in next(line for line in result.output.splitlines() if "state" in line)


def test_snap_tag_and_rm_manage_names_and_gc_frees_the_data(snapshots):
    path, snaps = snapshots
    result = run("snap", "tag", "work", "keep", "--store", path)
    assert result.exit_code == 0 and snaps["work"][0][:12] in result.output
    assert run("snap", "rm", "work", "booted", "--store", path).exit_code == 0
    result = run("store", "gc", "--store", path)
    assert result.exit_code == 0, result.output
    assert "removed 2 snapshots" in result.output
    with Store(path, readonly=True) as store:
        assert store.refs() == {"keep": snaps["work"][0]}
        assert verify(store).ok
        work = store.snapshot("keep")
        assert store.page(work.ram, 0) == page(("boot", 0))      # inherited pages survive


def test_store_stats_verify_and_compact_report_on_a_sound_store(snapshots):
    path, _ = snapshots
    result = run("store", "stats", "--store", path)
    assert result.exit_code == 0, result.output
    assert "dedup ratio" in result.output and "snapshots" in result.output
    result = run("store", "verify", "--store", path)
    assert result.exit_code == 0 and "is sound" in result.output
    result = run("store", "compact", "--store", path)
    assert result.exit_code == 0 and "->" in result.output


@pytest.mark.parametrize("args, status, words", [
    (["snap", "info", "nope"], 3, "no snapshot named 'nope'"),
    (["snap", "rm", "nope"], 3, "no snapshot named 'nope'"),
    (["snap", "tag", "booted", "a/b"], 2, "cannot name a snapshot"),
    (["snap", "tag", "booted", "work"], 6, "already exists"),
    (["snap", "diff", "booted", "nope"], 3, "no snapshot named 'nope'"),
])
def test_bad_names_get_one_clear_line_and_an_exit_status(snapshots, args, status, words):
    path, _ = snapshots
    result = run(*args, "--store", path)
    assert result.exit_code == status, result.output
    assert words in one_error_line(result.output)


def test_a_missing_store_is_one_clear_line_and_is_not_created(tmp_path):
    for args in (["snap", "list"], ["store", "stats"], ["store", "gc"]):
        proc = chrono(*args, "--store", tmp_path / "none")
        assert proc.returncode == 6
        assert "no chrono store at" in one_error_line(proc.stderr)
    assert not (tmp_path / "none").exists()


def test_a_flipped_byte_in_data_mdb_is_reported_by_name_without_a_traceback(snapshots):
    path, snaps = snapshots
    noise = page("noise", compressible=False)
    with Store(path) as store:
        sid, m = save(store, {7: noise}, "noisy", base=snaps["booted"][1].ram)
    before = (path / "data.mdb").read_bytes()
    assert flip_everywhere(path / "data.mdb", noise[2000:2100]) >= 1
    damaged = (path / "data.mdb").read_bytes()

    proc = chrono("store", "verify", "--store", path)
    assert proc.returncode == 7
    key = encode_blob(noise)[0].hex()
    assert key in proc.stdout and sid in proc.stdout
    assert key in one_error_line(proc.stderr)
    as_json = chrono("store", "verify", "--json", "--store", path)
    assert as_json.returncode == 7 and key in one_error_line(as_json.stderr)
    report = json.loads(as_json.stdout)
    assert report["sound"] is False
    assert {"object": "blob", "name": key} in [{k: p[k] for k in ("object", "name")}
                                               for p in report["problems"]]
    # Snapshots not using the blob still work; the damaged page is named when read.
    assert chrono("snap", "diff", "booted", "work", "--store", path).returncode == 0
    assert (path / "data.mdb").read_bytes() == damaged        # read-only commands wrote nothing
    assert before != damaged


def test_a_damaged_page_table_leaf_fails_diff_with_one_line(snapshots):
    path, snaps = snapshots
    work = snaps["work"][1]
    with Store(path) as store:
        leaf = store.get_leaf(work.ram.leaves[0])
    value = encode_blob(leaf)[1]
    assert value[0] == 2                       # a mostly-empty leaf is stored compressed (LZ4)
    assert flip_everywhere(path / "data.mdb", value[20:80]) >= 1
    proc = chrono("snap", "diff", "booted", "work", "--store", path)
    assert proc.returncode == 7
    line = one_error_line(proc.stderr)
    # (the flipped bytes may also sit in booted's leaf, which shares its first pages)
    leaves = {work.ram.leaves[0].hex(), snaps["booted"][1].ram.leaves[0].hex()}
    assert any(key in line for key in leaves) and "chrono store verify" in line


def test_an_incompatible_store_format_is_refused_by_every_command(tmp_path):
    Store(tmp_path / "s", create=True).close()
    env = lmdb.open(str(tmp_path / "s"), max_dbs=16)
    with env.begin(write=True) as txn:
        txn.put(b"format", b"7", db=env.open_db(b"meta", txn=txn))
    env.close()
    digest = hashlib.sha256((tmp_path / "s" / "data.mdb").read_bytes()).digest()
    for args in (["snap", "list"], ["store", "verify"], ["store", "gc"], ["store", "compact"]):
        proc = chrono(*args, "--store", tmp_path / "s")
        assert proc.returncode == 6
        line = one_error_line(proc.stderr)
        assert "format 7" in line and str(tmp_path / "s") in line
    assert hashlib.sha256((tmp_path / "s" / "data.mdb").read_bytes()).digest() == digest

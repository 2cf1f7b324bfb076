"""What list and info commands print, the way a user reads or pipes it: plain
rows in pipes (one record per line, tab-separated, greppable at any path
length), rich tables at a terminal as wide as the terminal, --json with the
documented fields (docs/output.md), named snapshots by default with keyframes
under their recording, and counts that agree with their nouns."""
from __future__ import annotations

import fcntl
import json
import os
import re
import shlex
import shutil
import struct
import subprocess
import termios

import pytest

from chrono.render import mips, plural
from chrono.store import Store
from chrono.store.traces import read_trace
from test_guest_cache import write_fake_guest
from tracehelp import CHRONO, MON, chrono

GC_REMOVES = "nothing: `chrono store gc` removes it"
BOX = set("│┃┏┓┗┛━─┼╇┡┩└┘┌┐")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store with `keep` (saved at a run), `drop` (saved, then delvm'd) and a
    recording `t` with a savevm `inrec` in it; returns (work dir, run's stdout)."""
    work = tmp_path_factory.mktemp("output")
    run = chrono(work, "run", "--store", work / "store",
                 script="write a one\n" + MON + "savevm keep\n" + MON + "write c three\n" + MON
                 + "savevm drop\ndelvm drop\ninfo snapshots\n" + MON + "poweroff\n")
    assert run.returncode == 0, run.stderr
    record = chrono(work, "record", "--store", work / "store", "--name", "t",
                    "--keyframe-interval", 1 << 20,
                    script="write b two\nbench 1\n" + MON + "savevm inrec\n" + MON + "poweroff\n")
    assert record.returncode == 0, record.stderr
    return work, run.stdout


def cli(work, *args):
    proc = chrono(work, *args, "--store", work / "store")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def rows(text: str) -> list[dict[str, str]]:
    """Piped table output: a header line, then one tab-separated row per record."""
    header, *lines = text.splitlines()
    names = header.split("\t")
    out = []
    for line in lines:
        cells = line.split("\t")
        assert len(cells) == len(names), line
        out.append(dict(zip(names, cells)))
    return out


def manifest(work, name="t"):
    with Store(work / "store", readonly=True) as s, s.reader() as r:
        return read_trace(r, name)


# ---- snap list: what is named, what recordings keep, what gc removes ----------------------

def test_snap_list_shows_the_named_snapshots_and_delvm_leaves_no_row(store):
    work, _ = store
    listed = rows(cli(work, "snap", "list"))
    assert [r["name"] for r in listed] == ["keep", "inrec"]
    assert listed[0]["kept by"] == "its name"
    kf = next(i for i, k in enumerate(manifest(work).keyframes) if k.snapshot[:12] == listed[1]["id"])
    assert listed[1]["kept by"] == f"its name, keyframe {kf} of recording t"


def test_snap_list_all_shows_keyframes_grouped_under_their_recording(store):
    work, _ = store
    listed = rows(cli(work, "snap", "list", "--all"))
    keyframes = manifest(work).keyframes
    mine = [i for i, r in enumerate(listed) if "of recording t" in r["kept by"]]
    assert mine == list(range(mine[0], mine[0] + len(keyframes)))      # one group, in order
    for n, (i, k) in enumerate(zip(mine, keyframes)):
        assert listed[i]["id"] == k.snapshot[:12]
        assert f"keyframe {n} of recording t" in listed[i]["kept by"]
        assert listed[i]["instructions"] == f"{k.steps:,}"
    # The snapshot delvm left without a name is listed only here, as what gc removes.
    (dropped,) = [r for r in listed if r["kept by"] == GC_REMOVES]
    assert dropped["name"] == "-"
    info = cli(work, "snap", "info", dropped["id"])
    assert f"kept by\t{GC_REMOVES}\n" in info


def test_after_gc_all_lists_only_what_something_keeps(store, tmp_path):
    work, _ = store
    copy = tmp_path / "copy"
    shutil.copytree(work / "store", copy / "store")
    assert chrono(copy, "store", "gc", "--store", copy / "store").returncode == 0
    listed = rows(cli(copy, "snap", "list", "--all"))
    assert not [r for r in listed if r["kept by"] == GC_REMOVES]
    assert len(listed) == 1 + len(manifest(copy).keyframes)             # keep, and t's keyframes


def test_the_monitor_lists_snapshots_in_the_words_of_snap_list(store):
    work, run_stdout = store
    block = run_stdout[run_stdout.rindex("name "):].split("\n")
    header, row = block[0], block[1].split()
    assert header.split() == "name id created instructions virtual time".split()
    (listed,) = [r for r in rows(cli(work, "snap", "list")) if r["name"] == "keep"]
    assert row == [listed["name"], listed["id"], *listed["created"].split(),
                   listed["instructions"], *listed["virtual time"].split()]
    assert "drop" not in block[2]                                       # deleted before the list


# ---- pipes: greppable rows whatever the width or path ---------------------------------------

def test_piped_guest_list_is_one_greppable_row_per_guest_at_a_long_path(tmp_path):
    cache = tmp_path / ("a-long-folder-name-" * 8) / "cache"
    folder = write_fake_guest(cache / "chrono")
    (folder / "initrd.cpio.gz").unlink()
    env = {"XDG_CACHE_HOME": str(cache), "PATH": "/usr/bin:/bin", "COLUMNS": "40",
           "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(f"{shlex.join(CHRONO)} guest list | grep 'missing its initrd'",
                          shell=True, capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (line,) = proc.stdout.splitlines()
    assert line.startswith("debian\t") and line.endswith(f"\t{folder}")
    assert not BOX & set(line)


def test_piped_tables_have_no_box_drawing_and_no_wrapped_cells(store):
    work, _ = store
    for args in (["snap", "list", "--all"], ["trace", "list"], ["trace", "info", "t"],
                 ["snap", "info", "keep"], ["store", "stats"], ["snap", "diff", "keep", "inrec"]):
        text = cli(work, *args)
        assert not BOX & set(text), args
        widths = {len(line.split("\t")) for line in text.splitlines()}
        assert len(widths) == 1, (args, text)       # every line a whole record


def terminal_output(work, columns: int, *args) -> list[str]:
    """chrono ARGS at a pseudo-terminal `columns` wide: its lines, colours removed."""
    main, sub = os.openpty()
    fcntl.ioctl(sub, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["TERM"] = "xterm"
    proc = subprocess.Popen(CHRONO + [str(a) for a in args], stdin=sub, stdout=sub, stderr=sub,
                            cwd=work, env=env)
    os.close(sub)
    out = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:                     # the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(main)
    assert proc.wait(timeout=60) == 0, out
    text = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", out.decode())
    return [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]


@pytest.mark.parametrize("columns", [72, 160])
def test_a_terminal_gets_a_table_as_wide_as_the_terminal(store, columns):
    work, _ = store
    lines = terminal_output(work, columns, "snap", "list", "--store", work / "store")
    assert max(len(line) for line in lines) <= columns
    assert any(line.split()[:1] == ["keep"] for line in lines)
    header = next(line for line in lines if line.startswith("name"))
    if columns >= 120:                              # room for everything: one line per row
        assert header.split() == "name id created instructions virtual time kept by".split()


# ---- --json ---------------------------------------------------------------------------------

def test_json_of_every_list_and_info_command_has_the_documented_fields(store):
    work, _ = store
    m = manifest(work)

    listed = json.loads(cli(work, "snap", "list", "--json"))
    assert [s["names"] for s in listed["snapshots"]] == [["keep"], ["inrec"]]
    everything = json.loads(cli(work, "snap", "list", "--all", "--json"))["snapshots"]
    snapshot_fields = {"id", "names", "created", "instructions", "virtual_time_ns", "ram_bytes",
                       "disk_bytes", "parent", "keyframe_of", "loaded_by", "leases", "gc_removes"}
    assert all(set(s) == snapshot_fields for s in everything)
    by_id = {s["id"]: s for s in everything}
    for i, k in enumerate(m.keyframes):
        assert {"recording": "t", "keyframe": i, "position": k.position} in by_id[k.snapshot]["keyframe_of"]
    assert [s["gc_removes"] for s in everything].count(True) == 1

    info = json.loads(cli(work, "snap", "info", "keep", "--json"))
    assert set(info) == snapshot_fields | {"parent_present", "ram", "disks", "state",
                                           "device_tree", "config"}
    assert info["ram"]["pages"] * 4096 == info["ram_bytes"]

    traces = json.loads(cli(work, "trace", "list", "--json"))["recordings"]
    assert [(t["name"], t["instructions"], t["keyframe_count"]) for t in traces] == [
        ("t", m.length, len(m.keyframes))]
    trace = json.loads(cli(work, "trace", "info", "t", "--json"))
    assert set(traces[0]) < set(trace)
    assert [k["snapshot"] for k in trace["keyframes"]] == [k.snapshot for k in m.keyframes]
    assert ["inrec"] in [k["names"] for k in trace["keyframes"]]

    stats = json.loads(cli(work, "store", "stats", "--json"))
    verify = json.loads(cli(work, "store", "verify", "--json"))
    assert verify["sound"] is True and verify["problems"] == [] and verify["recordings"] == 1
    assert stats["snapshots"] == verify["snapshots"] == len(everything)
    assert stats["names"] == verify["names"]


def test_json_of_guest_list(tmp_path):
    folder = write_fake_guest(tmp_path / "chrono")
    env = {"XDG_CACHE_HOME": str(tmp_path), "PATH": "/usr/bin:/bin",
           "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(CHRONO + ["guest", "list", "--json"], capture_output=True, text=True,
                          env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    (guest,) = json.loads(proc.stdout)["guests"]
    assert guest == {"name": "debian", "path": str(folder), "size_bytes": guest["size_bytes"],
                     "packages": {"opensbi": "1.6-1"}, "problem": None, "outdated": True}


# ---- counts and rates -------------------------------------------------------------------------

def test_counts_agree_with_their_nouns():
    assert plural(1, "keyframe") == "1 keyframe"
    assert plural(0, "recording") == "0 recordings"
    assert plural(2_000_000, "instruction") == "2,000,000 instructions"
    assert mips(470_000_000, 1.0) == "470 MIPS"
    assert mips(3_200_000, 1.0) == "3.2 MIPS"
    assert mips(50_000, 1.0) == "0.05 MIPS"
    assert mips(1_000, 1.0) == "less than 0.01 MIPS"     # never a false "0 MIPS"


def test_store_verify_counts_one_recording_as_one(store):
    work, _ = store
    out = cli(work, "store", "verify")
    assert re.search(r"\d+ names?, 1 recording checked$", out.strip()), out

"""Values on the command line read the way chrono prints them: positions and
counts with thousands separators, addresses in hex, sizes with units; and
sizes in messages printed in units that fit them.

Through the real CLI (a subprocess), on a short recording of the demo guest.
"""
from __future__ import annotations

import re

import pytest

from chrono.errors import UsageError
from tracehelp import chrono, record_demo, symbol


def one_error_line(proc, *fragments) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("chrono: error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def rec(tmp_path_factory):
    work = tmp_path_factory.mktemp("values")
    record_demo(work, "r", "write a hello\nsync\nls\npoweroff\n", 1 << 20)
    return work


def query(work, *args):
    return chrono(work, "query", "r", *args, "--store", work / "store")


def test_positions_take_the_commas_chrono_prints(rec):
    plain = chrono(rec, "replay", "r", "--to", "200000", "-q", "--store", rec / "store")
    commas = chrono(rec, "replay", "r", "--to", "200,000", "-q", "--store", rec / "store")
    underscores = chrono(rec, "replay", "r", "--to", "200_000", "-q", "--store", rec / "store")
    for proc in (plain, commas, underscores):
        assert proc.returncode == 0, proc.stderr
        assert "replayed r to instruction 200,000" in proc.stderr, proc.stderr
    pc = hex(symbol("kputc"))
    hits = [query(rec, "hits", "--pc", pc, "--from", f, "--to", t).stdout
            for f, t in (("1000", "400000"), ("1,000", "400,000"), ("1_000", "4_00_000"))]
    assert hits[0] and hits[0] == hits[1] == hits[2]
    diff = query(rec, "diff", "100,000", "200_000")
    assert diff.returncode == 0, diff.stderr


@pytest.mark.parametrize("value", ["2,00", "2,0000", "1,000,00", "2.000.000", "two", "0x10", ""])
def test_counts_that_are_not_counts_are_refused_naming_the_option(rec, value):
    proc = chrono(rec, "replay", "r", "--to", value, "--store", rec / "store")
    one_error_line(proc, "--to", "2,000,000")


def test_a_negative_position_is_refused(rec):
    proc = chrono(rec, "replay", "r", "--to", "-5", "--store", rec / "store")
    one_error_line(proc, "--to -5", "negative")


def test_hex_digits_without_0x_are_refused_with_the_hex_spelling(rec):
    one_error_line(query(rec, "last-write", "8000a000"), "8000a000", "0x8000a000")
    one_error_line(query(rec, "hits", "--pc", "deadbeef"), "--pc deadbeef", "0xdeadbeef")


def test_a_decimal_address_is_read_as_decimal_and_says_so(rec):
    pc = symbol("kputc")
    as_hex = query(rec, "hits", "--pc", hex(pc), "--to", "400000")
    as_decimal = query(rec, "hits", "--pc", str(pc), "--to", "400000")
    assert as_hex.returncode == as_decimal.returncode == 0, as_decimal.stderr
    assert as_hex.stdout == as_decimal.stdout and as_hex.stdout
    assert f"--pc {pc} read as decimal: {pc:#x}" in as_decimal.stderr
    assert "read as decimal" not in as_hex.stderr
    # Digits only that look like a hex address: read as decimal, and said so
    # before the answer (here: that no RAM is there).
    looks_hex = query(rec, "last-write", "80001000")
    note, error = looks_hex.stderr.splitlines()
    assert note == f"chrono: ADDR 80001000 read as decimal: {80001000:#x}"
    assert looks_hex.returncode == 2 and f"{80001000:#x}" in error


@pytest.mark.parametrize("value", ["64", "134217728"])
def test_ram_without_a_unit_is_refused_saying_which_units(tmp_path, value):
    proc = chrono(tmp_path, "run", "--ram", value, script="poweroff\n", timeout=20)
    assert one_error_line(proc) == f"chrono: error: --ram {value}: give a size with a unit, e.g. 128M or 1G"
    assert proc.stdout == ""


def test_ram_below_the_board_minimum_names_the_range(tmp_path):
    proc = chrono(tmp_path, "run", "--ram", "64K", script="poweroff\n", timeout=20)
    one_error_line(proc, "64 KiB", "16 MiB", "64 GiB")


def test_ram_with_units_boots(tmp_path):
    for value in ("64M", "64MiB", "1G"):
        proc = chrono(tmp_path, "run", "--ram", value, script="poweroff\n", timeout=60)
        assert proc.returncode == 0, proc.stderr


def test_max_insns_takes_commas(tmp_path):
    proc = chrono(tmp_path, "run", "--max-insns", "100,000", script="", timeout=60)
    assert proc.returncode == 124, proc.stderr
    assert "100,000" in proc.stderr or "100000" in proc.stderr


def test_sizes_are_printed_in_units_that_fit():
    from chrono.units import format_size
    assert format_size(1) == "1 byte"
    assert format_size(17) == "17 bytes"
    assert format_size(300 * 1024) == "300 KiB"
    assert format_size(3 << 29) == "1.5 GiB"
    assert format_size(1 << 63) == "8 EiB"
    assert format_size((1 << 64) - 1) == "16.0 EiB"


def test_parsers_agree_with_what_chrono_prints():
    from chrono.units import parse_address, parse_count
    for n in (0, 7, 1_000, 2_000_000, 3_483_012_345):
        assert parse_count(f"{n:,}", "--to") == n
        assert parse_address(f"{n:#x}", "ADDR") == (n, False)
    with pytest.raises(UsageError, match="beyond the 64-bit"):
        parse_address(hex(1 << 64), "ADDR")


def test_a_huge_elf_is_sized_in_exbibytes_and_refused_as_an_image_error(tmp_path):
    from test_loader import make_elf
    huge = tmp_path / "huge.elf"
    huge.write_bytes(make_elf([(0x8000_0000, b"\x13\x00\x00\x00" * 4, 1 << 63)], 0x8000_0000))
    proc = chrono(tmp_path, "run", "--kernel", huge, timeout=20)
    assert proc.returncode == 3, proc.stderr
    assert re.fullmatch(r"chrono: error: --kernel: 8 EiB kernel ELF does not fit in 128 MiB RAM "
                        r"above 0x80000000; [^\n]+\n", proc.stderr), proc.stderr


@pytest.mark.parametrize("segment", [(0x4000_0000, 64), (0x9000_0000, 64), (0x8000_0000, 3 << 30)],
                         ids=["below RAM", "above RAM: more RAM would do", "too big for any RAM"])
def test_elf_layout_errors_share_the_image_exit_code(tmp_path, segment):
    from test_loader import make_elf
    address, memsz = segment
    elf = tmp_path / "k.elf"
    elf.write_bytes(make_elf([(address, b"\x13\x00\x00\x00" * 4, memsz)], address))
    proc = chrono(tmp_path, "run", "--kernel", elf, timeout=20)
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.startswith("chrono: error: --kernel: ") and proc.stderr.count("\n") == 1

"""How every chrono command shows what it lists: one table, three forms.

A command describes its output once, as a Grid (columns and rows of text) plus a
JSON-able record, and `show` picks the form:

- stdout is a terminal: a rich table as wide as the terminal (COLUMNS honoured);
- stdout is a pipe or a file: plain rows, one record per line, cells separated by
  a tab, a header line first when the table has one.  Nothing wraps and there is
  no box drawing, so `grep`, `cut -f` and `awk -F'\\t'` work on it;
- --json: the record, as JSON (docs/output.md gives every command's shape).

The words the outputs share live here too, so every command says them the same
way: counts (`plural`), positions in instructions, virtual time in seconds,
rates in MIPS.  rich is imported only when a terminal table is drawn.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Union

NS_PER_SECOND = 1_000_000_000       # virtual time: the guest's clock counts nanoseconds


# ---- words ----------------------------------------------------------------------------

def plural(n: int, word: str, words: str | None = None) -> str:
    """'1 keyframe', '2 keyframes', '0 entries' (plural("n", "entry", "entries"))."""
    return f"{n:,} {word if n == 1 else words or word + 's'}"


def instructions(n: int) -> str:
    """A position or a length: '10,140,641 instructions'."""
    return plural(n, "instruction")


def vtime(ns: int) -> str:
    """Virtual time (guest nanoseconds) in seconds: '0.200 s'."""
    return f"{ns / NS_PER_SECOND:.3f} s"


def mips(count: int, seconds: float) -> str:
    """A rate of instructions per host second, never rounded down to a false 0."""
    rate = count / max(seconds, 1e-9) / 1e6
    if count == 0 or rate >= 100:
        return f"{rate:.0f} MIPS"
    if rate >= 0.01:
        return f"{rate:.3g} MIPS"
    return "less than 0.01 MIPS"


def when(created: float) -> str:
    """Host time of day, local: '2026-12-02 05:37:59'."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(created))


def iso_utc(created: float) -> str:
    """Host time for JSON: '2026-12-02T05:37:59Z'."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created))


# ---- tables ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Styled:
    """Text with a rich style at a terminal (plain elsewhere)."""
    text: str
    style: str


Part = Union[str, Styled]
Cell = Union[Part, list]            # a list of parts: lines at a terminal, "; "-joined elsewhere


@dataclass
class Column:
    header: str
    right: bool = False             # numbers line up on the right at a terminal
    wrap: bool = False              # may wrap at a narrow terminal (else kept whole: ids, times)
    bold: bool = False


@dataclass
class Grid:
    """Columns and rows of text.  `header=False` makes a key/value table (no
    header line); `lines` draws a rule between rows at a terminal; a section()
    call starts a group of rows (a rule at a terminal, nothing elsewhere)."""

    title: str
    columns: list[Column]
    header: bool = True
    lines: bool = False
    rows: list[list[Cell]] = field(default_factory=list)
    _sections: set[int] = field(default_factory=set)

    def add(self, *cells: Cell) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"{len(cells)} cells for {len(self.columns)} columns")
        self.rows.append(list(cells))

    def section(self) -> None:
        if self.rows:
            self._sections.add(len(self.rows) - 1)


def columns(*specs: str) -> list[Column]:
    """Columns from their headers: '>count' is right-aligned (a number), '~text'
    may wrap at a narrow terminal ('>~' both); others are kept whole (ids)."""
    return [Column(spec.lstrip(">~"), right=">" in spec[:2], wrap="~" in spec[:2])
            for spec in specs]


def _parts(cell: Cell) -> list[Part]:
    return cell if isinstance(cell, list) else [cell]


def _text(part: Part) -> str:
    return part.text if isinstance(part, Styled) else str(part)


def plain_cell(cell: Cell) -> str:
    """One line, no tabs: the form of a cell in a pipe."""
    text = "; ".join(_text(p) for p in _parts(cell))
    return " ".join(text.replace("\t", " ").splitlines())


def plain_lines(grid: Grid) -> list[str]:
    """A header line (if the grid has one), then one tab-separated line per row."""
    out = ["\t".join(c.header for c in grid.columns)] if grid.header else []
    out += ["\t".join(plain_cell(cell) for cell in row) for row in grid.rows]
    return out


def aligned_lines(grid: Grid) -> list[str]:
    """Space-aligned columns with a header line, for the (chrono) monitor."""
    cells = [[c.header for c in grid.columns]]
    cells += [[plain_cell(cell) for cell in row] for row in grid.rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(grid.columns))]
    return ["  ".join((cell.rjust(w) if col.right else cell.ljust(w))
                      for cell, w, col in zip(row, widths, grid.columns)).rstrip()
            for row in cells]


def rich_table(grid: Grid):
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(grid.title) if grid.title else None, title_justify="left", show_header=grid.header,
                  show_lines=grid.lines, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                  collapse_padding=True)
    for col in grid.columns:
        table.add_column(col.header, justify="right" if col.right else "left",
                         style="bold" if col.bold else None, no_wrap=not col.wrap,
                         overflow="fold")
    for i, row in enumerate(grid.rows):
        cells = []
        for cell in row:
            text = Text()
            for n, part in enumerate(_parts(cell)):
                if n:
                    text.append("\n")
                text.append(_text(part), style=part.style if isinstance(part, Styled) else "")
            cells.append(text)
        table.add_row(*cells, end_section=i in grid._sections)
    return table


def stdout_is_terminal() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def show(grid: Grid | None, record: Any = None, as_json: bool = False) -> None:
    """Print `record` as JSON (with --json), else `grid` in the form stdout takes."""
    import click

    if as_json:
        click.echo(json.dumps(record, indent=2))
    elif grid is not None and stdout_is_terminal():
        from rich.console import Console
        Console(highlight=False).print(rich_table(grid))
    elif grid is not None:
        for line in plain_lines(grid):
            click.echo(line)

"""Tables that fit the terminal: whole columns are dropped before any word is cut.

Each column has a rank: when the table is wider than the terminal, the column with the
highest rank goes first, then the next, until the rest fit. Rank 0 columns (a run's id,
name and status) are never dropped, and never cut while the table can fit without that.
A column of items (``loss=0.25 acc=0.9``) shows as many whole items as fit, with ``…``
for the rest, rather than wrapping onto more lines. Every row is one line.

A width of None keeps every column and every item, cut nowhere, however long the lines
get: that is ``runyard ls --wide``, and output into a pipe with no ``COLUMNS``
(:func:`terminal_width`), so a script sees every column whatever terminal it runs in.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from rich.console import Console, ConsoleRenderable
from rich.table import Table
from rich.text import Text

#: Spaces between two columns.
GAP = 2
#: Narrowest a cut column (the last resort) is made before the lines overflow instead.
CUT_MIN = 8
#: Marks items left out of an items cell.
MORE = "…"

#: A cell: text, a list of items (an items column), or a renderable of its column's width.
Cell = str | Text | Sequence[str] | ConsoleRenderable


@dataclass(frozen=True, slots=True)
class Column:
    """One column: its header, when it is dropped, and how it may shrink."""

    header: str
    #: Dropped while the table is too wide, highest rank first; 0: never dropped.
    rank: int = 0
    #: Cells are lists of items joined by spaces, shortened by whole items.
    items: bool = False
    #: May be cut (with an ellipsis) once only never-dropped columns remain and they are
    #: still too wide.
    cut_last: bool = False
    #: The width of a column of renderables (a progress bar), which are not measured.
    width: int | None = None


def terminal_width() -> int | None:
    """``$COLUMNS``, else the terminal's width when stdout is one, else None (no limit)."""
    columns = os.environ.get("COLUMNS", "").strip()
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    if sys.stdout.isatty():
        return shutil.get_terminal_size().columns
    return None


def _items(cell: Cell) -> Sequence[str]:
    if isinstance(cell, (str, Text)):
        return [str(cell)]
    return cell if isinstance(cell, Sequence) else []


def _length(cell: Cell, column: Column) -> int:
    if column.width is not None:
        return column.width
    if isinstance(cell, (str, Text)):
        return len(cell)
    return len(" ".join(_items(cell)))


def _first_item(cell: Cell) -> int:
    """The width of an items cell cut down to its first item (and ``…`` for the rest)."""
    items = _items(cell)
    if len(items) <= 1:
        return len(items[0]) if items else 0
    return len(items[0]) + 1 + len(MORE)


def shorten_items(items: Sequence[str], width: int) -> str:
    """As many whole items as fit in ``width``, then ``…`` when some were left out."""
    out: list[str] = []
    for i, item in enumerate(items):
        last = i == len(items) - 1
        candidate = " ".join([*out, item] if last else [*out, item, MORE])
        if len(candidate) > width:
            break
        out.append(item)
    if len(out) < len(items):
        out.append(MORE)
    return " ".join(out)


@dataclass(frozen=True, slots=True)
class Layout:
    """Which columns are shown, each at what width."""

    shown: tuple[int, ...]
    widths: tuple[int, ...]

    @property
    def total(self) -> int:
        return sum(self.widths) + GAP * max(len(self.widths) - 1, 0)


def layout(columns: Sequence[Column], rows: Sequence[Sequence[Cell]],
           width: int | None) -> Layout:
    """The columns to show and their widths for a terminal ``width`` wide (None: all)."""
    natural = [max([len(c.header), *(_length(row[i], c) for row in rows)])
               for i, c in enumerate(columns)]
    if width is None:
        return Layout(tuple(range(len(columns))), tuple(natural))
    # The narrowest an items column may be: its header, or its rows' first item and `…`.
    least = [max([len(c.header), *(_first_item(row[i]) for row in rows)]) if c.items
             else natural[i] for i, c in enumerate(columns)]
    kept = list(range(len(columns)))
    drop = sorted((i for i, c in enumerate(columns) if c.rank), key=lambda i: -columns[i].rank)
    while True:
        widths = [natural[i] for i in kept]
        room = width - (sum(widths) + GAP * (len(kept) - 1))
        if room >= 0:
            return Layout(tuple(kept), tuple(widths))
        for at, i in enumerate(kept):
            if columns[i].items and natural[i] + room >= least[i]:
                widths[at] = natural[i] + room
                return Layout(tuple(kept), tuple(widths))
        if not drop:
            break
        kept.remove(drop.pop(0))
    for at, i in enumerate(kept):
        if columns[i].cut_last:
            widths[at] = max(natural[i] + room, min(CUT_MIN, natural[i]))
    return Layout(tuple(kept), tuple(widths))


def table(columns: Sequence[Column], rows: Sequence[Sequence[Cell]], *,
          width: int | None) -> tuple[Table, int]:
    """The rows as a table laid out for ``width`` (:func:`layout`), and its width."""
    plan = layout(columns, rows, width)
    out = Table(box=None, padding=(0, GAP // 2), pad_edge=False, show_edge=False)
    for i, w in zip(plan.shown, plan.widths, strict=True):
        out.add_column(columns[i].header, width=w, no_wrap=True, overflow="ellipsis")
    for row in rows:
        cells: list[str | Text | ConsoleRenderable] = []
        for i, w in zip(plan.shown, plan.widths, strict=True):
            cell = row[i]
            if isinstance(cell, (str, Text)) or not isinstance(cell, Sequence):
                cells.append(cell)
            elif width is None:
                cells.append(" ".join(cell))
            else:
                cells.append(shorten_items(cell, w))
        out.add_row(*cells)
    return out, plan.total


def console(table_width: int) -> Console:
    """A console exactly as wide as the table, so Rich wraps nothing and pads no further."""
    return Console(width=max(table_width, 1), soft_wrap=True)


def unbounded() -> Console:
    """A console for a pipe or a file: no value is wrapped or cut, whatever ``COLUMNS`` says
    (a script reading the output finds each value on its line)."""
    return Console(width=1_000_000, soft_wrap=True)

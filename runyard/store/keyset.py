"""Keyset pagination under a sort of several keys, for any table (runs, checkpoints).

A sort is a list of ``key:asc|desc`` (``-key`` is ``key:desc``); the table's unique ``id``
always ends it, so that every row has one place in the order and a page can start strictly
after the last row of the previous one. NULLs sort last in both directions.

A page continues from a **position**: the sort values of the last row shown (its id last).
The API hands it out as an opaque cursor (:func:`encode_cursor`), which also records the sort
it was made for: a row that changed or went away since does not move the next page.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from runyard import errors, jsonvalues, models

#: A cursor is short: the sort keys' values and an id.
CURSOR_MAX = 4096


@dataclass(frozen=True)
class SortKey:
    column: str
    desc: bool

    def __str__(self) -> str:
        return f"{self.column}:{'desc' if self.desc else 'asc'}"


@dataclass(frozen=True)
class Position:
    """Where a page ends: the values of its last row's sort keys (id last)."""

    values: tuple[Any, ...]


def parse_sort(spec: str | Sequence[str] | None, sortable: Collection[str],
               default: str) -> tuple[SortKey, ...]:
    """``["project:asc", "created_at:desc"]`` (or one comma-separated string) as sort keys,
    ``id`` appended as the tie-breaker (in the last key's direction) unless named; a 422
    naming ``sort`` for a key not in ``sortable``, a bad direction or a key named twice."""
    items = [spec] if isinstance(spec, str) else list(spec or ())
    parts = [p.strip() for item in items for p in str(item).split(",") if p.strip()]
    keys: list[SortKey] = []
    for part in parts or default.split(","):
        name, _, direction = part.partition(":")
        desc = False
        if name.startswith("-") and not direction:
            name, desc = name[1:], True
        elif direction:
            if direction not in ("asc", "desc"):
                raise errors.ValidationError(
                    f"sort: direction of {name!r} must be asc or desc, got {direction!r}",
                    field="sort")
            desc = direction == "desc"
        if name not in sortable:
            raise errors.ValidationError(
                f"sort: cannot sort by {name!r} (one of: {', '.join(sorted(sortable))})",
                field="sort")
        if any(k.column == name for k in keys):
            raise errors.ValidationError(f"sort: {name!r} named twice", field="sort")
        keys.append(SortKey(name, desc))
        if name == "id":
            break  # unique: later keys could never decide anything
    if keys[-1].column != "id":
        keys.append(SortKey("id", keys[-1].desc))
    return tuple(keys)


def sort_text(keys: Sequence[SortKey]) -> str:
    return ",".join(str(k) for k in keys)


# --------------------------------------------------------------------------- cursors


def encode_cursor(keys: Sequence[SortKey], row: Mapping[str, Any]) -> str:
    """The opaque cursor of the page that follows ``row``."""
    doc = [sort_text(keys), [row[k.column] for k in keys]]
    raw = json.dumps(doc, separators=(",", ":"), allow_nan=False).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(text: str, keys: Sequence[SortKey], table: sa.Table,
                  field: str = "cursor") -> Position:
    """The position in ``text``, checked: made by :func:`encode_cursor` for this sort, with a
    value of its column's type for every key (else a 422 naming ``field``)."""
    def bad(why: str) -> errors.ValidationError:
        return errors.ValidationError(f"{field}: {why}", field=field)

    if len(text) > CURSOR_MAX:
        raise bad("too long to be a cursor")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        doc = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        raise bad("not a cursor this server gave out") from None
    if not (isinstance(doc, list) and len(doc) == 2 and isinstance(doc[0], str)
            and isinstance(doc[1], list)):
        raise bad("not a cursor this server gave out")
    if doc[0] != sort_text(keys):
        raise bad(f"made for sort {doc[0]!r}, not {sort_text(keys)!r}; "
                  "start again without it")
    values = doc[1]
    if len(values) != len(keys):
        raise bad("not a cursor this server gave out")
    for key, value in zip(keys, values, strict=True):
        if not _fits(table.c[key.column], value):
            raise bad(f"holds a value of the wrong type for {key.column!r}")
    return Position(tuple(values))


def _fits(col: sa.Column[Any], value: Any) -> bool:
    if value is None:
        return bool(col.nullable)
    py = col.type.python_type
    if py is str:
        if not isinstance(value, str) or "\x00" in value or len(value) > 1000:
            return False
        try:
            jsonvalues.check(value, "cursor")
        except errors.ValidationError:
            return False
        return True
    if py is int:
        return (isinstance(value, int) and not isinstance(value, bool)
                and models.INT64_MIN <= value <= models.INT64_MAX)
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


# --------------------------------------------------------------------------- SQL


def order_by(table: sa.Table, keys: Sequence[SortKey]) -> list[Any]:
    out = []
    for k in keys:
        col = table.c[k.column]
        term = col.desc() if k.desc else col.asc()
        # NULLS LAST would keep SQLite from using an index: only where NULLs can be.
        out.append(term.nulls_last() if col.nullable else term)
    return out


def after(table: sa.Table, keys: Sequence[SortKey], pos: Position) -> sa.ColumnElement[bool]:
    """Rows strictly after ``pos`` in the order of ``keys``."""
    cols = [table.c[k.column] for k in keys]
    if all(not c.nullable for c in cols) and len({k.desc for k in keys}) == 1:
        # A row-value comparison: one index range on both dialects (an OR of the same
        # conditions would make the planner scan).
        left, right = sa.tuple_(*cols), sa.tuple_(*pos.values)
        return left < right if keys[0].desc else left > right
    cond: sa.ColumnElement[bool] | None = None
    for k, col, v in reversed(list(zip(keys, cols, pos.values, strict=True))):
        if v is None:  # NULLs come last: after a NULL only NULLs, ordered by what follows
            beyond: sa.ColumnElement[bool] = sa.false()
            same = col.is_(None)
        else:
            beyond = col < v if k.desc else col > v
            if col.nullable:
                beyond = sa.or_(beyond, col.is_(None))
            same = col == v
        cond = beyond if cond is None else sa.or_(beyond, sa.and_(same, cond))
    assert cond is not None
    return cond

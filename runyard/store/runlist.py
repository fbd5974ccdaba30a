"""The runs listing's filters and sort keys; its pages are keyset pages
(:mod:`runyard.store.keyset`)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from runyard import errors
from runyard.store import keyset
from runyard.store.base import RunFilter
from runyard.store.schema import runs

#: Columns a listing may sort on.
SORTABLE = frozenset({
    "id", "name", "project", "version", "blueprint", "owner", "host_id", "executor", "status",
    "priority", "attempt", "created_at", "updated_at", "status_updated_at", "queued_at",
    "started_at", "ended_at", "progress_updated_at"})
DEFAULT_SORT = "created_at:desc"
_HEX = re.compile(r"^[0-9a-f]{1,40}$")
#: The escape character of ``name_like`` patterns: ``\_`` and ``\%`` match themselves.
LIKE_ESCAPE = "\\"


def parse_sort(spec: str | Sequence[str] | None) -> tuple[keyset.SortKey, ...]:
    """A runs sort (:func:`keyset.parse_sort` over :data:`SORTABLE`)."""
    return keyset.parse_sort(spec, SORTABLE, DEFAULT_SORT)


def decode_cursor(text: str, keys: Sequence[keyset.SortKey]) -> keyset.Position:
    return keyset.decode_cursor(text, keys, runs)


def filter_clauses(filt: RunFilter, contains: Any) -> list[sa.ColumnElement[bool]]:
    """The WHERE clauses of ``filt``; ``contains(column, text)`` is the dialect's
    case-sensitive substring test (tags and labels are matched in their stored JSON)."""
    c = runs.c
    out: list[sa.ColumnElement[bool]] = []
    for col, values in ((c.status, filt.status), (c.id, filt.ids), (c.project, filt.projects),
                        (c.version, filt.versions), (c.blueprint, filt.blueprints),
                        (c.owner, filt.owners), (c.host_id, filt.host_ids)):
        if values:
            out.append(col.in_(list(values)))
    if filt.id_prefix:
        if not _HEX.match(filt.id_prefix):  # hex only: no wildcard can hide in it
            raise errors.ValidationError("id_prefix: expected lowercase hex digits",
                                         field="id_prefix")
        out.append(c.id.like(filt.id_prefix + "%"))
    if filt.name_likes:
        out.append(sa.or_(*(c.name.ilike(p, escape=LIKE_ESCAPE) for p in filt.name_likes)))
    if filt.created_after is not None:
        out.append(c.created_at > filt.created_after)
    if filt.created_before is not None:
        out.append(c.created_at < filt.created_before)
    # Tags hold no quotes (models.validate_tags), so '"tag"' occurs in the stored list only
    # as that element. In labels_key (sorted, compact JSON) a ',' or '{' before a quote is
    # structure, never text (a quote in a string is escaped), so '{"k":"v"' or ',"k":"v"'
    # match exactly that pair.
    for tag in filt.tags:
        out.append(contains(c.tags, json.dumps(tag)))
    for key, value in filt.labels:
        pair = json.dumps({key: value}, separators=(",", ":"), ensure_ascii=False)[1:-1]
        out.append(sa.or_(contains(c.labels_key, "{" + pair + ","),
                          contains(c.labels_key, "{" + pair + "}"),
                          contains(c.labels_key, "," + pair + ","),
                          contains(c.labels_key, "," + pair + "}")))
    return out

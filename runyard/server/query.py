"""Query parameters a route does not declare are refused, as unknown body fields are.

A misspelt or unsupported filter (``GET /v1/runs?id=...``) would otherwise be ignored and
answer the unfiltered list as if it had been applied. The names each route accepts are read
from its own declared parameters (those of its dependencies included), so a new parameter
needs nothing here.
"""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from runyard import errors

_DECLARED: dict[int, frozenset[str]] = {}


def declared(route: APIRoute) -> frozenset[str]:
    """The query parameter names ``route`` takes (aliases where given)."""
    names = _DECLARED.get(id(route))
    if names is None:
        names = _DECLARED[id(route)] = frozenset(_names(route.dependant))
    return names


def _names(dependant: Dependant) -> set[str]:
    out = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        out |= _names(sub)
    return out


async def refuse_unknown(request: Request) -> None:
    """A route dependency: a 422 naming the first query parameter the route does not take."""
    route = request.scope.get("route")
    if request.query_params and isinstance(route, APIRoute):
        check(route, request.query_params)


def check(route: APIRoute, names: Iterable[str]) -> None:
    """Raise a 422 naming the first of ``names`` that ``route`` does not take."""
    known = declared(route)
    for name in names:
        if name not in known:
            raise errors.ValidationError(f"{name}: unknown query parameter", field=name)


#: Most values one repeated query parameter may carry.
MAX_VALUES = 100
#: Longest single query value a filter takes.
MAX_VALUE_LEN = 1000


def values(raw: list[str] | None, field: str, *, split: bool = False) -> tuple[str, ...]:
    """The values of a repeated parameter (``?tag=a&tag=b``; with ``split`` also
    comma-separated), empty ones dropped: at most :data:`MAX_VALUES`, each text a database can
    hold, else a 422 naming ``field``."""
    items = [p for v in raw or () for p in (v.split(",") if split else [v])]
    out = tuple(dict.fromkeys(v.strip() if split else v for v in items if v.strip()))
    if len(out) > MAX_VALUES:
        raise errors.ValidationError(f"{field}: at most {MAX_VALUES} values", field=field)
    for v in out:
        if len(v) > MAX_VALUE_LEN or "\x00" in v:
            raise errors.ValidationError(
                f"{field}: expected text of at most {MAX_VALUE_LEN} characters without NUL",
                field=field)
    return out

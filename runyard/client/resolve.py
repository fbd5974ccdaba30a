"""What a run reference typed by a person means: the one function every command uses.

``ref`` is, in this order:

1. a run id (exactly), or the start of exactly one run's id (at least 4 hex digits);
2. else a run name: the newest run of that name (exact, case-sensitive), in ``project``
   when one is given. Runs of that name in several projects and no project given: an error
   that lists them (the newest of each), so the user can add ``--project``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Protocol

from runyard import errors
from runyard.client.run_models import Run

_HEX = re.compile(r"^[0-9a-f]{4,40}$")
#: Runs of one name looked at to find the projects holding it.
_SCAN = 200


class RunReads(Protocol):
    """The two reads :func:`find_run` makes (a :class:`runyard.client.Client` has them)."""

    def get_run(self, run: str, /) -> Run: ...

    def list_runs(self, *, id_prefix: str | None = ..., name_like: str | None = ...,
                  project: str | None = ..., sort: str | None = ..., limit: int | None = ...,
                  fields: Sequence[str] | None = ...) -> Iterable[Run]: ...


def like_literal(text: str) -> str:
    """``text`` as an ILIKE pattern that matches only itself (case aside)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def find_run(client: RunReads, ref: str, *, project: str | None = None) -> Run:
    """The run ``ref`` names (see the module docstring); NotFound when none does,
    ValidationError (field ``run``) listing the candidates when several could be meant."""
    ref = ref.strip()
    if not ref:
        raise errors.ValidationError("run: expected a run id or name", field="run")
    if _HEX.match(ref):
        try:
            return client.get_run(ref)
        except errors.NotFound:
            pass
        by_prefix = list(client.list_runs(id_prefix=ref, limit=2, sort="id:asc"))
        if len(by_prefix) > 1:
            raise errors.ValidationError(
                f"run: {ref!r} is the start of several run ids ({_listed(by_prefix)}); "
                "give more of it", field="run")
        if by_prefix and (project is None or by_prefix[0].project == project):
            return client.get_run(by_prefix[0].id)
    named = [r for r in client.list_runs(name_like=like_literal(ref), project=project,
                                         sort="created_at:desc", limit=_SCAN,
                                         fields=["id", "name", "project", "created_at"])
             if r.name == ref]
    if not named:
        where = "" if project is None else f" in project {project!r}"
        raise errors.NotFound(f"no run with the id or name {ref!r}{where}")
    projects = list(dict.fromkeys(r.project for r in named))
    if project is None and len(projects) > 1:
        newest = [next(r for r in named if r.project == p) for p in projects]
        raise errors.ValidationError(
            f"run: runs named {ref!r} are in several projects; give --project or an id: "
            + "; ".join(f"{r.id} (project {r.project})" for r in newest), field="run")
    return client.get_run(named[0].id)


def _listed(runs: list[Run]) -> str:
    return ", ".join(f"{r.id} ({r.name})" for r in runs)

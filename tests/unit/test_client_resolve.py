"""The one resolver of RUN arguments (runyard.client.resolve.find_run): an id or the start of
one first, else the newest run of that name; several projects without one named are an error
listing the newest run of each. Run against a stand-in for the client's two reads."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from runyard import errors
from runyard.client.models import Page, Run
from runyard.client.resolve import find_run, like_literal


class Runs:
    """What find_run reads: ``get_run`` by id and ``list_runs`` (id prefix or exact-ish
    name, project, newest first), over a list."""

    def __init__(self, *runs: tuple[str, str, str, int]) -> None:
        self.runs = [Run(id=i, name=n, project=p,
                         created_at=datetime.fromtimestamp(t, UTC)) for i, n, p, t in runs]

    def get_run(self, run_id: str) -> Run:
        for r in self.runs:
            if r.id == run_id:
                return r
        raise errors.NotFound(f"no run {run_id!r}")

    def list_runs(self, *, id_prefix: str | None = None, name_like: str | None = None,
                  project: str | None = None, limit: int = 50, **_: Any) -> Page[Run]:
        found = [r for r in self.runs
                 if (id_prefix is None or r.id.startswith(id_prefix))
                 and (name_like is None or like_literal(str(r.name)).lower()
                      == name_like.lower())
                 and (project is None or r.project == project)]
        found.sort(key=lambda r: r.created_at or datetime.min, reverse=True)
        return Page(tuple(found[:limit]))


RUNS = Runs(("aaaa0001", "look-slow", "alpha", 1), ("aaaa0002", "look-slow", "alpha", 2),
            ("bbbb0003", "look-slow", "beta", 3), ("cccc0004", "Look-Slow", "alpha", 9),
            ("dddd0005", "only_one", "beta", 4), ("beef", "beef", "beta", 5),
            ("abcd0006", "abcd", "alpha", 6))


def resolve(ref: str, project: str | None = None) -> str:
    return find_run(RUNS, ref, project=project).id  # type: ignore[arg-type]


def test_an_id_or_the_start_of_one_comes_first() -> None:
    assert resolve("aaaa0001") == "aaaa0001"
    assert resolve("bbbb") == "bbbb0003"
    assert resolve("beef") == "beef"  # exact id before anything else
    assert resolve("abcd") == "abcd0006"  # a prefix names that run (it is also its name)


def test_an_ambiguous_prefix_lists_the_runs() -> None:
    with pytest.raises(errors.ValidationError) as caught:
        resolve("aaaa")
    assert caught.value.field == "run"
    assert "aaaa0001" in caught.value.message and "aaaa0002" in caught.value.message


def test_a_name_means_its_newest_run_exactly() -> None:
    assert resolve("look-slow", "alpha") == "aaaa0002"  # not Look-Slow: names are exact
    assert resolve("look-slow", "beta") == "bbbb0003"
    assert resolve("Look-Slow") == "cccc0004"
    assert resolve("only_one") == "dddd0005"  # _ is no wildcard here


def test_a_name_in_several_projects_needs_one() -> None:
    with pytest.raises(errors.ValidationError) as caught:
        resolve("look-slow")
    msg = caught.value.message
    assert "several projects" in msg and "--project" in msg
    assert "aaaa0002 (project alpha)" in msg and "bbbb0003 (project beta)" in msg
    assert "aaaa0001" not in msg


@pytest.mark.parametrize(("ref", "project"), [("nothing", None), ("only_one", "alpha"),
                                              ("only%", None), ("ffff", None)])
def test_nothing_found(ref: str, project: str | None) -> None:
    with pytest.raises(errors.NotFound) as caught:
        resolve(ref, project)
    assert repr(ref) in caught.value.message


def test_like_literal_escapes_wildcards() -> None:
    assert like_literal(r"a_b%c\d") == r"a\_b\%c\\d"

"""Property: job ids depend on the work, not on how the TOML is written; reloads are idempotent."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runyard.errors import ManifestError
from runyard.manifest import parse_manifest, plan_reload

NAMES = st.from_regex(r"[a-z][a-z0-9-]{0,12}", fullmatch=True)
KEYS = st.one_of(NAMES, st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")),
                                min_size=1, max_size=6))
SCALARS = st.one_of(
    st.booleans(), st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=10),
)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(KEYS, inner, max_size=3)), max_leaves=6)
PLACEHOLDER_ARGS = st.sampled_from(["{config_file}", "{seed}", "--run={run_id}", "{python}",
                                    "x{{y}}", "plain", "{artifact_dir}/out"])


def toml_str(text: str) -> str:
    """A TOML basic string: only quote, backslash and control characters escaped."""
    body = "".join(f"\\u{ord(c):04x}" if ord(c) < 0x20 or ord(c) == 0x7F
                   else "\\" + c if c in '"\\' else c for c in text)
    return f'"{body}"'


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return toml_str(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{ " + ", ".join(f"{toml_str(k)} = {toml_value(v)}" for k, v in value.items()) + " }"


@st.composite
def manifests(draw: st.DrawFn) -> dict[str, Any]:
    host_ids = draw(st.lists(NAMES, unique=True, max_size=3))
    hosts = [{"id": h, "allow": draw(st.lists(st.sampled_from(["a*", "b-?", "[ab]*"]),
                                              max_size=2)),
              "slots": draw(st.integers(1, 8))} for h in host_ids]
    bp_names = draw(st.lists(NAMES, unique=True, max_size=3))
    blueprints = [{"name": b, "command": ["python"] + draw(st.lists(PLACEHOLDER_ARGS, max_size=4)),
                   "min_ram_gib": draw(st.integers(0, 4))} for b in bp_names]
    jobs = []
    for i, name in enumerate(draw(st.lists(NAMES, unique=True, min_size=1, max_size=6))):
        job: dict[str, Any] = {"name": name, "seed": i}
        if bp_names and draw(st.booleans()):
            job["blueprint"] = draw(st.sampled_from(bp_names))
        else:
            job["command"] = ["run"] + draw(st.lists(PLACEHOLDER_ARGS, max_size=3))
        job["config"] = draw(st.dictionaries(KEYS, VALUES, max_size=4))
        if draw(st.booleans()):
            job["prefer_cuda"] = True
        if draw(st.booleans()):
            job["priority"] = draw(st.integers(-5, 5))
        jobs.append(job)
    return {"hosts": hosts, "blueprints": blueprints, "jobs": jobs}


def render(data: dict[str, Any], *, reverse: bool, config_as_table: bool) -> str:
    """The same manifest, written in one of several equivalent TOML styles."""
    out = []
    for section in ("hosts", "blueprints", "jobs"):
        for table in data[section]:
            out.append(f"[[{section}]]")
            items = list(table.items())
            items = items[::-1] if reverse else items
            config = None
            for key, value in items:
                if key == "config" and config_as_table:
                    config = value
                    continue
                out.append(f"{key} = {toml_value(value)}")
            if config is not None:
                out.append(f"[{section}.config]")
                out.extend(f"{toml_str(k)} = {toml_value(v)}" for k, v in config.items())
            out.append("")
    return "\n".join(out)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(manifests(), st.booleans(), st.booleans())
def test_ids_are_stable_and_reload_is_idempotent(data: dict[str, Any], reverse: bool,
                                                  as_table: bool) -> None:
    text = render(data, reverse=False, config_as_table=False)
    first = parse_manifest(text, source="gen.toml")
    again = parse_manifest(text, source="gen.toml")
    restyled = parse_manifest(render(data, reverse=reverse, config_as_table=as_table))
    keys = [j.key for j in first.jobs]
    assert keys == [j.key for j in again.jobs] == [j.key for j in restyled.jobs]
    assert len(set(keys)) == len(keys) == len(data["jobs"])
    assert [j.config for j in first.jobs] == [j["config"] for j in data["jobs"]]

    plan = plan_reload(again, set(keys), {h.host_id: h for h in first.hosts})
    assert plan.new_jobs == [] and plan.unchanged_jobs == again.jobs
    assert plan.removed_keys == [] and plan.changed_hosts == [] and plan.new_hosts == []
    assert plan.is_noop


@settings(max_examples=40, deadline=None)
@given(manifests(), st.booleans(), st.data())
def test_error_lines_point_at_the_offending_key(data: dict[str, Any], as_table: bool,
                                                 pick: st.DataObject) -> None:
    """An unknown key placed after arbitrary values (strings with brackets, quotes, '#')."""
    lines = render(data, reverse=True, config_as_table=as_table).split("\n")
    headers = [i for i, line in enumerate(lines) if line == "[[jobs]]"]
    k = pick.draw(st.integers(0, len(headers) - 1))
    end = headers[k + 1] if k + 1 < len(headers) else len(lines)
    # Last line of the job's own table (before any [jobs.config] sub-table).
    body = [i for i in range(headers[k], end) if lines[i] == "[jobs.config]"]
    at = (body[0] if body else end) - 1
    while not lines[at]:
        at -= 1
    lines.insert(at + 1, "bogus_key = 1")
    with pytest.raises(ManifestError) as info:
        parse_manifest("\n".join(lines), source="gen.toml")
    assert [e["text"] for e in info.value.errors] == [
        f"gen.toml:{at + 2}: jobs[{k}].bogus_key: unknown key"
    ]


@pytest.fixture(scope="module")
def queue(tmp_path_factory):  # type: ignore[no-untyped-def]
    """One real SQLite store for every generated example (each uses its own source name)."""
    from runyard.queue import Queue
    from runyard.store import open_store
    from runyard.store.engine import sqlite_url

    store = open_store(sqlite_url(tmp_path_factory.mktemp("prop") / "runyard.db"))
    yield Queue(store)
    store.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(manifests())
def test_applying_twice_leaves_the_database_as_it_was(queue, data: dict[str, Any]  # type: ignore[no-untyped-def]
                                                      ) -> None:
    import uuid

    from runyard.manifest.apply import apply_manifest

    # A fresh source per example: hypothesis replays drawn values, so it must not draw this.
    manifest = parse_manifest(render(data, reverse=False, config_as_table=False),
                              source=f"gen-{uuid.uuid4().hex}.toml")
    apply_manifest(queue, manifest, dry_run=False, actor="prop")
    state = _snapshot(queue)
    again = apply_manifest(queue, manifest, dry_run=False, actor="prop")
    assert again["new"] == [] and again["hosts_changed"] == [] and again["removed"] == []
    assert len(again["unchanged"]) == len(manifest.jobs)
    assert _snapshot(queue) == state
    keys = queue.store.job_keys()
    assert all(j.key in keys for j in manifest.jobs)


def _snapshot(queue: Any) -> tuple[Any, ...]:
    from runyard.store.base import RunFilter

    store = queue.store
    runs = store.list_runs(RunFilter(), limit=10_000)
    return (sorted(store.job_keys().items()), sorted(map(repr, store.list_host_policies())),
            sorted(map(repr, store.list_blueprints())), repr(runs))

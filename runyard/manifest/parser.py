"""Read a manifest: TOML text -> :class:`Manifest`, or one ManifestError listing every problem."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

from runyard import errors, jsonvalues, models
from runyard.manifest import fields
from runyard.manifest.blueprint import (
    Blueprint,
    parse_blueprint,
    schema_file_problem,
    schema_reader,
)
from runyard.manifest.channels import ChannelSpec, parse_channels
from runyard.manifest.job import DEFAULT_PROJECT, Job, parse_job
from runyard.manifest.locator import LineIndex, Path
from runyard.manifest.problems import Problems

TOP_KEYS = ("project", "hosts", "blueprints", "jobs", "channels")
HOST_KEYS = ("id", "allow", "deny", "slots", "labels")

_TOML_WHERE = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_TOML_EOF = re.compile(r"\s*\(at end of document\)\s*$")


@dataclass(frozen=True)
class Manifest:
    """A validated manifest."""

    source: str
    hosts: list[models.HostPolicy] = field(default_factory=list)
    blueprints: list[Blueprint] = field(default_factory=list)
    jobs: list[Job] = field(default_factory=list)
    channels: list[ChannelSpec] = field(default_factory=list)

    def job(self, name: str) -> Job:
        for job in self.jobs:
            if job.name == name:
                return job
        raise errors.NotFound(f"no job named {name!r} in {self.source}")

    def blueprint(self, name: str) -> Blueprint:
        for bp in self.blueprints:
            if bp.name == name:
                return bp
        raise errors.NotFound(f"no blueprint named {name!r} in {self.source}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "hosts": [h.to_dict() for h in self.hosts],
            "blueprints": [b.to_dict() for b in self.blueprints],
            "jobs": [dict(j.to_run_request(), command_template=list(j.command))
                     for j in self.jobs],
            "channels": [c.to_dict() for c in self.channels],
        }


def load_manifest(path: str | FsPath) -> Manifest:
    """Read and validate the manifest file at ``path`` (errors name it as given)."""
    fs_path = FsPath(path)
    try:
        text = fs_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise errors.ManifestError(
            f"{path}: cannot read the manifest: {reason}",
            errors=[{"file": str(path), "line": None, "field": None,
                     "message": f"cannot read the manifest: {reason}",
                     "text": f"{path}: cannot read the manifest: {reason}"}],
        ) from exc
    return parse_manifest(text, source=str(path), base_dir=fs_path.parent)


def referenced_files(text: str) -> dict[str, Path]:
    """The ``config_schema_file`` names the manifest text uses, each with the key of its first
    use (none if it does not parse): what a client sends along with the text so the server
    never reads its own disk."""
    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError):
        return {}
    tables = data.get("blueprints")
    found: dict[str, Path] = {}
    for i, table in enumerate(tables if isinstance(tables, list) else []):
        name = table.get("config_schema_file") if isinstance(table, Mapping) else None
        if isinstance(name, str) and name:
            found.setdefault(name, ("blueprints", i, "config_schema_file"))
    return found


def request_body(path: str | os.PathLike[str], source: str | None = None) -> dict[str, Any]:
    """The ``POST /v1/manifest/reload`` body for a file: its text, its source name (default:
    the resolved path, so reloads from any folder are the same source) and the texts of the
    schema files it names (the server never reads its own disk for them).

    Raises ManifestError for a schema file outside the manifest's folder: it is never read.
    """
    fs_path = FsPath(path)
    text = fs_path.read_text(encoding="utf-8")
    files: dict[str, str] = {}
    refused: list[tuple[Path, str]] = []
    for name, key in sorted(referenced_files(text).items()):
        problem = schema_file_problem(name, fs_path.parent)
        if problem:
            refused.append((key, problem))
            continue
        try:
            files[name] = (fs_path.parent / name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            pass  # the server reports it, naming the file and key
    if refused:
        problems = Problems(source=str(path), index=LineIndex(text))
        for key, problem in refused:
            problems.add(key, problem)
        problems.raise_if_any()
    return {"text": text, "source": source or str(fs_path.resolve()), "files": files}


_TOO_DEEP = f"TOML tables and arrays nested deeper than {jsonvalues.MAX_DEPTH} levels"


def _too_deep(data: Any) -> bool:
    """The checks below walk the tables recursively; no real manifest nests this deep."""
    try:
        jsonvalues.check(data, "manifest")
    except errors.ValidationError:
        return True
    return False


def parse_manifest(text: str, source: str = "<manifest>", base_dir: FsPath | None = None,
                   files: Mapping[str, str] | None = None) -> Manifest:
    """Validate manifest text. ``config_schema_file`` names are looked up in ``files`` (their
    texts, as a client sends them) or relative to ``base_dir``; with neither they are refused."""
    problems = Problems(source=source)
    read = schema_reader(base_dir, files)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        line: int | None = None
        m = _TOML_WHERE.search(message)
        if m:
            line = int(m.group(1))
            message = message[:m.start()] + f" (column {m.group(2)})"
        elif _TOML_EOF.search(message):
            line = text.count("\n") + 1
            message = _TOML_EOF.sub(" (at end of file)", message)
        problems.add((), f"TOML syntax error: {message}", line=line)
        problems.raise_if_any()
        raise AssertionError("unreachable") from exc
    except RecursionError:
        data = {}
        problems.add((), _TOO_DEEP)
    if not problems and _too_deep(data):
        problems.add((), _TOO_DEEP)
    problems.raise_if_any()
    problems.index = LineIndex(text)

    fields.reject_unknown(data, TOP_KEYS, (), problems)
    project = fields.check_str(data, "project", (), problems, DEFAULT_PROJECT)

    hosts = _parse_hosts(_tables(data, "hosts", problems), problems)

    blueprints: dict[str, Blueprint] = {}
    broken: set[str] = set()
    first_bp_line: dict[str, int | None] = {}
    for i, raw in enumerate(_tables(data, "blueprints", problems)):
        path: Path = ("blueprints", i)
        name = raw.get("name") if isinstance(raw, Mapping) else None
        if isinstance(name, str) and name in first_bp_line:
            problems.add(path + ("name",), f"duplicate blueprint name {name!r}"
                         + _first_at(first_bp_line[name]))
            continue
        if isinstance(name, str):
            first_bp_line[name] = problems.line(path)
        bp = parse_blueprint(raw, path, problems, read)
        if bp is not None:
            blueprints[bp.name] = bp
        elif isinstance(name, str):
            broken.add(name)

    jobs: list[Job] = []
    first_name_line: dict[str, int | None] = {}
    first_key: dict[str, tuple[str, int | None]] = {}
    for i, raw in enumerate(_tables(data, "jobs", problems)):
        path = ("jobs", i)
        name = raw.get("name") if isinstance(raw, Mapping) else None
        duplicate = isinstance(name, str) and name in first_name_line
        if isinstance(name, str) and duplicate:
            problems.add(path + ("name",), f"duplicate job name {name!r}"
                         + _first_at(first_name_line[name]))
        elif isinstance(name, str):
            first_name_line[name] = problems.line(path)
        job = parse_job(raw, path, problems, blueprints, broken, project)
        if job is None or duplicate:
            continue
        if job.key in first_key:
            other, line = first_key[job.key]
            problems.add(path, f"same work as job {other!r}{_first_at(line)}: "
                               "identical blueprint, command, config, seed and constraints")
            continue
        first_key[job.key] = (job.name, problems.line(path))
        jobs.append(job)

    channel_specs = parse_channels(_tables(data, "channels", problems), problems)

    problems.raise_if_any()
    return Manifest(source=source, hosts=hosts, blueprints=list(blueprints.values()), jobs=jobs,
                    channels=channel_specs)


def _first_at(line: int | None) -> str:
    return f" (first defined at line {line})" if line is not None else ""


def _tables(data: Mapping[str, Any], key: str, problems: Problems) -> list[Any]:
    value = data.get(key, [])
    if not isinstance(value, list):
        problems.add((key,), f"expected an array of tables ([[{key}]]), got {value!r}")
        return []
    return value


def _parse_hosts(raw_hosts: list[Any], problems: Problems) -> list[models.HostPolicy]:
    hosts: list[models.HostPolicy] = []
    first_line: dict[str, int | None] = {}
    for i, raw in enumerate(raw_hosts):
        path: Path = ("hosts", i)
        if not isinstance(raw, Mapping):
            problems.add(path, f"expected a table, got {raw!r}")
            continue
        before = len(problems.items)
        fields.reject_unknown(raw, HOST_KEYS, path, problems)
        host_id = raw.get("id")
        if "id" not in raw:
            problems.add(path + ("id",), "required")
        else:
            try:
                models.validate_host_id(host_id, "id")
            except errors.ValidationError as exc:
                problems.add_validation(path, exc)
        for key in HOST_KEYS[1:]:
            if key not in raw:
                continue
            try:
                models.HostPolicy.from_dict({"id": "x", key: raw[key]})
            except errors.ValidationError as exc:
                problems.add_validation(path, exc)
                continue
            if key == "slots" and raw[key] < 1:
                problems.add(path + ("slots",), f"must be at least 1, got {raw[key]}")
        if len(problems.items) != before:
            continue
        hid = str(host_id)  # validated above
        if hid in first_line:
            problems.add(path + ("id",), f"duplicate host id {hid!r}" + _first_at(first_line[hid]))
            continue
        first_line[hid] = problems.line(path)
        hosts.append(models.HostPolicy.from_dict(raw))
    return hosts

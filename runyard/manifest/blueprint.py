"""Blueprints: a named command template, a JSON Schema for its config, default resources.

A command's ``{name}`` placeholders are :mod:`runyard.placeholders`' (checked here when a
manifest is validated, filled by the agent when the run starts).
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

from runyard import config_schema, errors, models, placeholders
from runyard.manifest import fields
from runyard.manifest.locator import Path, format_path, parse_path
from runyard.manifest.problems import Problems
from runyard.placeholders import PLACEHOLDERS, command_placeholders, render_command

BLUEPRINT_KEYS: tuple[str, ...] = (
    ("name", "command", "description", "config_schema", "config_schema_file", "rules")
    + fields.CONSTRAINT_KEYS + fields.POLICY_KEYS + fields.SLURM_KEYS
)


def check_command(command: Any, path: Path, problems: Problems) -> tuple[str, ...] | None:
    """A non-empty argv list whose placeholders all exist; ``None`` (and problems) otherwise."""
    if not isinstance(command, list) or not command:
        problems.add(path, "expected a non-empty list of strings (argv, run without a shell), "
                           f"got {command!r}")
        return None
    ok = True
    for i, arg in enumerate(command):
        where = path + (i,)
        if not isinstance(arg, str):
            problems.add(where, f"expected a string, got {arg!r}")
            ok = False
            continue
        try:
            found = placeholders.fields_of(arg)
        except ValueError as exc:
            problems.add(where, f"bad placeholder syntax in {arg!r}: {exc} "
                                "(write {{ and }} for literal braces)")
            ok = False
            continue
        for name, conv, spec in found:
            if name not in PLACEHOLDERS:
                known = ", ".join(sorted(PLACEHOLDERS))
                problems.add(where, f"unknown placeholder {{{name}}} (known: {known})")
                ok = False
            elif conv or spec:
                problems.add(where, f"placeholder {{{name}}} takes no conversion or format spec")
                ok = False
    return tuple(command) if ok else None


# --------------------------------------------------------------------------- config schemas


def check_schema(schema: Any, path: Path, problems: Problems) -> bool:
    """Record every reason ``schema`` is not a valid JSON Schema, or refers to anything
    outside itself (the server fetches nothing); True when it is fine."""
    if not isinstance(schema, dict):
        problems.add(path, f"expected a JSON Schema object, got {schema!r}")
        return False
    cls = config_schema.validator_class(schema)
    found = sorted(cls(cls.META_SCHEMA).iter_errors(schema),
                   key=lambda e: (format_path(e.absolute_path), e.message))
    for err in found:
        problems.add(path + tuple(err.absolute_path), f"not a valid JSON Schema: {err.message}")
    remote = sorted(config_schema.non_local_refs(schema), key=lambda r: format_path(r[0]))
    for where, ref in remote:
        problems.add(path + where, f"{ref!r}: only local references (#/...) are allowed; "
                                   "the server fetches no schema")
    return not found and not remote


def config_errors(schema: dict[str, Any] | None, config: Any) -> list[tuple[Path, str]]:
    """Every violation of ``schema`` by ``config``, as (path inside config, message)."""
    if not isinstance(config, dict):
        return [((), f"expected a table/object, got {config!r}")]
    if schema is None:
        return []
    try:
        found = sorted(config_schema.validator(schema).iter_errors(config),
                       key=lambda e: (format_path(e.absolute_path), e.message))
    except config_schema.Unresolvable as exc:
        return [((), config_schema.unresolvable_message(exc))]
    return [(tuple(e.absolute_path), e.message) for e in found]


@dataclass(frozen=True)
class Blueprint:
    """A named entry point (docs/manifest.md)."""

    name: str
    command: tuple[str, ...]
    config_schema: dict[str, Any] | None = None
    description: str = ""
    #: Constraint and policy keys a job inherits unless it sets them itself.
    defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def placeholders(self) -> set[str]:
        return command_placeholders(self.command)

    def render_command(self, **values: Any) -> list[str]:
        """The argv with placeholders filled, e.g. ``render_command(config_file="c.json")``."""
        return render_command(self.command, **values)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "command": list(self.command),
                "config_schema": self.config_schema, "description": self.description,
                "defaults": dict(self.defaults)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], read: SchemaReader | None = None) -> Blueprint:
        """Parse one blueprint table (``POST /v1/blueprints``); raises ``ValidationError``.

        ``defaults`` (as in :meth:`to_dict`) is accepted and flattened back.
        """
        flat = dict(data)
        if isinstance(flat.get("defaults"), Mapping):
            flat.update(flat.pop("defaults"))
        problems = Problems(source="blueprint")
        bp = parse_blueprint(flat, (), problems, read)
        if problems or bp is None:
            items = problems.items
            text = "; ".join(f"{i['field']}: {i['message']}" if i["field"] else i["message"]
                             for i in items)
            raise errors.ValidationError(text or "invalid blueprint",
                                         field=items[0]["field"] if items else None,
                                         errors=[{"field": i["field"], "message": i["message"]}
                                                 for i in items])
        return bp


#: Returns the text of a ``config_schema_file`` named as the manifest names it; raises OSError.
SchemaReader = Callable[[str], str]


class OutsideFolder(OSError):
    """A ``config_schema_file`` that names a file outside the manifest's folder."""


def schema_file_problem(name: str, base_dir: FsPath | None = None) -> str | None:
    """Why ``name`` may not be read as a ``config_schema_file``, or None.

    Only files inside the manifest's folder are read: the schema is stored where every viewer
    can read it, so a manifest must not be able to pick up any file its reloader can read
    (docs/security.md). Without ``base_dir`` only the name is looked at (absolute, or ``..``
    leading out); with it, symlinks are resolved too.
    """
    if os.path.isabs(name) or os.path.normpath(name).split(os.sep)[0] == os.pardir:
        return f"{name!r} is outside the manifest's folder: name a file inside it"
    if base_dir is not None:
        root = base_dir.resolve()
        if not (root / name).resolve().is_relative_to(root):
            return f"{name!r} resolves outside the manifest's folder (a symlink leading out)"
    return None


def schema_reader(base_dir: FsPath | None = None, files: Mapping[str, str] | None = None
                  ) -> SchemaReader | None:
    """Resolve schema files from ``files`` (sent along with a manifest's text), else relative
    to ``base_dir`` (the manifest's folder); None when neither is given."""
    if files is None and base_dir is None:
        return None

    def read(name: str) -> str:
        problem = schema_file_problem(name, base_dir if files is None else None)
        if problem:
            raise OutsideFolder(errno.EACCES, problem, name)
        if files is not None:
            if name not in files:
                raise FileNotFoundError(errno.ENOENT, "not sent with the manifest", name)
            return files[name]
        assert base_dir is not None
        return (base_dir / name).read_text(encoding="utf-8")

    return read


def _load_schema_file(value: Any, path: Path, problems: Problems,
                      read: SchemaReader | None) -> dict[str, Any] | None:
    if not isinstance(value, str) or not value:
        problems.add(path, f"expected a file name, got {value!r}")
        return None
    if read is None:
        problems.add(path, "cannot be resolved: the manifest was given as text, not as a file")
        return None
    try:
        loaded = json.loads(read(value))
    except OutsideFolder as exc:
        problems.add(path, str(exc.strerror))
        return None
    except (OSError, UnicodeDecodeError) as exc:
        problems.add(path, f"cannot read {value!r}: {getattr(exc, 'strerror', None) or exc}")
        return None
    except ValueError as exc:
        problems.add(path, f"{value!r} is not valid JSON: {exc}")
        return None
    return loaded if isinstance(loaded, dict) else {"__not_an_object__": loaded}


def parse_blueprint(data: Any, path: Path, problems: Problems,
                    read: SchemaReader | None) -> Blueprint | None:
    """One ``[[blueprints]]`` table; problems are recorded, ``None`` when unusable."""
    if not isinstance(data, Mapping):
        problems.add(path, f"expected a table, got {data!r}")
        return None
    fields.reject_unknown(data, BLUEPRINT_KEYS, path, problems)
    name: str | None = None
    if "name" not in data:
        problems.add(path + ("name",), "required")
    else:
        try:
            name = models.validate_name(data["name"], "name")
        except errors.ValidationError as exc:
            problems.add_validation(path, exc)
    command = None
    if "command" not in data:
        problems.add(path + ("command",), "required")
    else:
        command = check_command(data["command"], path + ("command",), problems)
    description = fields.check_str(data, "description", path, problems)

    schema: dict[str, Any] | None = None
    schema_ok = True
    if "config_schema" in data and "config_schema_file" in data:
        problems.add(path + ("config_schema_file",),
                     "set config_schema or config_schema_file, not both")
        schema_ok = False
    elif "config_schema" in data:
        schema = data["config_schema"]
        schema_ok = check_schema(schema, path + ("config_schema",), problems)
    elif "config_schema_file" in data:
        where = path + ("config_schema_file",)
        schema = _load_schema_file(data["config_schema_file"], where, problems, read)
        if schema is not None and "__not_an_object__" in schema:
            problems.add(where, "expected a JSON Schema object in the file")
            schema_ok = False
        elif schema is not None:
            schema_ok = check_schema(schema, where, problems)
        else:
            schema_ok = False

    defaults = fields.check_constraints(data, path, problems)
    defaults.update(fields.check_policy(data, path, problems))
    rules = fields.check_rules(data, path, problems)
    if rules:
        defaults["rules"] = rules
    defaults.update(fields.check_slurm(data, path, problems))
    if name is None or command is None or not schema_ok:
        return None
    return Blueprint(name=name, command=command, config_schema=schema,
                     description=description, defaults=defaults)


def validate_config(blueprint: Blueprint, config: Any, field_prefix: str = "config") -> None:
    """Check ``config`` against the blueprint's schema; raise ``ValidationError`` listing all.

    Used by manifest validation and at submit time (``POST /v1/runs``, ``/v1/runs/validate``).
    Each entry of ``.errors`` is ``{"field": "config.lr", "message": "..."}``.
    """
    found = config_errors(blueprint.config_schema, config)
    problems = Problems(source=f"blueprint {blueprint.name}")
    fields.check_json_value(config, (), problems)
    listed = [(p, m) for p, m in found]
    listed += [(parse_path(i["field"] or ""), i["message"]) for i in problems.items]
    if not listed:
        return
    items = []
    for rel, message in listed:
        name = ".".join(filter(None, [field_prefix, format_path(rel)])).replace(".[", "[")
        items.append({"field": name, "message": message})
    text = "; ".join(f"{i['field']}: {i['message']}" for i in items)
    raise errors.ValidationError(text, field=items[0]["field"], errors=items)


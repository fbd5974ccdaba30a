"""Command placeholders: the ``{name}`` fields of a run's argv that the agent fills in.

==================  ======================================================================
``{config_file}``   path of the run's validated config as JSON (same as RUNYARD_CONFIG_FILE)
``{run_id}``        the run id
``{attempt}``       the attempt number (1, 2, ...)
``{artifact_dir}``  RUNYARD_ARTIFACT_DIR
``{checkpoint_dir}`` RUNYARD_CHECKPOINT_DIR
``{progress_file}`` RUNYARD_PROGRESS_FILE
``{metrics_file}``  RUNYARD_METRICS_FILE
``{stop_file}``     RUNYARD_STOP_FILE
``{seed}``          the job's ``seed`` (a job whose command uses it must set one)
``{name}``          the run's name
``{python}``        the Python interpreter running the agent (its virtualenv's, not ``PATH``'s)
==================  ======================================================================

``{{`` and ``}}`` are literal braces. Anything else in braces is refused when a manifest is
validated (:mod:`runyard.manifest.blueprint`) or a run submitted (:func:`check_placeholders`),
not when the run starts. Standard library and :mod:`runyard.errors` only: the agent's
supervisor fills a command before it imports anything else (:mod:`runyard.agent.supervise`).
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from typing import Any

from runyard import errors

#: Every placeholder a command may use, with what fills it.
PLACEHOLDERS: dict[str, str] = {
    "config_file": "path of the run's config JSON",
    "run_id": "run id",
    "attempt": "attempt number",
    "artifact_dir": "artifact directory",
    "checkpoint_dir": "checkpoint directory",
    "progress_file": "progress snapshot file",
    "metrics_file": "metrics stream file",
    "stop_file": "stop request file",
    "seed": "the job's seed",
    "name": "the run's name",
    "python": "the agent's Python interpreter",
}


def fields_of(arg: str) -> list[tuple[str, str | None, str | None]]:
    """``(field, conversion, spec)`` of each placeholder in one argv element; ValueError for
    a bad template (a lone brace)."""
    return [(name, conv, spec) for _, name, spec, conv in string.Formatter().parse(arg)
            if name is not None]


def check_placeholders(command: Sequence[str], *, seed: int | None,
                       field: str = "command") -> None:
    """Refuse, at submission, a command whose placeholders the agent could not fill (it
    would fail at claim time with ``setup_error``): a 422 naming the argument, ``command[i]``.
    """
    known = ", ".join(sorted(PLACEHOLDERS))
    hint = "write {{ and }} for a literal brace"
    for i, arg in enumerate(command):
        where = f"{field}[{i}]"
        try:
            found = fields_of(arg)
        except ValueError as exc:
            raise errors.ValidationError(
                f"{where}: {arg!r} is not a valid placeholder template ({exc}); {hint}",
                field=where) from None
        for name, conv, spec in found:
            if name not in PLACEHOLDERS:
                raise errors.ValidationError(
                    f"{where}: unknown placeholder {{{name}}} in {arg!r} (known: {known}); "
                    f"{hint}", field=where)
            if conv or spec:
                raise errors.ValidationError(
                    f"{where}: placeholder {{{name}}} takes no conversion or format spec; "
                    f"{hint}", field=where)
            if name == "seed" and seed is None:
                raise errors.ValidationError(
                    f"{where}: uses {{seed}} but the run sets no seed", field=where)


def command_placeholders(command: Sequence[str]) -> set[str]:
    """Names of the placeholders a (checked) command uses."""
    return {name for arg in command for name, _, _ in fields_of(arg)}


def render_command(command: Sequence[str], **values: Any) -> list[str]:
    """Fill every placeholder of ``command``; missing or unknown value names are refused."""
    unknown = sorted(set(values) - set(PLACEHOLDERS))
    if unknown:
        raise errors.ValidationError(f"command: unknown placeholder value {unknown[0]!r}",
                                     field="command")
    out = []
    for arg in command:
        text = ""
        for literal, name, _, _ in string.Formatter().parse(arg):
            text += literal
            if name is None:
                continue
            if values.get(name) is None:
                raise errors.ValidationError(
                    f"command: no value for placeholder {{{name}}} in {arg!r}", field="command"
                )
            text += str(values[name])
        out.append(text)
    return out

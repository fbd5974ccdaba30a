"""How the client's arguments become request values: run references, repeated query
parameters, resources and rules (docs/http-api.md)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from runyard import errors, models
from runyard.client.http import Repeated
from runyard.client.run_models import Run

RunRef = Run | str
Resources = Mapping[str, Any] | models.Constraints


def run_id(run: RunRef) -> str:
    """The id of a :class:`Run` or an id string."""
    value = run.id if isinstance(run, Run) else run
    if not isinstance(value, str) or not value:
        raise errors.ValidationError(f"run: expected a run id, got {value!r}", field="run")
    return value


def rule_object(rule: Mapping[str, Any] | str) -> dict[str, Any]:
    """A rule as the API takes it: an object as given, a compact form parsed (its mistakes
    are reported here, before any request)."""
    if isinstance(rule, str):
        from runyard.rules import compact

        return compact.parse(rule)
    return dict(rule)


def many(value: str | int | Sequence[Any] | None) -> Repeated | None:
    """One value or several, sent as a repeated query parameter."""
    if value is None:
        return None
    if isinstance(value, str | int):
        return Repeated([value])
    return Repeated(value)


def resources_body(resources: Resources | None) -> dict[str, Any] | None:
    """Constraints as the API takes them (an object), or None."""
    if resources is None:
        return None
    if isinstance(resources, models.Constraints):
        return resources.to_dict()
    return dict(resources)

"""Validators for blueprint config schemas that resolve only references inside the schema.

A blueprint's ``config_schema`` comes from whoever stores it (an operator's manifest or
``POST /v1/blueprints``) and runs on every validate and submit. A remote ``$ref`` would make
the server fetch a URL each time, with no timeout (a request forged from the server, and a
thread held as long as the other end likes), so schemas with one are refused when stored
(:func:`non_local_refs`) and validators never retrieve anything (docs/security.md).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import jsonschema
import jsonschema.validators
import referencing
import referencing.exceptions

#: Keywords whose value is a reference.
REF_KEYWORDS = ("$ref", "$dynamicRef", "$recursiveRef")
#: Keywords whose value is data (never looked into for references).
DATA_KEYWORDS = frozenset({"const", "enum", "default", "examples"})
#: Keywords whose value maps names (which may be spelled like keywords) to schemas.
NAME_KEYWORDS = frozenset({"properties", "patternProperties", "$defs", "definitions",
                           "dependentSchemas", "dependencies"})

#: No retrieval: anything not in the schema itself (or a draft's meta-schema) is unresolvable.
_LOCAL_ONLY: referencing.Registry[Any] = referencing.Registry()


def validator_class(schema: Mapping[str, Any]) -> Any:
    """The validator class of ``schema``'s ``$schema`` draft, else of 2020-12."""
    return jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)


def validator(schema: Mapping[str, Any]) -> Any:
    """A validator for ``schema`` that fetches nothing.

    Validating with it raises :class:`referencing.exceptions.Unresolvable` on a reference
    that is not local.
    """
    return validator_class(schema)(schema, registry=_LOCAL_ONLY)


def non_local_refs(schema: Any) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """``(path of the keyword, reference)`` for every reference not of the form ``#...``."""
    # (path, node, whether the node's keys are names, e.g. those of "properties")
    stack: list[tuple[tuple[str | int, ...], Any, bool]] = [((), schema, False)]
    while stack:
        path, node, names = stack.pop()
        if isinstance(node, Mapping):
            for key, value in node.items():
                if names:
                    stack.append((path + (key,), value, False))
                elif key in REF_KEYWORDS and isinstance(value, str) and not value.startswith("#"):
                    yield path + (key,), value
                elif key not in DATA_KEYWORDS:
                    stack.append((path + (key,), value, key in NAME_KEYWORDS))
        elif isinstance(node, list):
            stack.extend((path + (i,), v, False) for i, v in enumerate(node))


Unresolvable = referencing.exceptions.Unresolvable


def unresolvable_message(exc: referencing.exceptions.Unresolvable) -> str:
    """What to tell a submitter whose blueprint's schema refers to something not in it."""
    return (f"the blueprint's config schema refers to {exc.ref!r}, which cannot be resolved "
            "(only local references #/... are)")

"""Project and server-wide rules (docs/rules.md): add, list, remove.

Who may: a user adds rules to a project, and such a rule watches only that user's own runs
of the project (a rule can stop runs; nobody stops another's runs but an operator); an
operator's project rule watches every run of the project, and only operators set
server-wide rules (no ``project``). A user removes only rules they added; everyone with a
token reads them.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Response

from runyard import errors, jsonvalues, models
from runyard.rules import spec
from runyard.server import auth, serialize
from runyard.server.auth import Principal
from runyard.server.state import ServerState, get_state

router = APIRouter(tags=["rules"])

_RULE_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["when"],
    "description": "A rule object (docs/rules.md) and the project it watches (none: "
                   "server-wide, operators only).",
    "properties": {"project": {"type": "string"}, "name": {"type": "string"},
                   "when": {"enum": list(spec.CONDITIONS)},
                   "then": {"type": "array", "items": {"type": "string"}}}}}}}}


def rule_out(row: dict[str, Any]) -> dict[str, Any]:
    """A stored rule as the API shows it: its object, then where it applies and who made it."""
    project = row["project"] or None
    owner = row.get("owner")
    applies = f"runs of {owner}" if owner else "every run"
    return {"id": row["id"], **serialize.json_safe(row["spec"]), "project": project,
            "owner": owner,
            "applies_to": f"{applies} in project {project}" if project else
                          f"{applies} on the server",
            "created_by": row["created_by"], "created_at": serialize.iso(row["created_at"])}


@router.post("/v1/rules", status_code=201, openapi_extra=_RULE_BODY)
def add_rule(body: dict[str, Any], who: Principal = Depends(auth.user),
             state: ServerState = Depends(get_state)) -> dict[str, Any]:
    """Add a rule to a project (or, operators only, to the whole server)."""
    for key, value in body.items():  # stored and shown to others: valid text, sane nesting
        jsonvalues.check(key, "body")
        jsonvalues.check(value, str(key))
    data = dict(body)
    project = data.pop("project", None)
    if project is None:
        if not who.is_operator:
            raise errors.Forbidden(f"project: token {who.name!r} ({who.role.value}) may only "
                                   "add rules to a project; server-wide rules are operators'",
                                   field="project")
    else:
        models.validate_name(project, "project")
    rule = spec.parse_rule(data)
    row = state.store.add_rule(project or "", rule.name, rule.to_dict(),
                               owner=None if who.is_operator else who.name,
                               created_by=who.name)
    state.rules.book.forget()
    return rule_out(row)


@router.get("/v1/rules")
def list_rules(project: str | None = Query(
        None, description="only this project's rules (server-wide rules have none)"),
               who: Principal = Depends(auth.viewer),
               state: ServerState = Depends(get_state)) -> dict[str, Any]:
    """Stored rules, by id."""
    if project is not None:
        models.validate_name(project, "project")
    rows = state.store.list_rules(project)
    return {"items": [rule_out(r) for r in rows], "next_after_id": None}


@router.delete("/v1/rules/{rule_id}", status_code=204)
def delete_rule(rule_id: int, who: Principal = Depends(auth.user),
                state: ServerState = Depends(get_state)) -> Response:
    """Remove a rule (its state on every run goes with it)."""
    if not 1 <= rule_id <= models.INT64_MAX:
        raise errors.NotFound(f"no rule {rule_id}")
    row = state.store.get_rule(rule_id)
    if row is None:
        raise errors.NotFound(f"no rule {rule_id}")
    if not who.is_operator and row["created_by"] != who.name:
        raise errors.Forbidden(f"token {who.name!r} may not remove rule {rule_id}: it was "
                               f"added by {row['created_by']!r}")
    state.store.delete_rule(rule_id)
    state.rules.book.forget()
    return Response(status_code=204)

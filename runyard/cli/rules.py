"""``runyard rules ls|add|rm``: project and server-wide rules (docs/rules.md, docs/cli.md)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from runyard.cli import common
from runyard.cli.common import JsonOpt, ServerOpt, TokenOpt
from runyard.client.client import DEFAULT_SERVER

rules_app = typer.Typer(help="Rules that watch every run of a project (or of the server).",
                        no_args_is_help=True)

ProjectOpt = Annotated[str | None, typer.Option(
    "--project", "-p", help="The project (none: server-wide, operators only).")]


def summary(rule: dict[str, Any]) -> str:
    """One line for a rule: its condition and arguments, then its actions."""
    skip = {"id", "name", "when", "then", "project", "owner", "applies_to", "created_by",
            "created_at", "source", "hits", "last_hit"}
    args = " ".join(f"{k}={json.dumps(v) if not isinstance(v, str) or ' ' in v else v}"
                    for k, v in rule.items() if k not in skip)
    then = ",".join(rule.get("then") or []) or "event"
    return f"{rule['when']} {args}".strip() + f" -> {then}"


@rules_app.command("ls")
def ls(project: ProjectOpt = None, server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None,
       as_json: JsonOpt = False) -> None:
    """List stored rules (of one project with --project)."""
    with common.connect(server, token) as client:
        items = client.list_rules(project)
    if as_json:
        common.print_json(items)
        return
    typer.echo(f"{'ID':>5} {'PROJECT':16} {'NAME':20} {'APPLIES TO':32} RULE")
    for r in items:
        typer.echo(f"{r['id']:>5} {r['project'] or '(server)':16} {r['name']:20} "
                   f"{r['applies_to'][:32]:32} {summary(r)}")


@rules_app.command("add")
def add(rule: Annotated[str, typer.Argument(
            help="The rule, compact ('plateau val_loss patience=5 -> stop') or as JSON.",
            show_default=False)],
        project: ProjectOpt = None,
        name: Annotated[str | None, typer.Option(help="The rule's name.")] = None,
        server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None,
        as_json: JsonOpt = False) -> None:
    """Add a rule to a project (yours watch your runs; an operator's, everyone's)."""
    from runyard.client.client import rule_object

    if rule.lstrip().startswith("{"):
        try:
            body = json.loads(rule)
        except ValueError as exc:
            raise common.fail(f"rule: not JSON: {exc}") from None
    else:
        body = rule_object(rule)
    if name is not None:
        body["name"] = name
    with common.connect(server, token) as client:
        out = client.add_rule(body, project=project)
    if as_json:
        common.print_json(out)
    else:
        typer.echo(f"rule {out['id']} ({out['name']}) added: {summary(out)}; watches "
                   f"{out['applies_to']}")


@rules_app.command("rm")
def rm(rule_id: Annotated[int, typer.Argument(help="The rule's id (runyard rules ls).",
                                              show_default=False)],
       server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None,
       as_json: JsonOpt = False) -> None:
    """Remove a rule."""
    with common.connect(server, token) as client:
        client.delete_rule(rule_id)
    if as_json:
        common.print_json({"id": rule_id, "deleted": True})
    else:
        typer.echo(f"rule {rule_id} removed")

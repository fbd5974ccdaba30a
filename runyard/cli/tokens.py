"""``runyard token create|ls|revoke``: manage API tokens over HTTP (operator token needed)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import typer

from runyard import errors
from runyard.cli import common
from runyard.cli.common import JsonOpt, ServerOpt, TokenOpt
from runyard.client.client import DEFAULT_SERVER
from runyard.client.http import Http, decode

token_app = typer.Typer(help="Create, list and revoke API tokens (operators).",
                        no_args_is_help=True)

ROLES = ("viewer", "user", "operator", "worker")


def _call(method: str, server: str, token: str | None, path: str,
          body: dict[str, Any] | None = None) -> Any:
    url = server.rstrip("/")
    http = Http(url, common.resolve_token(url, token))
    try:
        return decode(http.request(method, path, json_body=body))
    except errors.RunyardError as exc:
        status = exc.details.get("http_status")
        if status is None:
            raise
        # The status leads the line: "403" says "not an operator token" at a glance.
        raise errors.RunyardError(f"{status}: {exc.message}") from exc
    finally:
        http.close()


@token_app.command("create")
def create(name: str = typer.Option(..., "--name", help="Token name (the actor in events)."),
           role: str = typer.Option("user", "--role", help="viewer, user, operator or worker."),
           server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None,
           as_json: JsonOpt = False) -> None:
    """Create a token and print its secret (shown this once only)."""
    if role not in ROLES:
        raise typer.BadParameter(f"expected one of {', '.join(ROLES)}", param_hint="--role")
    out = _call("POST", server, token, "/v1/tokens", {"name": name, "role": role})
    if as_json:
        common.print_json(out)
    else:
        typer.echo(out["token"])
        typer.echo(f"runyard: token {name!r} ({role}) created; the secret above is not "
                   "shown again", err=True)


@token_app.command("ls")
def ls(server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None, as_json: JsonOpt = False
       ) -> None:
    """List tokens (names, roles, last use; never secrets)."""
    items = _call("GET", server, token, "/v1/tokens")["items"]
    if as_json:
        common.print_json(items)
        return
    typer.echo(f"{'NAME':24} {'ROLE':9} {'CREATED':24} {'LAST USED':24} REVOKED")
    for t in items:
        typer.echo(f"{t['name']:24} {t['role']:9} {t['created_at'] or '-':24} "
                   f"{t['last_used_at'] or '-':24} {t['revoked_at'] or '-'}")


@token_app.command("revoke")
def revoke(name: str = typer.Argument(..., help="Name of the token to revoke."),
           server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None,
           as_json: JsonOpt = False) -> None:
    """Revoke a token at once."""
    _call("DELETE", server, token, f"/v1/tokens/{quote(name, safe='')}")
    if as_json:
        common.print_json({"name": name, "revoked": True})
    else:
        typer.echo(f"runyard: token {name!r} revoked")

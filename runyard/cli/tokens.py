"""``runyard token create|ls|revoke``: manage API tokens over HTTP (operator token needed)."""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import quote

import typer

from runyard import defaults, errors
from runyard.cli import common

token_app = typer.Typer(help="Create, list and revoke API tokens (operators).",
                        no_args_is_help=True)

DEFAULT_SERVER = f"http://{defaults.HOST}:{defaults.PORT}"
ServerOpt = typer.Option(DEFAULT_SERVER, "--server", envvar="RUNYARD_SERVER",
                         help="Server URL.")
TokenOpt = typer.Option(None, "--token", envvar="RUNYARD_TOKEN", show_default=False,
                        help="Operator token (for a local server: the data dir's admin-token).")
JsonOpt = typer.Option(False, "--json", help="Machine-readable JSON output.")
ROLES = ("viewer", "user", "operator", "worker")


def _call(method: str, server: str, token: str | None, path: str,
          body: dict[str, Any] | None = None) -> Any:
    import httpx

    token = common.resolve_token(server, token or os.environ.get("RUNYARD_TOKEN"))
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        resp = httpx.request(method, server.rstrip("/") + path, json=body, headers=headers,
                             timeout=30)
    except httpx.HTTPError as exc:
        raise errors.TransportError(f"cannot reach {server}: {exc}") from exc
    if resp.status_code >= 400:
        try:
            message = resp.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = resp.text.strip() or resp.reason_phrase
        raise errors.RunyardError(f"{resp.status_code}: {message}")
    return resp.json() if resp.content else None


@token_app.command("create")
def create(name: str = typer.Option(..., "--name", help="Token name (the actor in events)."),
           role: str = typer.Option("user", "--role", help="viewer, user, operator or worker."),
           server: str = ServerOpt, token: str | None = TokenOpt,
           as_json: bool = JsonOpt) -> None:
    """Create a token and print its secret (shown this once only)."""
    if role not in ROLES:
        raise typer.BadParameter(f"expected one of {', '.join(ROLES)}", param_hint="--role")
    out = _call("POST", server, token, "/v1/tokens", {"name": name, "role": role})
    if as_json:
        typer.echo(json.dumps(out))
    else:
        typer.echo(out["token"])
        typer.echo(f"runyard: token {name!r} ({role}) created; the secret above is not "
                   "shown again", err=True)


@token_app.command("ls")
def ls(server: str = ServerOpt, token: str | None = TokenOpt, as_json: bool = JsonOpt) -> None:
    """List tokens (names, roles, last use; never secrets)."""
    items = _call("GET", server, token, "/v1/tokens")["items"]
    if as_json:
        typer.echo(json.dumps(items))
        return
    typer.echo(f"{'NAME':24} {'ROLE':9} {'CREATED':24} {'LAST USED':24} REVOKED")
    for t in items:
        typer.echo(f"{t['name']:24} {t['role']:9} {t['created_at'] or '-':24} "
                   f"{t['last_used_at'] or '-':24} {t['revoked_at'] or '-'}")


@token_app.command("revoke")
def revoke(name: str = typer.Argument(..., help="Name of the token to revoke."),
           server: str = ServerOpt, token: str | None = TokenOpt,
           as_json: bool = JsonOpt) -> None:
    """Revoke a token at once."""
    _call("DELETE", server, token, f"/v1/tokens/{quote(name, safe='')}")
    if as_json:
        typer.echo(json.dumps({"name": name, "revoked": True}))
    else:
        typer.echo(f"runyard: token {name!r} revoked")

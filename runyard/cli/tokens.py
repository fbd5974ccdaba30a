"""``runyard token create|ls|revoke|link``: manage API tokens and sign-in links over HTTP
(operator token needed)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import typer

from runyard import errors, models
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
           host: list[str] | None = typer.Option(
               None, "--host", help="Bind a worker token to this host id (repeatable)."),
           hosts: str | None = typer.Option(
               None, "--hosts",
               help="Bind a worker token to host-id globs, comma-separated ('gpu-*'), to "
                    "enrol many hosts with one token."),
           max_hosts: int | None = typer.Option(
               None, "--max-hosts", min=1,
               help="Hosts the worker token may have registered at once (default: the "
                    "server's --max-hosts-per-token)."),
           server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None,
           as_json: JsonOpt = False) -> None:
    """Create a token and print its secret (shown this once only).

    A worker token given no --host or --hosts binds itself to the first host it claims as.
    """
    if role not in ROLES:
        raise typer.BadParameter(f"expected one of {', '.join(ROLES)}", param_hint="--role")
    for h in host or []:
        try:
            models.validate_host_id(h, "--host")
        except errors.ValidationError as exc:
            raise typer.BadParameter(exc.message, param_hint="--host") from None
    bound = [*(host or []), *([p.strip() for p in hosts.split(",")] if hosts else [])]
    if (bound or max_hosts is not None) and role != "worker":
        raise typer.BadParameter("only a worker token is bound to hosts",
                                 param_hint="--host/--hosts/--max-hosts")
    body: dict[str, Any] = {"name": name, "role": role}
    if bound:
        body["hosts"] = bound
    if max_hosts is not None:
        body["max_hosts"] = max_hosts
    out = _call("POST", server, token, "/v1/tokens", body)
    if as_json:
        common.print_json(out)
    else:
        typer.echo(out["token"])
        typer.echo(f"runyard: token {name!r} ({role}) created{_bound_to(out)}; the secret "
                   "above is not shown again", err=True)


def _bound_to(out: dict[str, Any]) -> str:
    if out.get("role") != "worker":
        return ""
    if out.get("hosts") is None:
        return ", bound to the first host it claims as"
    return f", bound to host {', '.join(out['hosts'])}"


@token_app.command("ls")
def ls(server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None, as_json: JsonOpt = False
       ) -> None:
    """List tokens (names, roles, last use; never secrets)."""
    items = _call("GET", server, token, "/v1/tokens")["items"]
    if as_json:
        common.print_json(items)
        return
    typer.echo(f"{'NAME':24} {'ROLE':9} {'HOSTS':20} {'CREATED':24} {'LAST USED':24} "
               "REVOKED")
    for t in items:
        typer.echo(f"{t['name']:24} {t['role']:9} {_hosts_cell(t):20} "
                   f"{t['created_at'] or '-':24} {t['last_used_at'] or '-':24} "
                   f"{t['revoked_at'] or '-'}")


def _hosts_cell(t: dict[str, Any]) -> str:
    """A worker token's binding: its hosts, or that it binds on first claim."""
    if t.get("role") != "worker":
        return "-"
    if t.get("hosts") is None:
        return "(first claim)"
    cell = ",".join(t["hosts"])
    return cell if t.get("max_hosts") is None else f"{cell} (max {t['max_hosts']})"


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


@token_app.command("link")
def link(ttl_s: float = typer.Option(600.0, "--ttl-s", min=1, max=86400,
                                     help="Seconds the link works."),
         server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None,
         as_json: JsonOpt = False) -> None:
    """Print a one-time link that signs a browser in to the UI as an operator.

    The link works once, for --ttl-s seconds; each use makes its own token (named
    <your token>@web-...), which `runyard token revoke` signs that browser out.
    """
    out = _call("POST", server, token, "/v1/signin-links", {"ttl_s": ttl_s})
    if as_json:
        common.print_json(out)
    else:
        typer.echo(out["url"])
        typer.echo(f"runyard: this link signs a browser in once, until {out['expires_at']}",
                   err=True)

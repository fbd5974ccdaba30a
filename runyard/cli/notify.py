"""``runyard channels ls|add|rm|test`` and ``runyard notifications``: where notifications go,
and the delivery log (docs/notifications.md)."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from runyard import timestamps
from runyard.cli import common
from runyard.cli.common import EXIT_USAGE, JsonOpt, ServerOpt, TokenOpt
from runyard.client.client import DEFAULT_SERVER

channels_app = typer.Typer(help="List, add, remove and test notification channels.",
                           no_args_is_help=True)

NameArg = Annotated[str, typer.Argument(help="The channel's name (rules say notify:NAME).",
                                        show_default=False)]
_STATUS_STYLE = {"delivered": "green", "pending": "yellow", "failed": "red"}


@channels_app.command("ls")
def ls(server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None,
       as_json: JsonOpt = False) -> None:
    """Channels: name, kind, URL (redacted: URLs hold credentials) and whether signed."""
    with common.connect(server, token) as client:
        found = client.list_channels()
    if as_json:
        common.print_json({"items": found})
        return
    if not found:
        typer.echo("no channels")
        return
    table = Table("channel", "kind", "url", "signed", "source", "updated", box=None)
    for c in found:
        table.add_row(c["name"], c["kind"], c["url"], "yes" if c.get("signed") else "no",
                      c.get("source") or "-", c.get("updated_at") or "-")
    Console(soft_wrap=True).print(table)


def _from_env(var: str | None, option: str) -> str | None:
    if var is None:
        return None
    value = os.environ.get(var)
    if not value:
        raise common.fail(f"{option}: the environment variable {var} is not set", EXIT_USAGE)
    return value


@channels_app.command("add")
def add(
    name: NameArg,
    kind: str = typer.Option("webhook", "--kind", help="webhook or slack."),
    url: str | None = typer.Option(None, "--url", help="Where to POST (http or https)."),
    url_env: str | None = typer.Option(
        None, "--url-env", help="Read the URL from this environment variable instead (a "
        "Slack webhook URL is a secret: keep it off the command line)."),
    secret_env: str | None = typer.Option(
        None, "--secret-env", help="Sign webhook deliveries with the secret in this "
        "environment variable (kept off the command line on purpose)."),
    server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """Create or replace a channel (operator); its URL and secret are never shown back."""
    if (url is None) == (url_env is None):
        raise common.fail("give exactly one of --url and --url-env", EXIT_USAGE)
    target = url if url is not None else _from_env(url_env, "--url-env")
    assert target is not None
    secret = _from_env(secret_env, "--secret-env")
    with common.connect(server, token) as client:
        out = client.add_channel(name, kind, target, secret)
    if as_json:
        common.print_json(out)
    else:
        signed = ", signed" if out.get("signed") else ""
        typer.echo(f"runyard: channel {name!r} ({out['kind']}{signed}) -> {out['url']}")


@channels_app.command("rm")
def rm(name: NameArg, server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None,
       as_json: JsonOpt = False) -> None:
    """Remove a channel (operator); its pending deliveries fail."""
    with common.connect(server, token) as client:
        client.delete_channel(name)
    if as_json:
        common.print_json({"name": name, "deleted": True})
    else:
        typer.echo(f"runyard: channel {name!r} removed")


@channels_app.command("test")
def test(
    name: NameArg,
    wait: bool = typer.Option(False, "--wait", help="Wait for the delivery's outcome."),
    timeout: float = typer.Option(60.0, "--timeout", help="Longest wait with --wait (s)."),
    server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """Send a test notification through the outbox (operator), as a rule's would go."""
    with common.connect(server, token) as client:
        out = client.test_channel(name)
        delivery = out["delivery"]
        row: dict[str, Any] | None = None
        if wait:
            deadline = time.monotonic() + timeout
            while True:
                row = next((n for n in client.list_notifications(channel=name, limit=20)
                            if n["id"] == delivery), None)
                if row is not None and row["status"] != "pending":
                    break
                if time.monotonic() > deadline:
                    break
                time.sleep(0.5)
    if as_json:
        common.print_json({**out, "notification": row})
        return
    if row is None or row["status"] == "pending":
        typer.echo(f"runyard: test delivery {delivery} queued for channel {name!r}"
                   + (" (still pending)" if wait else "")
                   + f"; see `runyard notifications --channel {name}`")
        return
    if row["status"] == "delivered":
        typer.echo(f"runyard: test delivery {delivery} delivered to {name!r} "
                   f"(attempts: {row['attempts']})")
        return
    raise common.fail(f"test delivery {delivery} to {name!r} failed after "
                      f"{row['attempts']} attempts: {row.get('last_error')}")


def notifications(
    run: str | None = typer.Option(None, "--run", help="Only this run's deliveries."),
    channel: str | None = typer.Option(None, "--channel", help="Only this channel's."),
    status: str | None = typer.Option(None, "--status", help="pending, delivered or failed."),
    limit: int = typer.Option(50, "--limit", min=1, max=500, help="Most rows shown."),
    server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """The notification delivery log, newest first: status, attempts, last error."""
    with common.connect(server, token) as client:
        found = client.list_notifications(run=run, channel=channel, status=status,
                                          limit=limit)
    if as_json:
        common.print_json({"items": found})
        return
    if not found:
        typer.echo("no notifications")
        return
    table = Table("id", "channel", "run", "kind", "status", "attempts", "created",
                  "last error", box=None)
    now = datetime.now(UTC)
    for n in found:
        created = timestamps.parse_time(n.get("created_at"), "created_at")
        status_text = Text(n["status"], style=_STATUS_STYLE.get(n["status"], ""))
        table.add_row(str(n["id"]), n["channel"], n.get("run_id") or "-", n["kind"],
                      status_text, str(n["attempts"]),
                      common.ago(_utc(created), now),
                      n.get("last_error") or "-")
    Console(soft_wrap=True).print(table)


def _utc(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)

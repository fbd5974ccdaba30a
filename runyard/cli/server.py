"""``runyard server``: the HTTP API on uvicorn."""

from __future__ import annotations

import gc
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from runyard import defaults, enrolment, errors
from runyard.cli.common import EXIT_USAGE, fail

if TYPE_CHECKING:
    import uvicorn
    from starlette.types import ASGIApp

    from runyard.server import Settings

log = logging.getLogger(__name__)


def server(
    host: str = typer.Option(defaults.HOST, "--host", envvar="RUNYARD_HOST",
                             help="Address to bind (non-loopback needs TLS or --insecure)."),
    port: int = typer.Option(defaults.PORT, "--port", envvar="RUNYARD_PORT"),
    data_dir: Path | None = typer.Option(
        None, "--data-dir", envvar="RUNYARD_DATA_DIR",
        help="Where the embedded database, artifacts and admin token live."),
    db: str | None = typer.Option(None, "--db", envvar="RUNYARD_DB",
                                  help="Database URL; default: SQLite under the data dir."),
    artifacts: str | None = typer.Option(
        None, "--artifacts", envvar="RUNYARD_ARTIFACTS",
        help="Blob store directory or fsspec URL; default: <data-dir>/artifacts."),
    stale_after_s: float = typer.Option(defaults.STALE_AFTER_S, "--stale-after-s",
                                        envvar="RUNYARD_STALE_AFTER_S",
                                        help="A lease with no heartbeat this long is lost."),
    forget_workers_after_s: float = typer.Option(
        defaults.FORGET_WORKERS_AFTER_S, "--forget-workers-after-s",
        envvar="RUNYARD_FORGET_WORKERS_AFTER_S",
        help="Remove a worker unseen this long that holds no attempt (0: never)."),
    max_hosts_per_token: int = typer.Option(
        enrolment.MAX_HOSTS_PER_TOKEN, "--max-hosts-per-token", min=1,
        envvar="RUNYARD_MAX_HOSTS_PER_TOKEN",
        help="Hosts one worker token may have registered at once, unless the token sets "
             "its own --max-hosts."),
    max_workers: int = typer.Option(
        enrolment.MAX_WORKERS, "--max-workers", min=1, envvar="RUNYARD_MAX_WORKERS",
        help="Workers the server registers in all."),
    max_upload_mb: float = typer.Option(10 * 1024, "--max-upload-mb",
                                        envvar="RUNYARD_MAX_UPLOAD_MB",
                                        help="Largest artifact upload, in MiB."),
    insecure: bool = typer.Option(False, "--insecure", envvar="RUNYARD_INSECURE",
                                  help="Allow a non-loopback bind without TLS or auth."),
    no_auth: bool = typer.Option(False, "--no-auth", envvar="RUNYARD_NO_AUTH",
                                 help="Treat every request as an operator (loopback only)."),
    tls_cert: Path | None = typer.Option(None, "--tls-cert", envvar="RUNYARD_TLS_CERT"),
    tls_key: Path | None = typer.Option(None, "--tls-key", envvar="RUNYARD_TLS_KEY"),
    keep_last_checkpoints: int | None = typer.Option(
        None, "--keep-last-checkpoints", envvar="RUNYARD_KEEP_LAST_CHECKPOINTS",
        help="Default checkpoint retention when a run sets none (default: keep all)."),
    limit_concurrency: int = typer.Option(
        defaults.LIMIT_CONCURRENCY, "--limit-concurrency", min=1,
        envvar="RUNYARD_LIMIT_CONCURRENCY",
        help="Open connections (event streams and idle keep-alive ones included) past which "
             "requests are answered 503 at once."),
    public_url: str | None = typer.Option(
        None, "--public-url", envvar="RUNYARD_PUBLIC_URL",
        help="Where people reach this server's web UI; notifications link to run pages "
             "under it (default: no links)."),
    notify_timeout_s: float = typer.Option(
        defaults.NOTIFY_TIMEOUT_S, "--notify-timeout-s", envvar="RUNYARD_NOTIFY_TIMEOUT_S",
        help="Seconds one notification delivery attempt may take in all."),
    notify_max_attempts: int = typer.Option(
        defaults.NOTIFY_MAX_ATTEMPTS, "--notify-max-attempts",
        envvar="RUNYARD_NOTIFY_MAX_ATTEMPTS",
        help="Attempts at a notification before it is marked failed."),
    notify_backoff_s: float = typer.Option(
        defaults.NOTIFY_BACKOFF_S, "--notify-backoff-s", envvar="RUNYARD_NOTIFY_BACKOFF_S",
        help="Delay before a notification's first retry; doubled per retry, with jitter."),
    notify_backoff_max_s: float = typer.Option(
        defaults.NOTIFY_BACKOFF_MAX_S, "--notify-backoff-max-s",
        envvar="RUNYARD_NOTIFY_BACKOFF_MAX_S", help="Longest delay between two retries."),
    notify_concurrency: int = typer.Option(
        defaults.NOTIFY_CONCURRENCY, "--notify-concurrency",
        envvar="RUNYARD_NOTIFY_CONCURRENCY",
        help="Notification deliveries in flight at once in this process."),
) -> int:
    """Run the HTTP API (migrates the database first; SIGTERM stops it gracefully)."""
    from runyard import local
    from runyard.server import Settings

    settings = Settings(
        data_dir=(data_dir or local.data_dir()).expanduser(), host=host, port=port,
        db_url=db, artifacts=artifacts, stale_after_s=stale_after_s,
        forget_workers_after_s=forget_workers_after_s,
        max_hosts_per_token=max_hosts_per_token, max_workers=max_workers,
        max_upload_mb=max_upload_mb, insecure=insecure, no_auth=no_auth,
        tls_cert=tls_cert, tls_key=tls_key,
        admin_token=os.environ.get("RUNYARD_ADMIN_TOKEN") or None,
        keep_last_checkpoints=keep_last_checkpoints, public_url=public_url or None,
        notify_timeout_s=notify_timeout_s, notify_max_attempts=notify_max_attempts,
        notify_backoff_s=notify_backoff_s, notify_backoff_max_s=notify_backoff_max_s,
        notify_concurrency=notify_concurrency)
    try:
        settings.check()
    except errors.ConfigError as exc:
        raise fail(exc.message, EXIT_USAGE) from None
    # Loaded only now (most of the start's CPU), so that bad settings are refused at once.
    import uvicorn

    from runyard.server import build_state, create_app

    state, token_file = build_state(settings)
    if token_file is not None:
        typer.echo(f"runyard: first start: the operator token is in {token_file}")
    scheme = "https" if settings.tls else "http"
    typer.echo(f"runyard: serving on {scheme}://{host}:{port} "
               f"(database {state.store.url}, artifacts {state.blobs.root_url})")
    config = uvicorn_config(create_app(settings, state), settings,
                            limit_concurrency=limit_concurrency)
    # What is loaded by now (the framework, the schema, compiled statements) lives as long
    # as the process: moved out of the collector's view, so the full collections that a
    # stream of metric batches sets off do not walk it.
    gc.freeze()
    uvicorn.Server(config).run()
    return 0


def uvicorn_config(app: ASGIApp, settings: Settings, *,
                   limit_concurrency: int = defaults.LIMIT_CONCURRENCY) -> uvicorn.Config:
    """How ``runyard server`` serves ``app`` on uvicorn (the tests' on-thread server too)."""
    import uvicorn

    return uvicorn.Config(
        app, host=settings.host, port=settings.port, log_level="warning",
        ssl_certfile=str(settings.tls_cert) if settings.tls_cert else None,
        ssl_keyfile=str(settings.tls_key) if settings.tls_key else None,
        # Live event streams never end on their own: give them a moment, then close them.
        timeout_graceful_shutdown=3, proxy_headers=False, server_header=False,
        # A shared server: a flood of connections is answered 503 instead of exhausting
        # file descriptors, and an idle keep-alive connection does not hold a place for
        # long. What this does not cover (slow headers and bodies) is in docs/security.md.
        limit_concurrency=limit_concurrency, timeout_keep_alive=defaults.KEEP_ALIVE_S)

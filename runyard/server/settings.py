"""Server settings: one frozen value object, filled by the CLI from options and env vars."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runyard import defaults, enrolment, errors, local
from runyard.notifications import channels
from runyard.notifications.deliveries import Policy

#: Shortest RUNYARD_ADMIN_TOKEN accepted: tokens are stored as unsalted SHA-256 digests,
#: which only resist guessing when the secret itself has that much entropy.
ADMIN_TOKEN_MIN = 32
#: Default upload limit for one artifact or checkpoint blob, in MiB.
MAX_UPLOAD_MB = 10 * 1024
#: Checkpoint retention when a run's config says nothing (None keeps every checkpoint).
KEEP_LAST_CHECKPOINTS: int | None = None


@dataclass(frozen=True)
class Settings:
    """Everything ``create_app`` needs. Paths and URLs are resolved by :meth:`resolved`."""

    data_dir: Path
    host: str = defaults.HOST
    port: int = defaults.PORT
    db_url: str | None = None
    artifacts: str | None = None
    stale_after_s: float = defaults.STALE_AFTER_S
    #: Workers unseen this long and holding no attempt are removed (0: never).
    forget_workers_after_s: float = defaults.FORGET_WORKERS_AFTER_S
    #: Hosts a worker token may have registered at once unless it sets its own cap.
    max_hosts_per_token: int = enrolment.MAX_HOSTS_PER_TOKEN
    #: Workers registered in all.
    max_workers: int = enrolment.MAX_WORKERS
    max_upload_mb: float = MAX_UPLOAD_MB
    insecure: bool = False
    no_auth: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: Taken as the first operator token ("admin") when the database has none.
    admin_token: str | None = None
    #: Seconds between polls of the event table by the SSE streams' shared poller.
    sse_poll_s: float = 0.25
    #: Seconds between SSE heartbeat comments.
    sse_heartbeat_s: float = 15.0
    keep_last_checkpoints: int | None = KEEP_LAST_CHECKPOINTS
    #: Where people reach this server's web UI (``https://runyard.lab.example``): messages
    #: link to run pages under it. None: messages carry no links.
    public_url: str | None = None
    #: Notification deliveries (docs/notifications.md).
    notify_timeout_s: float = defaults.NOTIFY_TIMEOUT_S
    notify_max_attempts: int = defaults.NOTIFY_MAX_ATTEMPTS
    notify_backoff_s: float = defaults.NOTIFY_BACKOFF_S
    notify_backoff_max_s: float = defaults.NOTIFY_BACKOFF_MAX_S
    notify_concurrency: int = defaults.NOTIFY_CONCURRENCY

    @property
    def database_url(self) -> str:
        from runyard.store import default_url

        return self.db_url or default_url(self.data_dir)

    @property
    def artifacts_location(self) -> str:
        return self.artifacts or str(self.data_dir / "artifacts")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def sweep_interval_s(self) -> float:
        """Sweep often enough to end a lapsed lease soon after it lapses."""
        return min(self.stale_after_s / 4, defaults.SWEEP_INTERVAL_S)

    @property
    def notify_policy(self) -> Policy:
        return Policy(timeout_s=self.notify_timeout_s, max_attempts=self.notify_max_attempts,
                      backoff_s=self.notify_backoff_s,
                      backoff_max_s=max(self.notify_backoff_max_s, self.notify_backoff_s),
                      concurrency=self.notify_concurrency,
                      poll_s=min(defaults.NOTIFY_POLL_S, self.notify_backoff_s))

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    def check(self) -> None:
        """Refuse unsafe or inconsistent settings with one clear message."""
        if self.stale_after_s <= 0:
            raise errors.ConfigError("--stale-after-s: must be above 0")
        if self.forget_workers_after_s < 0:
            raise errors.ConfigError("--forget-workers-after-s: must be 0 (never) or above")
        if self.admin_token is not None and len(self.admin_token) < ADMIN_TOKEN_MIN:
            raise errors.ConfigError(
                f"RUNYARD_ADMIN_TOKEN: at least {ADMIN_TOKEN_MIN} characters (e.g. the output "
                "of `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)")
        if not 0 < self.notify_timeout_s <= 600:
            raise errors.ConfigError("--notify-timeout-s: must be above 0 and at most 600")
        if self.notify_max_attempts < 1:
            raise errors.ConfigError("--notify-max-attempts: must be at least 1")
        if self.notify_backoff_s <= 0 or self.notify_backoff_max_s <= 0:
            raise errors.ConfigError("--notify-backoff-s, --notify-backoff-max-s: must be "
                                     "above 0")
        if self.notify_concurrency < 1:
            raise errors.ConfigError("--notify-concurrency: must be at least 1")
        if self.public_url is not None:
            try:
                channels.check_url(self.public_url, "--public-url")
            except errors.ValidationError as exc:
                raise errors.ConfigError(exc.message) from None
        if self.max_hosts_per_token < 1:
            raise errors.ConfigError("--max-hosts-per-token: must be 1 or above")
        if self.max_workers < 1:
            raise errors.ConfigError("--max-workers: must be 1 or above")
        if self.max_upload_mb <= 0:
            raise errors.ConfigError("--max-upload-mb: must be above 0")
        if not 0 <= self.port <= 65535:
            raise errors.ConfigError(f"--port: {self.port} is not a TCP port")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise errors.ConfigError("--tls-cert and --tls-key: give both or neither")
        for opt, path in (("--tls-cert", self.tls_cert), ("--tls-key", self.tls_key)):
            if path is not None and not path.is_file():
                raise errors.ConfigError(f"{opt}: no such file {str(path)!r}")
        if local.is_loopback_host(self.host) or self.insecure:
            return
        if self.no_auth:
            raise errors.ConfigError(
                f"refusing to listen on {self.host} without authentication (--no-auth): "
                "bind 127.0.0.1, enable tokens, or pass --insecure")
        if not self.tls:
            raise errors.ConfigError(
                f"refusing to listen on {self.host} without TLS: tokens would cross the "
                "network in clear text; give --tls-cert and --tls-key, or pass --insecure "
                "on a trusted network")


"""Where the SDK reports, as one explicit value object: ``runyard.configure(...)`` or env vars.

``configure()`` values win over ``RUNYARD_SERVER`` / ``RUNYARD_TOKEN`` / ``RUNYARD_DATA_DIR``;
everything else falls back to the documented module defaults below.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from runyard import local

#: Seconds to wait for the server when a run starts; past it the run is recorded locally.
CONNECT_TIMEOUT_S = 3.0
#: Seconds one batch request may take before the batch is spooled to disk.
REQUEST_TIMEOUT_S = 10.0
#: Seconds between lease heartbeats (each answer also carries stop requests).
HEARTBEAT_INTERVAL_S = 1.0
#: Seconds between reconnection attempts while the server is away.
RETRY_INTERVAL_S = 1.0


@dataclass(frozen=True, slots=True)
class SdkSettings:
    """The SDK's destination and timing. ``None`` means "from the environment"."""

    server: str | None = None
    token: str | None = None
    data_dir: Path | None = None
    connect_timeout_s: float = CONNECT_TIMEOUT_S
    request_timeout_s: float = REQUEST_TIMEOUT_S
    heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S
    retry_interval_s: float = RETRY_INTERVAL_S
    #: An ``httpx.BaseTransport`` for tests (``httpx.MockTransport``); None for the network.
    transport: Any = None
    #: Seconds between system metric samples of a run outside an agent (``sys/`` tags);
    #: 0 turns them off; None: ``RUNYARD_SYS_INTERVAL_S``, else 10 s.
    sys_interval_s: float | None = None


_lock = threading.Lock()
_configured = SdkSettings()


def configure(server: str | None = None, token: str | None = None,
              data_dir: str | Path | None = None, **timing: Any) -> SdkSettings:
    """Set where runs started from now on report (``runyard.configure(server=...)``).

    Only the arguments given change; ``configure(server="")`` goes back to no server. Returns
    the settings now in force. Timing keywords are the fields of :class:`SdkSettings`.
    """
    global _configured
    changes: dict[str, Any] = dict(timing)
    if server is not None:
        changes["server"] = server or None
    if token is not None:
        changes["token"] = token or None
    if data_dir is not None:
        changes["data_dir"] = Path(data_dir).expanduser() if str(data_dir) else None
    with _lock:
        _configured = replace(_configured, **changes)
        return _configured


def sys_interval(env: Mapping[str, str]) -> float:
    """Seconds between system metric samples: :func:`configure`'s ``sys_interval_s``, else
    ``RUNYARD_SYS_INTERVAL_S``, else 10 s; a bad value is a warning and turns them off."""
    from runyard import errors, sysmetrics

    with _lock:
        value = _configured.sys_interval_s
    if value is None:
        return sysmetrics.interval_from_env(env)
    try:
        return sysmetrics.parse_interval(value, "sys_interval_s")
    except errors.ConfigError as exc:
        sysmetrics.log.warning("runyard: system metrics off: %s", exc.message)
        return 0.0


_YES = ("1", "true", "yes", "on")
_NO = ("", "0", "false", "no", "off")


def archive_wanted(explicit: bool | None, env: Mapping[str, str],
                   warn: Callable[[str, str], object]) -> bool:
    """Whether a run started by hand archives its artifact directory (docs/sdk.md,
    "Archiving"): ``start_run(archive=...)``, else ``RUNYARD_ARCHIVE``; default off."""
    if explicit is not None:
        return bool(explicit)
    raw = env.get("RUNYARD_ARCHIVE", "").strip().lower()
    if raw in _YES or raw in _NO:
        return raw in _YES
    warn("archive-env", f"runyard: RUNYARD_ARCHIVE={raw!r} is not one of 1, 0, true, false, "
         "yes, no, on, off; the run is not archived")
    return False


def reset() -> None:
    """Forget everything :func:`configure` set (tests)."""
    global _configured
    with _lock:
        _configured = SdkSettings()


def resolve(env: Mapping[str, str]) -> SdkSettings:
    """The settings in force: :func:`configure` values first, then ``env``."""
    with _lock:
        cfg = _configured
    server = cfg.server or env.get("RUNYARD_SERVER") or None
    token = cfg.token or env.get("RUNYARD_TOKEN") or None
    directory = cfg.data_dir or local.data_dir(env)
    if server and not token:
        # A notebook next to ``runyard up`` needs no set-up: the CLI's rule for local servers.
        token = local.local_token(server, directory)
    return replace(cfg, server=server.rstrip("/") if server else None, token=token,
                   data_dir=directory)


"""Where a run reports: the one place that picks a :class:`~runyard.sdk.sink.Sink`.

Modes, in the order they win (see docs/sdk.md):

* ``agent``  - under a Runyard agent: the files of docs/progress-protocol.md
  (:class:`.file_sink.FileSink`).
* ``http``   - ``RUNYARD_SERVER`` (or ``runyard.configure(server=...)``) set: batches to the
  server from the background thread, spooled to disk while it is away (:mod:`.http_sink`).
* ``embedded`` - no agent, no server: the embedded SQLite store of the data directory, which
  ``runyard up`` shows (:mod:`.store_sink`).
* ``local``  - the same, when SQLAlchemy (the ``server`` extra) is not installed: the protocol's
  files under ``<data dir>/local-runs/<run_id>/`` (:class:`.file_sink.LocalDirSink`).
  ``import runyard`` and the SDK's base install stay light; ``runyard sync`` uploads both.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping

from runyard import errors
from runyard.sdk import file_sink, settings
from runyard.sdk.notice import Warn, no_warn
from runyard.sdk.sink import RunInfo, Sink


def embedded_available() -> bool:
    """Whether the embedded store can be used (SQLAlchemy and alembic are installed)."""
    return all(importlib.util.find_spec(m) is not None for m in ("sqlalchemy", "alembic"))


def select_sink(env: Mapping[str, str] | None = None, info: RunInfo | None = None, *,
                warn: Warn = no_warn) -> Sink:
    """The one place that decides where a run reports. Never raises for a missing set-up.

    Order: agent files (``RUNYARD_PROGRESS_FILE``) win, then a server (``RUNYARD_SERVER`` or
    ``runyard.configure``), then the embedded store, then the local directory. A server that
    cannot be reached when the run starts is warned about and the run recorded locally
    (``runyard sync`` uploads it later): training never waits for the network.
    """
    env = os.environ if env is None else env
    info = info or RunInfo()
    if env.get("RUNYARD_PROGRESS_FILE"):
        return file_sink.FileSink.from_env(env)
    cfg = settings.resolve(env)
    assert cfg.data_dir is not None
    if cfg.server:
        from runyard.sdk import http_sink  # local imports: only the chosen mode loads

        try:
            return http_sink.HttpSink.create(cfg, info, warn=warn)
        except errors.RunyardError as exc:
            warn("http-start", f"runyard: cannot start the run on {cfg.server} ({exc.message}); "
                 "recording it locally instead -- `runyard sync` uploads it later")
    if embedded_available():
        from runyard.sdk import store_sink

        try:
            return store_sink.StoreSink(cfg.data_dir, info,
                                        heartbeat_interval_s=cfg.heartbeat_interval_s)
        except errors.RunyardError as exc:  # e.g. a database from a newer Runyard
            warn("embedded", f"runyard: the embedded store in {cfg.data_dir} is unusable "
                 f"({exc.message}); recording the run as files instead")
    return file_sink.LocalDirSink.create(cfg.data_dir, info)

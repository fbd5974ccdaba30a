"""The training-side SDK: ``start_run`` and :class:`Run` (docs/sdk.md, and the files of
docs/progress-protocol.md).

Importing this package loads only the standard library and :mod:`runyard.progress`; the
chosen mode's module (httpx for HTTP, SQLAlchemy for the embedded store) loads on ``start_run``.
"""

from __future__ import annotations

from runyard.sdk.choose import select_sink
from runyard.sdk.run import Run, start_run
from runyard.sdk.settings import SdkSettings, configure
from runyard.sdk.sink import CheckpointRecord, RunInfo, Sink

__all__ = ["CheckpointRecord", "Run", "RunInfo", "SdkSettings", "Sink", "configure",
           "select_sink", "start_run"]

"""The training-side SDK: ``start_run`` and :class:`Run` (PRODUCT.md sections 5 and 7).

Importing this package loads only the standard library and :mod:`runyard.progress`.
"""

from __future__ import annotations

from runyard.sdk.run import Run, start_run
from runyard.sdk.sink import CheckpointRecord, RunInfo, Sink, select_sink

__all__ = ["CheckpointRecord", "Run", "RunInfo", "Sink", "select_sink", "start_run"]

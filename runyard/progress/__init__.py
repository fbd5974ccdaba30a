"""Progress protocol v1: the snapshot file and the metrics stream (docs/progress-protocol.md).

Modules: :mod:`~runyard.progress.snapshot` (encode, validate, atomic write),
:mod:`~runyard.progress.metrics_stream` (append points), :mod:`~runyard.progress.reader`
(what the agent's probe calls). The JSON Schema ships as ``progress-v1.schema.json``.
"""

from __future__ import annotations

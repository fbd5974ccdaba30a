"""Progress protocol v1: the snapshot file and the metrics stream (PRODUCT.md section 5).

Modules: :mod:`~runyard.progress.snapshot` (encode, validate, atomic write),
:mod:`~runyard.progress.metrics_stream` (append points), :mod:`~runyard.progress.reader`
(what the agent's probe calls). The JSON Schema ships as ``progress-v1.schema.json``.
"""

from __future__ import annotations

"""The Python management API: :class:`Client` and the models it returns.

``from runyard.client import Client`` (``runyard.Client`` loads it lazily).
"""

from __future__ import annotations

from runyard.client.client import DEFAULT_SERVER, Client
from runyard.client.models import (
    Artifact,
    Attempt,
    Checkpoint,
    Event,
    LogChunk,
    MetricPoint,
    MetricTag,
    Page,
    Progress,
    Run,
    Series,
    SeriesPoint,
    StreamEvent,
    Worker,
)

__all__ = [
    "DEFAULT_SERVER", "Artifact", "Attempt", "Checkpoint", "Client", "Event", "LogChunk",
    "MetricPoint", "MetricTag", "Page", "Progress", "Run", "Series", "SeriesPoint",
    "StreamEvent", "Worker",
]

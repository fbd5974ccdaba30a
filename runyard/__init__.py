"""Runyard: self-hosted ML training runs with structured live progress.

``import runyard`` has no side effects and imports nothing heavy: the SDK is loaded on first
use of :func:`start_run`, and the server stack only by the ``runyard`` command.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from runyard.sdk import Run, configure, start_run

__all__ = ["Run", "__version__", "configure", "start_run"]


def __getattr__(name: str) -> object:
    if name in ("start_run", "Run", "configure"):
        from runyard import sdk

        return getattr(sdk, name)
    raise AttributeError(f"module 'runyard' has no attribute {name!r}")

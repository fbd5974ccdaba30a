"""Warn once, never raise: how the SDK reports trouble to the training script."""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Callable

logger = logging.getLogger("runyard.sdk")

#: ``warn(key, message)``: how a sink reports trouble (``Notices.warn_once`` in a run).
Warn = Callable[[str, str], object]


def no_warn(key: str, message: str) -> None:
    """A :data:`Warn` that says nothing (a sink made outside a run)."""
    return None


class RunyardWarning(UserWarning):
    """Something in tracking went wrong; training goes on."""


class Notices:
    """Emits each distinct warning once per run.

    ``warnings.warn`` may itself raise when the user turned warnings into errors; that
    must not reach the training loop, so it falls back to the logger.
    """

    def __init__(self, on_warn: Callable[[str], None] | None = None) -> None:
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        #: Also told of each warning (the run records it as a ``warning`` event).
        self.on_warn = on_warn

    def warn_once(self, key: str, message: str) -> bool:
        """Warn about ``key`` unless already done; returns whether it warned."""
        with self._lock:
            if key in self._seen:
                return False
            self._seen.add(key)
        try:
            warnings.warn(message, RunyardWarning, stacklevel=3)
        except Exception:  # warnings configured as errors: log instead of raising
            logger.warning("%s", message)
        if self.on_warn is not None:
            try:
                self.on_warn(message)
            except Exception:  # reporting a warning must not fail either
                pass
        return True

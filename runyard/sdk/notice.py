"""Warn once, never raise: how the SDK reports trouble to the training script."""

from __future__ import annotations

import logging
import threading
import warnings

logger = logging.getLogger("runyard.sdk")


class RunyardWarning(UserWarning):
    """Something in tracking went wrong; training goes on."""


class Notices:
    """Emits each distinct warning once per run.

    ``warnings.warn`` may itself raise when the user turned warnings into errors; that
    must not reach the training loop, so it falls back to the logger.
    """

    def __init__(self) -> None:
        self._seen: set[str] = set()
        self._lock = threading.Lock()

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
        return True

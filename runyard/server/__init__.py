"""The HTTP server: ``create_app(Settings(...))`` is the ASGI app of ``runyard server``."""

from __future__ import annotations

from runyard.server.app import build_state, create_app
from runyard.server.settings import Settings

__all__ = ["Settings", "build_state", "create_app"]

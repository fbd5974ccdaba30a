"""The HTTP server: ``create_app(Settings(...))`` is the ASGI app of ``runyard server``.

Importing the package (or :mod:`runyard.server.settings` alone) does not load the app: the
web framework, the routes and the store load on first use of ``create_app`` or
``build_state``, so that ``runyard server`` refuses bad settings before paying for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runyard.server.settings import Settings

if TYPE_CHECKING:
    from runyard.server.app import build_state, create_app

__all__ = ["Settings", "build_state", "create_app"]


def __getattr__(name: str) -> Any:
    if name in ("build_state", "create_app"):
        from runyard.server import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

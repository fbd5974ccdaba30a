"""The web UI: static pages and assets served at ``/``, and the two reads it needs.

Pages are one HTML shell plus hand-written ES modules under ``static/``; they call the same
``/v1`` API as every other client, with the token a login form keeps in ``localStorage``.
Nothing is fetched from the network at run time. See ``docs/web-ui.md``.
"""

from __future__ import annotations

"""The ``runyard`` command line. Each sub-module adds its commands to :data:`app`."""

from __future__ import annotations

import sys

# Importing a command module registers its commands; keep this list sorted.
from runyard.cli import agent as _agent  # noqa: F401
from runyard.cli import db as _db  # noqa: F401
from runyard.cli import demo as _demo  # noqa: F401
from runyard.cli import manifest as _manifest  # noqa: F401
from runyard.cli import runs as _runs  # noqa: F401
from runyard.cli import server as _server  # noqa: F401
from runyard.cli import sync as _sync  # noqa: F401
from runyard.cli import tokens as _tokens  # noqa: F401
from runyard.cli import up as _up  # noqa: F401
from runyard.cli import workers as _workers  # noqa: F401
from runyard.cli.app import app, run_app

__all__ = ["app", "main"]


def main() -> None:
    """Entry point of the ``runyard`` script."""
    sys.exit(run_app())

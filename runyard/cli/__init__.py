"""The ``runyard`` command line (docs/cli.md); :mod:`runyard.cli.app` registers its commands.

The command line needs the ``server`` extra (Typer, Rich), which a plain ``pip install
runyard`` (the SDK) does not bring. Importing this package imports neither, so that
:func:`main` can say which extra to install instead of failing with a traceback.
"""

from __future__ import annotations

import importlib.util
import sys

__all__ = ["main"]

#: What the command line imports beyond the base install, all from the ``server`` extra.
NEEDS = ("typer", "rich")
#: How to get them.
INSTALL_HINT = "pip install 'runyard[server]'"


def main() -> None:
    """Entry point of the ``runyard`` script (and of ``python -m runyard``)."""
    missing = [name for name in NEEDS if importlib.util.find_spec(name) is None]
    if missing:
        sys.stderr.write(f"runyard: the command line needs the server extra ({', '.join(missing)}"
                         f" missing); install it with: {INSTALL_HINT}\n")
        sys.exit(1)  # EXIT_ERROR of runyard.cli.common, which imports typer
    from runyard.cli import parentwatch
    from runyard.cli.app import run_app

    parentwatch.start_watch()
    sys.exit(run_app())

"""``python -m runyard`` is the ``runyard`` command."""

from __future__ import annotations

from runyard.cli import main

main()

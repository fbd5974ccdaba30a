"""The id and default name of a run started by hand."""

from __future__ import annotations

import re
import sys
import time
import uuid
from pathlib import Path

_NAME_BAD = re.compile(r"[^A-Za-z0-9._:+@/-]+")


def new_run_id() -> str:
    """A fresh id for a run started by hand."""
    return uuid.uuid4().hex


def default_name() -> str:
    """A run name when none was given: the script's name, else ``notebook``, plus the time."""
    main = sys.modules.get("__main__")
    script = getattr(main, "__file__", None)
    stem = Path(script).stem if script else "notebook"
    stem = _NAME_BAD.sub("-", stem).strip("._:+@/-") or "run"
    return f"{stem[:150]}-{time.strftime('%Y%m%d-%H%M%S')}"

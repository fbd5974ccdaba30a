"""The project of a run started by hand (docs/sdk.md, "Project"): the ``project`` argument,
else ``RUNYARD_PROJECT``, else ``project`` in the directory's ``runyard.toml``, else the name of
the current directory.

``runyard.toml`` is looked for in the current directory, then in each parent up to and
including the first that is a git checkout's root (holds ``.git``) or the home directory, so a
file outside the project never decides its name. Only its top-level ``project`` key is read.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path

from runyard.fields import NAME_RE
from runyard.sdk.notice import Warn, no_warn

#: The per-directory settings file.
CONFIG_FILE = "runyard.toml"
#: The project when nothing names one (a directory whose name has no usable character).
FALLBACK = "default"

_NAME_BAD = re.compile(r"[^A-Za-z0-9._:+@/-]+")


def resolve(explicit: str | None, env: Mapping[str, str], *, cwd: Path | None = None,
            warn: Warn = no_warn) -> str:
    """The run's project, in the documented order. A broken ``runyard.toml`` or a ``project``
    there that is not a valid name is warned about and passed over."""
    if explicit:
        return explicit
    if env.get("RUNYARD_PROJECT"):
        return env["RUNYARD_PROJECT"]
    try:
        here = Path.cwd() if cwd is None else cwd
    except OSError:  # the current directory was removed: nothing to name the run after
        return FALLBACK
    found = find_config(here)
    if found is not None:
        named = _read_project(found, warn)
        if named is not None:
            return named
    return directory_name(here)


def find_config(start: Path) -> Path | None:
    """The nearest ``runyard.toml`` from ``start`` up to its git root or the home directory."""
    try:
        home: Path | None = Path.home().resolve()
    except (KeyError, RuntimeError):  # no home directory (a container's bare user)
        home = None
    directory = start.resolve()
    while True:
        candidate = directory / CONFIG_FILE
        try:
            if candidate.is_file():
                return candidate
            if (directory / ".git").exists() or directory == home:
                return None
        except OSError:  # a directory this user may not look into: stop there
            return None
        if directory.parent == directory:
            return None
        directory = directory.parent


def directory_name(path: Path) -> str:
    """The directory's name as a project name (characters a name cannot hold become ``-``)."""
    name = _NAME_BAD.sub("-", os.path.basename(os.path.abspath(path)))
    name = name.strip("._:+@/-")[:200]
    return name if NAME_RE.match(name) else FALLBACK


def _read_project(path: Path, warn: Warn) -> str | None:
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        warn(f"project-file:{path}", f"runyard: {path} is unreadable ({exc}); the project "
             "is the directory's name")
        return None
    value = data.get("project")
    if value is None:
        return None
    if not isinstance(value, str) or not NAME_RE.match(value):
        warn(f"project-file:{path}", f"runyard: {path}: project = {value!r} is not a valid "
             "name (1-200 letters, digits and ._:+@/-); the project is the directory's name")
        return None
    return value

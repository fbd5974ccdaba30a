"""This machine's Runyard: the data directory, its admin-token file, the local runs' own files
under it, and "is this server local".

The CLI, the SDK and the server share these rules, so a notebook, ``runyard runs ls`` and
``runyard up`` agree on where the data lives and when the generated operator token may be
used without being given. Standard library only: ``import runyard`` must stay light.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

#: Environment variable that names the data directory.
DATA_DIR_ENV = "RUNYARD_DATA_DIR"
#: The file in the data directory where the server keeps its generated operator token.
ADMIN_TOKEN_FILE = "admin-token"
#: The embedded SQLite database in the data directory (``runyard up``, embedded-mode runs).
EMBEDDED_DB_FILE = "runyard.db"
#: Mode of a data directory Runyard creates: it holds the admin token and every run's data.
DATA_DIR_MODE = 0o700
#: The folder of the data directory where each local run keeps its files, one folder per run
#: named by its id (checkpoints, artifacts, the spool of an HTTP-mode run).
LOCAL_RUNS_DIR = "local-runs"
#: What a run id may look like to name a folder: server ids are hex, imported ones
#: alphanumeric; anything else (a separator, "..") never becomes part of a path.
_RUN_DIR_NAME = re.compile(r"[0-9A-Za-z]{1,40}")

log = logging.getLogger(__name__)


def data_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where the embedded database, artifacts, local runs and the admin token live:
    ``$RUNYARD_DATA_DIR``, else ``$XDG_DATA_HOME/runyard``, else ``~/.runyard``."""
    env = os.environ if env is None else env
    if env.get(DATA_DIR_ENV):
        return Path(env[DATA_DIR_ENV]).expanduser()
    if env.get("XDG_DATA_HOME"):
        return Path(env["XDG_DATA_HOME"]).expanduser() / "runyard"
    return Path("~/.runyard").expanduser()


def ensure_data_dir(directory: Path) -> Path:
    """Create ``directory`` (and its parents) when missing; a new one is private (0700).

    An existing directory keeps the mode its owner gave it.
    """
    directory.mkdir(mode=DATA_DIR_MODE, parents=True, exist_ok=True)
    return directory


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (all of 127.0.0.0/8, and ``::1``)."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_local_server(url: str) -> bool:
    """Whether the server at ``url`` runs on this machine (its host is a loopback name)."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return False
    return is_loopback_host(host or "")


def embedded_db_path(directory: Path) -> Path:
    """The data directory's embedded database file."""
    return directory / EMBEDDED_DB_FILE


def admin_token_path(directory: Path) -> Path:
    """Where ``runyard server`` / ``runyard up`` write the generated operator token."""
    return directory / ADMIN_TOKEN_FILE


def read_admin_token(directory: Path) -> str | None:
    """The operator token the local server wrote into ``directory``, or None."""
    try:
        return admin_token_path(directory).read_text("utf-8").strip() or None
    except OSError:
        return None


def write_admin_token(directory: Path, secret: str) -> Path:
    """Write ``secret`` as the data directory's admin token, readable by its owner only."""
    ensure_data_dir(directory)
    path = admin_token_path(directory)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret + "\n")
    os.chmod(path, 0o600)  # O_CREAT's mode is ignored when the file already existed
    return path


def local_token(server: str, directory: Path) -> str | None:
    """The admin token to use for ``server`` when none was given: only for a local server."""
    return read_admin_token(directory) if is_local_server(server) else None


def local_run_dir(directory: Path, run_id: str) -> Path | None:
    """The folder of the data directory that holds ``run_id``'s own files, or None for an id
    that cannot name one. Made from the id alone, never from a path stored with the run (a
    run's owner chooses those)."""
    if not _RUN_DIR_NAME.fullmatch(run_id):
        return None
    return directory / LOCAL_RUNS_DIR / run_id


def remove_local_run(directory: Path, run_id: str) -> bool:
    """Delete ``run_id``'s own folder under the data directory ``directory``; True when one
    was there and is gone.

    Only a real folder directly inside ``<directory>/local-runs`` goes: a symbolic link in its
    place is removed as a link (what it points at stays), and links inside the folder are
    never followed.
    """
    path = local_run_dir(directory, run_id)
    if path is None:
        return False
    try:
        if path.is_symlink():
            path.unlink()
            return True
        if not path.is_dir():
            return False
        shutil.rmtree(path)
    except OSError as exc:
        log.warning("could not remove the files of run %s in %s: %s", run_id, path, exc)
        return False
    return True

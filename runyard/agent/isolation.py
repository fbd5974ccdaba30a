"""Keeping the agent's worker token out of reach of the runs it supervises.

A run is whatever code a user submitted. Running as the agent's OS user it could read the
agent's initial environment (``/proc/<agent pid>/environ``, where ``RUNYARD_TOKEN`` came in),
open its memory or attach a debugger, and then act as the worker. So at start the agent:

* marks itself non-dumpable (Linux ``prctl(PR_SET_DUMPABLE, 0)``): its ``/proc/<pid>`` files
  then belong to root, and processes of the same user without ``CAP_SYS_PTRACE`` can neither
  read its environment or memory nor ptrace it (the flag is reset when a child ``exec``\\ s,
  so runs keep their own core dumps and debuggers);
* drops ``RUNYARD_TOKEN`` from its ``os.environ`` once read, so nothing it starts (runs,
  ``git``, ``nvidia-smi``) inherits it.

Neither protects the token from root, nor the file it is stored in (the service's
``EnvironmentFile``) from code running as its owner. Where users' code must not share the
agent's OS user at all, ``runyard agent --train-as USER`` starts every run as USER (the agent
then runs as root or with ``CAP_SETUID``/``CAP_SETGID``): each attempt's directory is handed
to USER, the agent's files and process stay the agent's own (docs/security.md).
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from runyard import errors

log = logging.getLogger(__name__)

TOKEN_ENV = "RUNYARD_TOKEN"
_PR_SET_DUMPABLE = 4


def make_undumpable() -> bool:
    """Mark this process non-dumpable (Linux); False where that is not possible."""
    if sys.platform != "linux":
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        ok = bool(libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        ok = False
    if not ok:
        log.warning("could not mark the agent non-dumpable: runs of its OS user may read "
                    "its token from /proc")
    return ok


def forget_token_env() -> None:
    """Remove the token variable from this process's environment (it was read already)."""
    os.environ.pop(TOKEN_ENV, None)


@dataclass(frozen=True)
class TrainUser:
    """The OS user runs are started as: ``runyard agent --train-as NAME``."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str

    @classmethod
    def resolve(cls, name: str) -> TrainUser:
        """Look the user up; refuse one this agent cannot switch to."""
        if sys.platform == "win32":
            raise errors.ConfigError("train_as: not available on Windows", field="train_as")
        import pwd

        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise errors.ConfigError(f"train_as: no OS user named {name!r}",
                                     field="train_as") from None
        if os.geteuid() not in (0, entry.pw_uid):
            raise errors.ConfigError(
                f"train_as: starting runs as {name!r} needs an agent running as root "
                "(or with CAP_SETUID and CAP_SETGID)", field="train_as")
        groups = tuple(os.getgrouplist(name, entry.pw_gid))
        return cls(name=name, uid=entry.pw_uid, gid=entry.pw_gid, groups=groups,
                   home=entry.pw_dir)

    def env(self) -> dict[str, str]:
        """The variables that name the user, as a login would set them."""
        return {"HOME": self.home, "USER": self.name, "LOGNAME": self.name}

    def hand_over(self, *paths: Path) -> None:
        """Give the run's own directories to this user, so it can write its files there."""
        for path in paths:
            os.chown(path, self.uid, self.gid)

"""A ``runyard`` command started as a supervised child ends with its parent.

``runyard up`` starts the server and the agent in their own sessions, so a Ctrl-C in the
terminal reaches ``up`` alone and ``up`` stops them in order (the agent first, while the server
can still take its reports). The price is that a parent killed outright (SIGKILL, a closed
terminal) could leave them running; this watch closes that gap. A thread checks, every
:data:`CHECK_EVERY_S`, that the parent named by :data:`PARENT_ENV` is still the process's
parent; once it is not, the command gets SIGTERM (a graceful stop: the agent reports its runs
``worker_shutdown``) and, :data:`FORCE_AFTER_S` later, a second SIGTERM (a forced one).
The ``runyard`` entry point calls :func:`start_watch` before it runs any command, so the
supervisor starts its children as plain ``python -m runyard server ...`` with
:data:`PARENT_ENV` set.

On Windows there is no re-parenting to detect, and the check is skipped.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time

log = logging.getLogger(__name__)

#: The parent's pid, as the parent saw it when it started the child.
PARENT_ENV = "RUNYARD_PARENT_PID"
#: Seconds between two looks at the parent.
CHECK_EVERY_S = 0.5
#: Seconds between the graceful SIGTERM and the forcing one once the parent is gone.
FORCE_AFTER_S = 60.0


def parent_gone(expected: int) -> bool:
    """True once this process is no longer ``expected``'s child (POSIX re-parenting)."""
    return os.getppid() != expected


def _watch(expected: int) -> None:
    while not parent_gone(expected):
        time.sleep(CHECK_EVERY_S)
    log.warning("parent process %d is gone; stopping", expected)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(FORCE_AFTER_S)
    os.kill(os.getpid(), signal.SIGTERM)


def start_watch() -> threading.Thread | None:
    """Start the watching thread when :data:`PARENT_ENV` names a parent (POSIX only)."""
    text = os.environ.pop(PARENT_ENV, "")
    if sys.platform == "win32" or not text.isdigit():
        return None
    thread = threading.Thread(target=_watch, args=(int(text),), name="runyard-parentwatch",
                              daemon=True)
    thread.start()
    return thread

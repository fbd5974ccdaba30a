"""Checkpoint retention applied when a complete checkpoint is registered.

Per-run settings come from the run's config (flat keys, so they pass any blueprint schema
that allows them): ``runyard.keep_last_checkpoints`` (int), ``runyard.keep_best_checkpoints``
(int), ``runyard.checkpoint_metric`` (name in the checkpoint's ``metrics``) and
``runyard.checkpoint_mode`` (``min`` or ``max``, default ``min``). Without them the server
default applies (``Settings.keep_last_checkpoints``; None keeps everything).
"""

from __future__ import annotations

import logging
from typing import Any

from runyard import errors
from runyard.artifacts import plan_retention
from runyard.server.blobs import remove_blobs
from runyard.server.state import ServerState
from runyard.store.base import Row

log = logging.getLogger(__name__)

KEEP_LAST = "runyard.keep_last_checkpoints"
KEEP_BEST = "runyard.keep_best_checkpoints"
METRIC = "runyard.checkpoint_metric"
MODE = "runyard.checkpoint_mode"


def policy(run: Row, default_keep_last: int | None) -> dict[str, Any]:
    config = run.get("config") or {}
    keep_last = config.get(KEEP_LAST, default_keep_last)
    keep_best = config.get(KEEP_BEST)
    return {"keep_last": keep_last, "keep_best": keep_best, "metric": config.get(METRIC),
            "mode": config.get(MODE, "min")}


def apply(state: ServerState, run: Row) -> list[int]:
    """Delete the checkpoints the run's policy no longer keeps; returns their ids."""
    rules = policy(run, state.settings.keep_last_checkpoints)
    if rules["keep_last"] is None and rules["keep_best"] is None:
        return []
    checkpoints = state.store.list_checkpoints(run["id"])
    try:
        _keep, drop = plan_retention(checkpoints, **rules)
    except errors.ValidationError as exc:
        # A bad setting in the config must not fail the upload; say so once in the log.
        log.warning("run %s: checkpoint retention not applied: %s", run["id"], exc.message)
        return []
    if not drop:
        return []
    ids = [int(c["id"]) for c in drop]
    shas = state.store.delete_checkpoints(run["id"], ids)
    remove_blobs(state, shas)
    return ids

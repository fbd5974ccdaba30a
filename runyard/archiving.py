"""Where a run's artifact files are (``artifact_store``) and whether they are archived
(``archived``): docs/metrics-and-artifacts.md, "Where a run executed".

``artifact_store`` names a place. For a run started by hand it is the local artifact
directory its process reported (:func:`runyard.placement.record`) until the run is archived;
for a run of an agent it is the server's artifact store (its URL) from the first file that
reached it. ``archived`` turns true when the run's artifact directory, packed as one bundle
(:data:`BUNDLE_NAME`, kind :data:`BUNDLE_KIND`), is in the server's store -- uploaded by an
agent at the end of an attempt, by an HTTP-mode run that asked for it at its end, or by
``runyard sync`` -- and ``artifact_store`` names that store from then on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runyard import errors, transitions
from runyard.artifacts.names import BUNDLE_KIND, BUNDLE_NAME
from runyard.models import Status

if TYPE_CHECKING:
    from runyard.queue import Queue

__all__ = ["BUNDLE_KIND", "BUNDLE_NAME", "LOCATION_MAX", "check_location", "record_upload"]

#: Longest work directory or artifact location a run records.
LOCATION_MAX = 2000


def check_location(value: Any, field: str) -> str | None:
    """A directory or store location as recorded (None stays None); 422 naming ``field``."""
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > LOCATION_MAX or "\x00" in value:
        raise errors.ValidationError(
            f"{field}: expected 1-{LOCATION_MAX} characters without NUL, got {value!r:.80}",
            field=field)
    return value


def record_upload(queue: Queue, run_id: str, attempt: int, kind: str, store_url: str, *,
                  actor: str) -> bool:
    """Note that an artifact of ``kind`` of the run reached the server's store at
    ``store_url``. A bundle archives the run (with an ``archived`` event); another file of an
    agent's run names the store as where its artifacts are. Returns whether the run became
    archived now. Uploading again changes nothing."""
    archive = kind == BUNDLE_KIND
    seen = queue.store.get_run(run_id)  # most uploads change nothing: no lock for those
    if seen is None or not _changes(seen, archive, store_url):
        return False
    now = queue.clock()
    with queue.store.transaction() as tx:
        run = tx.lock_run(run_id)
        if run is None or not _changes(run, archive, store_url):
            return False
        values: dict[str, Any] = {"artifact_store": store_url, "updated_at": now}
        if archive:
            values["archived"] = True
        tx.update_run(run_id, values)
        if archive and not run["archived"]:
            transitions.event(tx, run_id, "archived", Status(run["status"]), actor, attempt,
                              now, {"artifact_store": store_url, "attempt": attempt})
            return True
    return False


def _changes(run: dict[str, Any], archive: bool, store_url: str) -> bool:
    if archive:
        return not run["archived"] or run["artifact_store"] != store_url
    # A local run's files stay where its process said until it is archived.
    return run["executor"] != "local" and run["artifact_store"] is None

"""The cap on distinct metric tags per run, in the store (both dialects)."""

from __future__ import annotations

import pytest

from runyard import errors
from runyard.defaults import MAX_TAGS_PER_RUN
from runyard.queue import Queue
from runyard.store.base import Store

from ..support.factories import submit


def test_distinct_tags_are_capped_and_a_refused_batch_stores_nothing(store: Store,
                                                                     queue: Queue) -> None:
    rid = submit(queue, "tags")["id"]
    store.add_metric_points(rid, 1, [{"step": 0, "tag": f"t{i:05d}", "value": 1.0}
                                     for i in range(MAX_TAGS_PER_RUN - 1)])
    with pytest.raises(errors.ValidationError) as exc:
        store.add_metric_points(rid, 1, [], [(1, 1.0, {"t00000": 2.0, "a": 1.0, "b": 1.0})])
    assert exc.value.field == "tag"
    assert [p["step"] for p in store.list_metric_points(rid, tag="t00000")] == [0]
    assert store.add_metric_points(rid, 1, [], [(2, 1.0, {"a": 1.0})]) == 1
    # Known tags keep going in at the cap; a new one does not.
    assert store.add_metric_points(rid, 1, [], [(3, 1.0, {"a": 1.0, "t00001": 1.0})]) == 2
    with pytest.raises(errors.ValidationError):
        store.add_metric_points(rid, 1, [], [(4, 1.0, {"a": 1.0, "b": 1.0})])
    # Another run has its own count.
    other = submit(queue, "other")["id"]
    assert store.add_metric_points(other, 1, [], [(0, 1.0, {"b": 1.0})]) == 1
    page = store.metric_tags(rid, after="t09990", limit=5)
    assert [t["tag"] for t in page] == [f"t{i:05d}" for i in range(9991, 9996)]
    assert len(store.metric_tags(rid)) == MAX_TAGS_PER_RUN

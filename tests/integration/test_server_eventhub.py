"""The event streams' shared poller on a real database: fan-out, run filters and a subscriber
that falls behind (a stream resuming far behind the feed is tested on a live server, in
tests/e2e/test_server_live.py)."""

from __future__ import annotations

import asyncio

from runyard.queue import Queue
from runyard.server.eventhub import QUEUE_MAX, EventHub, Subscriber
from runyard.server.metrics_prom import ServerMetrics
from runyard.store.base import Store

from ..support.factories import submit


def _drain(sub: Subscriber) -> list[int | None]:
    out = []
    while not sub.queue.empty():
        out.append(sub.queue.get_nowait()[0])
    return out


def test_one_poll_serves_every_subscriber(store: Store, queue: Queue) -> None:
    a, b = submit(queue, "a"), submit(queue, "b")

    async def go() -> tuple[list[int | None], list[int | None], float]:
        hub = EventHub(store, 0.05, ServerMetrics(store, 60))
        subs = [Subscriber("t", None) for _ in range(50)]
        only_b = Subscriber("t", b["id"])
        for sub in [*subs, only_b]:
            await hub.subscribe(sub)
        await hub.stop()  # polled by hand below
        queue.add_event(a["id"], "warning", {"message": "x"})
        queue.add_event(b["id"], "warning", {"message": "y"})
        await hub.poll_once()
        got = [_drain(s) for s in subs]
        assert all(g == got[0] for g in got) and len(got[0]) == 2
        polls = hub.metrics.registry.get_sample_value("runyard_sse_polls_total") or 0.0
        return got[0], _drain(only_b), polls

    every, filtered, polls = asyncio.run(go())
    assert len(filtered) == 1 and filtered[0] == every[1]
    assert polls == 1  # one poll for 51 subscribers


def test_a_subscriber_that_falls_behind_is_dropped(store: Store, queue: Queue) -> None:
    run = submit(queue, "loud")

    async def go() -> tuple[bool, int, bool]:
        hub = EventHub(store, 0.05, ServerMetrics(store, 60))
        slow, keeping_up = Subscriber("t", None), Subscriber("t", None)
        await hub.subscribe(slow)
        await hub.subscribe(keeping_up)
        await hub.stop()
        for i in range(QUEUE_MAX + 10):
            queue.add_event(run["id"], "warning", {"message": str(i)})
            if i % 400 == 0:
                await hub.poll_once()
                _drain(keeping_up)
        while await hub.poll_once():
            _drain(keeping_up)
        await hub.poll_once()
        _drain(keeping_up)
        return slow.dropped, slow.queue.qsize(), keeping_up.dropped

    dropped, waiting, other_dropped = asyncio.run(go())
    assert dropped and waiting <= QUEUE_MAX and not other_dropped

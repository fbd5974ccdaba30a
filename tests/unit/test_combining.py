"""Flat combining: concurrent calls are served together by one of their callers."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest

from runyard.combining import Combiner


def test_a_lone_call_is_served_at_once_by_its_own_thread() -> None:
    seen: list[tuple[list[int], str]] = []

    def serve(asks: Sequence[int]) -> list[int]:
        seen.append((list(asks), threading.current_thread().name))
        return [a * 10 for a in asks]

    c: Combiner[int, int] = Combiner(serve)
    assert c.call(4) == 40
    assert c.call(5) == 50
    assert seen == [([4], threading.current_thread().name), ([5], threading.current_thread().name)]


def test_a_lone_caller_does_not_give_up_the_gil_before_serving(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # time.sleep(0) is how a leader waits for callers about to join; alone, it would only
    # hand the processor to other threads (a claim's latency, on a busy server).
    yields: list[float] = []
    monkeypatch.setattr("runyard.combining.time.sleep", yields.append)
    c: Combiner[int, int] = Combiner(lambda asks: [a + 1 for a in asks])
    assert [c.call(i) for i in range(3)] == [1, 2, 3]
    assert yields == []


def test_calls_arriving_during_a_batch_are_served_together_each_getting_its_answer() -> None:
    release = threading.Event()
    batches: list[list[int]] = []

    def serve(asks: Sequence[int]) -> list[int | BaseException]:
        batches.append(list(asks))
        if asks == [0]:
            release.wait(10)  # hold the first batch until every other call waits
        return [ValueError(f"odd {a}") if a % 2 else a * 10 for a in asks]

    c: Combiner[int, int] = Combiner(serve, max_batch=5)
    results: dict[int, object] = {}

    def caller(n: int) -> None:
        try:
            results[n] = c.call(n)
        except ValueError as exc:
            results[n] = str(exc)

    first = threading.Thread(target=caller, args=(0,))
    first.start()
    while not batches:
        time.sleep(0.001)
    others = [threading.Thread(target=caller, args=(n,)) for n in range(1, 8)]
    for t in others:
        t.start()
    while len(c._waiting) < 7:  # every other call is queued behind the first batch
        time.sleep(0.001)
    release.set()
    for t in [first, *others]:
        t.join(10)
        assert not t.is_alive()
    assert batches[0] == [0]
    # The rest came in at most max_batch at a time, in arrival order, and nothing was lost.
    assert all(len(b) <= 5 for b in batches[1:]) and len(batches) == 3
    assert sorted(n for b in batches for n in b) == list(range(8))
    assert results == {n: (f"odd {n}" if n % 2 else n * 10) for n in range(8)}


def test_a_failing_serve_fails_its_whole_batch_and_the_next_calls_still_run() -> None:
    calls = 0

    def serve(asks: Sequence[str]) -> list[str]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("database is gone")
        return [a.upper() for a in asks]

    c: Combiner[str, str] = Combiner(serve)
    with pytest.raises(RuntimeError, match="database is gone"):
        c.call("a")
    assert c.call("b") == "B"


def test_a_serve_answering_the_wrong_count_is_an_error_not_a_hang() -> None:
    c: Combiner[int, int] = Combiner(lambda asks: [])
    with pytest.raises(RuntimeError, match="answered 0 of 1"):
        c.call(1)
    with pytest.raises(ValueError, match="max_batch"):
        Combiner(lambda asks: [], max_batch=0)


def test_many_threads_hammering_get_exactly_their_own_answers() -> None:
    sizes: list[int] = []

    def serve(asks: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
        sizes.append(len(asks))
        time.sleep(0.0005)
        return list(asks)

    c: Combiner[tuple[int, int], tuple[int, int]] = Combiner(serve)
    wrong: list[tuple[int, int]] = []

    def worker(t: int) -> None:
        for i in range(200):
            if c.call((t, i)) != (t, i):
                wrong.append((t, i))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
        assert not t.is_alive()
    assert not wrong
    assert sum(sizes) == 16 * 200
    assert max(sizes) > 1  # calls were in fact combined

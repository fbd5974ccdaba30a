"""Flat combining: calls that arrive while one is being served are served together, in one
batch, by one of their own callers.

The first caller becomes the leader and serves every call waiting at that moment (its own
included) with one ``serve(batch)``; calls that arrive meanwhile wait, and when the leader is
done it hands the lead to the oldest of them, which serves all of those at once. There is no
background thread: a lone caller serves itself straight away, and under load the work of many
callers is done in one go (for claims: one transaction, a few statements and one commit for a
whole batch instead of each of them per claim).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

#: Most times a leader yields while calls keep arriving before it takes its batch.
GATHER_YIELDS = 8

A = TypeVar("A")
R = TypeVar("R")


class _Call(Generic[A, R]):
    __slots__ = ("ask", "wake", "done", "result", "error")

    def __init__(self, ask: A) -> None:
        self.ask = ask
        # Only a call that waits needs an event (made under the mutex, before anyone can
        # hand it the lead): a lone caller, the common case, is spared making one.
        self.wake: threading.Event | None = None
        self.done = False
        self.result: R | None = None
        self.error: BaseException | None = None


class Combiner(Generic[A, R]):
    """Serves ``call(ask)`` through ``serve(asks)``, which answers a batch of asks in order.

    ``serve`` returns one item per ask: the result, or an exception to raise in that caller
    only. An exception raised by ``serve`` itself reaches every caller of the batch. Batches
    hold at most ``max_batch`` asks, in arrival order.
    """

    def __init__(self, serve: Callable[[Sequence[A]], Sequence[R | BaseException]], *,
                 max_batch: int = 64) -> None:
        if max_batch < 1:
            raise ValueError("max_batch: must be at least 1")
        self._serve = serve
        self._max_batch = max_batch
        self._mutex = threading.Lock()
        self._waiting: deque[_Call[A, R]] = deque()
        # True while a leader serves; then every waiting call is either in its batch or will
        # be led by the call it hands over to (so nothing waits with nobody to serve it).
        self._busy = False
        # Callers inside call(), served or not: when all of them are queued, nobody can join.
        self._callers = 0

    def _gather(self) -> None:
        """Give up the GIL for as long as calls keep arriving (a few times at most).

        Callers that the previous batch just woke are usually on their way back with their
        next call; this lets them join this batch rather than form one of their own right
        after it, which would make them wait for two. It stops as soon as every caller inside
        call() is queued (nobody else is about to join: a lone caller does not wait at all).
        """
        seen = -1
        for _ in range(GATHER_YIELDS):
            with self._mutex:
                waiting = len(self._waiting)
                everyone = waiting >= self._callers
            if everyone or waiting == seen or waiting >= self._max_batch:
                return
            seen = waiting
            time.sleep(0)

    def call(self, ask: A) -> R:
        """Serve ``ask``, alone or batched with concurrent calls; returns its result."""
        me: _Call[A, R] = _Call(ask)
        with self._mutex:
            self._waiting.append(me)
            self._callers += 1
            lead = not self._busy
            self._busy = True
            if not lead:
                me.wake = threading.Event()
        try:
            if me.wake is not None:
                me.wake.wait()
            if not me.done:  # the lead was handed to this call: serve a batch (this one first)
                self._lead()
        finally:
            with self._mutex:
                self._callers -= 1
        if me.error is not None:
            raise me.error
        return me.result  # type: ignore[return-value]

    def _lead(self) -> None:
        self._gather()
        with self._mutex:
            n = min(len(self._waiting), self._max_batch)
            batch = [self._waiting.popleft() for _ in range(n)]
        try:
            answers = self._serve([c.ask for c in batch])
            if len(answers) != len(batch):
                raise RuntimeError(f"serve answered {len(answers)} of {len(batch)} calls")
            for c, answer in zip(batch, answers, strict=True):
                if isinstance(answer, BaseException):
                    c.error = answer
                else:
                    c.result = answer
        except BaseException as exc:
            for c in batch:
                c.error = exc
        finally:
            with self._mutex:
                if self._waiting:
                    nxt = self._waiting[0].wake
                    assert nxt is not None  # only the leader's own call has none
                    nxt.set()
                else:
                    self._busy = False
            for c in batch:
                c.done = True
                if c.wake is not None:
                    c.wake.set()

"""The notification outbox on each database: enqueue (alone or in the caller's transaction),
claims that two deliverers never share, and the deliverer against a real receiver on
127.0.0.1 (retries, timeouts, refused connections, exactly one delivery each)."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from runyard.notifications import Policy, enqueue
from runyard.notifications.sender import Sender
from runyard.queue import Queue
from runyard.server.deliverer import Deliverer
from runyard.store import Store, open_store
from runyard.store.base import Row

from ..support.live_server import free_port
from ..support.receiver import Receiver
from ..support.ui import wait_until

SECRET = "a-webhook-secret-of-some-length"
#: Fast retries, so tests wait for conditions rather than for delays.
FAST = Policy(timeout_s=5.0, max_attempts=3, backoff_s=0.05, backoff_max_s=0.2, poll_s=0.05)


def _log(store: Store, delivery: int) -> Row:
    (row,) = store.get_notifications([delivery])
    return row


def _settled(store: Store, delivery: int) -> Row | None:
    row = _log(store, delivery)
    return row if row["status"] != "pending" else None


@pytest.fixture
def deliverer(store: Store) -> Iterator[Deliverer]:
    d = Deliverer(store, FAST, public_url="https://runyard.example")
    d.start()
    yield d
    d.stop()


def test_enqueue_records_the_run_and_spells_non_finite_values(store: Store,
                                                              queue: Queue) -> None:
    run, _ = queue.submit({"name": "watched", "project": "vision", "command": ["true"]})
    store.put_channel("team", "webhook", "http://127.0.0.1:9/hook", SECRET, "api")
    first = enqueue(store, channel="team", run_id=run["id"], kind="rule",
                    payload={"rule": "diverged", "tag": "loss", "step": 50,
                             "value": float("nan"), "best": float("-inf")}, at=1000.0)
    row = _log(store, first)
    assert row["status"] == "pending" and row["attempts"] == 0
    assert row["next_attempt_at"] == 1000.0 and row["created_at"] == 1000.0
    assert row["payload"] == {
        "run": {"id": run["id"], "name": "watched", "project": "vision", "status": "queued"},
        "details": {"rule": "diverged", "tag": "loss", "step": 50, "value": "NaN",
                    "best": "-Infinity"}}
    # An unknown channel never raises: the delivery fails at once, saying why.
    lost = enqueue(store, channel="nobody", run_id=run["id"], kind="rule", payload=None)
    row = _log(store, lost)
    assert row["status"] == "failed" and row["last_error"] == "no channel named 'nobody'"
    assert row["next_attempt_at"] is None
    # Odd input is cut and made printable rather than refused.
    odd = enqueue(store, channel="x" * 500, run_id="r" * 99, kind="\ud800" * 40,
                  payload={"\ud800": "\udfff"})
    row = _log(store, odd)
    assert len(row["channel"]) == 200 and len(row["run_id"]) == 40
    assert row["kind"] == "\ufffd" * 32 and row["payload"]["details"] == {"\ufffd": "\ufffd"}


def test_enqueue_in_a_transaction_commits_or_rolls_back_with_it(store: Store,
                                                                queue: Queue) -> None:
    run, _ = queue.submit({"name": "r", "command": ["true"]})
    store.put_channel("team", "webhook", "http://127.0.0.1:9/hook", None, "api")
    with store.transaction() as tx:
        kept = enqueue(tx, channel="team", run_id=run["id"], kind="status",
                       payload={"status": "failed"})
    assert _log(store, kept)["payload"]["run"]["name"] == "r"
    with pytest.raises(RuntimeError), store.transaction() as tx:
        gone = enqueue(tx, channel="team", run_id=run["id"], kind="status", payload={})
        raise RuntimeError("the caller's transaction fails")
    assert store.get_notifications([gone]) == []


def test_claims_are_never_shared(db_url: str, store: Store) -> None:
    """Eight claimers on two stores (two connection pools, as two server processes have)
    take every due row exactly once."""
    store.put_channel("team", "webhook", "http://127.0.0.1:9/hook", None, "api")
    ids = {enqueue(store, channel="team", run_id=None, kind="test", payload={}, at=1.0)
           for _ in range(120)}
    other = open_store(db_url, upgrade=False)
    got: list[list[int]] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def claimer(s: Store, n: int) -> None:
        start.wait()
        while True:
            rows = s.claim_notifications(10.0, 7, 1e12, f"claim-{n}")
            if not rows:
                return
            with lock:
                got.append([r["id"] for r in rows])

    threads = [threading.Thread(target=claimer, args=(store if i % 2 else other, i))
               for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    other.close()
    flat = [i for batch in got for i in batch]
    assert len(flat) == len(set(flat)) and set(flat) == ids
    assert all(r["attempts"] == 1 for r in store.get_notifications(sorted(ids)))
    # Held rows are due again only when their claim lapses, and only their holder records.
    row = store.get_notifications([min(ids)])[0]
    assert not store.finish_notification(row["id"], "someone-else", {"status": "delivered"})


def test_retries_until_the_receiver_answers_2xx(store: Store, queue: Queue,
                                                deliverer: Deliverer) -> None:
    run, _ = queue.submit({"name": "retried", "command": ["true"]})
    with Receiver(secret=SECRET, script=[500, 500]) as rec:
        store.put_channel("team", "webhook", rec.url, SECRET, "api")
        delivery = deliverer.enqueue(channel="team", run_id=run["id"], kind="rule",
                                     payload={"rule": "flat", "tag": "val_loss", "step": 9,
                                              "value": 0.5})
        row = wait_until(lambda: _settled(store, delivery), 60, "the delivery")
        got = rec.requests(delivery)
    assert row["status"] == "delivered" and row["attempts"] == 3
    assert row["last_error"] == "HTTP 500: receiver says 500"
    assert row["delivered_at"] is not None and row["next_attempt_at"] is None
    assert [r.answered for r in got] == [500, 500, 200]
    assert all(r.signature_ok for r in got)
    body = got[-1].json()
    assert body["delivery"] == delivery and body["kind"] == "rule"
    assert body["run"] == {"id": run["id"], "name": "retried", "project": "default",
                           "status": "queued", "url": f"https://runyard.example/runs/{run['id']}"}
    assert body["details"] == {"rule": "flat", "tag": "val_loss", "step": 9, "value": 0.5}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_dead_receivers_are_retried_then_failed_without_an_exception(
        store: Store, caplog: pytest.LogCaptureFixture) -> None:
    policy = Policy(timeout_s=0.5, max_attempts=2, backoff_s=0.05, backoff_max_s=0.1,
                    poll_s=0.05)
    d = Deliverer(store, policy)
    d.start()
    caplog.set_level(logging.INFO, "runyard")
    try:
        with Receiver(script=["hang", "hang"], hang_s=30) as slow:
            store.put_channel("slow", "webhook", slow.url, None, "api")
            store.put_channel("closed", "webhook", f"http://127.0.0.1:{free_port()}/x", None,
                              "api")
            store.put_channel("redirects", "webhook", slow.url.replace("hook", "r"), None,
                              "api")
            a = d.enqueue(channel="slow", run_id=None, kind="test", payload={})
            b = d.enqueue(channel="closed", run_id=None, kind="test", payload={})
            timed_out = wait_until(lambda: _settled(store, a), 60, "the slow delivery")
            refused = wait_until(lambda: _settled(store, b), 60, "the refused delivery")
            slow.default = 302
            c = d.enqueue(channel="redirects", run_id=None, kind="test", payload={})
            redirected = wait_until(lambda: _settled(store, c), 60, "the redirected one")
            assert len(slow.requests(c)) == 2  # not followed: the same URL each time
    finally:
        d.stop()
    assert (timed_out["status"], timed_out["attempts"]) == ("failed", 2)
    assert timed_out["last_error"] == "timed out (no complete answer within 0.5 s)"
    assert (refused["status"], refused["attempts"]) == ("failed", 2)
    assert refused["last_error"].startswith("could not connect")
    assert "127.0.0.1" not in refused["last_error"]  # the URL is never quoted
    assert (redirected["status"], redirected["attempts"]) == ("failed", 2)
    assert "redirects are not followed" in redirected["last_error"]
    assert not [r for r in caplog.records if r.exc_info], "an exception reached the log"


def test_a_deleted_channel_fails_its_pending_deliveries(store: Store) -> None:
    store.put_channel("gone", "webhook", "http://127.0.0.1:9/x", None, "api")
    delivery = enqueue(store, channel="gone", run_id=None, kind="test", payload={})
    assert store.delete_channel("gone") and not store.delete_channel("gone")
    d = Deliverer(store, FAST)
    d.start()
    try:
        row = wait_until(lambda: _settled(store, delivery), 60, "the delivery")
    finally:
        d.stop()
    assert (row["status"], row["attempts"]) == ("failed", 1)
    assert row["last_error"] == "channel 'gone' was deleted"


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_deliverers_on_postgresql_deliver_each_notification_once(db_url: str,
                                                                     store: Store) -> None:
    other = open_store(db_url, upgrade=False)
    a, b = Deliverer(store, FAST), Deliverer(other, FAST)
    with Receiver(secret=SECRET) as rec:
        store.put_channel("team", "webhook", rec.url, SECRET, "api")
        ids = [enqueue(store, channel="team", run_id=None, kind="test", payload={"n": i})
               for i in range(60)]
        a.start()
        b.start()
        try:
            wait_until(lambda: all(r["status"] == "delivered"
                                   for r in store.get_notifications(ids)), 60, "deliveries")
        finally:
            a.stop()
            b.stop()
            other.close()
        seen = [r.delivery for r in rec.requests()]
    assert sorted(seen, key=int) == [str(i) for i in ids]  # each once, none twice
    assert all(r.signature_ok for r in rec.requests())


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_slack_channel_gets_readable_text(store: Store, queue: Queue,
                                            deliverer: Deliverer) -> None:
    run, _ = queue.submit({"name": "nightly", "command": ["true"]})
    with Receiver() as rec:
        store.put_channel("chat", "slack", rec.url, None, "api")
        delivery = deliverer.enqueue(channel="chat", run_id=run["id"], kind="rule",
                                     payload={"rule": "<!here> & co", "tag": "loss",
                                              "step": 3, "value": float("inf")})
        wait_until(lambda: _settled(store, delivery), 60, "the delivery")
        (got,) = rec.requests(delivery)
    body: dict[str, Any] = got.json()
    assert set(body) == {"text"} and got.signature_ok is None
    # A rule named to ping everyone pings nobody: Slack's control characters are escaped.
    assert body["text"] == (f"*Runyard*: run <https://runyard.example/runs/{run['id']}|"
                            "nightly> in project default (now queued): rule &lt;!here&gt; "
                            "&amp; co fired: loss = Infinity at step 3")


def test_one_deadline_bounds_a_whole_attempt() -> None:
    """A receiver that sends a valid answer a byte at a time, each byte well within the
    per-read timeout, is cut off by the attempt's one deadline (else it would hold the
    delivery slot for as long as it likes)."""
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def trickle() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            for byte in answer:
                if stop.wait(0.1):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return

    threading.Thread(target=trickle, daemon=True).start()
    sender = Sender(1.0)
    try:
        error = sender.post(f"http://127.0.0.1:{listener.getsockname()[1]}/", b"{}", {})
    finally:
        stop.set()
        sender.close()
        listener.close()
    assert error == "timed out (no complete answer within 1 s)"

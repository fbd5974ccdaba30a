"""The rule engine on both databases: evaluation on ingest, state that survives a restart,
fire-once between two servers, and every action (docs/rules.md)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from runyard import errors
from runyard.models import Status
from runyard.queue import Queue
from runyard.rules.book import RuleBook
from runyard.rules.engine import Engine
from runyard.store import Store, open_store

from ..support.factories import caps, submit


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _engine(store: Store, clock: Clock | None = None) -> tuple[Queue, Engine]:
    clock = clock or Clock()
    queue = Queue(store, stale_after_s=600, clock=clock)
    engine = Engine(store, queue, book=RuleBook(store, cache_s=0), clock=clock).attach()
    return queue, engine


def _running(queue: Queue, rules: list[dict[str, Any]], **kw: Any) -> tuple[dict[str, Any],
                                                                            Any]:
    run = submit(queue, "ruled", rules=rules, **kw)
    queue.fleet.register(caps("box"))
    claim = queue.claim("box")
    assert claim is not None and claim.run["id"] == run["id"]
    queue.heartbeat(claim.attempt_id, claim.lease, running=True)
    return queue.store.get_run(run["id"]), claim  # type: ignore[return-value]


def _rule_events(store: Store, run_id: str) -> list[dict[str, Any]]:
    return [e for e in store.list_events(run_id, limit=1000) if e["kind"] == "rule"]


def test_nan_point_stops_the_run_with_reason_rule(store: Store) -> None:
    queue, engine = _engine(store)
    run, claim = _running(queue, [{"name": "diverged", "when": "nan", "tag": "loss",
                                   "then": ["stop", "no_retry"]}], max_attempts=3)
    engine.ingest_metrics(run, 1, [], [[s, 0.0, {"loss": 1.0 / (s + 1)}] for s in range(50)])
    assert store.get_run(run["id"])["status"] == "running"
    engine.ingest_metrics(run, 1, [{"step": 50, "tag": "loss", "value": "NaN"},
                                   {"step": 51, "tag": "loss", "value": "NaN"}], [])
    after = store.get_run(run["id"])
    assert after["status"] == "stopping" and after["stop_intent"] == "rule"
    assert after["no_retry"] and after["rule_hits"] == 1
    [hit] = _rule_events(store, run["id"])
    assert hit["details"] == {"rule": "diverged", "source": "run", "when": "nan", "tag": "loss",
                              "step": 50, "value": "NaN", "attempt": 1,
                              "actions": ["stop", "no_retry"]}
    order = queue.heartbeat(claim.attempt_id, claim.lease)
    assert order.stop and order.intent == "rule"
    ended = queue.fail(claim.attempt_id, claim.lease, reason="stopped", exit_code=-15)
    assert (ended["status"], ended["termination_reason"]) == ("stopped", "rule")
    # Re-sending the NaN fires nothing more (the rule fired in this attempt).
    assert len(_rule_events(store, run["id"])) == 1
    [described] = engine.describe(store.get_run(run["id"]))  # type: ignore[arg-type]
    assert described["source"] == "run" and described["hits"] == 1
    assert described["last_hit"]["step"] == 50


def test_plateau_state_survives_a_new_store_and_replays_never_count(db_url: str) -> None:
    rule = {"name": "flat", "when": "plateau", "tag": "val_loss", "patience": 3,
            "then": ["stop"]}
    first = open_store(db_url, upgrade=False)
    queue, engine = _engine(first)
    run, _ = _running(queue, [rule])
    engine.ingest_metrics(run, 1, [], [[0, 0.0, {"val_loss": 1.0}], [1, 0.0, {"val_loss": 0.5}],
                                       [2, 0.0, {"val_loss": 0.6}]])
    # The same batch again (an agent that did not hear the answer): counted once.
    engine.ingest_metrics(run, 1, [], [[2, 0.0, {"val_loss": 0.6}]])
    first.close()
    second = open_store(db_url, upgrade=False)
    try:
        queue2, engine2 = _engine(second)
        states = second.rule_states(run["id"])
        assert states["run:flat"]["count"] == 1 and states["run:flat"]["best"] == 0.5
        engine2.ingest_metrics(run, 1, [], [[3, 0.0, {"val_loss": 0.7}]])
        assert second.get_run(run["id"])["status"] == "running"
        engine2.ingest_metrics(run, 1, [], [[4, 0.0, {"val_loss": 0.55}],
                                            [5, 0.0, {"val_loss": 0.9}]])
        assert second.get_run(run["id"])["status"] == "stopping"
        [hit] = _rule_events(second, run["id"])
        assert (hit["details"]["step"], hit["details"]["best"]) == (4, 0.5)
    finally:
        second.close()


def test_threshold_on_snapshots_until_points_arrive(store: Store) -> None:
    queue, engine = _engine(store)
    run, claim = _running(queue, [{"name": "high", "when": "threshold", "tag": "loss",
                                   "op": ">", "value": 10, "for_points": 2,
                                   "then": ["fail"]}])
    snap = {"schema": "runyard.progress/v1", "updated_at": "2026-01-01T00:00:00Z"}
    queue.record_progress(claim.attempt_id, claim.lease, {**snap, "step": 1,
                                                          "metrics": {"loss": 11}})
    queue.record_progress(claim.attempt_id, claim.lease, {**snap, "step": 2,
                                                          "metrics": {"loss": 12}})
    after = store.get_run(run["id"])
    assert after["status"] == "stopping" and after["stop_intent"] == "fail"
    [hit] = _rule_events(store, run["id"])
    assert hit["details"]["from"] == "snapshot" and hit["details"]["consecutive"] == 2
    ended = queue.fail(claim.attempt_id, claim.lease, reason="stopped", exit_code=-15)
    assert (ended["status"], ended["termination_reason"]) == ("failed", "rule")


def test_log_rule_with_no_retry_keeps_a_failure_from_being_retried(store: Store) -> None:
    queue, engine = _engine(store)
    run, claim = _running(queue, [{"name": "oom", "when": "log",
                                   "pattern": "CUDA out of memory", "then": ["no_retry"]}],
                          max_restarts_on_errors=2)
    engine.on_logs(run, 1, [{"stream": "stdout", "offset": 0, "data": "epoch 1\n"}])
    assert not store.get_run(run["id"])["no_retry"]
    engine.on_logs(run, 1, [{"stream": "stderr", "offset": 0,
                             "data": "Traceback\nRuntimeError: CUDA out of memory.\n"}])
    [hit] = _rule_events(store, run["id"])
    assert hit["details"]["line"] == "RuntimeError: CUDA out of memory."
    ended = queue.fail(claim.attempt_id, claim.lease, reason="user_error", exit_code=1)
    assert ended["status"] == "failed" and ended["attempt"] == 1


def test_status_rules_tell_each_change_they_watch(store: Store) -> None:
    queue, engine = _engine(store)
    run, claim = _running(queue, [{"name": "ended", "when": "status",
                                   "status": ["completed", "lost"],
                                   "then": ["notify:team"]}])
    queue.complete(claim.attempt_id, claim.lease)
    [hit] = _rule_events(store, run["id"])
    assert hit["details"]["matched"] == "completed" and hit["details"]["notify"] == ["team"]
    assert store.get_run(run["id"])["rule_hits"] == 1
    # The hit's notification is in the outbox, committed with it (no channel "team" exists
    # yet, so it is a failed delivery that says why, never an error in the lifecycle).
    [note] = store.list_notifications(run_id=run["id"])
    assert (note["channel"], note["kind"], note["status"]) == ("team", "status", "failed")
    assert note["payload"]["details"]["rule"] == "ended" and "team" in note["last_error"]


def test_a_hit_queues_its_notification_for_a_channel(store: Store) -> None:
    store.put_channel("team", "webhook", "http://127.0.0.1:9/hook", None, "api")
    queue, engine = _engine(store)
    run, _ = _running(queue, [{"name": "diverged", "when": "nan", "tag": "loss",
                               "then": ["notify:team"]}])
    engine.ingest_metrics(run, 1, [{"step": 7, "tag": "loss", "value": "NaN"}], [])
    [note] = store.list_notifications(run_id=run["id"])
    assert (note["channel"], note["kind"], note["status"]) == ("team", "rule", "pending")
    hit = note["payload"]["details"]
    assert (hit["rule"], hit["step"]) == ("diverged", 7)
    assert store.get_run(run["id"])["status"] == "running"


def test_a_checkpoint_is_asked_for_before_the_same_hit_stops_the_run(store: Store) -> None:
    queue, engine = _engine(store)
    run, claim = _running(queue, [{"name": "high", "when": "threshold", "tag": "loss",
                                   "op": ">", "value": 10, "then": ["checkpoint", "stop"]}])
    engine.ingest_metrics(run, 1, [{"step": 3, "tag": "loss", "value": 11.0}], [])
    after = store.get_run(run["id"])
    assert after["status"] == "stopping" and after["checkpoint_requested_at"] is not None
    seen = [(e["kind"], e["status"]) for e in store.list_events(run["id"], limit=100)]
    assert seen[-3:] == [("rule", "running"), ("checkpoint_requested", "running"),
                         ("status", "stopping")]
    order = queue.heartbeat(claim.attempt_id, claim.lease)
    assert order.stop and order.checkpoint


def test_stalled_and_runtime_rules_on_the_sweep(store: Store) -> None:
    clock = Clock()
    queue, engine = _engine(store, clock)
    run, claim = _running(queue, [
        {"name": "stuck", "when": "stalled", "after_s": 60, "then": ["notify:team"]},
        {"name": "long", "when": "runtime", "max_s": 500, "then": ["stop"]}])
    snap = {"schema": "runyard.progress/v1", "updated_at": "2026-01-01T00:00:00Z"}
    queue.record_progress(claim.attempt_id, claim.lease, {**snap, "step": 1})
    clock.now += 30
    assert engine.sweep() == 0
    clock.now += 61
    assert engine.sweep() == 1
    assert engine.sweep() == 0  # once per stall
    queue.record_progress(claim.attempt_id, claim.lease, {**snap, "step": 2})
    clock.now += 61
    assert engine.sweep() == 1  # a new stall, at a new step
    clock.now += 400
    assert engine.sweep() == 1  # the runtime rule (the stall at step 2 told already)
    assert store.get_run(run["id"])["status"] == "stopping"
    names = [e["details"]["rule"] for e in _rule_events(store, run["id"])]
    assert names == ["stuck", "stuck", "long"]


def test_project_rules_watch_their_scope_and_owners(store: Store) -> None:
    queue, engine = _engine(store)
    store.add_rule("vision", "diverged", {"name": "diverged", "when": "nan", "then": ["stop"]},
                   owner=None, created_by="admin")
    store.add_rule("vision", "mine", {"name": "mine", "when": "nan", "then": []},
                   owner="alice", created_by="alice")
    store.add_rule("", "everywhere", {"name": "everywhere", "when": "status",
                                      "status": ["failed"], "then": []},
                   owner=None, created_by="admin")
    with pytest.raises(errors.Conflict):
        store.add_rule("vision", "mine", {"name": "mine", "when": "nan"}, owner=None,
                       created_by="admin")
    run, _ = queue.submit({"name": "b", "command": ["x"], "project": "vision"}, owner="bob")
    names = {e.rule.name: e.source for e in engine.book.for_run(run).all}
    assert names == {"diverged": "project", "everywhere": "server"}
    run, _ = queue.submit({"name": "a", "command": ["x"], "project": "vision",
                           "rules": [{"name": "diverged", "when": "nan", "tag": "loss"}]},
                          owner="alice")
    got = {e.rule.name: (e.source, e.key) for e in engine.book.for_run(run).all}
    assert got["diverged"] == ("run", "run:diverged")  # the run's own replaces the project's
    assert got["mine"][0] == "project" and "everywhere" in got
    rid = store.list_rules("vision")[0]["id"]
    assert store.delete_rule(rid) and not store.delete_rule(rid)


def _pg_only(db_url: str) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("two servers share one database on PostgreSQL")


@pytest.fixture
def two_stores(db_url: str) -> Iterator[tuple[Store, Store]]:
    _pg_only(db_url)
    a, b = open_store(db_url, upgrade=False), open_store(db_url, upgrade=False)
    yield a, b
    a.close()
    b.close()


def test_two_servers_ingesting_the_same_points_fire_once(
        two_stores: tuple[Store, Store]) -> None:
    a, b = two_stores
    queue_a, engine_a = _engine(a)
    _, engine_b = _engine(b)
    run, _ = _running(queue_a, [
        {"name": "diverged", "when": "nan", "tag": "loss", "then": ["stop"]},
        {"name": "high", "when": "threshold", "tag": "acc", "op": "<", "value": 0.1,
         "for_points": 20, "then": []}])
    rows = [[s, 0.0, {"loss": 0.5 if s < 150 else "NaN", "acc": 0.05}] for s in range(200)]
    barrier = threading.Barrier(2)
    failures: list[BaseException] = []

    def send(engine: Engine) -> None:
        try:
            barrier.wait()
            for lo in range(0, 200, 10):  # both send every batch, interleaved
                engine.ingest_metrics(run, 1, [], rows[lo:lo + 10])
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=send, args=(e,)) for e in (engine_a, engine_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not failures, failures
    hits = _rule_events(a, run["id"])
    assert sorted(h["details"]["rule"] for h in hits) == ["diverged", "high"]
    assert {h["details"]["rule"]: h["details"]["step"] for h in hits} == {"diverged": 150,
                                                                          "high": 19}
    assert a.get_run(run["id"])["rule_hits"] == 2
    assert a.get_run(run["id"])["status"] == Status.STOPPING.value

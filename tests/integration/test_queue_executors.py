"""Executors are kinds of agent: a worker claims only the runs of its own executor, on both
databases, and explain says when no agent of a run's kind is there (docs/executors.md)."""

from __future__ import annotations

from runyard import models
from runyard.queue import Queue

from ..support.factories import caps, submit


def test_a_local_agent_never_claims_a_slurm_run(queue: Queue) -> None:
    queue.fleet.register(caps("box", slots=10))
    slurm = submit(queue, "on-slurm", executor="slurm")
    fleet = submit(queue, "on-fleet")
    got = []
    while (c := queue.claim("box")) is not None:
        got.append(c.run["id"])
    assert got == [fleet["id"]]
    assert queue.store.get_run(slurm["id"])["status"] == "queued"


def test_a_slurm_agent_claims_only_slurm_runs_in_claim_order(queue: Queue) -> None:
    queue.fleet.register(caps("login", slots=10, executor="slurm", nodes=4))
    # Many fleet runs ahead of it in the queue: the slurm agent steps over all of them.
    for i in range(30):
        submit(queue, f"fleet-{i}", priority=5)
    low = submit(queue, "slurm-low", executor="slurm")
    high = submit(queue, "slurm-high", executor="slurm", priority=1)
    wide = submit(queue, "slurm-wide", executor="slurm", nodes=4)
    too_wide = submit(queue, "slurm-too-wide", executor="slurm", nodes=5)
    got = []
    while (c := queue.claim("login")) is not None:
        got.append(c.run["id"])
    assert got == [high["id"], low["id"], wide["id"]]
    assert queue.store.get_run(too_wide["id"])["status"] == "queued"


def test_claims_of_both_kinds_in_one_batch(queue: Queue) -> None:
    queue.fleet.register(caps("box", slots=5))
    queue.fleet.register(caps("login", slots=5, executor="slurm"))
    slurm = [submit(queue, f"s{i}", executor="slurm") for i in range(3)]
    fleet = [submit(queue, f"f{i}") for i in range(3)]
    answers = queue.claimer.serve([
        *(queue_ask(h) for h in ("login", "box") * 3)])
    by_host: dict[str, list[str]] = {"login": [], "box": []}
    for host, got in zip(("login", "box") * 3, answers, strict=True):
        assert got is not None and not isinstance(got, BaseException)
        by_host[host].append(got.run["id"])
    assert by_host == {"login": [r["id"] for r in slurm], "box": [r["id"] for r in fleet]}


def queue_ask(host: str):  # type: ignore[no-untyped-def]
    from runyard import claiming

    return claiming.Ask(host, None, "test")


def test_explain_says_no_agent_of_the_kind_is_connected(queue: Queue) -> None:
    queue.fleet.register(caps("box", slots=2))
    run = submit(queue, "on-slurm", executor="slurm")
    out = queue.explain(run["id"])
    assert out["summary"] == "no slurm agent is connected"
    (box,) = out["workers"]
    assert box["executor"] == "local"
    assert box["unmet"] == ["executor: the run needs a slurm agent, box is a local agent"]

    # Once a slurm agent is there, the usual explanation.
    queue.fleet.register(caps("login", executor="slurm"))
    out = queue.explain(run["id"])
    assert out["summary"].startswith("eligible on login;")

    # A slurm agent gone silent counts as not connected.
    later = Queue(queue.store, stale_after_s=60, clock=lambda: queue.clock() + 3600)
    later.fleet.register(caps("box", slots=2))
    assert later.explain(run["id"])["summary"] == "no slurm agent is connected"

    # And the fleet's runs, where only a slurm agent is registered.
    fleet_run = submit(queue, "on-fleet")
    with queue.store.transaction() as tx:
        tx.delete_idle_workers(host_id="box")
    assert queue.explain(fleet_run["id"])["summary"] == "no local agent is connected"


def test_capabilities_executor_and_nodes_are_checked() -> None:
    import pytest

    from runyard import errors

    for bad, field in (({"executor": "Slurm!"}, "capabilities.executor"),
                       ({"executor": 3}, "capabilities.executor"),
                       ({"nodes": 0}, "capabilities.nodes")):
        with pytest.raises(errors.ValidationError) as exc:
            models.Capabilities.from_dict({"host_id": "h", **bad})
        assert exc.value.field == field
    assert models.run_executor_served("local") == "agent"
    assert models.run_executor_served("slurm") == "slurm"


def test_a_claim_hands_out_an_attempt_credential_kept_as_a_hash(queue: Queue) -> None:
    from runyard import claiming

    queue.fleet.register(caps("login", slots=4, executor="slurm"))
    runs = [submit(queue, f"s{i}", executor="slurm") for i in range(2)]
    got = [queue.claim("login"), queue.claim("login")]
    tokens = set()
    for run, claim in zip(runs, got, strict=True):
        assert claim is not None and claim.run["id"] == run["id"]
        token = claim.attempt_token
        assert token is not None and token.startswith("rya_") and len(token) > 40
        tokens.add(token)
        row = queue.store.attempt_by_token_hash(claiming.attempt_token_hash(token))
        assert row is not None and row["id"] == claim.attempt_id and row["active"]
        stored = queue.store.get_attempt(claim.attempt_id)
        assert stored is not None and token not in {str(v) for v in stored.values()}
    assert len(tokens) == 2
    assert queue.store.attempt_by_token_hash("0" * 64) is None

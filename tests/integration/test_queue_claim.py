"""Claiming: eligibility, host policy, slots, order, prefer_cuda, drain, explain."""

from __future__ import annotations

import time
from collections.abc import Sequence

import pytest

from runyard import claiming, defaults, eligibility, errors, models
from runyard.queue import Queue

from ..support.factories import caps, submit


def test_unregistered_worker_is_refused(queue: Queue) -> None:
    with pytest.raises(errors.NotFound, match="not registered"):
        queue.claim("ghost")


def test_constraints_route_runs_to_eligible_workers_only(queue: Queue) -> None:
    queue.fleet.register(caps("cpu", ram=8, cpus=4, slots=10))
    queue.fleet.register(caps("gpu", ram=64, cpus=32, gpus=2, vram=24, slots=10,
                               labels={"zone": "a"}))
    cuda = submit(queue, "cuda", require_cuda=True)
    two = submit(queue, "two-gpus", gpus=2)
    three = submit(queue, "three-gpus", gpus=3)
    vram = submit(queue, "big-vram", min_vram_gib=40)
    ram = submit(queue, "ram", min_ram_gib=32)
    cpus = submit(queue, "cpus", min_cpus=16)
    pinned = submit(queue, "pinned", allowed_hosts=["cp*"])
    label = submit(queue, "label", labels={"zone": "a"})
    anywhere = submit(queue, "anywhere")

    got: dict[str, str] = {}
    for host in ("cpu", "gpu"):
        while (c := queue.claim(host)) is not None:
            got[c.run["name"]] = host
    assert got == {"cuda": "gpu", "two-gpus": "gpu", "ram": "gpu", "cpus": "gpu",
                   "pinned": "cpu", "label": "gpu", "anywhere": "cpu"}
    for run in (three, vram):
        assert queue.store.get_run(run["id"])["status"] == "queued"
    del cuda, two, ram, cpus, pinned, label, anywhere


def test_host_policy_allow_and_deny(queue: Queue) -> None:
    queue.fleet.register(caps("box", slots=10))
    queue.fleet.set_host_policies([models.HostPolicy(host_id="box", allow=("resnet-*", "bert-*"),
                                               deny=("bert-large*",))])
    submit(queue, "resnet-50")
    submit(queue, "bert-large")
    submit(queue, "gpt-2")
    submit(queue, "other", blueprint=None)
    names = []
    while (c := queue.claim("box")) is not None:
        names.append(c.run["name"])
    assert names == ["resnet-50"]
    # Policies update in place: widening allow lets the waiting runs through.
    queue.fleet.set_host_policies([models.HostPolicy(host_id="box", allow=("*",))])
    while (c := queue.claim("box")) is not None:
        names.append(c.run["name"])
    assert sorted(names) == ["bert-large", "gpt-2", "other", "resnet-50"]


def test_policy_matches_blueprint_names(queue: Queue) -> None:
    from runyard.store.schema import blueprints

    with queue.store.transaction() as tx:
        tx.conn.execute(blueprints.insert().values(  # type: ignore[attr-defined]
            name="mlp", command=["python", "mlp.py"], config_schema=None, defaults={},
            updated_at=0.0))
    queue.fleet.register(caps("box"))
    queue.fleet.set_host_policies([models.HostPolicy(host_id="box", allow=("mlp",))])
    run, _ = queue.submit({"name": "some-job", "blueprint": "mlp"})
    c = queue.claim("box")
    assert c is not None and c.run["id"] == run["id"]


def test_slots_limit_concurrent_attempts(queue: Queue) -> None:
    queue.fleet.register(caps("w", slots=2))
    for i in range(4):
        submit(queue, f"r{i}")
    a, b = queue.claim("w"), queue.claim("w")
    assert a is not None and b is not None
    assert queue.claim("w") is None
    queue.complete(a.attempt_id, a.lease)
    assert queue.claim("w") is not None
    # The operator's policy overrides what the agent reports, and free_slots narrows it.
    queue.fleet.set_host_policies([models.HostPolicy(host_id="w", slots=5)])
    assert queue.claim("w", free_slots=0) is None
    assert queue.claim("w") is not None


def test_priority_then_age(queue: Queue) -> None:
    queue.fleet.register(caps("w", slots=10))
    submit(queue, "old-low")
    submit(queue, "high", priority=5)
    submit(queue, "new-low")
    submit(queue, "higher", priority=9)
    order = []
    while (c := queue.claim("w")) is not None:
        order.append(c.run["name"])
    assert order == ["higher", "high", "old-low", "new-low"]


def test_ineligible_head_does_not_block_the_queue(store) -> None:  # type: ignore[no-untyped-def]
    q = Queue(store, claim_scan=4)  # small pages so the scan must go past several
    q.fleet.register(caps("w", slots=1))
    for i in range(10):
        submit(q, f"pinned-{i}", allowed_hosts=["elsewhere"], priority=1)
    target = submit(q, "mine")
    c = q.claim("w")
    assert c is not None and c.run["id"] == target["id"]


def test_prefer_cuda_goes_to_cuda_when_free_else_cpu(queue: Queue) -> None:
    queue.fleet.register(caps("cpu", slots=4))
    queue.fleet.register(caps("gpu", gpus=1, slots=1))
    first = submit(queue, "p1", prefer_cuda=True)
    second = submit(queue, "p2", prefer_cuda=True)
    assert queue.claim("cpu") is None  # the GPU host is free: leave it for the GPU
    g = queue.claim("gpu")
    assert g is not None and g.run["id"] == first["id"]
    c = queue.claim("cpu")  # the GPU host is full now: the CPU may take it
    assert c is not None and c.run["id"] == second["id"]


def test_drained_worker_claims_nothing(queue: Queue) -> None:
    queue.fleet.register(caps("w"))
    submit(queue)
    queue.fleet.set_drained("w", True)
    assert queue.claim("w") is None
    queue.fleet.register(caps("w"))  # an agent restart keeps the drain
    assert queue.claim("w") is None
    queue.fleet.set_drained("w", False)
    assert queue.claim("w") is not None
    with pytest.raises(errors.NotFound):
        queue.fleet.set_drained("nope", True)


def test_explain_names_the_failing_constraint_per_worker(queue: Queue) -> None:
    queue.fleet.register(caps("pi", ram=4, cpus=4))
    queue.fleet.register(caps("gpu", ram=64, gpus=1, vram=12))
    run = submit(queue, "bert-large", require_cuda=True, min_vram_gib=40, min_ram_gib=8)
    out = queue.explain(run["id"])
    by_host = {w["host_id"]: w for w in out["workers"]}
    assert by_host["pi"]["unmet"] == ["require_cuda: pi has no CUDA GPU",
                                      "min_ram_gib: needs 8 GiB, pi has 4 GiB"]
    assert by_host["gpu"]["unmet"] == ["min_vram_gib: needs 40 GiB per GPU, gpu has 12 GiB"]
    assert out["summary"] == "no registered worker can ever serve this run"

    ok = submit(queue, "small")
    queue.fleet.set_drained("pi", True)
    explained = queue.explain(ok["id"])
    assert explained["summary"] == "eligible on gpu, pi; waiting for its turn (priority, then age)"
    assert {w["host_id"]: w["state"] for w in explained["workers"]}["pi"] == ["drained"]
    with pytest.raises(errors.NotFound):
        queue.explain("nope")


def test_capabilities_bad_input(queue: Queue) -> None:
    with pytest.raises(errors.ValidationError, match="capabilities.ram_gib: must not be negative"):
        models.Capabilities.from_dict({"host_id": "h", "ram_gib": -1})
    with pytest.raises(errors.ValidationError, match="capabilities.host_id"):
        models.Capabilities.from_dict({"host_id": "../etc"})
    with pytest.raises(errors.ValidationError, match="capabilities.slots: must be at least 1"):
        models.Capabilities.from_dict({"host_id": "h", "slots": 0})
    assert queue.store.list_workers() == []


def test_label_prefilter_leaves_out_runs_for_other_label_sets(queue: Queue) -> None:
    from runyard.store.base import WorkerFilter

    for i in range(30):  # a head of runs only another pool can take
        submit(queue, f"pool-a-{i}", labels={"pool": "a"})
    mine = submit(queue, "pool-b-ssd", labels={"pool": "b", "disk": "ssd"})
    free = submit(queue, "free")
    wf = WorkerFilter(has_cuda=False, gpus=0, max_vram_gib=0, ram_gib=16, cpus=8,
                      labels_keys=eligibility.served_labels_keys(
                          {"pool": "b", "disk": "ssd", "zone": "1"}))
    with queue.store.transaction() as tx:
        seen = [r["id"] for r in tx.claim_candidates(wf, None, 100)]
    assert seen == [mine["id"], free["id"]]
    # Without the label filter (a worker with too many labels) SQL returns all of them.
    assert eligibility.served_labels_keys({f"k{i}": "v" for i in range(5)}) is None
    with queue.store.transaction() as tx:
        assert len(tx.claim_candidates(WorkerFilter(has_cuda=False, gpus=0, max_vram_gib=0,
                                                    ram_gib=16, cpus=8), None, 100)) == 32


def test_labels_match_through_policy_and_many_labels_and_new_constraints(queue: Queue) -> None:
    many = {f"k{i}": "v" for i in range(6)}  # past the SQL prefilter: Python decides alone
    queue.fleet.register(caps("many", labels=many, slots=10))
    queue.fleet.register(caps("plain", slots=10))
    queue.fleet.set_host_policies([models.HostPolicy(host_id="plain", labels={"pool": "gold"})])
    gold = submit(queue, "gold", labels={"pool": "gold"})
    k3 = submit(queue, "k3", labels={"k3": "v", "k5": "v"})
    wrong = submit(queue, "wrong", labels={"k3": "other"})
    assert [c.run["name"] for c in iter(lambda: queue.claim("many"), None)] == ["k3"]
    assert [c.run["name"] for c in iter(lambda: queue.claim("plain"), None)] == ["gold"]
    assert queue.store.get_run(wrong["id"])["status"] == "queued"
    # New resources on restart move the run to the workers they name.
    queue.cancel(wrong["id"])
    queue.restart(wrong["id"], constraints={"labels": {"pool": "gold"}})
    assert queue.store.get_run(wrong["id"])["labels_key"] == '{"pool":"gold"}'
    assert queue.claim("many") is None
    got = queue.claim("plain")
    assert got is not None and got.run["id"] == wrong["id"]
    del gold, k3


# A batch of claims (what concurrent claims are combined into) must give each claim what it
# would have got alone, in arrival order. These call the batch directly to fix its contents.

def test_a_batch_counts_its_own_claims_against_slots(queue: Queue) -> None:
    queue.fleet.register(caps("one", slots=1))
    queue.fleet.register(caps("two", slots=2))
    runs = [submit(queue, f"r{i}") for i in range(6)]
    got = queue.claimer.serve([_ask("one"), _ask("one"), _ask("two"), _ask("two"),
                              _ask("two"), _ask("two", free_slots=5)])
    names = [c.run["name"] if c is not None else None for c in got]  # type: ignore[union-attr]
    assert names == ["r0", None, "r1", "r2", None, None]
    for c in got:
        if c is not None:
            assert not isinstance(c, BaseException)
            stored = queue.store.get_run(c.run["id"])
            assert stored["status"] == "claimed" and stored["attempt_id"] == c.attempt_id
            assert stored["attempt"] == c.attempt == 1 and c.run["attempt"] == 1
            assert [e["status"] for e in queue.store.list_events(c.run["id"])] == [
                "queued", "claimed"]
    assert queue.store.get_run(runs[3]["id"])["status"] == "queued"


def test_a_batch_honours_free_slots_reported_by_the_agent(queue: Queue) -> None:
    queue.fleet.register(caps("w", slots=8))
    for i in range(4):
        submit(queue, f"r{i}")
    got = queue.claimer.serve([_ask("w", free_slots=2)] * 3)
    assert [c is not None for c in got] == [True, True, False]


def test_an_unknown_host_fails_only_its_own_claim(queue: Queue) -> None:
    queue.fleet.register(caps("w", slots=2))
    submit(queue, "r0")
    got = queue.claimer.serve([_ask("ghost"), _ask("w")])
    assert isinstance(got[0], errors.NotFound) and "ghost" in str(got[0])
    assert got[1] is not None and not isinstance(got[1], BaseException)


def test_prefer_cuda_in_one_batch_sees_the_batch_fill_the_gpu(queue: Queue) -> None:
    queue.fleet.register(caps("cpu", slots=4))
    queue.fleet.register(caps("gpu", gpus=1, slots=1))
    first = submit(queue, "p1", prefer_cuda=True)
    second = submit(queue, "p2", prefer_cuda=True)
    # The CPU host asks first: the GPU host is free, so the preferring runs wait for it;
    # then the GPU takes one, and a later CPU claim of the same batch may take the other.
    got = queue.claimer.serve([_ask("cpu"), _ask("gpu"), _ask("cpu")])
    assert got[0] is None
    assert got[1].run["id"] == first["id"]  # type: ignore[union-attr]
    assert got[2].run["id"] == second["id"]  # type: ignore[union-attr]


def test_concurrent_claims_are_combined_and_each_run_claimed_once(queue: Queue) -> None:
    import threading

    for h in range(8):
        queue.fleet.register(caps(f"h{h}", slots=100))
    for i in range(200):
        submit(queue, f"r{i}")
    sizes: list[int] = []

    class Counting(claiming.Claimer):
        def serve(self, asks: Sequence[claiming.Ask]) -> list[claiming.Claim | None |
                                                             BaseException]:
            sizes.append(len(asks))
            return super().serve(asks)

    claimer = Counting(queue.store, lease_s=60, claim_scan=defaults.CLAIM_SCAN,
                       clock=time.time)
    claimed: list[str] = []

    def worker(h: int) -> None:
        while (c := claimer.claim(claiming.Ask(f"h{h}", None, "system"))) is not None:
            claimed.append(c.run["id"])

    threads = [threading.Thread(target=worker, args=(h,)) for h in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(claimed) == len(set(claimed)) == 200
    assert max(sizes) > 1


def _ask(host: str, free_slots: int | None = None) -> claiming.Ask:
    return claiming.Ask(host, free_slots, "system")


def test_a_claim_write_finding_the_run_changed_refuses_the_whole_batch(queue: Queue) -> None:
    from runyard.store.base import Grant

    queue.fleet.register(caps("w", slots=4))
    a, b = submit(queue, "a"), submit(queue, "b")
    queue.restart(b["id"], constraints={"min_cpus": 1})  # a queued run's event_seq moves
    stale = queue.store.get_run(b["id"])["event_seq"] - 1

    def grant(run_id: str, seq: int) -> Grant:
        return Grant(run_id=run_id, attempt_id=f"att-{run_id}", number=1, seq=seq + 1,
                     host_id="w", lease="l" * 32, lease_expires_at=2e9, at=1e9, actor="t")

    with pytest.raises(errors.Conflict, match="1 of 2 runs changed"):
        with queue.store.transaction() as tx:
            tx.claim_runs([grant(a["id"], 1), grant(b["id"], stale)])
    for run in (a, b):  # nothing was written
        stored = queue.store.get_run(run["id"])
        assert stored["status"] == "queued" and stored["attempt"] == 0
        assert queue.store.list_attempts(run["id"]) == []

"""Rules benchmark: what rules cost metric ingest, and how soon a NaN stops its run.

    python benchmarks/rules_bench.py [--rounds 9] [--batches 10] [--samples 20]
                                     [--heartbeat-s 1.0] [--db URL] [--only ingest|latency]

Starts a real ``runyard server`` (embedded SQLite, or ``--db``) and prints one JSON object:

* ``ingest``: points/s of 1,000-row batches (5 tags a row) into one run with 5 rules on
  those tags (none of which fires) and into one with none, on the same server; rounds
  alternate which run goes first; the medians, and the median of each round's ratio
  (``ratio``, target: at least 0.9).
* ``latency``: for ``--samples`` runs with a NaN rule that stops them, the seconds from
  sending the NaN point to the heartbeat answer that carries the stop order, under a
  simulated agent beating every ``--heartbeat-s`` (its phase against the NaN is random);
  p50 and p95 (target: p95 at most 1 s plus the heartbeat interval).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import common

BATCH = 1000
TAGS = ("loss", "val_loss", "acc", "lr", "grad_norm")
#: Five rules on the batch's tags that never fire on its values.
RULES: list[dict[str, Any]] = [
    {"name": "any-nan", "when": "nan", "tag": "*", "then": ["stop"]},
    {"name": "loss-nan", "when": "nan", "tag": "loss", "then": ["stop", "no_retry"]},
    {"name": "exploded", "when": "threshold", "tag": "loss", "op": ">", "value": 1e9,
     "for_points": 3, "then": ["stop"]},
    {"name": "collapsed", "when": "threshold", "tag": "acc", "op": "<", "value": -1,
     "then": ["notify:team"]},
    {"name": "flat", "when": "plateau", "tag": "val_loss", "patience": 1_000_000,
     "min_delta": "0.1%", "then": ["stop"]},
]


def _rows(start: int) -> list[list[Any]]:
    return [[s, None, {"loss": 1.0 / (s + 1), "val_loss": 2.0 - s * 1e-7, "acc": 0.5,
                       "lr": 0.001, "grad_norm": 1.5}] for s in range(start, start + BATCH)]


def measure_ingest(server: common.Server, rounds: int, batches: int) -> dict[str, Any]:
    runs = {"rules": server.local_run("with-rules", RULES),
            "none": server.local_run("without", None)}
    next_step = {k: 0 for k in runs}
    rates: dict[str, list[float]] = {k: [] for k in runs}

    def one(kind: str) -> float:
        rid, aid, lease = runs[kind]
        bodies = []
        for _ in range(batches):
            bodies.append(json.dumps({"attempt_id": aid, "lease": lease,
                                      "rows": _rows(next_step[kind])}).encode())
            next_step[kind] += BATCH
        t = time.perf_counter()
        for body in bodies:
            server.http.post(f"/v1/runs/{rid}/metrics", content=body,
                             headers={"Content-Type": "application/json"}).raise_for_status()
        return batches * BATCH * len(TAGS) / (time.perf_counter() - t)

    one("rules"), one("none")  # warm-up
    for r in range(rounds):
        order = ("rules", "none") if r % 2 == 0 else ("none", "rules")
        for kind in order:
            rates[kind].append(one(kind))
    detail = server.http.get(f"/v1/runs/{runs['rules'][0]}").json()
    if detail["rule_hits"]:
        raise RuntimeError("a benchmark rule fired; the comparison would be unfair")
    med = {k: statistics.median(v) for k, v in rates.items()}
    # Each round's two runs went one after the other: their ratio cancels most of the drift
    # of a shared machine's load, which the medians of each side keep.
    paired = statistics.median(a / b for a, b in zip(rates["rules"], rates["none"],
                                                     strict=True))
    return {"points_per_request": BATCH * len(TAGS), "rounds": rounds,
            "with_5_rules_points_per_s": round(med["rules"]),
            "without_rules_points_per_s": round(med["none"]),
            "ratio_of_medians": round(med["rules"] / med["none"], 3),
            "ratio": round(paired, 3), "target_ratio": 0.9,
            "rounds_points_per_s": {k: [round(x) for x in v] for k, v in rates.items()}}


def measure_latency(server: common.Server, samples: int, heartbeat_s: float) -> dict[str, Any]:
    rnd = random.Random(18)
    rule = [{"name": "diverged", "when": "nan", "tag": "loss", "then": ["stop"]}]
    latencies = []
    for i in range(samples):
        rid, aid, lease = server.local_run(f"nan-{i}", rule)
        sent = threading.Event()
        seen: list[float] = []

        def agent(aid: str = aid, lease: str = lease, sent: threading.Event = sent,
                  seen: list[float] = seen) -> None:
            with server.client() as c:
                while True:
                    answer = c.post(f"/v1/attempts/{aid}/heartbeat",
                                    json={"lease": lease}).json()
                    if answer.get("stop") and sent.is_set():
                        seen.append(time.perf_counter())
                        return
                    time.sleep(heartbeat_s)

        beat = threading.Thread(target=agent)
        beat.start()
        time.sleep(rnd.uniform(0, heartbeat_s))
        body = {"attempt_id": aid, "lease": lease,
                "rows": [[0, None, {"loss": 0.5}], [1, None, {"loss": "NaN"}]]}
        t_sent = time.perf_counter()
        sent.set()
        server.http.post(f"/v1/runs/{rid}/metrics", json=body).raise_for_status()
        beat.join(60 + heartbeat_s * 2)
        if not seen:
            raise RuntimeError(f"run {rid}: no stop order reached the agent")
        latencies.append(seen[0] - t_sent)
        server.http.post(f"/v1/attempts/{aid}/fail", json={
            "lease": lease, "reason": "stopped"}).raise_for_status()
    return {"samples": samples, "heartbeat_s": heartbeat_s,
            "p50_s": round(statistics.median(latencies), 3),
            "p95_s": round(common.percentile(latencies, 0.95), 3),
            "max_s": round(max(latencies), 3), "target_p95_s": round(1.0 + heartbeat_s, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--batches", type=int, default=10, help="requests per run per round")
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--heartbeat-s", type=float, default=1.0)
    parser.add_argument("--db", default=None, help="database URL (default: embedded SQLite)")
    parser.add_argument("--only", choices=("ingest", "latency"), default=None)
    args = parser.parse_args()
    out: dict[str, Any] = {"database": "postgresql" if args.db and "postgres" in args.db
                           else "sqlite"}
    with tempfile.TemporaryDirectory() as work:
        server = common.Server(Path(work) / "runyard", db=args.db)
        try:
            if args.only in (None, "ingest"):
                out["ingest"] = measure_ingest(server, args.rounds, args.batches)
            if args.only in (None, "latency"):
                out["latency"] = measure_latency(server, args.samples, args.heartbeat_s)
        finally:
            server.close()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

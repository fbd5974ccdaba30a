"""Notification delivery latency: from enqueue to a local webhook receiver.

Starts a real ``runyard server`` (embedded SQLite, or ``--db URL``) with its default
notification settings, a webhook receiver on 127.0.0.1 that checks every signature, and one
signed webhook channel. Two paths, each ``--count`` deliveries one after the other per round,
``--rounds`` rounds:

* ``woken``: ``POST /v1/channels/{name}/test``, which enqueues in the server process and
  wakes its deliverer, as a rule's ``notify:`` action does on that server; timed from just
  before the request to the receiver's first byte of the delivery.
* ``polled``: :func:`runyard.notifications.enqueue` into the database from this process (as
  another server replica would); the server's deliverer finds it at its next poll
  (``NOTIFY_POLL_S``), so this one is bounded by the poll, not by the work. Each is enqueued
  after a random pause, so enqueues fall anywhere in the poll's cycle (half as many of them,
  to keep the run short).

Prints one JSON document: each path's p50 and p95 in milliseconds, the median over rounds.
``--postgresql`` uses a throwaway database on the server of ``RUNYARD_BENCH_PG`` (default
postgresql+psycopg://postgres@127.0.0.1:5432/test), dropped afterwards.

    python benchmarks/notify_bench.py [--rounds 5] [--count 40] [--postgresql]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import common
from runyard import defaults
from runyard.notifications import enqueue, messages
from runyard.store import default_url, open_store

SECRET = "bench-secret-of-enough-length"


class Receiver:
    """Notes when each delivery id first arrives; counts bad signatures."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.bad_signatures = 0
        self.cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                at = time.perf_counter()
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                ok = messages.verify(SECRET, self.headers.get(messages.TIMESTAMP_HEADER, ""),
                                     body, self.headers.get(messages.SIGNATURE_HEADER, ""))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                with receiver.cond:
                    receiver.bad_signatures += not ok
                    receiver.arrived.setdefault(
                        self.headers.get(messages.DELIVERY_HEADER, "?"), at)
                    receiver.cond.notify_all()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, delivery: int, timeout: float = 60.0) -> float:
        with self.cond:
            if not self.cond.wait_for(lambda: str(delivery) in self.arrived, timeout):
                raise RuntimeError(f"delivery {delivery} never arrived")
            return self.arrived[str(delivery)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--count", type=int, default=40, help="deliveries per path per round")
    ap.add_argument("--postgresql", action="store_true",
                    help="a throwaway PostgreSQL database (default: SQLite in a temp dir)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="runyard-notify-bench-"))
    if not args.postgresql:
        return bench(args, default_url(tmp), tmp)
    with common.throwaway_database(common.pg_admin_url()) as db:
        return bench(args, db, tmp)


def bench(args: argparse.Namespace, db: str, tmp: Path) -> int:
    """Both paths against a server on ``db``; prints the JSON document."""
    log = open(tmp / "server.log", "wb")
    server = common.Server(tmp, db=db, log=log, http_timeout=30)
    http = server.http
    receiver = Receiver()
    results: dict[str, list[tuple[float, float]]] = {"woken": [], "polled": []}
    try:
        http.post("/v1/channels", json={"name": "bench", "kind": "webhook",
                                        "url": receiver.url, "secret": SECRET}
                  ).raise_for_status()
        store = open_store(db, upgrade=False)
        for _ in range(args.rounds):
            woken, polled = [], []
            for _ in range(args.count):
                started = time.perf_counter()
                r = http.post("/v1/channels/bench/test")
                r.raise_for_status()
                woken.append((receiver.wait(r.json()["delivery"]) - started) * 1000)
            for _ in range(max(args.count // 2, 1)):
                time.sleep(random.uniform(0.1, 0.1 + defaults.NOTIFY_POLL_S))
                started = time.perf_counter()
                delivery = enqueue(store, channel="bench", run_id=None, kind="bench",
                                   payload={})
                polled.append((receiver.wait(delivery) - started) * 1000)
            for name, values in (("woken", woken), ("polled", polled)):
                results[name].append((common.percentile(values, 0.5),
                                      common.percentile(values, 0.95)))
        store.close()
    finally:
        server.close()
        receiver.server.shutdown()
    out = {
        "database": "sqlite" if db.startswith("sqlite") else "postgresql",
        "rounds": args.rounds, "count_per_round": args.count,
        "poll_s": defaults.NOTIFY_POLL_S, "bad_signatures": receiver.bad_signatures,
    }
    for name, rounds in results.items():
        out[name] = {"p50_ms": round(statistics.median(p50 for p50, _ in rounds), 2),
                     "p95_ms": round(statistics.median(p95 for _, p95 in rounds), 2)}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

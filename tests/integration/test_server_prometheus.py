"""The server's own Prometheus metrics: requests counted and timed by route template."""

from __future__ import annotations

import re

from ..support.app_server import AppServer
from ..support.server_api import admin


def _samples(text: str, name: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line.startswith(name):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def test_request_latency_is_a_histogram_by_route_method_and_status(
        shared_app: AppServer) -> None:
    api = admin(shared_app)
    run = api.submit("timed")
    for _ in range(3):
        api.ok("GET", f"/v1/runs/{run['id']}")
    assert api.get("/v1/runs/nope").status_code == 404
    text = api.get("/metrics").text
    api.close()
    route = 'route="/v1/runs/{run_id}"'
    counts = _samples(text, "runyard_http_request_duration_seconds_count")
    ok = [v for k, v in counts.items() if route in k and 'method="GET"' in k
          and 'status="200"' in k]
    missing = [v for k, v in counts.items() if route in k and 'status="404"' in k]
    assert ok and ok[0] >= 3 and missing and missing[0] >= 1
    # The count agrees with the request counter, and the buckets are cumulative up to +Inf.
    requests = _samples(text, "runyard_http_requests_total")
    assert [v for k, v in requests.items() if route in k and 'method="GET"' in k
            and 'status="200"' in k] == ok
    buckets = [(re.search(r'le="([^"]+)"', k).group(1), v)  # type: ignore[union-attr]
               for k, v in _samples(text, "runyard_http_request_duration_seconds_bucket").items()
               if route in k and 'method="GET"' in k and 'status="200"' in k]
    values = [v for _, v in buckets]
    assert values == sorted(values) and dict(buckets)["+Inf"] == ok[0]

"""The agent's parts on real files: probe, log buffer, backoff, claim parsing, GPUs."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import httpx
import pytest

from runyard import errors, models
from runyard.agent import api as api_mod
from runyard.agent import assignment, daemon, probe
from runyard.progress import reader

# --------------------------------------------------------------------------- backoff


def test_backoff_grows_with_full_jitter_and_resets() -> None:
    b = api_mod.Backoff(base=1.0, cap=8.0, rng=random.Random(1))
    delays = [b.next_delay() for _ in range(8)]
    assert all(0 <= d <= 8.0 for d in delays)
    ceilings = [min(8.0, 2**i) for i in range(8)]
    assert all(d <= c for d, c in zip(delays, ceilings, strict=True))
    assert len(set(delays)) == len(delays)  # jittered, not lockstep
    b.reset()
    assert b.next_delay() <= 1.0


def test_backoff_minimum_is_a_floor() -> None:
    b = api_mod.Backoff(base=0.001, cap=0.001, minimum=0.5)
    assert b.next_delay() == 0.5


# --------------------------------------------------------------------------- probe


def _snap(seq: int, **extra: Any) -> dict[str, Any]:
    return {"schema": "runyard.progress/v1", "seq": seq,
            "updated_at": "2026-01-01T00:00:00.000Z", "step": seq, **extra}


def wire_points(batches: list[list[list[Any]]]) -> list[dict[str, Any]]:
    """The points of rows batches, one ``{step, tag, value, at}`` each."""
    return [{"step": step, "tag": tag, "value": value, "at": at}
            for rows in batches for step, at, values in rows for tag, value in values.items()]


def test_probe_forwards_changes_only_and_batches_metrics(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reader.MetricsTail, "CHUNK", 4 * 1024 * 1024)  # the file in one read
    prog, metrics = tmp_path / "progress.json", tmp_path / "metrics.jsonl"
    p = probe.Probe(prog, metrics)
    assert p.read().progress is None  # nothing yet, and no "missing" warning this early
    prog.write_text(json.dumps(_snap(1)))
    with open(metrics, "w") as fh:
        for i in range(probe.MAX_POINTS_PER_CALL * 2 + 500):
            fh.write(json.dumps({"step": i, "tag": "loss", "value": "NaN" if i == 7 else i})
                     + "\n")
        fh.write('{"step": 99999, "tag": "lo')  # half a line: left for the next read
    got = p.read()
    assert got.progress == {"snapshot": _snap(1), "warnings": []}
    big = probe.MAX_POINTS_PER_CALL
    assert [len(wire_points([b])) for b in got.metric_batches] == [big, big, 500]
    assert got.points == 2 * big + 500
    points = wire_points(got.metric_batches)
    assert points[7]["value"] == "NaN" and points[8]["value"] == 8.0
    assert all(pt["at"] for pt in points)
    again = p.read()
    assert again.progress is None and again.points == 0
    with open(metrics, "a") as fh:
        fh.write('ss", "value": 1}\n')
    prog.write_text(json.dumps(_snap(2)))
    third = p.read()
    assert third.points == 1 and third.progress is not None
    assert third.progress["snapshot"]["seq"] == 2


@pytest.mark.parametrize("content,kind", [
    ("{not json", "corrupt"),
    ('{"schema": "runyard.progress/v1", "seq": 3', "partial"),
    (json.dumps(_snap(5, pad="x" * 70_000)), "oversized"),
    (json.dumps({"schema": "other"}), "invalid"),
    ("", "partial"),
])
def test_probe_warns_once_per_kind(tmp_path: Path, content: str, kind: str) -> None:
    prog = tmp_path / "progress.json"
    p = probe.Probe(prog, tmp_path / "metrics.jsonl")
    prog.write_text(json.dumps(_snap(1)))
    p.read()
    prog.write_text(content)
    first = p.read()
    assert first.progress is not None and first.progress["snapshot"] is None
    assert len(first.progress["warnings"]) == 1
    assert f"progress file {kind}" in first.progress["warnings"][0]
    assert p.read().progress is None  # not every tick
    prog.write_text(json.dumps(_snap(2)))
    assert p.read().progress == {"snapshot": _snap(2), "warnings": []}
    assert p.last_snapshot == _snap(2)


def test_probe_reports_a_missing_snapshot_at_the_final_read(tmp_path: Path) -> None:
    p = probe.Probe(tmp_path / "progress.json", tmp_path / "metrics.jsonl")
    assert p.read().progress is None
    final = p.read(final=True)
    assert final.progress is not None
    assert "never written" in final.progress["warnings"][0]


def test_probe_reports_bad_metric_lines_with_a_cap(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("oops\n" * (probe.MAX_LINE_WARNINGS + 5)
                       + json.dumps({"step": 1, "tag": "a", "value": 1}) + "\n")
    got = probe.Probe(tmp_path / "p.json", metrics).read()
    assert got.points == 1
    assert got.progress is not None
    warnings = got.progress["warnings"]
    assert len(warnings) == probe.MAX_LINE_WARNINGS + 1
    assert warnings[0].startswith("metrics file line 1 skipped")
    assert "further ones" in warnings[-1]


# --------------------------------------------------------------------------- log buffer


def test_log_buffer_keeps_byte_offsets_and_whole_characters() -> None:
    buf = probe.LogBuffer(chunk_bytes=4)
    data = "héllo wörld\n".encode()
    buf.add("stdout", 0, data[:2])  # "h" and the first byte of "é"
    first = buf.drain()
    assert first == [{"stream": "stdout", "offset": 0, "data": "h"}]
    buf.add("stdout", 2, data[2:])
    buf.add("stderr", 0, b"err\n")
    rest = buf.drain(final=True)
    out = [c for c in rest if c["stream"] == "stdout"]
    assert "".join(c["data"] for c in first + out) == "héllo wörld\n"
    for chunk in out:  # each offset is where its text starts in the byte stream
        assert data[chunk["offset"]:].decode().startswith(chunk["data"])
    assert [c for c in rest if c["stream"] == "stderr"] == [
        {"stream": "stderr", "offset": 0, "data": "err\n"}]
    assert buf.drain() == []


# --------------------------------------------------------------------------- claim answers


def _claim(**over: Any) -> dict[str, Any]:
    body = {"run": {"id": "r1", "name": "n", "constraints": {"gpus": 2}},
            "attempt": {"id": "a1", "number": 2}, "lease": "L",
            "lease_expires_at": "2030-01-01T00:00:00.000Z", "command": ["x", "{seed}"],
            "env": {"A": 1}, "config": {"lr": 0.1}, "probe_interval_s": 0.5, "seed": 7}
    body.update(over)
    return body


def test_assignment_from_claim() -> None:
    a = assignment.Assignment.from_claim(_claim())
    assert (a.run_id, a.attempt_id, a.number, a.lease) == ("r1", "a1", 2, "L")
    assert a.env == {"A": "1"} and a.seed == 7 and a.probe_interval_s == 0.5
    assert a.constraints.gpus == 2
    assert a.stale_after_s > 0


@pytest.mark.parametrize("over,field", [
    ({"run": None}, "claim.run"),
    ({"attempt": {"number": 1}}, "claim.attempt"),
    ({"lease": ""}, "claim.lease"),
    ({"lease_expires_at": "soon"}, "claim.lease_expires_at"),
])
def test_assignment_refuses_a_bad_claim(over: dict[str, Any], field: str) -> None:
    with pytest.raises(errors.ValidationError) as info:
        assignment.Assignment.from_claim(_claim(**over))
    assert info.value.field == field


def test_heartbeat_interval() -> None:
    assert assignment.heartbeat_interval(3.0) == 0.75
    assert assignment.heartbeat_interval(120.0) == 5.0
    assert assignment.heartbeat_interval(0.0) == 5.0
    assert assignment.heartbeat_interval(0.01) == assignment.HEARTBEAT_MIN_S


# --------------------------------------------------------------------------- GPUs


def test_gpu_pool_gives_each_attempt_its_own() -> None:
    pool = daemon.GpuPool(tuple(models.GPU(index=i) for i in range(3)))
    a = pool.take(models.Constraints(gpus=2))
    b = pool.take(models.Constraints(require_cuda=True))
    assert a == [0, 1] and b == [2]
    assert pool.take(models.Constraints()) == []
    assert pool.free() == ()
    assert pool.take(models.Constraints(gpus=1)) == []  # none left: warned, none given
    pool.give_back(a)
    assert [g.index for g in pool.free()] == [0, 1]
    assert pool.take(models.Constraints(prefer_cuda=True)) == [0]


def test_agent_config_refuses_bad_options() -> None:
    with pytest.raises(errors.ConfigError):
        daemon.AgentConfig(server="http://x", executor="kubernetes").validate()
    with pytest.raises(errors.ValidationError) as info:
        daemon.AgentConfig(server="http://x", slots=0).validate()
    assert info.value.field == "slots"
    with pytest.raises(errors.ValidationError):
        daemon.AgentConfig(server="http://x", probe_interval_s=0).validate()


# --------------------------------------------------------------------------- HTTP errors


def _api(handler: Any) -> api_mod.WorkerAPI:
    return api_mod.WorkerAPI("http://server", "tok", transport=httpx.MockTransport(handler))


@pytest.mark.parametrize("status,body,cls", [
    (409, {"error": {"type": "LeaseConflict", "message": "stale"}}, errors.LeaseConflict),
    (409, {"error": {"type": "IllegalTransition", "message": "x"}}, errors.LeaseConflict),
    (422, {"error": {"type": "ValidationError", "message": "bad", "field": "lease"}},
     errors.ValidationError),
    (401, {"error": {"type": "AuthError", "message": "who"}}, errors.AuthError),
    (403, {"error": {"type": "Forbidden", "message": "no"}}, errors.Forbidden),
    (404, "not json", errors.NotFound),
    (503, {"error": {"type": "StoreError", "message": "db"}}, errors.ServerError),
])
def test_api_maps_http_errors(status: int, body: Any, cls: type[Exception]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["Authorization"] == "Bearer tok"
        if isinstance(body, str):
            return httpx.Response(status, text=body)
        return httpx.Response(status, json=body)

    with pytest.raises(cls) as info:
        _api(handler).heartbeat("a1", "L")
    assert type(info.value) is cls
    assert f"HTTP {status}" in str(info.value)


def test_api_claim_204_is_none_and_transport_errors_are_retryable() -> None:
    assert _api(lambda r: httpx.Response(204)).claim("h", {"host_id": "h"}, 1) is None

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    api = _api(refuse)
    with pytest.raises(errors.TransportError) as info:
        api.call(lambda: api.heartbeat("a", "L"), attempts=2,
                 backoff=api_mod.Backoff(base=0.001, cap=0.001))
    assert api_mod.is_retryable(info.value)


def test_api_refuses_a_bad_server_url() -> None:
    with pytest.raises(errors.ConfigError):
        api_mod.WorkerAPI("server:8470", None)


def test_probe_drops_tags_the_server_refuses_with_one_warning(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics.jsonl"
    long_tag = "t" * 100
    metrics.write_text("".join(json.dumps({"step": i, "tag": tag, "value": 1}) + "\n"
                               for i, tag in enumerate(["ok", long_tag, long_tag, "ok"])))
    got = probe.Probe(tmp_path / "p.json", metrics).read()
    assert [p["step"] for p in wire_points(got.metric_batches)] == [0, 3]
    assert got.progress is not None and len(got.progress["warnings"]) == 1


def test_rows_group_one_log_call_and_keep_every_point(tmp_path: Path) -> None:
    at = "2026-01-01T00:00:00.000Z"
    points = [{"step": 1, "tag": "loss", "value": 0.5, "at": at},
              {"step": 1, "tag": "acc", "value": "NaN", "at": at},
              {"step": 1, "tag": "loss", "value": 0.4, "at": at},  # same tag again: new row
              {"step": 2, "tag": "loss", "value": 0.3, "at": at}]
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("".join(json.dumps(p) + "\n" for p in points))
    got = probe.Probe(tmp_path / "p.json", metrics).read()
    secs = 1767225600.0  # the time goes on the wire as UNIX seconds
    assert got.metric_batches == [[[1, secs, {"loss": 0.5, "acc": "NaN"}],
                                   [1, secs, {"loss": 0.4}], [2, secs, {"loss": 0.3}]]]

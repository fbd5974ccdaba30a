"""The run page in headless Chromium against a real server and a worker holding a real
lease: charts from the downsampled series, zoom, events, logs, files, and Stop."""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any

from ..support.live_server import LiveServer
from ..support.server_api import admin
from ..support.ui import Page, Worker, wait_until


def running(server: LiveServer, token: str, name: str, host: str) -> Worker:
    admin(server).submit(name, project="ui-run", config={"lr": 0.05, "layers": [64, 32]})
    worker = Worker(server, token, host_id=host)
    claim = worker.claim()
    assert claim["run"]["name"] == name
    worker.heartbeat(running=True)
    return worker


def curve(tag: str, steps: range, scale: float = 1.0) -> list[dict[str, Any]]:
    return [{"step": s, "tag": tag, "value": scale * (2 * math.exp(-s / 80) + 0.02 * (s % 7))}
            for s in steps]


def series_points(page: Any, chart: int, label: str) -> int:
    el = page.locator(".chartcard").nth(chart).locator(f"g.series[data-label='{label}']")
    return int(el.get_attribute("data-points") or 0) if el.count() else 0


def test_charts_draw_several_tags_zoom_and_follow_new_points(
        server: LiveServer, browser: Any, tokens: dict[str, str]) -> None:
    worker = running(server, tokens["worker"], "charted", "ui-chart-box")
    worker.metrics(curve("loss", range(0, 300)) + curve("val_loss", range(0, 300, 10), 1.1)
                   + [{"step": s, "tag": "accuracy", "value": 1 - math.exp(-s / 60)}
                      for s in range(0, 300, 2)])
    worker.progress(299, 600, metrics={"loss": 0.5})
    ui = Page(browser, server, server.admin_token)
    try:
        page = ui.goto(f"/runs/{worker.run_id}")
        page.wait_for_selector(".chartcard g.series[data-label='loss'] path.line")
        # Loss-like tags share the first chart; accuracy gets its own.
        assert page.locator(".chartcard").count() == 2
        assert page.locator(".chartcard").nth(0).locator("h3").inner_text() == "loss, val_loss"
        assert series_points(page, 0, "loss") == 300  # fewer points than pixels: all drawn
        assert series_points(page, 0, "val_loss") == 30
        assert series_points(page, 1, "accuracy") == 150
        path = page.locator(".chartcard").nth(0).locator("g.series[data-label='loss'] path")
        assert path.get_attribute("d").count("L") == 299
        # A third tag on the first chart.
        page.locator(".chartcard").nth(0).locator("label.chip", has_text="accuracy").click()
        wait_until(lambda: series_points(page, 0, "accuracy") == 150, what="accuracy added")
        assert page.locator(".chartcard").nth(0).locator("h3").inner_text() == \
            "loss, val_loss, accuracy"
        ui.shot("run-charts")
        card = page.locator(".chartcard").nth(0)
        # Typed step range: only that range is asked for and drawn.
        card.locator("input[aria-label='min step']").fill("100")
        card.locator("input[aria-label='max step']").fill("149")
        card.locator("button", has_text="Apply").click()
        wait_until(lambda: series_points(page, 0, "loss") == 50, what="zoomed to 100-149")
        assert any("/metrics/loss/series?" in u and "min_step=100" in u and "max_step=149" in u
                   for u in ui.requests)
        assert series_points(page, 0, "val_loss") == 5
        # Bad ranges are refused with a message, and nothing is asked of the server.
        # (the log tail keeps polling while the run is active: count only series requests)
        def series_asked() -> list[str]:
            return [u for u in ui.requests if "/series?" in u]
        before = series_asked()
        card.locator("input[aria-label='min step']").fill("ten")
        card.locator("button", has_text="Apply").click()
        assert "expected a whole step number" in card.locator("span.error").inner_text()
        card.locator("input[aria-label='min step']").fill("200")
        card.locator("button", has_text="Apply").click()
        assert card.locator("span.error").inner_text() == "min step is above max step"
        assert series_asked() == before
        card.locator("button", has_text="Reset").click()
        wait_until(lambda: series_points(page, 0, "loss") == 300, what="reset")
        # Drag across the middle of the plot: the range inputs take the dragged steps.
        box = card.locator("rect.overlay").bounding_box()
        page.mouse.move(box["x"] + box["width"] * 0.25, box["y"] + 20)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + 40, steps=5)
        page.mouse.up()
        wait_until(lambda: card.locator("input[aria-label='max step']").input_value() != "",
                   what="drag zoom")
        lo = int(card.locator("input[aria-label='min step']").input_value())
        hi = int(card.locator("input[aria-label='max step']").input_value())
        assert 60 <= lo <= 90 and 135 <= hi <= 165, (lo, hi)
        wait_until(lambda: series_points(page, 0, "loss") == hi - lo + 1, what="drag drawn")
        card.locator("rect.overlay").dblclick()
        wait_until(lambda: series_points(page, 0, "loss") == 300, what="double-click reset")
        # New points arrive: the charts follow them without a reload.
        page.evaluate("window.__sameDocument = 'yes'")
        worker.metrics(curve("loss", range(300, 450)))
        worker.progress(449, 600, metrics={"loss": 0.3})
        wait_until(lambda: series_points(page, 0, "loss") == 450, timeout=20,
                   what="chart follows live points")
        assert page.evaluate("window.__sameDocument") == "yes"
        ui.assert_clean()
    finally:
        ui.close()


def test_a_long_history_is_downsampled_with_its_spread(server: LiveServer, browser: Any,
                                                       tokens: dict[str, str]) -> None:
    worker = running(server, tokens["worker"], "long-history", "ui-long-box")
    for start in range(0, 20_000, 5000):
        worker.metrics(curve("loss", range(start, start + 5000)))
    ui = Page(browser, server, server.admin_token)
    try:
        page = ui.goto(f"/runs/{worker.run_id}")
        page.wait_for_selector(".chartcard g.series[data-label='loss'] path.line")
        drawn = series_points(page, 0, "loss")
        assert 100 <= drawn <= 2001, drawn  # about one bucket per pixel, never all 20,000
        card = page.locator(".chartcard").nth(0)
        assert card.get_attribute("data-total") == "20000"
        assert "20,000 stored points" in card.locator(".chartfoot").inner_text()
        assert card.locator("polygon.band").count() == 1  # min..max of each bucket
        series = [u for u in ui.requests if "/metrics/loss/series?" in u]
        assert series and all("points=" in u for u in series)
        ui.assert_clean()
    finally:
        ui.close()


def test_progress_events_logs_and_checkpoint_download(server: LiveServer, browser: Any,
                                                      tokens: dict[str, str]) -> None:
    worker = running(server, tokens["worker"], "with-files", "ui-files-box")
    worker.progress(120, 400, epoch=1.5, total_epochs=5, phase="train",
                    rate={"value": 8.0, "units": "steps/s"}, message="epoch 2",
                    metrics={"loss": 0.42, "accuracy": 0.91})
    worker.logs("stdout", 0, "".join(f"step {i}: loss {1 / (i + 1):.3f}\n" for i in range(50)))
    worker.logs("stderr", 0, "warning: slow data loader\n")
    # Where its process runs, and its artifact directory archived in the server's store.
    r = worker.http.post(f"/v1/attempts/{worker.attempt_id}/placement",
                         json={"lease": worker.lease, "workdir": "/srv/ui-files"})
    assert r.status_code == 200, r.text
    bundle = b"the artifact bundle of with-files"
    r = worker.http.put(f"/v1/runs/{worker.run_id}/artifacts/artifacts.tar.zst",
                        params={"attempt_id": worker.attempt_id, "kind": "bundle"},
                        headers={"X-Content-SHA256": hashlib.sha256(bundle).hexdigest(),
                                 "X-Runyard-Lease": worker.lease}, content=bundle)
    assert r.status_code == 201, r.text
    ui = Page(browser, server, server.admin_token)
    try:
        page = ui.goto(f"/runs/{worker.run_id}")
        page.wait_for_selector("pre.log:has-text('step 49: loss 0.020')")
        facts = page.inner_text("section.progresspanel")
        for text in ("120 / 400", "1.5 / 5", "30.0%", "train", "8 steps/s", "epoch 2", "0.91"):
            assert text in facts, text
        events = page.inner_text("ol.events")
        assert "claimed" in events and "running" in events and "by ui-worker" in events
        where = page.inner_text("div.cols >> nth=-1")
        assert "ui-files-box" in where and '"lr": 0.05' in where
        assert re.search(r"work dir\s+/srv/ui-files", where), where
        store = (server.data_dir / "artifacts").absolute().as_uri()
        assert re.search(rf"artifact store\s+{re.escape(store)}\s+archived\s+yes", where), where
        page.select_option("select[aria-label='log stream']", "stderr")
        page.wait_for_selector("pre.log:has-text('slow data loader')")
        # More output is tailed while the run is active.
        worker.logs("stderr", len("warning: slow data loader\n"), "second warning\n")
        page.wait_for_selector("pre.log:has-text('second warning')", timeout=10_000)
        # A checkpoint registered now appears without a reload, and downloads intact.
        blob = b"weights-" * 1000
        sha = hashlib.sha256(blob).hexdigest()
        r = worker.http.put(f"/v1/runs/{worker.run_id}/artifacts/ckpt/step-120.pt",
                            params={"attempt_id": worker.attempt_id, "kind": "checkpoint"},
                            headers={"X-Content-SHA256": sha, "X-Runyard-Lease": worker.lease},
                            content=blob)
        assert r.status_code == 201, r.text
        r = worker.http.post(f"/v1/attempts/{worker.attempt_id}/checkpoints", json={
            "lease": worker.lease, "step": 120, "status": "complete", "name": "ckpt/step-120.pt",
            "sha256": sha, "metrics": {"loss": 0.42}})
        assert r.status_code == 201, r.text
        page.wait_for_selector("ol.events li[data-kind='checkpoint']")
        panel = page.locator("section.panel", has_text="Checkpoints")
        panel.locator("button", has_text="download").wait_for()
        assert "7.8 KiB" in panel.inner_text() and "loss 0.42" in panel.inner_text()
        with page.expect_download() as got:
            panel.locator("button", has_text="download").click()
        download = got.value
        assert download.suggested_filename == "step-120.pt"
        with open(download.path(), "rb") as fh:
            assert fh.read() == blob
        heading = page.locator("h2", has_text=re.compile("^Artifacts$"))
        arts = page.locator("section.panel", has=heading).inner_text()
        assert "ckpt/step-120.pt" in arts and sha[:12] in arts
        ui.shot("run-page")
        ui.assert_clean()
    finally:
        ui.close()


def test_a_long_log_opens_at_its_end_and_follows_live(server: LiveServer, browser: Any,
                                                     tokens: dict[str, str]) -> None:
    worker = running(server, tokens["worker"], "long-log", "ui-log-box")
    text = "".join(f"log line {i:05d} {'x' * 40}\n" for i in range(6000))  # ~330 KB
    pos = 0
    for start in range(0, len(text), 100_000):
        piece = text[start:start + 100_000]
        worker.logs("stdout", pos, piece)
        pos += len(piece.encode())
    ui = Page(browser, server, server.admin_token)
    try:
        page = ui.goto(f"/runs/{worker.run_id}")
        page.wait_for_selector("pre.log:has-text('log line 05999')")
        shown = page.inner_text("pre.log")
        assert "log line 00000" not in shown  # the end, not the beginning
        assert "showing the last lines" in page.inner_text("section.panel:has(pre.log)")
        # One tail read, then reads from where it ended: no probing for the end.
        asked = [u for u in ui.requests if "/logs" in u]
        assert any("tail=" in u for u in asked), asked
        assert not any("limit_bytes=1&" in u or u.endswith("limit_bytes=1") for u in asked)
        worker.logs("stdout", pos, "fresh output after the tail\n")
        page.wait_for_selector("pre.log:has-text('fresh output after the tail')",
                               timeout=20_000)
        assert page.inner_text("pre.log").rstrip().endswith("fresh output after the tail")
        ui.assert_clean()
    finally:
        ui.close()


def test_stop_button_stops_the_run_and_the_page_follows(server: LiveServer, browser: Any,
                                                        tokens: dict[str, str]) -> None:
    worker = running(server, tokens["worker"], "to-stop", "ui-stop-box")
    worker.progress(10, 1000)
    api = admin(server)
    ui = Page(browser, server, server.admin_token)
    try:
        page = ui.goto(f"/runs/{worker.run_id}")
        page.wait_for_selector("h1 .badge[data-status='running']")
        page.evaluate("window.__sameDocument = 'yes'")
        grace = page.locator("input[aria-label='grace seconds']")
        grace.fill("-1")
        page.click("button[data-action='stop']")
        page.wait_for_selector("#flash .error:has-text('grace')")
        assert api.ok("GET", f"/v1/runs/{worker.run_id}")["status"] == "running"
        grace.fill("7")
        page.click("button[data-action='stop']")
        page.wait_for_selector("h1 .badge[data-status='stopping']")
        run = api.ok("GET", f"/v1/runs/{worker.run_id}")
        assert run["status"] == "stopping" and run["stop_intent"] == "stop"
        events = api.ok("GET", f"/v1/runs/{worker.run_id}/events")["items"]
        assert events[-1]["actor"] == "admin" and events[-1]["details"]["grace_s"] == 7
        ui.shot("run-stopping")
        # The worker learns of the stop from its heartbeat and ends the attempt.
        order = worker.heartbeat()
        assert order["stop"] is True
        worker.fail("stopped", exit_code=-15)
        page.wait_for_selector("h1 .badge[data-status='stopped']")
        assert page.locator("button[data-action='stop']").count() == 0
        assert page.evaluate("window.__sameDocument") == "yes"
        # The header may refetch before the stream delivers the event; it follows, once.
        stopped_event = "ol.events li[data-kind='status'] .badge[data-status='stopped']"
        page.wait_for_selector(stopped_event)
        assert page.locator(stopped_event).count() == 1
        ui.shot("run-stopped")
        # An operator may put it back in the queue.
        page.click("button[data-action='requeue']")
        page.wait_for_selector("h1 .badge[data-status='queued']")
        assert api.ok("GET", f"/v1/runs/{worker.run_id}")["status"] == "queued"
        ui.assert_clean()
    finally:
        ui.close()

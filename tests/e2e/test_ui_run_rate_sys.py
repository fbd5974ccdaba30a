"""The run page in headless Chromium against a real server: the progress-rate chart (steps
per second over time from the downsampled progress history, following new snapshots live)
and the System panel, which draws the sys/ tags apart from the run's own metrics."""

from __future__ import annotations

from typing import Any

from ..support.live_server import LiveServer
from ..support.server_api import admin
from ..support.ui import Page, Worker, wait_until


def _at(second: int) -> str:
    return f"2030-01-01T00:{second // 60:02d}:{second % 60:02d}.000Z"


def _points(page: Any) -> int:
    el = page.locator("#progress-rate g.series")
    return int(el.first.get_attribute("data-points") or 0) if el.count() else 0


def test_rate_chart_draws_steps_per_second_and_follows(
        server: LiveServer, browser: Any, tokens: dict[str, str]) -> None:
    admin(server).submit("rated", project="ui-rate")
    worker = Worker(server, tokens["worker"], host_id="ui-rate-box")
    claim = worker.claim()
    assert claim["run"]["name"] == "rated"
    worker.heartbeat(running=True)
    # Ten steps a second by the snapshots' own clocks.
    for i in range(20):
        worker.progress(10 * i, 1000, updated_at=_at(i))
    ui = Page(browser, server, tokens["viewer"])
    try:
        page = ui.goto(f"/runs/{worker.run_id}")
        # A constant rate is a flat line (zero height): attached, not "visible".
        page.wait_for_selector("#progress-rate g.series path.line", state="attached")
        assert page.locator("#progress-rate g.series").count() == 1
        assert page.locator("#progress-rate g.series").first.get_attribute(
            "data-label") == "attempt 1 steps/s"
        assert _points(page) == 19  # the first snapshot has no rate before it
        assert page.locator("#progress-rate p.muted").is_hidden()
        ui.shot("run-progress-rate")
        # A new snapshot reaches the open page: the chart follows.
        for i in range(20, 24):
            worker.progress(10 * i, 1000, updated_at=_at(i))
        wait_until(lambda: _points(page) == 23, timeout=30, what="the rate chart followed")
        ui.assert_clean()
    finally:
        ui.close()
        worker.close()


def test_rate_chart_says_when_there_is_no_rate(
        server: LiveServer, browser: Any, tokens: dict[str, str]) -> None:
    run = admin(server).submit("unrated", project="ui-rate")
    ui = Page(browser, server, tokens["viewer"])
    try:
        page = ui.goto(f"/runs/{run['id']}")
        page.wait_for_selector("#progress-rate p.muted:visible")
        assert page.locator("#progress-rate g.series").count() == 0
        ui.assert_clean()
    finally:
        ui.close()
        admin(server).post(f"/v1/runs/{run['id']}/cancel", {})  # not the next test's claim


def test_system_metrics_have_their_own_panel_grouped_by_kind(
        server: LiveServer, browser: Any, tokens: dict[str, str]) -> None:
    admin(server).submit("sysed", project="ui-rate")
    worker = Worker(server, tokens["worker"], host_id="ui-sys-box")
    assert worker.claim()["run"]["name"] == "sysed"
    worker.heartbeat(running=True)
    points = []
    for s in range(0, 60, 10):
        points += [{"step": s, "tag": "loss", "value": 1.0 / (s + 1)},
                   {"step": s, "tag": "sys/cpu_percent", "value": 150.0 + s},
                   {"step": s, "tag": "sys/rss_bytes", "value": 2.0**30 + s},
                   {"step": s, "tag": "sys/gpu0/util_percent", "value": 90.0},
                   {"step": s, "tag": "sys/gpu1/util_percent", "value": 40.0}]
    worker.metrics(points)
    ui = Page(browser, server, tokens["viewer"])
    try:
        page = ui.goto(f"/runs/{worker.run_id}")
        system = page.locator("section[data-panel='System']")
        metrics = page.locator("section[data-panel='Metrics']")
        system.locator(".chartcard g.series").first.wait_for(state="attached")
        wait_until(lambda: system.locator(".chartcard").count() == 3, what="system charts")
        titles = [t.inner_text() for t in system.locator(".chartcard h3").all()]
        assert titles == ["sys/cpu_percent", "sys/rss_bytes",
                          "sys/gpu0/util_percent, sys/gpu1/util_percent"]
        wait_until(lambda: system.locator(
            ".chartcard g.series[data-label='sys/gpu1/util_percent']").count() == 1,
            what="the tag with slashes drawn")
        assert metrics.locator(".chartcard").count() == 1
        assert metrics.locator(".chartcard h3").inner_text() == "loss"
        assert metrics.locator("label.chip", has_text="sys/").count() == 0
        ui.shot("run-system-metrics")
        ui.assert_clean()
    finally:
        ui.close()
        worker.close()

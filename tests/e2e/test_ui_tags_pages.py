"""The run page follows the metric tags endpoint's pages: a run with more tags than one
page shows all of them (headless Chromium against a real server)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlparse

from ..support.live_server import LiveServer
from ..support.server_api import admin
from ..support.ui import Page, Worker, wait_until


def test_the_run_page_reads_every_page_of_tags(server: LiveServer, browser: Any) -> None:
    api = admin(server)
    api.submit("tagged", project="ui-tags")
    worker = Worker(server, api.token("ui-tags-worker", "worker"), host_id="ui-tags-box")
    worker.claim()
    worker.heartbeat(running=True)
    worker.metrics([{"step": 0, "tag": f"m{i:04d}", "value": 1.0} for i in range(2500)])
    ui = Page(browser, server, server.admin_token)
    try:
        page = ui.goto(f"/runs/{worker.run_id}")
        page.wait_for_selector(".chartcard")
        tag_calls = lambda: [u for u in ui.requests if "/metrics/tags" in u]  # noqa: E731
        wait_until(lambda: len(tag_calls()) >= 3, what="three pages of tags")
        afters = [parse_qs(urlparse(u).query).get("after", [None])[0] for u in tag_calls()[:3]]
        assert afters == [None, "m0999", "m1999"]
        module = next(u for u in ui.requests if "run_charts.js" in u)
        got = page.evaluate("""async ([url, runId]) => {
            const m = await import(url);
            return (await m.tagsOf(runId)).items.map((t) => t.tag);
        }""", [module, worker.run_id])
        assert got == [f"m{i:04d}" for i in range(2500)]
        ui.assert_clean()
    finally:
        ui.close()
        worker.close()

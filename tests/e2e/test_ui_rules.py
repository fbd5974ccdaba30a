"""Rules and notifications in the web UI, in headless Chromium against a real server that
delivers to real webhook receivers: a NaN rule that fired is a mark on its tag's chart and an
alert badge on the runs list; the delivery log shows a delivered and a failed row and filters
them; hostile rule tags, rule names and receiver errors are shown as text."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from runyard.queue import SYSTEM, Queue
from runyard.store import default_url, open_store

from ..support.receiver import Receiver
from ..support.server_api import Api, admin
from ..support.thread_server import ThreadServer
from ..support.ui import Page, Worker, wait_until
from .test_ui_hostile import HOSTILE, IMG, assert_nothing_injected

SECRET = "a-secret-the-receiver-shares-with-us"
#: A metric tag the API takes (any text), which a rule may watch.
TAG = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def receivers() -> Iterator[dict[str, Receiver]]:
    with Receiver(secret=SECRET) as good, Receiver(default=500, error_text=HOSTILE) as bad:
        yield {"team": good, "broken": bad}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, receivers: dict[str, Receiver]
           ) -> Iterator[ThreadServer]:
    # One attempt: a refused delivery is failed at once (no backoff to wait out).
    srv = ThreadServer(tmp_path_factory.mktemp("ui-rules"), stale_after_s=120,
                     notify_max_attempts=1).start()
    api = admin(srv)
    try:
        api.ok("POST", "/v1/channels", 201, json={"name": "team", "kind": "webhook",
                                                  "url": receivers["team"].url,
                                                  "secret": SECRET})
        api.ok("POST", "/v1/channels", 201, json={"name": "broken", "kind": "webhook",
                                                  "url": receivers["broken"].url})
    finally:
        api.close()
    yield srv
    srv.stop()


def running(server: ThreadServer, name: str, rules: list[dict[str, Any]], host: str) -> Worker:
    admin(server).submit(name, project="ui-rules", rules=rules)
    worker = Worker(server, admin(server).token(f"{host}-w", "worker"), host_id=host)
    assert worker.claim()["run"]["name"] == name
    worker.heartbeat(running=True)
    return worker


def settled(api: Api, run_id: str, count: int) -> list[dict[str, Any]]:
    """The run's deliveries once ``count`` of them are no longer pending."""
    def done() -> list[dict[str, Any]] | None:
        items = api.ok("GET", "/v1/notifications", params={"run_id": run_id})["items"]
        ended = [n for n in items if n["status"] != "pending"]
        return ended if len(ended) >= count else None
    got: list[dict[str, Any]] = wait_until(done, 60, "the deliveries")
    return got


def test_a_nan_rule_that_fired_is_a_mark_a_badge_and_two_deliveries(
        server: ThreadServer, browser: Any, tokens: dict[str, str],
        receivers: dict[str, Receiver]) -> None:
    worker = running(server, "diverging", [
        {"name": "diverged", "when": "nan", "tag": "loss",
         "then": ["stop", "notify:team", "notify:broken"]},
        {"name": "flat", "when": "plateau", "tag": "val_loss", "patience": 50,
         "then": ["stop"]}], "ui-nan-box")
    worker.metrics([{"step": s, "tag": "loss", "value": "NaN" if s == 50 else 1 / (s + 1)}
                    for s in range(0, 51)]
                   + [{"step": s, "tag": "val_loss", "value": 2 - s / 100}
                      for s in range(0, 51, 5)])
    api = admin(server)
    assert api.ok("GET", f"/v1/runs/{worker.run_id}")["status"] == "stopping"
    deliveries = {n["channel"]: n for n in settled(api, worker.run_id, 2)}
    assert deliveries["team"]["status"] == "delivered"
    assert deliveries["broken"]["status"] == "failed"
    [got] = receivers["team"].requests(deliveries["team"]["id"])
    assert got.signature_ok is True
    ui = Page(browser, server, tokens["viewer"])
    try:
        # The runs list: an alert badge on the run whose rule fired, its count in the title.
        page = ui.goto("/?project=ui-rules")
        mark = page.locator(f"tr[data-run-id='{worker.run_id}'] td.status span.alert")
        mark.wait_for()
        assert mark.inner_text() == "⚑ 1" and mark.get_attribute("title") == "1 rule hit"

        # The run page: its rules, and a mark on the loss chart at step 50.
        page = ui.goto(f"/runs/{worker.run_id}")
        flag = page.locator(".chartcard g.rulemark[data-rule='diverged']")
        flag.wait_for()
        assert flag.get_attribute("data-tag") == "loss"
        assert flag.get_attribute("data-step") == "50"
        assert flag.locator("title").text_content() == "rule diverged: loss = NaN at step 50"
        assert page.locator("g.rulemark").count() == 1  # the plateau rule did not fire
        rules = page.locator("section.rules")
        row = rules.locator("tr[data-rule='diverged']")
        assert row.get_attribute("data-hits") == "1"
        text = row.inner_text()
        assert "run" in text and "nan tag=loss -> stop,notify:team,notify:broken" in text
        assert "loss = NaN at step 50" in text
        assert "plateau tag=val_loss patience=50 -> stop" in \
            rules.locator("tr[data-rule='flat']").inner_text()
        assert page.locator("h1 span.alert").inner_text() == "⚑ 1"
        page.wait_for_selector("ol.events li[data-kind='rule']")
        assert page.locator("ol.events li[data-kind='rule']").count() == 1
        # Hovering the step shows the hit in the chart's read-out too.
        box = flag.locator("polygon.markflag").bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + 40)
        page.wait_for_selector(".tip .tipmark:has-text('rule diverged')")
        ui.shot("run-rules")

        # From the rules to the run's deliveries: one delivered, one failed with its error.
        rules.locator("a", has_text="Deliveries").click()
        page.wait_for_selector("table.deliveries tr[data-status='failed']")
        assert page.evaluate("location.search") == f"?run_id={worker.run_id}"
        assert page.locator("table.deliveries tbody tr").count() == 2
        ok_row = page.locator("table.deliveries tr[data-channel='team']")
        assert ok_row.get_attribute("data-status") == "delivered"
        assert "diverging" in ok_row.inner_text() and "rule diverged" in ok_row.inner_text()
        bad_row = page.locator("table.deliveries tr[data-channel='broken']")
        assert bad_row.locator("td.lasterror").inner_text() == f"HTTP 500: {HOSTILE}"
        assert bad_row.locator("td.num").inner_text() == "1"
        channels = page.inner_text("section.panel:has(h2:text('Channels'))")
        assert "team" in channels and SECRET not in channels and "/hook" not in channels
        ui.shot("notifications")
        # Filters: by channel, then by status; the query string follows.
        page.fill("input[aria-label='channel']", "team")
        page.click("form.filters button.primary")
        rows = page.locator("table.deliveries tbody tr")
        wait_until(lambda: rows.count() == 1
                   and rows.first.get_attribute("data-channel") == "team", what="by channel")
        assert "channel=team" in page.evaluate("location.search")
        page.fill("input[aria-label='channel']", "")
        page.select_option("select[aria-label='status']", "failed")
        page.click("form.filters button.primary")
        wait_until(lambda: rows.count() == 1
                   and rows.first.get_attribute("data-channel") == "broken", what="by status")
        time.sleep(0.5)  # a meta refresh of 0 s in the error text would have moved the page
        assert_nothing_injected(page, page.url)
        assert "127.0.0.1:9" not in page.url
        ui.assert_clean()
    finally:
        ui.close()
        api.close()


def test_hostile_rule_tags_and_names_render_as_text(server: ThreadServer, browser: Any) -> None:
    worker = running(server, "hostile-rules", [
        {"name": "odd-tag", "when": "nan", "tag": TAG, "then": []},
        {"name": "odd-pattern", "when": "log", "pattern": "<script>x</script>", "then": []}],
        "ui-hostile-rules-box")
    worker.metrics([{"step": s, "tag": TAG, "value": "Infinity" if s == 7 else 1.0}
                    for s in range(10)])
    # The API refuses such a rule name; a hit of one could still be stored by an older
    # version: written straight into the server's database.
    queue = Queue(open_store(default_url(server.data_dir), upgrade=False), stale_after_s=600)
    try:
        with queue.store.transaction() as tx:
            tx.append_event(worker.run_id, kind="rule", status="running", actor=SYSTEM,
                            attempt=1, at=time.time(), details={
                                "rule": IMG, "source": "run", "when": "nan", "tag": TAG,
                                "step": 3, "value": HOSTILE})
    finally:
        queue.store.close()
    ui = Page(browser, server, server.admin_token)
    try:
        page = ui.goto(f"/runs/{worker.run_id}")
        marks = page.locator(".chartcard g.rulemark")
        wait_until(lambda: marks.count() == 2, what="both marks")
        titles = page.eval_on_selector_all(".chartcard g.rulemark title",
                                           "ts => ts.map(t => t.textContent)")
        assert sorted(titles) == sorted([f"rule odd-tag: {TAG} = Infinity at step 7",
                                         f"rule {IMG}: {TAG} = {HOSTILE} at step 3"]), titles
        rules = page.inner_text("section.rules")
        assert f"nan tag={json.dumps(TAG)} -> event" in rules
        assert 'log pattern=<script>x</script> -> event' in rules
        assert f"{TAG} = Infinity at step 7" in rules
        assert f"rule={IMG}" in page.inner_text("ol.events")
        time.sleep(0.5)
        assert_nothing_injected(page, f"{server.url}/runs/{worker.run_id}")
        ui.shot("run-rules-hostile")
        ui.assert_clean()
    finally:
        ui.close()

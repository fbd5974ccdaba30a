"""Hostile text in headless Chromium against a real server: run names, notes, metric tags,
progress messages and log lines that look like HTML are shown as text, and a snapshot value
that is an object (stored before the server checked types) never becomes DOM properties."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from runyard.queue import Queue
from runyard.store import default_url, open_store

from ..support.live_server import LiveServer
from ..support.server_api import admin, shared_server
from ..support.ui import Page, Worker, now_iso

IMG = '<img src=x onerror="window.__pwned=1">'
META = '<meta http-equiv="refresh" content="0;url=http://127.0.0.1:9/phish">'
LINK = '<a href="javascript:window.__pwned=2">sign in again</a>'
HOSTILE = f"{IMG}{META}{LINK}"
#: Elements only hostile data could have made (the shell has none of these in <body>).
INJECTED = ("body img, body meta, body iframe, body script:not([src]), a[href^='javascript'], "
            "a[href*='phish'], #phish, [onerror], [onclick]")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with shared_server(tmp_path_factory, stale_after_s=120) as srv:
        yield srv


def direct(server: LiveServer) -> Queue:
    """The server's own database, for what its API refuses but older rows may hold."""
    return Queue(open_store(default_url(server.data_dir), upgrade=False), stale_after_s=600)


def hostile_run(server: LiveServer, host: str) -> Worker:
    admin(server).submit("hostile", project="ui-hostile", notes=f"notes {HOSTILE}",
                         config={"x": HOSTILE})
    worker = Worker(server, admin(server).token(f"{host}-worker", "worker"), host_id=host)
    worker.claim()
    worker.heartbeat(running=True)
    # The API refuses such a name; one could still be in the database from an older version.
    queue = direct(server)
    try:
        with queue.store.transaction() as tx:
            tx.update_run(worker.run_id, {"name": f"run {IMG}"})
    finally:
        queue.store.close()
    worker.metrics([{"step": s, "tag": "<img src=x onerror=alert(1)>", "value": 1.0 / (s + 1)}
                    for s in range(20)])
    worker.progress(5, 100, message=f"message {HOSTILE}",
                    metrics={"<b>bold</b>": 0.5, IMG[:60]: 0.25})
    worker.logs("stdout", 0, f"log {IMG}\nlog {META}\nlog {LINK}\n")
    return worker


def assert_nothing_injected(page: Any, start_url: str) -> None:
    found = page.eval_on_selector_all(INJECTED, "els => els.map(e => e.outerHTML.slice(0, 120))")
    assert found == [], found
    assert page.evaluate("window.__pwned") is None
    assert page.url == start_url


def test_hostile_text_is_shown_literally_on_the_runs_list_and_run_page(
        server: LiveServer, browser: Any) -> None:
    worker = hostile_run(server, "ui-text-box")
    ui = Page(browser, server, server.admin_token)
    try:
        page = ui.goto("/")
        page.wait_for_selector(f"tr[data-run-id='{worker.run_id}'] td.name a")
        row = page.inner_text(f"tr[data-run-id='{worker.run_id}']")
        assert f"run {IMG}" in row and "<b>bold</b> 0.5" in row
        assert_nothing_injected(page, server.url + "/")

        page = ui.goto(f"/runs/{worker.run_id}")
        page.wait_for_selector("pre.log:has-text('log <meta')")
        page.wait_for_selector(".chartcard g.series path.line")
        assert page.inner_text("h1").startswith(f"run {IMG}")
        facts = page.inner_text("section.progresspanel")
        assert f"message {HOSTILE}" in facts and "<b>bold</b>" in facts
        notes = page.locator("section.panel", has_text="Notes").inner_text()
        assert f"notes {HOSTILE}" in notes
        assert f"log {IMG}\nlog {META}\nlog {LINK}" in page.inner_text("pre.log")
        assert "<img src=x onerror=alert(1)>" in page.inner_text(".chartcard")
        time.sleep(0.5)  # a meta refresh of 0 s would have moved the page by now
        assert_nothing_injected(page, f"{server.url}/runs/{worker.run_id}")
        ui.shot("run-page-hostile")
        ui.assert_clean()
    finally:
        ui.close()


def test_a_stored_object_in_a_snapshot_never_becomes_dom_properties(
        server: LiveServer, browser: Any) -> None:
    worker = hostile_run(server, "ui-object-box")
    # The server refuses such a snapshot, so it goes straight into the database, as one kept
    # before the server checked snapshot types would be.
    queue = direct(server)
    try:
        queue.record_progress(worker.attempt_id, worker.lease, {
            "schema": "runyard.progress/v1", "updated_at": now_iso(), "step": 7,
            "total_steps": 100, "phase": {"innerHTML": [HOSTILE]},
            "message": {"innerHTML": [f"<p id=phish>Session expired.</p>{META}{LINK}"],
                        "style": {"position": "fixed", "inset": "0", "zIndex": "9"},
                        "onclick": "window.__pwned=3", "href": "javascript:window.__pwned=4",
                        "className": "phish", "id": "phish"},
            "metrics": {"loss": {"innerHTML": [IMG]}},
            "rate": {"value": {"innerHTML": [IMG]}, "units": {"innerHTML": [IMG]}}})
    finally:
        queue.store.close()
    ui = Page(browser, server, server.admin_token)
    try:
        page = ui.goto("/")
        page.wait_for_selector(f"tr[data-run-id='{worker.run_id}'] td.name a")
        assert_nothing_injected(page, server.url + "/")
        page = ui.goto(f"/runs/{worker.run_id}")
        page.wait_for_selector("section.progresspanel dl.kv")
        facts = page.inner_text("section.progresspanel")
        assert '{"innerHTML":["<p id=phish>Session expired.</p><meta' in facts
        time.sleep(0.5)
        assert_nothing_injected(page, f"{server.url}/runs/{worker.run_id}")
        styled = page.eval_on_selector_all("[style*='fixed'], .phish", "els => els.length")
        assert styled == 0
        ui.assert_clean()
    finally:
        ui.close()


def test_the_dom_helper_sets_only_known_attributes_and_text_children(
        server: LiveServer, browser: Any) -> None:
    ui = Page(browser, server, server.admin_token)
    try:
        page = ui.goto("/")
        page.wait_for_selector("main h1")
        got = page.evaluate("""async () => {
          const { h } = await import("/ui/js/dom.js");
          const clicks = [];
          const el = h("div", { innerHTML: ["<img src=x>"], outerHTML: ["<img>"], srcdoc: ["<img>"],
            onclick: "window.__pwned=5", onmouseover: () => clicks.push("over"),
            style: { position: "fixed" }, formaction: "javascript:1", class: "a b",
            title: "t", "data-x": "1", "aria-label": "lbl", role: "note", id: "x1",
            dataset: { y: "2" } }, "<b>text</b>", { innerHTML: ["<img>"] }, ["<i>i</i>"]);
          el.dispatchEvent(new MouseEvent("mouseover"));
          const a = (href) => h("a", { href }, "x").getAttribute("href");
          return { html: el.innerHTML, attrs: el.getAttributeNames().sort(), clicks,
                   onclick: el.onclick, position: el.style.position,
                   hrefs: [a("javascript:alert(1)"), a(" JavaScript:alert(1)"),
                           a("data:text/html,x"), a("vbscript:x"), a("/runs/1"),
                           a("https://example.org/"), a("?q=1"), a("runs/2")] };
        }""")
        assert got["html"] == ("&lt;b&gt;text&lt;/b&gt;[object Object]&lt;i&gt;i&lt;/i&gt;")
        assert got["attrs"] == ["aria-label", "class", "data-x", "data-y", "id", "role", "title"]
        assert got["clicks"] == ["over"] and got["onclick"] is None and got["position"] == ""
        assert got["hrefs"] == [None, None, None, None, "/runs/1", "https://example.org/",
                                "?q=1", "runs/2"]
        assert page.evaluate("window.__pwned") is None
    finally:
        ui.close()

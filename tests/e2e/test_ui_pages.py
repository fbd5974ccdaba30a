"""Compare, workers and queue pages in headless Chromium against a real server."""

from __future__ import annotations

import math
from typing import Any

from ..support.live_server import LiveServer
from ..support.server_api import Api, admin
from ..support.ui import Page, Worker, wait_until

GPU_CAPS = {"gpus": [{"index": 0, "name": "NVIDIA H200", "vram_gib": 139.8, "uuid": "GPU-0"},
                     {"index": 1, "name": "NVIDIA H200", "vram_gib": 139.8, "uuid": "GPU-1"}],
            "cuda_driver": "560.35", "labels": {"site": "lab"}}


def test_compare_draws_one_series_per_run(server: LiveServer, browser: Any,
                                          tokens: dict[str, str]) -> None:
    runs = []
    for i, lr in enumerate((0.1, 0.03, 0.01)):
        admin(server).submit(f"sweep-lr{lr}", project="ui-sweep")
        w = Worker(server, tokens["worker"], host_id=f"ui-sweep-{i}")
        w.claim()
        w.metrics([{"step": s, "tag": "loss", "value": 2 * math.exp(-s * lr / 3)}
                   for s in range(0, 200)]
                  + [{"step": s, "tag": f"only_{i}", "value": 1.0} for s in range(3)])
        runs.append(w.run_id)
    ui = Page(browser, server, tokens["viewer"])
    try:
        # Picked on the runs page: tick three, press Compare.
        page = ui.goto("/?project=ui-sweep")
        for rid in runs:
            page.check(f"tr[data-run-id='{rid}'] input[type=checkbox]")
        assert page.inner_text("form.filters button >> text=Compare") == "Compare (3)"
        page.click("form.filters button >> text=Compare")
        page.wait_for_selector(".chartcard g.series path.line")
        assert page.evaluate("location.pathname") == "/compare"
        labels = page.eval_on_selector_all(
            ".chartcard g.series", "gs => gs.map(g => [g.dataset.label, +g.dataset.points])")
        assert labels == [["sweep-lr0.1", 200], ["sweep-lr0.03", 200], ["sweep-lr0.01", 200]]
        assert page.input_value("select[aria-label=metric]") == "loss"
        table = page.inner_text("section.panel:has(h2:text('Runs'))")
        assert "sweep-lr0.01" in table and "at step 199" in table
        ui.shot("compare")
        page.select_option("select[aria-label=metric]", "only_1")
        wait_until(lambda: page.eval_on_selector_all(
            ".chartcard g.series", "gs => gs.map(g => +g.dataset.points)") == [0, 3, 0],
            what="the other metric")
        assert "tag=only_1" in page.evaluate("location.search")
        # Wrong selections are explained, not drawn.
        page = ui.goto(f"/compare?runs={runs[0]}")
        page.wait_for_selector("text=Pick 2 to 10 runs")
        page = ui.goto(f"/compare?runs={runs[0]},nope-run,{runs[1]}")
        page.wait_for_selector("p.error:has-text(\"nope-run: no run 'nope-run'\")")
        page.wait_for_selector(".chartcard g.series")
        assert page.locator(".chartcard g.series").count() == 2
        many = ",".join(f"r{i}" for i in range(11))
        page = ui.goto(f"/compare?runs={many}")
        page.wait_for_selector("text=At most 10 runs")
        ui.assert_clean(allow=lambda e: "404" in e)
    finally:
        ui.close()


def test_workers_page_shows_capabilities_and_drains_for_operators(
        server: LiveServer, browser: Any, tokens: dict[str, str]) -> None:
    admin(server).submit("on-gpu", project="ui-workers")
    worker = Worker(server, tokens["worker"], host_id="ui-gpu-box", **GPU_CAPS)
    worker.claim()
    ui = Page(browser, server, server.admin_token)
    try:
        page = ui.goto("/workers")
        row = page.locator("tr[data-host='ui-gpu-box']")
        row.wait_for()
        text = row.inner_text()
        for part in ("alive", "NVIDIA H200 (139.8 GiB)", "site=lab", "1 / 4", "on-gpu",
                     "CUDA driver 560.35", "8 CPUs", "32 GiB RAM"):
            assert part in text, part
        ui.shot("workers")
        row.locator("button[data-action='drain']").click()
        page.wait_for_selector("tr[data-host='ui-gpu-box'] button[data-action='resume']")
        assert "drained" in row.inner_text()
        got = admin(server).ok("GET", "/v1/workers")["items"]
        assert [w["drained"] for w in got if w["host_id"] == "ui-gpu-box"] == [True]
        row.locator("button[data-action='resume']").click()
        page.wait_for_selector("tr[data-host='ui-gpu-box'] button[data-action='drain']")
        ui.assert_clean()
    finally:
        ui.close()
    viewer = Page(browser, server, tokens["viewer"])
    try:
        page = viewer.goto("/workers")
        page.wait_for_selector("tr[data-host='ui-gpu-box']")
        assert page.locator("button[data-action]").count() == 0
        assert page.locator("th").all_inner_texts()[-1] == "Current runs"
        viewer.assert_clean()
    finally:
        viewer.close()


def test_queue_page_orders_runs_and_explains_each(server: LiveServer, browser: Any,
                                                  tokens: dict[str, str]) -> None:
    api = admin(server)
    for item in api.ok("GET", "/v1/queue")["items"]:
        api.ok("POST", f"/v1/runs/{item['run']['id']}/cancel")
    cpu = Worker(server, tokens["worker"], host_id="ui-queue-box")
    r = cpu.http.post("/v1/workers/claim", json={"host_id": cpu.host_id, "capabilities": cpu.caps})
    assert r.status_code == 204  # registered, nothing to take
    low = api.submit("q-low", project="ui-queue")
    high = api.submit("q-high", project="ui-queue", priority=9)
    big = api.submit("q-needs-4-gpus", project="ui-queue", constraints={"gpus": 4})
    ui = Page(browser, server, tokens["viewer"])
    try:
        page = ui.goto("/queue")
        page.wait_for_selector("table.queue tr[data-run-id]")
        order = page.eval_on_selector_all("table.queue tr[data-run-id]",
                                          "rs => rs.map(r => r.dataset.runId)")
        assert order == [high["id"], low["id"], big["id"]]
        big_row = page.locator(f"tr[data-run-id='{big['id']}']")
        assert "4 GPU" in big_row.inner_text()
        assert "no registered worker can ever serve this run" in big_row.inner_text()
        big_row.locator("summary").click()
        assert "ui-queue-box" in big_row.locator("details").inner_text()
        ui.shot("queue")
        # Live: a new high-priority run appears at the top without a reload.
        page.evaluate("window.__sameDocument = 'yes'")
        top = api.submit("q-urgent", project="ui-queue", priority=50)
        page.wait_for_selector(f"table.queue tr[data-run-id='{top['id']}'] >> nth=0")
        wait_until(lambda: page.eval_on_selector_all(
            "table.queue tr[data-run-id]", "rs => rs.map(r => r.dataset.runId)")[0] == top["id"],
            what="the new run first")
        assert page.evaluate("window.__sameDocument") == "yes"
        # The explanation stayed unfolded across the refresh.
        assert page.locator(f"tr[data-run-id='{big['id']}'] details[open]").count() == 1
        assert "4 queued" in page.inner_text("main")
        ui.assert_clean()
    finally:
        ui.close()
    assert Api(server, tokens["worker"]).get("/v1/queue").status_code == 403

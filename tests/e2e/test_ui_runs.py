"""The runs page in headless Chromium against a real server: live progress, filters, pages,
login, and what each role sees."""

from __future__ import annotations

from typing import Any

from ..support.live_server import LiveServer
from ..support.server_api import Api, admin
from ..support.ui import Page, Worker, wait_until


def rows_are(page: Any, n: int) -> None:
    page.wait_for_function("n => document.querySelectorAll('tr[data-run-id]').length === n",
                           arg=n)


def ids_are(page: Any, ids: list[str]) -> None:
    """Wait until the table shows exactly these runs, in this order."""
    page.wait_for_function(
        "ids => JSON.stringify([...document.querySelectorAll('tr[data-run-id]')]"
        ".map(r => r.dataset.runId)) === JSON.stringify(ids)", arg=ids)


def percent(page: Any, run_id: str) -> float | None:
    raw = page.get_attribute(f'tr[data-run-id="{run_id}"] .progress', "data-percent")
    return float(raw) if raw else None


def test_progress_bar_advances_live_without_a_reload(server: LiveServer, browser: Any,
                                                     tokens: dict[str, str]) -> None:
    api = admin(server)
    run = api.submit("live-bar", project="ui-live")
    ui = Page(browser, server, server.admin_token)
    try:
        page = ui.goto("/?project=ui-live")
        row = f'tr[data-run-id="{run["id"]}"]'
        page.wait_for_selector(f'{row} .badge[data-status="queued"]')
        page.evaluate("window.__sameDocument = 'yes'")
        worker = Worker(server, tokens["worker"])
        assert worker.claim()["run"]["id"] == run["id"]
        worker.heartbeat(running=True)
        page.wait_for_selector(f'{row} .badge[data-status="running"]')
        worker.progress(10, 200, metrics={"loss": 1.5}, rate={"value": 4.0, "units": "steps/s"})
        page.wait_for_function(
            "id => document.querySelector(`tr[data-run-id='${id}'] .progress`)"
            "?.dataset.percent === '5.000'", arg=run["id"])
        ui.shot("runs-live-5pct")
        seen = [percent(page, run["id"])]
        for step in (60, 120, 170):
            worker.progress(step, 200, metrics={"loss": 1.5 - step / 200})
            wait_until(lambda s=step: percent(page, run["id"]) == 100 * s / 200,
                       what=f"the bar at step {step}")
            seen.append(percent(page, run["id"]))
        assert seen == [5.0, 30.0, 60.0, 85.0]
        text = page.inner_text(f"{row} td.prog")
        assert "85%" in text and "ETA" in text and "step 170 / 200" in text
        assert "loss 0.65" in page.inner_text(f"{row} td.metrics")
        assert page.evaluate("window.__sameDocument") == "yes", "the page was reloaded"
        assert page.get_attribute("#live", "class") == "live"
        ui.shot("runs-live-85pct")
        worker.fail("user_error", exit_code=3)
        page.wait_for_selector(f'{row} .badge[data-status="failed"]')
        assert page.evaluate("window.__sameDocument") == "yes"
        ui.assert_clean()
    finally:
        ui.close()


def test_a_stalled_run_is_marked_live_and_cleared_by_a_new_step(
        server: LiveServer, browser: Any, tokens: dict[str, str]) -> None:
    api = admin(server)
    run = api.submit("will-stall", project="ui-stall", stall_after_s=1)
    worker = Worker(server, tokens["worker"], host_id="ui-stall-box")
    assert worker.claim()["run"]["id"] == run["id"]
    worker.heartbeat(running=True)
    worker.progress(3, 100)
    ui = Page(browser, server, tokens["viewer"])
    try:
        page = ui.goto("/?project=ui-stall")
        row = f'tr[data-run-id="{run["id"]}"]'
        page.wait_for_selector(f"{row} .badge[data-status='running']")
        # The sweeper (every 5 s here) marks it; the page hears of it through the stream.
        page.wait_for_selector(f"{row} .stalled", timeout=20_000)
        assert api.ok("GET", f"/v1/runs/{run['id']}")["stalled"] is True
        ui.shot("runs-stalled")
        worker.heartbeat(running=True)
        worker.progress(4, 100)
        page.wait_for_selector(f"{row} .stalled", state="detached", timeout=20_000)
        assert percent(page, run["id"]) == 4.0
        ui.assert_clean()
    finally:
        ui.close()


def test_filters_and_keyset_pages(server: LiveServer, browser: Any,
                                  tokens: dict[str, str]) -> None:
    api = admin(server)
    ids = [api.submit(f"bulk-{i:02d}", project="ui-bulk")["id"] for i in range(62)]
    api.submit("other-project", project="ui-elsewhere")
    ui = Page(browser, server, tokens["viewer"])
    try:
        page = ui.goto("/")
        page.fill("input[name=project]", "ui-bulk")
        page.click("form.filters button[type=submit]")
        ids_are(page, ids[::-1][:50])  # newest first
        assert page.evaluate("location.search") == "?project=ui-bulk"
        page.click("text=Older →")
        ids_are(page, ids[::-1][50:])
        assert page.is_disabled("text=Older →")
        assert page.inner_text("div.pager span") == "runs 51–62"
        page.click("text=← Newer")
        ids_are(page, ids[::-1][:50])
        page.fill("input[name=name]", "bulk-6")
        page.click("form.filters button[type=submit]")
        rows_are(page, 2)
        names = page.eval_on_selector_all("td.name a", "as => as.map(a => a.textContent)")
        assert sorted(names) == ["bulk-60", "bulk-61"]
        page.fill("input[name=name]", "")
        page.select_option("select[name=status]", "running")
        page.click("form.filters button[type=submit]")
        page.wait_for_selector("text=No runs match")
        ui.shot("runs-filtered-empty")
        # A shared link with filters opens filtered.
        page = ui.goto("/?project=ui-bulk&name=bulk-0")
        rows_are(page, 10)
        assert page.input_value("input[name=name]") == "bulk-0"
        ui.shot("runs-page")
        ui.assert_clean()
    finally:
        ui.close()


def test_login_form_keeps_a_valid_token_and_refuses_bad_ones(server: LiveServer, browser: Any,
                                                             tokens: dict[str, str]) -> None:
    ui = Page(browser, server, None)
    try:
        page = ui.goto("/")
        page.wait_for_selector("form.login")
        ui.shot("login")
        assert page.query_selector("table.runs") is None
        page.fill("#token", "ry_not_a_real_token_000000000000")
        page.click("form.login button")
        page.wait_for_selector("text=That token is not valid")
        page.fill("#token", tokens["worker"])
        page.click("form.login button")
        page.wait_for_selector("text=cannot use the web UI")
        page.fill("#token", tokens["viewer"])
        page.click("form.login button")
        page.wait_for_selector("table.runs")
        assert page.inner_text("#who").split() == ["ui-viewer", "viewer"]
        assert page.evaluate("localStorage.getItem('runyard.token')") == tokens["viewer"]
        page.reload()
        page.wait_for_selector("table.runs")  # remembered across loads
        page.click("#logout")
        page.wait_for_selector("form.login")
        assert page.evaluate("localStorage.getItem('runyard.token')") is None
        # The server, not the page, decides: 401s were answered to the refused tokens only.
        ui.assert_clean(allow=lambda e: "401" in e or "403" in e)
    finally:
        ui.close()


def test_a_revoked_token_returns_to_the_login_form(server: LiveServer, browser: Any) -> None:
    api = admin(server)
    secret = api.token("ui-soon-revoked", "viewer")
    ui = Page(browser, server, secret)
    try:
        page = ui.goto("/")
        page.wait_for_selector("table.runs")
        api.ok("DELETE", "/v1/tokens/ui-soon-revoked", 204)
        page.wait_for_timeout(2500)  # past the server's 2 s token cache
        # Any call now gets 401 (the page may already have made one on its own).
        page.evaluate("document.querySelector('form.filters')?.requestSubmit()")
        page.wait_for_selector("text=Your token was refused")
        assert page.query_selector("table.runs") is None
    finally:
        ui.close()


def test_role_decides_which_buttons_exist(server: LiveServer, browser: Any,
                                          tokens: dict[str, str]) -> None:
    api = admin(server)
    theirs = api.submit("admins-run", project="ui-roles")
    mine = Api(server, tokens["user"]).submit("users-run", project="ui-roles")
    failed = api.submit("failed-run", project="ui-roles")
    api.ok("POST", f"/v1/runs/{failed['id']}/cancel")

    def buttons(token: str, run_id: str) -> list[str]:
        ui = Page(browser, server, token)
        try:
            page = ui.goto(f"/runs/{run_id}")
            page.wait_for_selector("section.progresspanel h2")
            page.wait_for_selector("ol.events li")
            got: list[str] = page.eval_on_selector_all(
                "button[data-action]", "bs => bs.map(b => b.dataset.action)")
            if token == tokens["viewer"]:
                assert page.query_selector("text=Stop") is None
                assert page.query_selector("input[aria-label='grace seconds']") is None
                ui.shot("run-as-viewer")
            ui.assert_clean()
            return got
        finally:
            ui.close()

    assert buttons(tokens["viewer"], theirs["id"]) == []
    assert buttons(tokens["viewer"], failed["id"]) == []
    assert buttons(tokens["user"], theirs["id"]) == []  # not the owner
    assert buttons(tokens["user"], mine["id"]) == ["stop"]  # a user deletes local runs only
    assert buttons(server.admin_token, theirs["id"]) == ["stop", "delete"]
    assert buttons(server.admin_token, failed["id"]) == ["restart", "requeue", "delete"]
    # On the runs page a viewer gets no action controls at all.
    ui = Page(browser, server, tokens["viewer"])
    try:
        page = ui.goto("/?project=ui-roles")
        page.wait_for_selector("tr[data-run-id]")
        assert page.query_selector_all("button[data-action]") == []
    finally:
        ui.close()

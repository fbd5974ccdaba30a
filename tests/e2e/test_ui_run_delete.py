"""The run page's Delete button in headless Chromium against a real server process: operators
delete any ended run, a user its own local runs (a real SDK run in HTTP mode, whose files in
the server's data directory go with it), a viewer sees no button, an active run cannot be."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runyard import sdk
from runyard.sdk import settings

from ..support.live_server import LiveServer
from ..support.server_api import admin
from ..support.ui import Page


@pytest.fixture(autouse=True)
def _reset_settings() -> Iterator[None]:
    settings.reset()
    yield
    settings.reset()


def ended_run(server: LiveServer, name: str) -> str:
    """A scheduled run of the operator's, cancelled while queued."""
    api = admin(server)
    try:
        run = api.submit(name, project="ui-delete")
        api.ok("POST", f"/v1/runs/{run['id']}/cancel", json={})
        return str(run["id"])
    finally:
        api.close()


def open_run(ui: Page, run_id: str, name: str) -> Any:
    page = ui.goto(f"/runs/{run_id}")
    page.get_by_role("heading", name=name).wait_for()
    return page


def delete_button(page: Any) -> Any:
    return page.get_by_role("button", name="Delete", exact=True)


def test_a_live_event_during_the_deletion_asks_nothing_of_the_deleted_run(
        server: LiveServer, browser: Any) -> None:
    """The page fetches its run again 300 ms after a live event: an event just before the
    deletion must not have it ask for the run once the deletion is sent (a 404 in the
    console, once seen in a full run)."""
    run_id = ended_run(server, "edited-then-deleted")
    api = admin(server)
    ui = Page(browser, server, server.admin_token)
    sent: list[tuple[str, str]] = []
    ui.page.on("request", lambda req: sent.append((req.method, req.url)))
    try:
        page = open_run(ui, run_id, "edited-then-deleted")
        # The live stream has answered (it starts there), so the edit below reaches the page.
        page.locator("#live[title='live updates: connected']").wait_for(state="attached")
        delete_button(page).click()
        api.ok("PATCH", f"/v1/runs/{run_id}", json={"notes": "one last edit"})
        page.locator("ol.events li[data-kind='edited']").wait_for()
        page.get_by_role("button", name="Delete for good").click()
        page.get_by_role("heading", name="Run deleted").wait_for()
        page.wait_for_timeout(1000)  # past the refetch that the edit scheduled
        deletion = sent.index(("DELETE", f"{server.url}/v1/runs/{run_id}"))
        late = [req for req in sent[deletion + 1:] if run_id in req[1]]
        assert late == [], late
        assert api.get(f"/v1/runs/{run_id}").status_code == 404
        ui.assert_clean()
    finally:
        ui.context.close()
        api.close()


def test_an_operator_deletes_an_ended_run_after_confirming(
        server: LiveServer, browser: Any) -> None:
    run_id = ended_run(server, "doomed")
    api = admin(server)
    ui = Page(browser, server, server.admin_token)
    try:
        page = open_run(ui, run_id, "doomed")
        # Delete only asks; Cancel leaves everything as it was.
        delete_button(page).click()
        confirm = page.get_by_role("group", name="Delete run doomed")
        assert "cannot be undone" in confirm.inner_text()
        page.get_by_role("button", name="Cancel").click()
        delete_button(page).wait_for()
        assert api.get(f"/v1/runs/{run_id}").status_code == 200

        delete_button(page).click()
        ui.shot("run-delete-confirm")
        page.get_by_role("button", name="Delete for good").click()
        page.get_by_role("heading", name="Run deleted").wait_for()
        assert run_id in page.locator("main").inner_text()
        assert api.get(f"/v1/runs/{run_id}").status_code == 404
        ui.assert_clean()
    finally:
        ui.close()
        api.close()


def test_a_viewer_sees_no_delete_button(server: LiveServer, browser: Any,
                                        tokens: dict[str, str]) -> None:
    run_id = ended_run(server, "kept-for-viewers")
    ui = Page(browser, server, tokens["viewer"])
    try:
        page = open_run(ui, run_id, "kept-for-viewers")
        page.locator(".panel h2", has_text="Where it ran").wait_for()
        assert delete_button(page).count() == 0
        assert page.locator("[data-action='delete']").count() == 0
        ui.assert_clean()
    finally:
        ui.close()


def test_a_user_deletes_its_own_local_run_and_its_files_not_others(
        server: LiveServer, browser: Any, tokens: dict[str, str]) -> None:
    # A notebook run through the SDK's HTTP mode, on the server's machine and data directory
    # (as under `runyard up`): its checkpoints and artifacts are kept in its own folder there.
    env = {"RUNYARD_SERVER": server.url, "RUNYARD_TOKEN": tokens["user"],
           "RUNYARD_DATA_DIR": str(server.data_dir), "RUNYARD_SYS_INTERVAL_S": "0"}
    with sdk.start_run(name="my-notebook", project="ui-delete", env=env,
                       handle_sigterm=False) as run:
        run.log({"loss": 0.5}, step=1)
        assert run.artifact_dir is not None
        (Path(run.artifact_dir) / "plot.txt").write_text("a plot")
    folder = server.data_dir / "local-runs" / run.run_id
    assert (folder / "artifacts" / "plot.txt").is_file()
    others = ended_run(server, "not-mine")
    ui = Page(browser, server, tokens["user"])
    try:
        # Someone else's run: no button.
        page = open_run(ui, others, "not-mine")
        page.locator(".panel h2", has_text="Where it ran").wait_for()
        assert delete_button(page).count() == 0
        page = open_run(ui, run.run_id, "my-notebook")
        delete_button(page).click()
        page.get_by_role("button", name="Delete for good").click()
        page.get_by_role("heading", name="Run deleted").wait_for()
        assert not folder.exists()
        assert (server.data_dir / "local-runs").is_dir()
        assert admin(server).get(f"/v1/runs/{run.run_id}").status_code == 404
        ui.assert_clean()
    finally:
        ui.close()


def test_an_active_run_cannot_be_deleted(server: LiveServer, browser: Any) -> None:
    api = admin(server)
    started = api.ok("POST", "/v1/runs", 201, json={
        "name": "still-going", "executor": "local", "host_id": "ui-laptop"})
    ui = Page(browser, server, server.admin_token)
    try:
        page = open_run(ui, started["run"]["id"], "still-going")
        button = delete_button(page)
        assert button.is_disabled()
        assert "stop it first" in (button.get_attribute("title") or "")
        # The API says why as well.
        r = api.request("DELETE", f"/v1/runs/{started['run']['id']}")
        assert r.status_code == 409 and "active run is not deleted" in r.json()["error"]["message"]
    finally:
        ui.close()
        api.ok("POST", f"/v1/attempts/{started['attempt']['id']}/complete",
               json={"lease": started["lease"]})
        api.close()


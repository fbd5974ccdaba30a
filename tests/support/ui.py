"""Helpers for the web UI tests (no tests here): Debian's Chromium driven by Playwright, a
worker that reports through the real worker HTTP API with a real lease, screenshots."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from .live_server import LiveServer
from .server_api import caps

#: Debian's headless shell of Chromium (the engine without the browser's window machinery,
#: as Playwright runs headless tests): the full browser costs the tests several times the CPU.
CHROMIUM = os.environ.get("RUNYARD_TEST_CHROMIUM", "/usr/lib/chromium/chromium-headless-shell")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]
#: Screenshots land here (git-ignored); look at them after a change to the UI.
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"
TOKEN_KEY = "runyard.token"


def now_iso() -> str:
    return datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium (the system's headless shell; Playwright's own download is not
    used)."""
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} is missing: install it with `apt-get install -y "
                           "chromium-headless-shell` (scripts/test.sh does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class Page:
    """A browser page signed in with ``token``; collects console errors and page crashes."""

    def __init__(self, browser: Any, server: LiveServer, token: str | None,
                 width: int = 1400, height: int = 900) -> None:
        self.server = server
        self.context = browser.new_context(viewport={"width": width, "height": height})
        if token:
            self.context.add_init_script(
                f"localStorage.setItem({json.dumps(TOKEN_KEY)}, {json.dumps(token)})")
        self.page = self.context.new_page()
        self.page.set_default_timeout(15_000)
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        self.page.on("console", lambda msg: self.errors.append(f"console: {msg.text}")
                     if msg.type == "error" else None)
        self.page.on("request", lambda req: self.requests.append(req.url))

    def goto(self, path: str) -> Any:
        self.page.goto(self.server.url + path)
        return self.page

    def shot(self, name: str) -> Path:
        SHOTS.mkdir(parents=True, exist_ok=True)
        path = SHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def assert_clean(self, allow: Callable[[str], bool] | None = None) -> None:
        """No script errors, and every request stayed on this server."""
        errs = [e for e in self.errors if not (allow and allow(e))]
        assert not errs, errs
        foreign = [u for u in self.requests if not u.startswith(self.server.url)
                   and not u.startswith(("data:", "blob:"))]
        assert not foreign, foreign

    def close(self) -> None:
        self.context.close()


class Worker:
    """Holds one real lease through the worker API: claim, heartbeat, progress, metrics."""

    def __init__(self, server: LiveServer, token: str, host_id: str = "ui-box",
                 **cap: Any) -> None:
        self.http = httpx.Client(base_url=server.url, timeout=30,
                                 headers={"Authorization": f"Bearer {token}"})
        self.host_id = host_id
        self.caps = caps(host_id, **cap)
        self.claim_body: dict[str, Any] | None = None

    def claim(self) -> dict[str, Any]:
        r = self.http.post("/v1/workers/claim", json={"host_id": self.host_id,
                                                      "capabilities": self.caps})
        assert r.status_code == 200, f"claim: {r.status_code} {r.text}"
        self.claim_body = r.json()
        return self.claim_body

    @property
    def attempt_id(self) -> str:
        assert self.claim_body is not None
        return str(self.claim_body["attempt"]["id"])

    @property
    def lease(self) -> str:
        assert self.claim_body is not None
        return str(self.claim_body["lease"])

    @property
    def run_id(self) -> str:
        assert self.claim_body is not None
        return str(self.claim_body["run"]["id"])

    def heartbeat(self, running: bool = True) -> dict[str, Any]:
        r = self.http.post(f"/v1/attempts/{self.attempt_id}/heartbeat",
                           json={"lease": self.lease, "running": running})
        assert r.status_code == 200, r.text
        out: dict[str, Any] = r.json()
        return out

    def progress(self, step: int, total: int, **extra: Any) -> None:
        snap = {"schema": "runyard.progress/v1", "updated_at": now_iso(), "seq": step,
                "phase": "train", "step": step, "total_steps": total, **extra}
        r = self.http.post(f"/v1/attempts/{self.attempt_id}/progress",
                           json={"lease": self.lease, "snapshot": snap})
        assert r.status_code == 200, r.text

    def metrics(self, points: list[dict[str, Any]]) -> None:
        r = self.http.post(f"/v1/runs/{self.run_id}/metrics",
                           json={"attempt_id": self.attempt_id, "lease": self.lease,
                                 "points": points})
        assert r.status_code == 200, r.text

    def logs(self, stream: str, offset: int, data: str) -> None:
        r = self.http.post(f"/v1/attempts/{self.attempt_id}/logs", json={
            "lease": self.lease, "chunks": [{"stream": stream, "offset": offset, "data": data}]})
        assert r.status_code == 200, r.text

    def fail(self, reason: str, exit_code: int | None = None) -> dict[str, Any]:
        r = self.http.post(f"/v1/attempts/{self.attempt_id}/fail",
                           json={"lease": self.lease, "reason": reason, "exit_code": exit_code})
        assert r.status_code == 200, r.text
        out: dict[str, Any] = r.json()
        return out

    def close(self) -> None:
        self.http.close()


def wait_until(check: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)

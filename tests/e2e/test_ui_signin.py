"""The sign-in link a real ``runyard up`` prints, opened in headless Chromium: it signs the
browser in once, with a token of its own, and is dead afterwards (in the browser and over
HTTP); a wrong code gets the same clear page."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from ..support.ui import TOKEN_KEY, Page
from ..support.up import Up
from .test_cli_runs import cli, ok, one_line_error


def stored_token(page: Any) -> str | None:
    value = page.evaluate(f"localStorage.getItem({json.dumps(TOKEN_KEY)})")
    return None if value is None else str(value)


def refused(page: Any) -> str:
    page.get_by_role("heading", name="Sign-in link refused").wait_for()
    return str(page.locator("main").inner_text())


def test_the_printed_link_signs_the_browser_in_once(tmp_path: Path, browser: Any) -> None:
    data_dir = tmp_path / "data"
    up = Up(tmp_path, data_dir, cwd=tmp_path)
    first = second = wrong = None
    try:
        up.wait_ready(timeout=120)
        link = up.signin_link()
        prefix = f"http://127.0.0.1:{up.port}/login#code="
        assert link.startswith(prefix), up.stdout()
        code = link.removeprefix(prefix)
        assert len(code) == 43
        assert f"operator token in {data_dir / 'admin-token'}" in up.stdout()

        first = Page(browser, up, None)  # type: ignore[arg-type]
        page = first.page
        page.goto(link)
        page.get_by_role("heading", name="Runs").wait_for()
        assert page.url == f"{up.url}/"  # the code left the address bar
        who = page.locator("#who").inner_text()
        assert "admin@web-" in who and "operator" in who
        token = stored_token(page)
        admin_secret = (data_dir / "admin-token").read_text().strip()
        assert token and token != admin_secret  # the browser's own token
        first.shot("signin-link-used")
        first.assert_clean()
        with httpx.Client(base_url=up.url, timeout=30) as http:
            me = http.get("/v1/whoami", headers={"Authorization": f"Bearer {token}"}).json()
            assert me["role"] == "operator" and me["name"] in who
            # Dead over HTTP too, and it names the token it made.
            r = http.post("/v1/signin", json={"code": code})
            assert r.status_code == 409 and me["name"] in r.json()["error"]["message"]

        # The same link in another browser: refused, and nothing is stored.
        second = Page(browser, up, None)  # type: ignore[arg-type]
        second.page.goto(link)
        text = refused(second.page)
        assert "already used" in text and "runyard token link" in text
        assert stored_token(second.page) is None
        assert "#code" not in second.page.url
        second.page.get_by_role("link", name="Sign in with a token").click()
        second.page.get_by_role("heading", name="Sign in").wait_for()

        wrong = Page(browser, up, None)  # type: ignore[arg-type]
        wrong.page.goto(prefix + "x" * 43)
        assert "not valid" in refused(wrong.page)
        # The code never reached the server's log (the fragment is not sent).
        assert code not in (data_dir / "logs" / "server.log").read_text()

        # `runyard token link` makes another link (operators only), good once.
        fresh = json.loads(ok(cli(up.url, "token", "link", "--json", "--ttl-s", "120",
                                  token=admin_secret)))
        assert fresh["url"].startswith(prefix) and fresh["code"] != code
        text = ok(cli(up.url, "token", "link", token=admin_secret))
        assert text.strip().startswith(prefix)
        with httpx.Client(base_url=up.url, timeout=30) as http:
            assert http.post("/v1/signin", json={"code": fresh["code"]}).status_code == 200
            assert http.post("/v1/signin", json={"code": fresh["code"]}).status_code == 409
            user = http.post("/v1/tokens", json={"name": "someone", "role": "user"},
                             headers={"Authorization": f"Bearer {admin_secret}"}).json()
        err = one_line_error(cli(up.url, "token", "link", token=user["token"]), 1)
        assert err.startswith("runyard: 403") and "operator only" in err
    finally:
        for ui in (first, second, wrong):
            if ui is not None:
                ui.close()
        up.stop()

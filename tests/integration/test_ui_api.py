"""The web UI's server side against the real app (in process, on a real SQLite file): pages,
assets, whoami, queue."""

from __future__ import annotations

import re
import tomllib
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import httpx
import pytest

from runyard.server.ui import routes_ui

from ..support.app_server import AppServer
from ..support.server_api import Api, admin, caps, error_of

STATIC = Path(routes_ui.__file__).parent / "static"
ROOT = Path(__file__).resolve().parents[2]


def get(server: AppServer, path: str, **kw: Any) -> httpx.Response:
    """An anonymous GET."""
    with server.client() as http:
        return http.get(path, **kw)


@pytest.mark.parametrize("path", ["/", "/runs/01abc", "/compare", "/workers", "/queue",
                                  "/notifications", "/login"])
def test_every_page_serves_the_shell_with_a_strict_policy(shared_app: AppServer, path: str) -> None:
    r = get(shared_app, path)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/ui/js/main.js"></script>' in r.text
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"


def test_assets_have_etags_and_unknown_names_are_404(shared_app: AppServer) -> None:
    r = get(shared_app, "/ui/js/main.js")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
    again = get(shared_app, "/ui/js/main.js", headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304 and not again.content
    assert get(shared_app, "/ui/app.css").headers["content-type"].startswith("text/css")
    for bad in ("/ui/nope.js", "/ui/..%2F__init__.py", "/ui/%2E%2E/routes_ui.py",
                "/ui/js/../../routes_ui.py"):
        r = get(shared_app, bad)
        assert r.status_code == 404, bad
        assert error_of(r)["type"] == "NotFound"


def _static_files() -> list[Path]:
    return sorted(p for p in STATIC.rglob("*") if p.is_file())


def test_every_local_import_and_link_resolves_and_nothing_is_remote() -> None:
    names = {p.relative_to(STATIC).as_posix() for p in _static_files()}
    assert {"index.html", "app.css", "js/main.js"} <= names
    for path in _static_files():
        text = path.read_text()
        # No CDN or other network use: the only URL is the SVG namespace.
        urls = set(re.findall(r"https?://[^\s\"'<>)]+", text)) - {"http://www.w3.org/2000/svg"}
        assert not urls, f"{path.name} refers to {urls}"
        if path.suffix == ".js":
            for dep in re.findall(r"(?:from|import\()\s*\"\./([\w.]+)\"", text):
                assert f"js/{dep}" in names, f"{path.name} imports missing {dep}"
            unsafe = re.search(r"\.(inner|outer)HTML\s*[+]?=|insertAdjacentHTML|document\.write",
                               text)
            assert not unsafe, f"{path.name}: build the DOM from text nodes only"
    html = (STATIC / "index.html").read_text()
    for ref in re.findall(r"(?:src|href)=\"/ui/([^\"]+)\"", html):
        assert ref in names, ref


def test_package_data_ships_every_static_file() -> None:
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["runyard"]
    for path in _static_files():
        rel = path.relative_to(ROOT / "runyard").as_posix()
        assert any(fnmatch(rel, pat) or fnmatch(path.name, pat.removeprefix("**/"))
                   for pat in patterns), f"{rel} is not in package-data"
    assert set(routes_ui.load_assets()) == {p.relative_to(STATIC).as_posix()
                                             for p in _static_files()}


def test_whoami_names_the_token_and_what_its_role_may_do(shared_app: AppServer) -> None:
    api = admin(shared_app)
    tokens = {role: api.token(f"ui-who-{role}", role)
              for role in ("viewer", "user", "operator", "worker")}
    expect = {
        "viewer": dict(read=True, stop_own=False, stop_any=False, requeue=False, drain=False),
        "user": dict(read=True, stop_own=True, stop_any=False, requeue=False, drain=False),
        "operator": dict(read=True, stop_own=True, stop_any=True, requeue=True, drain=True),
        "worker": dict(read=False, stop_own=False, stop_any=False, requeue=False, drain=False),
    }
    for role, secret in tokens.items():
        me = Api(shared_app, secret).ok("GET", "/v1/whoami")
        assert me["name"] == f"ui-who-{role}" and me["role"] == role and me["auth"] is True
        assert {k: me["can"][k] for k in expect[role]} == expect[role], role
    r = get(shared_app, "/v1/whoami")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert error_of(r)["type"] == "AuthError"
    api.ok("DELETE", "/v1/tokens/ui-who-viewer", 204)
    assert Api(shared_app, tokens["viewer"]).get("/v1/whoami").status_code == 401


def test_whoami_without_auth_is_the_anonymous_operator(tmp_path: Path) -> None:
    srv = AppServer(tmp_path, no_auth=True).start()
    try:
        me = get(srv, "/v1/whoami").json()
        assert me == {"name": "anonymous", "role": "operator", "auth": False,
                      "can": me["can"]} and me["can"]["drain"] is True
    finally:
        srv.stop()


def test_queue_is_in_claim_order_with_explanations(shared_app: AppServer) -> None:
    api = admin(shared_app)
    worker = Api(shared_app, api.token("ui-queue-worker", "worker"))
    # Register a CPU worker while nothing is queued (so it claims nothing).
    for item in api.ok("GET", "/v1/queue")["items"]:
        api.ok("POST", f"/v1/runs/{item['run']['id']}/cancel")
    r = worker.post("/v1/workers/claim", {"host_id": "ui-cpu", "capabilities": caps("ui-cpu")})
    assert r.status_code == 204, r.text
    a = api.submit("q-a", project="uiq")
    b = api.submit("q-b", project="uiq", priority=5)
    c = api.submit("q-c", project="uiq")
    d = api.submit("q-d", project="uiq", constraints={"gpus": 1})
    got = Api(shared_app, api.token("ui-queue-viewer", "viewer")).ok("GET", "/v1/queue")
    ids = [item["run"]["id"] for item in got["items"]]
    assert ids == [b["id"], a["id"], c["id"], d["id"]]
    assert [item["position"] for item in got["items"]] == [1, 2, 3, 4]
    assert got["total"] == 4
    first = got["items"][0]
    assert first["run"]["priority"] == 5 and "lease" not in first["run"]
    assert first["explain"]["summary"].startswith("eligible on ui-cpu")
    last = got["items"][3]["explain"]
    assert last["summary"] == "no registered worker can ever serve this run"
    unmet = [w for w in last["workers"] if w["host_id"] == "ui-cpu"][0]["unmet"]
    assert any("gpu" in u.lower() for u in unmet), unmet
    short = api.ok("GET", "/v1/queue", params={"limit": 2, "explain": "false"})
    assert len(short["items"]) == 2 and short["total"] == 4
    assert "explain" not in short["items"][0]


def test_queue_rejects_bad_input_and_worker_tokens(shared_app: AppServer) -> None:
    api = admin(shared_app)
    for params in ({"limit": 0}, {"limit": 501}, {"limit": "many"}, {"explain": "perhaps"}):
        r = api.get("/v1/queue", params=params)
        assert r.status_code == 422, params
        err = error_of(r)
        assert err["type"] == "ValidationError" and err["field"] in ("limit", "explain")
    r = Api(shared_app, api.token("ui-queue-w2", "worker")).get("/v1/queue")
    assert r.status_code == 403 and error_of(r)["type"] == "Forbidden"

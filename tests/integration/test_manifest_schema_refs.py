"""A blueprint's config schema never makes the server fetch anything: a ``$ref`` that is not
local (``#/...``) is refused when the schema is stored (422 naming the field), and one already
stored resolves nothing remote when configs are validated. A real HTTP server on 127.0.0.1
counts the requests that would have been made."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from runyard import errors, submission
from runyard.manifest import Blueprint, parse_manifest
from runyard.store import default_url, open_store

from ..support.server_api import Api, admin, error_of


class Remote:
    """Serves ``{"type": "integer"}`` at every path and records each request."""

    def __init__(self) -> None:
        hits = self.hits = []  # type: list[str]

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits.append(self.path)
                body = json.dumps({"type": "integer"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/x.json"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def remote() -> Iterator[Remote]:
    server = Remote()
    try:
        yield server
    finally:
        server.close()


def remote_schema(url: str) -> dict[str, Any]:
    return {"type": "object", "properties": {"lr": {"$ref": url}, "n": {"$ref": "#/$defs/n"}},
            "$defs": {"n": {"type": "integer", "minimum": 1}}}


LOCAL = {"type": "object", "properties": {"n": {"$ref": "#/$defs/n"}},
         "$defs": {"n": {"type": "integer", "minimum": 1}}}


def test_a_remote_ref_is_refused_when_parsed(remote: Remote) -> None:
    for ref in (remote.url, "other.json", "other.json#/a", "//127.0.0.1/x.json",
                "https://json-schema.org/draft/2020-12/schema"):
        with pytest.raises(errors.ValidationError) as info:
            Blueprint.from_dict({"name": "b", "command": ["x"],
                                 "config_schema": remote_schema(ref)})
        assert info.value.field == 'config_schema.properties.lr."$ref"', info.value.errors
        assert "only local references" in info.value.message
    text = ('[[blueprints]]\nname = "b"\ncommand = ["x"]\n'
            f"config_schema = {{ properties = {{ a = {{ '$dynamicRef' = '{remote.url}' }} }} }}\n")
    with pytest.raises(errors.ManifestError) as minfo:
        parse_manifest(text, source="fleet.toml")
    item = minfo.value.errors[0]
    assert item["line"] == 4 and item["field"] == "blueprints[0].config_schema.properties.a" \
        '."$dynamicRef"', item
    # Data that only looks like a reference is left alone.
    Blueprint.from_dict({"name": "b", "command": ["x"], "config_schema": {
        "const": {"$ref": remote.url}, "default": {"$ref": remote.url},
        "properties": {"$ref": {"type": "string"}}}})
    assert remote.hits == []


def test_validation_never_fetches_a_stored_remote_ref(remote: Remote) -> None:
    for _ in range(2):
        with pytest.raises(errors.ValidationError) as info:
            submission.validate_config(remote_schema(remote.url), {"lr": 1, "n": 2})
        assert info.value.field == "config" and "cannot be resolved" in info.value.message
    submission.validate_config(LOCAL, {"n": 2})
    with pytest.raises(errors.ValidationError, match="less than the minimum"):
        submission.validate_config(LOCAL, {"n": 0})
    assert remote.hits == []


def test_the_server_refuses_storing_and_fetches_nothing(remote: Remote, app_server) -> None:  # type: ignore[no-untyped-def]
    api: Api = admin(app_server)
    try:
        r = api.post("/v1/blueprints", {"name": "remote", "command": ["x"],
                                        "config_schema": remote_schema(remote.url)})
        assert r.status_code == 422, r.text
        assert error_of(r)["field"] == 'config_schema.properties.lr."$ref"'
        text = ('[[blueprints]]\nname = "remote"\ncommand = ["x"]\n'
                'config_schema_file = "s.json"\n')
        body = {"text": text, "source": "fleet.toml",
                "files": {"s.json": json.dumps(remote_schema(remote.url))}}
        for route in ("/v1/manifest/validate", "/v1/manifest/reload"):
            r = api.post(route, body)
            assert r.status_code == 422, r.text
            item = error_of(r)["errors"][0]
            assert item["line"] == 4, item
            assert item["field"] == 'blueprints[0].config_schema_file.properties.lr."$ref"', item
        assert api.ok("GET", "/v1/blueprints")["items"] == []

        # Local references still work end to end.
        api.ok("POST", "/v1/blueprints", 201, json={"name": "local", "command": ["x"],
                                                   "config_schema": LOCAL})
        api.ok("POST", "/v1/runs/validate", json={"blueprint": "local", "config": {"n": 3}})
        r = api.post("/v1/runs", {"name": "r", "blueprint": "local", "config": {"n": 0}})
        assert r.status_code == 422 and error_of(r)["field"] == "config.n", r.text

        # A schema stored before such schemas were refused: nothing is fetched, a 422 says so.
        store = open_store(default_url(app_server.data_dir), upgrade=False)
        try:
            store.put_blueprint("legacy", ["x"], remote_schema(remote.url), {}, "api")
        finally:
            store.close()
        r = api.post("/v1/runs/validate", {"blueprint": "legacy", "config": {"lr": 1}})
        assert r.status_code == 422 and "cannot be resolved" in r.text, r.text
        r = api.post("/v1/runs", {"name": "r", "blueprint": "legacy", "config": {"lr": 1}})
        assert r.status_code == 422 and "cannot be resolved" in r.text, r.text
        assert remote.hits == []
    finally:
        api.close()

"""The calls of :class:`runyard.client.Client` on the fleet and what operators define
(docs/http-api.md): workers, the manifest, blueprints and the server's health."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import quote

from runyard.client.http import Http, decode
from runyard.client.models import Worker


class FleetAPI:
    """Workers, the manifest, blueprints and health."""

    _http: Http

    # ------------------------------------------------------------------ fleet
    def list_workers(self) -> list[Worker]:
        return [Worker.from_json(w) for w in self._http.get_json("/v1/workers")["items"]]

    def drain(self, host: str) -> dict[str, Any]:
        """The worker finishes what it runs and claims nothing new (operator)."""
        return dict(self._http.post_json(f"/v1/workers/{quote(host, safe='')}/drain") or {})

    def resume(self, host: str) -> dict[str, Any]:
        return dict(self._http.post_json(f"/v1/workers/{quote(host, safe='')}/resume") or {})

    def remove_worker(self, host: str) -> dict[str, Any]:
        """Forget a worker that holds no active attempt; it registers again when it next
        claims (operator)."""
        resp = self._http.request("DELETE", f"/v1/workers/{quote(host, safe='')}")
        return dict(decode(resp) or {})

    def reload_manifest(self, path: str | os.PathLike[str], *, dry_run: bool = False,
                        source: str | None = None) -> dict[str, Any]:
        """Send a manifest file (with the schema files it names): new jobs are queued, host
        policies updated; ``dry_run`` only reports new / unchanged / removed (operator)."""
        from runyard.manifest import request_body

        body = request_body(path, source)
        params = {"dry_run": "true" if dry_run else "false"}
        return dict(self._http.post_json("/v1/manifest/reload", body, params=params) or {})

    def list_blueprints(self) -> list[dict[str, Any]]:
        return [dict(b) for b in self._http.get_json("/v1/blueprints")["items"]]

    def health(self) -> dict[str, Any]:
        return dict(self._http.get_json("/v1/health") or {})

"""The calls of :class:`runyard.client.Client` on rules and where they notify
(docs/rules.md, docs/notifications.md): stored rules, channels and the delivery log."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from runyard.client.arguments import RunRef, rule_object, run_id
from runyard.client.http import Http, decode


class AlertsAPI:
    """Rules, channels and notifications."""

    _http: Http

    # ------------------------------------------------------------------ rules
    def list_rules(self, project: str | None = None) -> list[dict[str, Any]]:
        """Stored project and server-wide rules (``project``: only that project's)."""
        params = {} if project is None else {"project": project}
        return [dict(r) for r in self._http.get_json("/v1/rules", params)["items"]]

    def add_rule(self, rule: Mapping[str, Any] | str, *, project: str | None = None
                 ) -> dict[str, Any]:
        """Add a rule (an object, or its compact form) to ``project``; without one it is
        server-wide (operators). A user's project rule watches that user's runs only."""
        body = rule_object(rule)
        if project is not None:
            body["project"] = project
        return dict(self._http.post_json("/v1/rules", body))

    def delete_rule(self, rule_id: int) -> None:
        """Remove a stored rule (its state on every run goes with it)."""
        decode(self._http.request("DELETE", f"/v1/rules/{int(rule_id)}"))

    # ------------------------------------------------------------------ notifications
    def list_channels(self) -> list[dict[str, Any]]:
        """Notification channels: name, kind, redacted URL, whether signed (never secrets)."""
        return [dict(c) for c in self._http.get_json("/v1/channels")["items"]]

    def add_channel(self, name: str, kind: str, url: str, secret: str | None = None
                    ) -> dict[str, Any]:
        """Create or replace a channel (operator): ``kind`` ``webhook`` (signed with
        ``secret`` when given) or ``slack`` (an incoming-webhook URL, no secret)."""
        body = {"name": name, "kind": kind, "url": url}
        if secret is not None:
            body["secret"] = secret
        return dict(self._http.post_json("/v1/channels", body) or {})

    def delete_channel(self, name: str) -> None:
        """Remove a channel (operator); its pending deliveries fail."""
        decode(self._http.request("DELETE", f"/v1/channels/{quote(name, safe='')}"))

    def test_channel(self, name: str) -> dict[str, Any]:
        """Queue a test notification to the channel (operator); ``delivery`` is its id in
        :meth:`list_notifications`."""
        return dict(self._http.post_json(f"/v1/channels/{quote(name, safe='')}/test") or {})

    def list_notifications(self, *, run: RunRef | None = None, channel: str | None = None,
                           status: str | None = None, limit: int | None = None,
                           before_id: int | None = None) -> list[dict[str, Any]]:
        """The delivery log, newest first: status, attempts, last error and times."""
        params = {"run_id": None if run is None else run_id(run), "channel": channel,
                  "status": status, "limit": limit, "before_id": before_id}
        return [dict(n) for n in self._http.get_json("/v1/notifications", params)["items"]]

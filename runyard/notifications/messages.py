"""What a delivery sends: the event document, signed JSON for a webhook, readable text for
Slack (docs/notifications.md).

A webhook receives the document as compact JSON with ``X-Runyard-Timestamp: <unix seconds>``
and ``X-Runyard-Signature: sha256=<hex HMAC-SHA256 with the channel secret of
"<timestamp>.<body>">``; every delivery carries ``X-Runyard-Delivery: <id>``, the same on
each retry, so a receiver can drop a repeat.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from runyard import nonfinite, timestamps

SIGNATURE_HEADER = "X-Runyard-Signature"
TIMESTAMP_HEADER = "X-Runyard-Timestamp"
DELIVERY_HEADER = "X-Runyard-Delivery"
USER_AGENT = "runyard-notify/1"
#: How far a receiver should let a timestamp stray from its clock (the docs' snippet).
TOLERANCE_S = 300
#: Longest Slack text, in characters (Slack cuts a message's text at 40,000).
SLACK_TEXT_MAX = 3000


def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 with ``secret`` of ``b"<timestamp>." + body``."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode("ascii") + body,
                   hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str, *,
           tolerance_s: float = TOLERANCE_S, now: float | None = None) -> bool:
    """Whether ``signature`` signs ``body`` at ``timestamp`` with ``secret``, and the
    timestamp is within ``tolerance_s`` of ``now`` (a replayed old request fails)."""
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, ts, body), signature)


def run_link(public_url: str | None, run_id: str | None) -> str | None:
    """The run's page on the web UI, when the server knows its public URL."""
    if not public_url or not run_id:
        return None
    return f"{public_url.rstrip('/')}/runs/{run_id}"


def document(row: Mapping[str, Any], channel: str, public_url: str | None) -> dict[str, Any]:
    """The event a delivery sends: the stored payload (``run`` and ``details``), with the
    delivery's id, channel, kind, time and the run page's link."""
    payload = row.get("payload") or {}
    run = payload.get("run") if isinstance(payload, Mapping) else None
    if isinstance(run, Mapping):
        run = {**run, "url": run_link(public_url, str(run.get("id") or "") or None)}
    elif row.get("run_id"):
        run = {"id": row["run_id"], "url": run_link(public_url, row["run_id"])}
    details = payload.get("details") if isinstance(payload, Mapping) else None
    return {"delivery": row["id"], "channel": channel, "kind": row["kind"],
            "created_at": timestamps.format_time(row["created_at"]), "run": run,
            "details": details if details is not None else {}}


def encode(doc: Mapping[str, Any]) -> bytes:
    """Compact JSON, NaN and the infinities spelled as strings (JSON has none)."""
    return json.dumps(nonfinite.to_wire(doc), separators=(",", ":"), allow_nan=False,
                      ensure_ascii=False).encode("utf-8")


def webhook_request(doc: Mapping[str, Any], secret: str | None, *,
                    now: float | None = None) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a webhook delivery (signed when the channel has a secret)."""
    body = encode(doc)
    ts = int(time.time() if now is None else now)
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
               DELIVERY_HEADER: str(doc["delivery"]), TIMESTAMP_HEADER: str(ts)}
    if secret:
        headers[SIGNATURE_HEADER] = sign(secret, ts, body)
    return body, headers


def slack_request(doc: Mapping[str, Any]) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a Slack incoming-webhook delivery: ``{"text": ...}``."""
    body = json.dumps({"text": slack_text(doc)}, ensure_ascii=False).encode("utf-8")
    return body, {"Content-Type": "application/json", "User-Agent": USER_AGENT,
                  DELIVERY_HEADER: str(doc["delivery"])}


def slack_text(doc: Mapping[str, Any]) -> str:
    """One readable line: the run (a link to its page when known), then what happened.

    Everything a user chose (run names, projects, rule names, values) is escaped, so a run
    named ``<!channel>`` cannot ping a whole Slack channel."""
    run = doc.get("run") if isinstance(doc.get("run"), Mapping) else None
    what = _escape(summary(doc))
    if run is None:
        return f"*Runyard*: {what}"[:SLACK_TEXT_MAX]
    name = _escape(str(run.get("name") or run.get("id") or "?"))
    url = run.get("url")
    shown = f"<{_escape(str(url))}|{name}>" if url else f"*{name}*"
    project = run.get("project")
    where = f" in project {_escape(str(project))}" if project else ""
    status = run.get("status")
    now = f" (now {_escape(str(status))})" if status else ""
    return f"*Runyard*: run {shown}{where}{now}: {what}"[:SLACK_TEXT_MAX]


def summary(doc: Mapping[str, Any]) -> str:
    """What happened, in words, from the kind and the details."""
    details = doc.get("details")
    d: Mapping[str, Any] = details if isinstance(details, Mapping) else {}
    kind = str(doc.get("kind") or "event")
    message = d.get("message")
    if isinstance(message, str):
        return message
    if kind == "test":
        return f"test notification for channel {doc.get('channel')}"
    if "rule" in d:
        text = f"rule {d['rule']} fired"
        if "tag" in d and "value" in d:
            text += f": {d['tag']} = {nonfinite.encode(d['value'])}"
            if d.get("step") is not None:
                text += f" at step {d['step']}"
        return text
    if "status" in d:
        reason = f" ({d['termination_reason']})" if d.get("termination_reason") else ""
        return f"{kind}: {d['status']}{reason}"
    shown = json.dumps(nonfinite.to_wire(d), separators=(",", ":"))
    return f"{kind}: {shown[:500]}" if d else kind


def _escape(text: str) -> str:
    """Slack's three control characters in message text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

"""Channels: where notifications go, what a valid one is, and how one is shown.

A channel is ``{name, kind, url, secret}``. Only operators set one, so its URL is trusted to
be where the operator means notifications to go (docs/security.md). Its ``url`` and
``secret`` are credentials (a Slack incoming-webhook URL is its own secret): they are shown
to nobody, operators included; :func:`channel_out` is the one shape any read answers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from runyard import errors, timestamps

#: What a channel delivers to: a signed JSON webhook, or a Slack incoming webhook.
KINDS = ("webhook", "slack")
#: Channel names appear in rules as ``notify:<name>`` and in URL paths.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
URL_MAX = 2048
SECRET_MIN = 16
SECRET_MAX = 1024
_CONTROL = re.compile(r"[\x00-\x20\x7f]")


@dataclass(frozen=True)
class Channel:
    """A checked channel, ready to store."""

    name: str
    kind: str
    url: str
    secret: str | None = None


def check_name(name: Any, field: str = "name") -> str:
    """A channel name: 1-64 letters, digits and ``._-``, starting with a letter or digit."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise errors.ValidationError(
            f"{field}: expected 1-64 letters, digits and ._- (starting with a letter or "
            f"digit), got {_shown(name)}", field=field)
    return name


def check_kind(kind: Any, field: str = "kind") -> str:
    if kind not in KINDS:
        raise errors.ValidationError(
            f"{field}: expected one of {', '.join(KINDS)}, got {_shown(kind)}", field=field)
    return str(kind)


def check_url(url: Any, field: str = "url") -> str:
    """An absolute ``http`` or ``https`` URL with a host, without spaces or control
    characters, at most :data:`URL_MAX` characters. The value is never quoted back: it may
    be a secret."""
    if not isinstance(url, str) or not 1 <= len(url) <= URL_MAX:
        raise errors.ValidationError(f"{field}: expected an http(s) URL of at most {URL_MAX} "
                                     "characters", field=field)
    if _CONTROL.search(url):
        raise errors.ValidationError(f"{field}: spaces and control characters are not allowed",
                                     field=field)
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a bad port
    except ValueError:
        raise errors.ValidationError(f"{field}: not a valid URL", field=field) from None
    if parts.scheme not in ("http", "https"):
        raise errors.ValidationError(f"{field}: only http and https URLs are allowed",
                                     field=field)
    if not parts.hostname:
        raise errors.ValidationError(f"{field}: the URL has no host", field=field)
    if port == 0:
        raise errors.ValidationError(f"{field}: port 0 is not a TCP port", field=field)
    return url


def check_secret(secret: Any, kind: str, field: str = "secret") -> str | None:
    """A webhook's signing secret (optional: unsigned without one); Slack takes none."""
    if secret is None:
        return None
    if kind == "slack":
        raise errors.ValidationError(
            f"{field}: a slack channel takes no secret (its URL is the secret)", field=field)
    if (not isinstance(secret, str) or not SECRET_MIN <= len(secret) <= SECRET_MAX
            or _CONTROL.search(secret)):
        raise errors.ValidationError(
            f"{field}: expected {SECRET_MIN} to {SECRET_MAX} printable characters without "
            "spaces", field=field)
    return secret


def check_channel(data: Mapping[str, Any]) -> Channel:
    """A channel from ``{name, kind, url, secret?}``; a 422 naming the first bad field."""
    name = check_name(data.get("name"))
    kind = check_kind(data.get("kind"))
    url = check_url(data.get("url"))
    return Channel(name, kind, url, check_secret(data.get("secret"), kind))


def redact_url(url: str) -> str:
    """The URL as anyone may see it: scheme, host and port, then ``/…`` for a path, query or
    anything else (where webhook URLs keep their tokens)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "…"
    if ":" in host:
        host = f"[{host}]"
    rest = "/…" if (parts.path not in ("", "/") or parts.query or parts.fragment) else ""
    return f"{parts.scheme}://{host}{port}{rest}"


def channel_out(row: Mapping[str, Any]) -> dict[str, Any]:
    """A stored channel as every read shows it: never the secret, the URL redacted."""
    return {"name": row["name"], "kind": row["kind"], "url": redact_url(str(row["url"])),
            "signed": bool(row.get("secret")), "source": row.get("source"),
            "created_at": _iso(row.get("created_at")),
            "updated_at": _iso(row.get("updated_at"))}


def _iso(ts: float | None) -> str | None:
    return None if ts is None else timestamps.format_time(ts)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."

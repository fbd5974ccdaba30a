"""``[[channels]]`` tables: notification channels in the manifest (docs/manifest.md).

    [[channels]]
    name = "team"
    kind = "webhook"
    url = "https://hooks.example.org/runyard"
    secret_env = "TEAM_HOOK_SECRET"      # the signing secret, from the server's environment

    [[channels]]
    name = "slack"
    kind = "slack"
    url_env = "SLACK_WEBHOOK_URL"        # a Slack URL is a secret too

Secrets never appear in the file: ``secret_env`` and ``url_env`` name environment variables
that the server reads when it applies the manifest (:func:`resolve_channels`), so a file
validated offline on a laptop needs none of them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runyard import errors
from runyard.manifest import fields
from runyard.manifest.locator import Path
from runyard.manifest.problems import Problems
from runyard.notifications import channels

CHANNEL_KEYS = ("name", "kind", "url", "url_env", "secret_env")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


@dataclass(frozen=True)
class ChannelSpec:
    """A channel as the manifest gives it: the URL or the variable holding it, and the
    variable holding the secret."""

    name: str
    kind: str
    url: str | None = None
    url_env: str | None = None
    secret_env: str | None = None
    #: Where its keys are: ``(path, line)`` per key, for errors found when applying.
    where: Mapping[str, tuple[Path, int | None]] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """As listings show it: the URL redacted (it may hold a token), variables by name."""
        return {"name": self.name, "kind": self.kind,
                "url": None if self.url is None else channels.redact_url(self.url),
                "url_env": self.url_env, "secret_env": self.secret_env}


def parse_channels(tables: Sequence[Any], problems: Problems) -> list[ChannelSpec]:
    """The valid ``[[channels]]`` tables; every problem is added to ``problems``."""
    out: list[ChannelSpec] = []
    first_line: dict[str, int | None] = {}
    for i, raw in enumerate(tables):
        path: Path = ("channels", i)
        if not isinstance(raw, Mapping):
            problems.add(path, f"expected a table, got {raw!r}")
            continue
        before = len(problems.items)
        if "secret" in raw:
            problems.add(path + ("secret",), "secrets do not belong in the manifest: set "
                         "the secret in the server's environment and name that variable "
                         "with secret_env")
        fields.reject_unknown({k: v for k, v in raw.items() if k != "secret"}, CHANNEL_KEYS,
                              path, problems)
        spec = _parse_one(raw, path, problems)
        if spec is None or len(problems.items) != before:
            continue
        if spec.name in first_line:
            line = first_line[spec.name]
            problems.add(path + ("name",), f"duplicate channel name {spec.name!r}"
                         + (f" (first defined at line {line})" if line is not None else ""))
            continue
        first_line[spec.name] = problems.line(path)
        out.append(spec)
    return out


def _parse_one(raw: Mapping[str, Any], path: Path, problems: Problems) -> ChannelSpec | None:
    values: dict[str, Any] = {}
    for key, check in (("name", channels.check_name), ("kind", channels.check_kind)):
        if key not in raw:
            problems.add(path + (key,), "required")
            continue
        try:
            values[key] = check(raw[key], key)
        except errors.ValidationError as exc:
            problems.add_validation(path, exc)
    if ("url" in raw) == ("url_env" in raw):
        problems.add(path + ("url",), "give exactly one of url and url_env")
    elif "url" in raw:
        try:
            values["url"] = channels.check_url(raw["url"], "url")
        except errors.ValidationError as exc:
            problems.add_validation(path, exc)
    for key in ("url_env", "secret_env"):
        if key in raw:
            if isinstance(raw[key], str) and _ENV_NAME.fullmatch(raw[key]):
                values[key] = raw[key]
            else:
                problems.add(path + (key,), "expected the name of an environment variable "
                             f"(letters, digits and _), got {raw[key]!r}")
    if values.get("kind") == "slack" and "secret_env" in raw:
        problems.add(path + ("secret_env",), "a slack channel takes no secret (its URL is "
                     "the secret: use url_env)")
    if {"name", "kind"} - set(values):
        return None
    where = {key: (path + (key,), problems.line(path + (key,)))
             for key in ("url", "url_env", "secret_env") if key in raw}
    return ChannelSpec(values["name"], values["kind"], values.get("url"),
                       values.get("url_env"), values.get("secret_env"), where)


def resolve_channels(specs: Sequence[ChannelSpec], environ: Mapping[str, str],
                     source: str) -> list[channels.Channel]:
    """The channels with their URLs and secrets read from ``environ`` (the server's); a
    ManifestError naming file, line and key for each variable missing or invalid."""
    problems = Problems(source=source)
    out: list[channels.Channel] = []
    for spec in specs:
        url, secret, ok = spec.url, None, True
        for key in ("url_env", "secret_env"):
            var = getattr(spec, key)
            if var is None:
                continue
            path, line = spec.where[key]
            value = environ.get(var)
            if not value:
                problems.add(path, f"the environment variable {var} is not set on the server",
                             line=line)
                ok = False
                continue
            try:
                if key == "url_env":
                    url = channels.check_url(value, key)
                else:
                    secret = channels.check_secret(value, spec.kind, key)
            except errors.ValidationError as exc:
                # Never quote the value: it is a secret.
                problems.add(path, f"${var}: {exc.message.removeprefix(f'{key}: ')}",
                             line=line)
                ok = False
        if ok and url is not None:
            out.append(channels.Channel(spec.name, spec.kind, url, secret))
    problems.raise_if_any()
    return out

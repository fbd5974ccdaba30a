"""Notifications without a database or a network: channel checks, redaction, signatures,
messages, the retry policy, and manifest ``[[channels]]``."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest

from runyard import errors
from runyard.manifest import parse_manifest
from runyard.manifest.channels import resolve_channels
from runyard.notifications import Policy, channels, messages

GOOD = {"name": "team", "kind": "webhook", "url": "https://hooks.example.org/x",
        "secret": "s" * 16}


@pytest.mark.parametrize("change, field", [
    ({"name": "bad name"}, "name"),
    ({"name": ""}, "name"),
    ({"name": "-lead"}, "name"),
    ({"name": "a/b"}, "name"),
    ({"name": "x" * 65}, "name"),
    ({"kind": "email"}, "kind"),
    ({"kind": None}, "kind"),
    ({"url": "ftp://hooks.example.org/x"}, "url"),
    ({"url": "file:///etc/passwd"}, "url"),
    ({"url": "javascript:alert(1)"}, "url"),
    ({"url": "hooks.example.org/x"}, "url"),
    ({"url": "https:///nohost"}, "url"),
    ({"url": "https://a.example org/x"}, "url"),
    ({"url": "https://a.example:99999/x"}, "url"),
    ({"url": "https://a.example/\x00"}, "url"),
    ({"url": "https://a.example/" + "x" * 3000}, "url"),
    ({"url": 5}, "url"),
    ({"secret": "short"}, "secret"),
    ({"secret": "has a space in it!"}, "secret"),
    ({"kind": "slack"}, "secret"),  # a slack channel takes no secret
])
def test_bad_channels_name_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(errors.ValidationError) as info:
        channels.check_channel({**GOOD, **change})
    assert info.value.field == field
    # A bad URL is never quoted back (it may be a secret).
    if field == "url" and isinstance(change["url"], str) and len(change["url"]) > 8:
        assert change["url"] not in info.value.message


def test_good_channels() -> None:
    assert channels.check_channel(GOOD) == channels.Channel(**GOOD)
    slack = channels.check_channel({"name": "s.lack_1", "kind": "slack",
                                    "url": "https://hooks.slack.com/services/T/B/x"})
    assert slack.secret is None
    assert channels.check_channel({**GOOD, "secret": None}).secret is None


@pytest.mark.parametrize("url, shown", [
    ("https://hooks.slack.com/services/T000/B000/XXXX", "https://hooks.slack.com/…"),
    ("http://127.0.0.1:8080/hook", "http://127.0.0.1:8080/…"),
    ("https://user:pw@example.org", "https://example.org"),
    ("https://example.org/?token=abc", "https://example.org/…"),
    ("https://[::1]:9000/x", "https://[::1]:9000/…"),
])
def test_urls_are_shown_redacted(url: str, shown: str) -> None:
    assert channels.redact_url(url) == shown
    out = channels.channel_out({"name": "n", "kind": "slack", "url": url, "secret": "x" * 20})
    assert out["url"] == shown and "secret" not in out and out["signed"] is True


def test_signature_is_hmac_of_timestamp_dot_body() -> None:
    body = b'{"a":1}'
    expected = hmac.new(b"k" * 16, b"1700000000." + body, hashlib.sha256).hexdigest()
    assert messages.sign("k" * 16, 1700000000, body) == "sha256=" + expected
    sig = messages.sign("k" * 16, 1700000000, body)
    assert messages.verify("k" * 16, "1700000000", body, sig, now=1700000010)
    assert not messages.verify("k" * 16, "1700000000", body + b" ", sig, now=1700000010)
    assert not messages.verify("x" * 16, "1700000000", body, sig, now=1700000010)
    assert not messages.verify("k" * 16, "1700000000", body, sig, now=1700009999)  # replay
    assert not messages.verify("k" * 16, "soon", body, sig)


def _row(**over: Any) -> dict[str, Any]:
    return {"id": 7, "kind": "rule", "run_id": "r1", "created_at": 1700000000.0,
            "payload": {"run": {"id": "r1", "name": "<!channel> & co", "project": "p",
                                "status": "running"},
                        "details": {"rule": "diverged", "tag": "loss", "step": 50,
                                    "value": "NaN"}}, **over}


def test_webhook_request_is_signed_json_of_the_event() -> None:
    doc = messages.document(_row(), "team", "https://ry.example/")
    body, headers = messages.webhook_request(doc, "k" * 16, now=1700000000)
    assert json.loads(body) == {
        "delivery": 7, "channel": "team", "kind": "rule",
        "created_at": "2023-11-14T22:13:20.000Z",
        "run": {"id": "r1", "name": "<!channel> & co", "project": "p", "status": "running",
                "url": "https://ry.example/runs/r1"},
        "details": {"rule": "diverged", "tag": "loss", "step": 50, "value": "NaN"}}
    assert headers["X-Runyard-Delivery"] == "7"
    assert headers["X-Runyard-Timestamp"] == "1700000000"
    assert messages.verify("k" * 16, "1700000000", body, headers["X-Runyard-Signature"],
                           now=1700000000)
    unsigned = messages.webhook_request(doc, None)[1]
    assert "X-Runyard-Signature" not in unsigned


def test_slack_text_is_readable_escaped_and_links_the_run() -> None:
    doc = messages.document(_row(), "team", "https://ry.example")
    text = json.loads(messages.slack_request(doc)[0])["text"]
    assert text == ("*Runyard*: run <https://ry.example/runs/r1|&lt;!channel&gt; &amp; co> "
                    "in project p (now running): rule diverged fired: loss = NaN at step 50")
    no_link = messages.slack_text(messages.document(_row(), "team", None))
    assert "*&lt;!channel&gt; &amp; co*" in no_link and "<" not in no_link.replace("&lt;", "")
    test = messages.document(_row(run_id=None, kind="test", payload={"run": None,
                                                                      "details": {}}), "t", None)
    assert messages.slack_text(test) == "*Runyard*: test notification for channel t"
    status = _row(payload={"run": None, "details": {"status": "failed",
                                                    "termination_reason": "oom"}},
                  kind="status")
    assert messages.summary(messages.document(status, "t", None)) == "status: failed (oom)"


@pytest.mark.parametrize("attempts, low, high", [
    (1, 5.0, 10.0), (2, 10.0, 20.0), (3, 20.0, 40.0), (10, 50.0, 100.0), (500, 50.0, 100.0),
])
def test_backoff_doubles_with_jitter_up_to_the_cap(attempts: int, low: float,
                                                   high: float) -> None:
    policy = Policy(backoff_s=10, backoff_max_s=100, max_attempts=4)
    assert policy.retry_delay(attempts, rand=lambda: 0.0) == low
    assert policy.retry_delay(attempts, rand=lambda: 1.0) == high
    assert low <= policy.retry_delay(attempts) <= high
    assert not policy.gives_up(3) and policy.gives_up(4)


MANIFEST = """\
[[channels]]
name = "team"
kind = "webhook"
url = "https://hooks.example.org/runyard?token=abc"
secret_env = "TEAM_HOOK_SECRET"

[[channels]]
name = "alerts"
kind = "slack"
url_env = "SLACK_URL"
"""


def test_manifest_channels_take_secrets_from_the_environment() -> None:
    m = parse_manifest(MANIFEST, source="fleet.toml")
    listed = json.dumps(m.to_dict())
    assert "token=abc" not in listed and "TEAM_HOOK_SECRET" in listed
    env = {"TEAM_HOOK_SECRET": "t" * 20, "SLACK_URL": "https://hooks.slack.com/services/a/b"}
    got = resolve_channels(m.channels, env, "fleet.toml")
    assert got == [
        channels.Channel("team", "webhook", "https://hooks.example.org/runyard?token=abc",
                         "t" * 20),
        channels.Channel("alerts", "slack", "https://hooks.slack.com/services/a/b")]
    with pytest.raises(errors.ManifestError) as info:
        resolve_channels(m.channels, {"SLACK_URL": "ftp://no"}, "fleet.toml")
    texts = [e["text"] for e in info.value.errors]
    assert texts == [
        "fleet.toml:5: channels[0].secret_env: the environment variable TEAM_HOOK_SECRET is "
        "not set on the server",
        "fleet.toml:10: channels[1].url_env: $SLACK_URL: only http and https URLs are allowed"]


@pytest.mark.parametrize("table, line, field, words", [
    ('name = "x y"\nkind = "webhook"\nurl = "https://a.example"', 2, "channels[0].name",
     "letters, digits"),
    ('name = "x"\nkind = "pager"\nurl = "https://a.example"', 3, "channels[0].kind",
     "webhook, slack"),
    ('name = "x"\nkind = "webhook"\nurl = "gopher://a.example"', 4, "channels[0].url",
     "http and https"),
    ('name = "x"\nkind = "webhook"', 1, "channels[0].url", "exactly one of url and url_env"),
    ('name = "x"\nkind = "webhook"\nurl = "https://a.example"\nsecret = "hunter2hunter2xx"',
     5, "channels[0].secret", "secret_env"),
    ('name = "x"\nkind = "webhook"\nurl = "https://a.example"\nsecret_env = "NOT-A-VAR"',
     5, "channels[0].secret_env", "environment variable"),
    ('name = "x"\nkind = "slack"\nurl_env = "U"\nsecret_env = "S"', 5,
     "channels[0].secret_env", "no secret"),
    ('name = "x"\nkind = "webhook"\nurl = "https://a.example"\nsecrt_env = "S"', 5,
     "channels[0].secrt_env", "did you mean 'secret_env'"),
])
def test_manifest_channel_errors_name_file_line_and_key(table: str, line: int, field: str,
                                                        words: str) -> None:
    with pytest.raises(errors.ManifestError) as info:
        parse_manifest("[[channels]]\n" + table + "\n", source="f.toml")
    first = info.value.errors[0]
    assert (first["file"], first["line"], first["field"]) == ("f.toml", line, field), first
    assert words in first["message"]
    assert "hunter2" not in json.dumps(info.value.errors)


def test_duplicate_manifest_channels_are_refused() -> None:
    text = MANIFEST + '\n[[channels]]\nname = "team"\nkind = "slack"\nurl_env = "X"\n'
    with pytest.raises(errors.ManifestError) as info:
        parse_manifest(text, source="f.toml")
    assert "duplicate channel name 'team' (first defined at line 1)" in info.value.message

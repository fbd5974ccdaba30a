"""One-time sign-in links (docs/security.md): how ``runyard up`` signs a browser in.

A link carries a code of 32 random bytes in its fragment (``/login#code=...``), which the
browser never sends in a request line or a Referer: the page's script posts it to
``POST /v1/signin`` and gets a fresh token of the code's role in return, kept like a token typed
into the sign-in form. A code works once, for :data:`CODE_TTL_S` seconds; only its sha256 is
stored, and a code is found by that hash, as tokens are (:mod:`runyard.server.auth`). Each
exchange makes its own token, named ``<who asked>@web-<6 hex digits>``, so one browser can be
signed out by revoking its token alone.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from runyard import errors
from runyard.models import Role
from runyard.server import auth
from runyard.store.base import Store

#: Seconds a sign-in code works after it was made.
CODE_TTL_S = 600.0
#: Codes are kept this long past their expiry, so a late click is told "expired" rather than
#: "unknown"; older ones are deleted when a new one is made.
KEEP_EXPIRED_S = 7 * 86400.0
#: The page that exchanges a code.
LOGIN_PATH = "/login"
#: Characters of a code: ``secrets.token_urlsafe(32)`` gives 43.
CODE_LEN = 43


@dataclass(frozen=True)
class Code:
    """A new code: the secret (shown once, never stored) and when it stops working."""

    secret: str
    expires_at: float


def mint(store: Store, name: str, role: Role | str, *, ttl_s: float = CODE_TTL_S,
         now: float | None = None) -> Code:
    """Store a new one-time code that signs a browser in as ``role``, for a token named after
    ``name`` (the token or user that asked for it)."""
    role = auth.parse_role(role)
    if role is Role.WORKER:
        raise errors.ValidationError("role: a sign-in link is for people, not workers",
                                     field="role")
    if not 0 < ttl_s <= 86400:
        raise errors.ValidationError("ttl_s: expected above 0 and at most a day",
                                     field="ttl_s")
    now = time.time() if now is None else now
    secret = secrets.token_urlsafe(32)
    store.create_signin_code(auth.hash_token(secret), name, role.value, created_at=now,
                             expires_at=now + ttl_s, forget_before=now - KEEP_EXPIRED_S)
    return Code(secret, now + ttl_s)


def link(base_url: str, code: str) -> str:
    """The URL that signs a browser in with ``code`` (the code in the fragment)."""
    return f"{base_url.rstrip('/')}{LOGIN_PATH}#code={code}"


def token_name(name: str) -> str:
    """The name of the token an exchange makes for ``name``: unique, and still a valid name
    (200 characters at most)."""
    return f"{name[:189]}@web-{secrets.token_hex(3)}"


def exchange(store: Store, code: Any, *, now: float | None = None) -> tuple[dict[str, Any], str]:
    """Use ``code`` once: a new token's row and secret. An unknown code is NotFound; a used
    or expired one is Conflict, saying which (a used code names the token it made, so a
    stranger's use can be revoked)."""
    if not isinstance(code, str) or not 1 <= len(code) <= 200:
        raise errors.ValidationError("code: expected the code of a sign-in link", field="code")
    now = time.time() if now is None else now
    digest = auth.hash_token(code)
    known = store.signin_code(digest)
    if known is None:
        raise errors.NotFound("this sign-in link is not valid (unknown code); ask for a new "
                              "one: restart `runyard up`, or run `runyard token link`")
    # The token's name is chosen before the code is taken, so the code's row names it.
    name = token_name(known["name"])
    found, taken = store.take_signin_code(digest, now=now, token_name=name)
    if taken and found is not None:
        return auth.create_token(store, name, found["role"])
    if found is not None and found["used_at"] is None and found["expires_at"] <= now:
        minutes = (found["expires_at"] - found["created_at"]) / 60
        raise errors.Conflict(f"this sign-in link has expired (it worked for {minutes:.3g} "
                              "minutes); run `runyard token link` for a new one")
    used_by = (found or {}).get("token_name")
    raise errors.Conflict(
        "this sign-in link was already used; a link signs in once"
        + (f" (it made the token {used_by!r}: if that was not you, revoke it with "
           f"`runyard token revoke {used_by}`)" if used_by else "")
        + "; run `runyard token link` for a new one")

"""One-time sign-in links (docs/security.md): the exchange a browser makes with a link's code,
and a new link for an operator (``runyard token link``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import Field

from runyard.server import auth, schemas, serialize, signin
from runyard.server.auth import Principal
from runyard.server.bodies import Body
from runyard.server.state import ServerState, get_state

router = APIRouter(tags=["signin"])

#: The exchange takes no token: the code is the credential (BodyGuard lets it through).
EXCHANGE_PATH = "/v1/signin"


class SigninRequest(Body):
    #: The code from the link's fragment (``/login#code=...``).
    code: str = Field(min_length=1, max_length=200)


class SigninLinkRequest(Body):
    #: Seconds the link works (default 600, at most a day).
    ttl_s: float = Field(signin.CODE_TTL_S, gt=0, le=86400)


@router.post(EXCHANGE_PATH, **schemas.doc(schemas.SignedIn))
def exchange(body: SigninRequest, state: ServerState = Depends(get_state)) -> JSONResponse:
    """Use a sign-in link's code, once, for a new token of the link's role (no token needed).
    An unknown code is 404; a used or expired one 409, saying which."""
    row, secret = signin.exchange(state.store, body.code)
    out = {"name": row["name"], "role": row["role"], "token": secret}
    # The answer holds a secret: no cache keeps it.
    return JSONResponse(out, headers={"Cache-Control": "no-store"})


@router.post("/v1/signin-links", status_code=201, **schemas.doc(schemas.SigninLink, 201))
def new_link(request: Request, body: SigninLinkRequest | None = None,
             who: Principal = Depends(auth.operator),
             state: ServerState = Depends(get_state)) -> dict[str, Any]:
    """A new one-time link that signs a browser in as an operator (the caller's role), for a
    token named after the caller. The code is in this answer only."""
    ttl_s = body.ttl_s if body is not None else signin.CODE_TTL_S
    code = signin.mint(state.store, who.name, who.role, ttl_s=ttl_s)
    base = state.settings.public_url or str(request.base_url)
    return {"url": signin.link(base, code.secret), "code": code.secret,
            "expires_at": serialize.iso(code.expires_at)}

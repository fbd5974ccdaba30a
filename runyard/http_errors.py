"""HTTP answers to :mod:`runyard.errors`: the one mapping the client, the SDK and the agent use.

An error body is ``{"error": {"type", "message", "field", "errors"}}`` (docs/http-api.md);
the ``type`` names the class, else the status picks one. Two kinds of caller read it
differently, so :func:`error_from_response` takes ``lease_holder``:

* the client (``Client``) shows the server's class as it is (a 503 ``StoreError`` stays a
  :class:`errors.StoreError`);
* a lease holder (the agent, the SDK's HTTP mode) must know what to do next: any answer
  worth retrying (5xx, 408, 429) is :class:`errors.ServerError`, a
  :class:`errors.TransportError`, so it retries or spools; any 409 is
  :class:`errors.LeaseConflict` (an attempt that already ended is a conflict too), so it
  stops acting on the lease.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from runyard import errors

if TYPE_CHECKING:
    import httpx

#: Statuses besides 5xx that mean "try again later".
RETRY_STATUSES = frozenset({408, 429})

_BY_STATUS: dict[int, type[errors.RunyardError]] = {
    400: errors.ValidationError, 401: errors.AuthError, 403: errors.Forbidden,
    404: errors.NotFound, 409: errors.Conflict, 413: errors.TooLarge,
    422: errors.ValidationError,
}


def is_retryable(status: int) -> bool:
    """Whether an answer with this status may succeed later (5xx, 408, 429)."""
    return status >= 500 or status in RETRY_STATUSES


def _error_class(status: int, type_name: Any) -> type[errors.RunyardError]:
    named = getattr(errors, type_name, None) if isinstance(type_name, str) else None
    if isinstance(named, type) and issubclass(named, errors.RunyardError):
        return named
    if status >= 500:
        return errors.ServerError
    return _BY_STATUS.get(status, errors.RunyardError)


def error_info(response: httpx.Response) -> dict[str, Any]:
    """The ``error`` object of an answer; for a body that has none (a proxy's HTML page),
    a message made of the status and the body's first line."""
    body: Any = None
    with contextlib.suppress(ValueError):
        body = response.json()
    info = body.get("error") if isinstance(body, dict) else None
    if isinstance(info, dict):
        return info
    text = response.text.strip().splitlines()[0][:200] if response.text.strip() else ""
    return {"message": f"HTTP {response.status_code} {response.reason_phrase}"
                       + (f": {text}" if text else "")}


def error_from_response(response: httpx.Response, *, context: str | None = None,
                        lease_holder: bool = False) -> errors.RunyardError:
    """The :mod:`runyard.errors` instance an error answer stands for.

    ``context`` (such as ``"POST /v1/runs"``) prefixes the message with itself and the
    status. ``details["http_status"]`` always holds the status.
    """
    status = response.status_code
    info = error_info(response)
    cls = _error_class(status, info.get("type"))
    if lease_holder:
        if is_retryable(status):
            cls = errors.ServerError
        elif status == 409:
            cls = errors.LeaseConflict
    message = str(info.get("message") or cls.__doc__ or cls.__name__).strip()
    if context:
        message = f"{context}: HTTP {status}: {message}"
    exc: errors.RunyardError
    if issubclass(cls, errors.ValidationError):
        exc = cls(message, field=info.get("field"), errors=info.get("errors") or None)
    elif issubclass(cls, errors.IllegalTransition):
        # Its constructor builds the message from both states; keep the server's words instead.
        exc = cls.__new__(cls)
        errors.RunyardError.__init__(exc, message)
        exc.current = str(info.get("current", ""))
        exc.target = str(info.get("target", ""))
    else:
        exc = cls(message)
    exc.details.setdefault("http_status", status)
    if lease_holder and isinstance(info.get("type"), str):
        exc.details.setdefault("type", info["type"])
    return exc

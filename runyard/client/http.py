"""The one seam between the client and the network: requests, and errors mapped at the edge.

HTTP error bodies become the matching :mod:`runyard.errors` class
(:func:`runyard.http_errors.error_from_response`); connection failures become
:class:`errors.TransportError`, the httpx exception kept as ``__cause__`` (httpx's
``map_httpcore_exceptions`` habit).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, BinaryIO

import httpx

from runyard import __version__, errors, http_errors, timestamps

#: Default per-request timeout (seconds); connecting gets less so a dead server fails fast.
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)

def encode_param(value: Any) -> str:
    """Query values: lists comma-joined, datetimes ISO 8601 UTC, booleans lower-case."""
    if isinstance(value, datetime):
        return timestamps.format_time(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple, set, frozenset)):
        return ",".join(encode_param(v) for v in value)
    return str(value)


class Repeated(tuple[Any, ...]):
    """A query value sent as the parameter repeated (``?tag=a&tag=b``), not comma-joined."""


def clean_params(params: Mapping[str, Any] | None
                 ) -> list[tuple[str, str | int | float | bool | None]]:
    out: list[tuple[str, str | int | float | bool | None]] = []
    for k, v in (params or {}).items():
        if v is None:
            continue
        if isinstance(v, Repeated):
            out += [(k, encode_param(item)) for item in v if item is not None]
        else:
            out.append((k, encode_param(v)))
    return out


class Http:
    """A configured :class:`httpx.Client` that raises :mod:`runyard.errors` only."""

    def __init__(self, server: str, token: str | None, *,
                 timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.server = server.rstrip("/")
        headers = {"User-Agent": f"runyard-client/{__version__}", "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.client = httpx.Client(base_url=self.server, headers=headers, timeout=timeout,
                                   transport=transport)

    def close(self) -> None:
        self.client.close()

    @contextlib.contextmanager
    def _mapped(self) -> Iterator[None]:
        try:
            yield
        except httpx.TimeoutException as exc:
            raise errors.TransportError(
                f"the server at {self.server} did not answer in time ({exc.__class__.__name__})"
            ) from exc
        except httpx.TransportError as exc:
            raise errors.TransportError(
                f"cannot reach the server at {self.server}: {exc or exc.__class__.__name__}"
            ) from exc

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                json_body: Any = None, content: bytes | BinaryIO | None = None,
                headers: Mapping[str, str] | None = None) -> httpx.Response:
        """Send one request; any status of 400 or more raises the mapped error."""
        with self._mapped():
            response = self.client.request(method, path, params=clean_params(params),
                                           json=json_body, content=content, headers=headers)
        if response.status_code >= 400:
            raise http_errors.error_from_response(response)
        return response

    def get_json(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return decode(self.request("GET", path, params=params))

    def post_json(self, path: str, body: Any = None, params: Mapping[str, Any] | None = None
                  ) -> Any:
        return decode(self.request("POST", path, params=params,
                                   json_body={} if body is None else body))

    @contextlib.contextmanager
    def stream(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
               headers: Mapping[str, str] | None = None,
               timeout: httpx.Timeout | None = None) -> Iterator[httpx.Response]:
        """A streamed response (SSE, blobs); errors mapped as in :meth:`request`."""
        with self._mapped():
            kwargs: dict[str, Any] = {"params": clean_params(params), "headers": headers}
            if timeout is not None:
                kwargs["timeout"] = timeout
            with self.client.stream(method, path, **kwargs) as response:
                if response.status_code >= 400:
                    response.read()
                    raise http_errors.error_from_response(response)
                yield response


def decode(response: httpx.Response) -> Any:
    """The JSON body (``None`` for 204 and empty bodies)."""
    if response.status_code == 204 or not response.content:
        return None
    try:
        return response.json()
    except (ValueError, json.JSONDecodeError) as exc:
        raise errors.ServerError(
            f"the server answered {response.request.method} {response.request.url.path} "
            f"with a body that is not JSON") from exc


def split_command(command: str | Sequence[str]) -> list[str]:
    """An argv list from a list or a shell-like string (split, never run through a shell)."""
    import shlex

    if isinstance(command, str):
        argv = shlex.split(command)
    else:
        argv = [str(a) for a in command]
    if not argv:
        raise errors.ValidationError("command: expected a non-empty command", field="command")
    return argv

"""One HTTP POST per delivery attempt, bounded in time as a whole, following no redirect.

httpx bounds each network operation (connect, each write, each read) on its own, so a
receiver that answers a byte at a time could hold a delivery for hours within those bounds.
Here the connections' every operation is given only what is left of the attempt's one
deadline (:class:`_DeadlineBackend`), so :attr:`Sender.timeout_s` bounds the attempt from
connecting to the last byte read.

Outcomes are words, never exceptions, and never quote the URL: channel URLs are secrets, and
the words are shown in the delivery log.
"""

from __future__ import annotations

import ssl
import threading
import time
import typing
from collections.abc import Iterator
from typing import Any

import httpcore
import httpx

#: Bytes of a refusal's answer kept for the delivery log.
ANSWER_KEPT = 300

_local = threading.local()


def _left(timeout: float | None) -> float:
    """What remains of the current attempt's deadline (at most ``timeout``)."""
    deadline: float | None = getattr(_local, "deadline", None)
    if deadline is None:
        return timeout if timeout is not None else 30.0
    left = deadline - time.monotonic()
    if left <= 0:
        raise httpcore.ReadTimeout("the delivery's time ran out")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _left(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _left(timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname,
                                                     _left(timeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: typing.Iterable[Any] | None = None
                    ) -> httpcore.NetworkStream:
        return _DeadlineStream(self._inner.connect_tcp(host, port, _left(timeout),
                                                       local_address, socket_options))

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: typing.Iterable[Any] | None = None
                            ) -> httpcore.NetworkStream:  # pragma: no cover - never used
        raise httpcore.ConnectError("unix sockets are not delivered to")

    def sleep(self, seconds: float) -> None:  # pragma: no cover - no retries in the pool
        time.sleep(seconds)


class _Transport(httpx.BaseTransport):
    """An httpx transport over a connection pool whose network backend keeps the deadline."""

    def __init__(self, concurrency: int) -> None:
        self._max_connections = max(concurrency, 1) * 2
        self._pool: httpcore.ConnectionPool | None = None
        self._lock = threading.Lock()

    def _connections(self) -> httpcore.ConnectionPool:
        # Made at the first delivery: loading the CA certificates is a fifth of an app's
        # start, and most servers never deliver a notification.
        with self._lock:
            if self._pool is None:
                self._pool = httpcore.ConnectionPool(
                    ssl_context=httpx.create_ssl_context(),
                    max_connections=self._max_connections, network_backend=_DeadlineBackend())
            return self._pool

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.SyncByteStream)
        req = httpcore.Request(
            method=request.method,
            url=httpcore.URL(scheme=request.url.raw_scheme, host=request.url.raw_host,
                             port=request.url.port, target=request.url.raw_path),
            headers=request.headers.raw, content=request.stream,
            extensions=request.extensions)
        try:
            resp = self._connections().handle_request(req)
        except httpcore.TimeoutException as exc:
            raise httpx.TimeoutException(str(exc), request=request) from exc
        except httpcore.ConnectError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        except httpcore.NetworkError as exc:
            raise httpx.NetworkError(str(exc), request=request) from exc
        except httpcore.ProtocolError as exc:
            raise httpx.ProtocolError(str(exc), request=request) from exc
        assert isinstance(resp.stream, typing.Iterable)
        return httpx.Response(status_code=resp.status, headers=resp.headers,
                              stream=_Body(resp), extensions=resp.extensions)

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.close()


class _Body(httpx.SyncByteStream):
    def __init__(self, resp: httpcore.Response) -> None:
        self._resp = resp

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from typing.cast(typing.Iterable[bytes], self._resp.stream)
        except (httpcore.TimeoutException, httpcore.NetworkError,
                httpcore.ProtocolError) as exc:
            raise httpx.ReadError(str(exc)) from exc

    def close(self) -> None:
        self._resp.close()


class Sender:
    """POSTs deliveries; thread-safe (one attempt per thread at a time)."""

    def __init__(self, timeout_s: float, *, concurrency: int = 4,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.timeout_s = timeout_s
        # No redirects: a channel's URL is the one place an operator allowed. No proxy from
        # the environment: the server's env is not the operator's say-so for notifications.
        self._client = httpx.Client(
            transport=transport or _Transport(concurrency), follow_redirects=False,
            trust_env=False, timeout=httpx.Timeout(timeout_s))

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> str | None:
        """Send one attempt: None when the receiver answered 2xx, else what went wrong."""
        _local.deadline = time.monotonic() + self.timeout_s
        try:
            with self._client.stream("POST", url, content=body, headers=headers) as resp:
                if 200 <= resp.status_code < 300:
                    return None
                return _refusal(resp)
        except httpx.TimeoutException:
            return f"timed out (no complete answer within {self.timeout_s:g} s)"
        except httpx.ConnectError as exc:
            return _scrub(f"could not connect: {exc}", url)
        except httpx.HTTPError as exc:
            return _scrub(f"{type(exc).__name__}: {exc}", url)
        finally:
            _local.deadline = None

    def close(self) -> None:
        self._client.close()


def _refusal(resp: httpx.Response) -> str:
    """``HTTP 500: <the start of the answer>`` (a redirect names where it pointed: nowhere
    followed, and its target is the receiver's to give)."""
    kept = b""
    try:
        for chunk in resp.iter_raw():
            kept += chunk
            if len(kept) >= ANSWER_KEPT:
                break
    except httpx.HTTPError:
        pass
    text = " ".join(kept[:ANSWER_KEPT].decode("utf-8", "replace").split())
    head = f"HTTP {resp.status_code}"
    if 300 <= resp.status_code < 400:
        head += " (a redirect; redirects are not followed)"
    return f"{head}: {text}" if text else head


def _scrub(text: str, url: str) -> str:
    """The message without the URL, should a library have quoted it."""
    return text.replace(url, "<channel url>")[:ANSWER_KEPT]

"""A real webhook receiver on 127.0.0.1 for notification tests: a small threaded HTTP server
that checks each request's signature the way docs/notifications.md tells receivers to, and
answers from a script (``500, 500, then 200``), or never in time (``hang``)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from runyard.notifications import messages


@dataclass
class Received:
    """One request as the receiver saw it, and what it answered."""

    path: str
    headers: dict[str, str]
    body: bytes
    #: None: unsigned; else whether the signature and timestamp verified.
    signature_ok: bool | None
    answered: int

    @property
    def delivery(self) -> str | None:
        return self.headers.get(messages.DELIVERY_HEADER.lower())

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Start with :meth:`start`; ``url`` takes POSTs on any path. ``script`` lists the
    statuses of the first answers (``"hang"``: answer only after ``hang_s``), then
    ``default`` answers every later one. ``error_text`` replaces the body of an error
    answer (``receiver says <status>``): what a hostile receiver puts in the delivery log."""

    secret: str | None = None
    script: list[int | str] = field(default_factory=list)
    default: int | str = 200
    hang_s: float = 30.0
    error_text: str | None = None
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._released = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self._thread: threading.Thread | None = None

    def start(self) -> Receiver:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._released.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _next_answer(self) -> int | str:
        with self._lock:
            return self.script.pop(0) if self.script else self.default

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length)
        headers = {k.lower(): v for k, v in handler.headers.items()}
        ok: bool | None = None
        signature = headers.get(messages.SIGNATURE_HEADER.lower())
        if signature is not None:
            ok = self.secret is not None and messages.verify(
                self.secret, headers.get(messages.TIMESTAMP_HEADER.lower(), ""), body,
                signature)
        answer = self._next_answer()
        if answer == "hang":
            self._released.wait(self.hang_s)
            status = 200
        else:
            status = int(answer)
        with self._lock:
            self.received.append(Received(handler.path, headers, body, ok, status))
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "text/plain")
            text = b"ok" if status < 300 else (
                self.error_text if self.error_text is not None
                else f"receiver says {status}").encode()
            handler.send_header("Content-Length", str(len(text)))
            handler.end_headers()
            handler.wfile.write(text)
        except OSError:  # the sender gave up waiting
            pass

    def requests(self, delivery: int | str | None = None) -> list[Received]:
        with self._lock:
            got = list(self.received)
        return [r for r in got if delivery is None or r.delivery == str(delivery)]


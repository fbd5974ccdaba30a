"""``runyard.Client``: the Python management API over the HTTP contract (docs/http-api.md).

Its calls are grouped by what they act on, one module each: runs (:mod:`.runs_api`), what runs
record (:mod:`.data_api`), the fleet (:mod:`.fleet_api`), rules and notifications
(:mod:`.alerts_api`); :class:`Client` composes them over one HTTP connection.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx

from runyard import defaults
from runyard.client import sse
from runyard.client.alerts_api import AlertsAPI
from runyard.client.arguments import Resources, RunRef, rule_object, run_id
from runyard.client.data_api import DataAPI
from runyard.client.fleet_api import FleetAPI
from runyard.client.http import DEFAULT_TIMEOUT, Http
from runyard.client.models import StreamEvent
from runyard.client.runs_api import TERMINAL, RunsAPI

__all__ = ["DEFAULT_SERVER", "TERMINAL", "Client", "Resources", "RunRef", "rule_object",
           "run_id"]

#: Where a client connects when neither ``server=`` nor ``RUNYARD_SERVER`` says.
DEFAULT_SERVER = f"http://{defaults.HOST}:{defaults.PORT}"


class Client(RunsAPI, DataAPI, FleetAPI, AlertsAPI):
    """Talks to one Runyard server. Use as a context manager or call :meth:`close`.

    ``server`` defaults to ``$RUNYARD_SERVER`` (else ``http://127.0.0.1:8470``), ``token`` to
    ``$RUNYARD_TOKEN``. ``transport`` swaps the network (``httpx.MockTransport`` in tests).
    """

    def __init__(self, server: str | None = None, token: str | None = None, *,
                 timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.server = (server or os.environ.get("RUNYARD_SERVER") or DEFAULT_SERVER).rstrip("/")
        token = token if token is not None else os.environ.get("RUNYARD_TOKEN") or None
        self._http = Http(self.server, token, timeout=timeout, transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def __repr__(self) -> str:
        return f"Client(server={self.server!r})"

    # ------------------------------------------------------------------ live
    def stream_events(self, *, run: RunRef | None = None, last_event_id: str | None = None,
                      read_timeout: float = 60.0, reconnect: bool = True
                      ) -> Iterator[StreamEvent]:
        """Live server-sent events (status changes, progress) of every run or of ``run``.

        Starts with what happens after the call (or after ``last_event_id``: ``"0"`` replays
        all history) and resumes with ``Last-Event-ID`` after a dropped connection. Close the
        generator to close the connection.
        """
        params = None if run is None else {"run_id": run_id(run)}
        return sse.stream(self._http, "/v1/events/stream", last_event_id=last_event_id,
                          params=params, read_timeout=read_timeout, reconnect=reconnect)

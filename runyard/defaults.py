"""Documented defaults, one place. Every one can be overridden where it is used."""

from __future__ import annotations

#: HTTP port of ``runyard server``.
PORT = 8470
HOST = "127.0.0.1"
#: ``runyard server --limit-concurrency``: open connections (idle keep-alive ones and event
#: streams included) past which the HTTP server answers 503 at once.
LIMIT_CONCURRENCY = 1000
#: Seconds ``runyard server`` keeps an idle keep-alive connection open between requests.
KEEP_ALIVE_S = 5

#: A lease with no heartbeat for this long ends its attempt as ``lost``.
STALE_AFTER_S = 120.0
#: How long each heartbeat extends the lease; agents beat several times within it.
LEASE_S = STALE_AFTER_S
#: How often the server sweeps for lapsed leases.
SWEEP_INTERVAL_S = 5.0
#: A worker unseen this long and holding no attempt is removed from the registry (0: never).
FORGET_WORKERS_AFTER_S = 7 * 86400.0

MAX_ATTEMPTS = 3
MAX_RESTARTS_ON_ERRORS = 0
PROBE_INTERVAL_S = 1.0
STALL_AFTER_S = 600.0
STOP_GRACE_S = 30.0

#: How many queued candidates a claim looks at before giving up (eligibility is checked in
#: Python for globs and labels, so the SQL prefilter keeps this small).
CLAIM_SCAN = 64

#: Progress snapshot bounds (docs/progress-protocol.md).
SNAPSHOT_MAX_BYTES = 64 * 1024
SNAPSHOT_MAX_METRICS = 256
METRIC_NAME_MAX = 64
#: Most distinct metric tags one run may have (the server refuses a batch past it, the SDK
#: drops further tags): its run page lists them, and hundreds of thousands of tags are a
#: logging mistake that would slow every reader of that page.
MAX_TAGS_PER_RUN = 10_000
#: Largest metric step a server stores (a signed 64-bit integer).
METRIC_STEP_MAX = 2**63 - 1

#: Lines of stderr kept with a failure.
STDERR_TAIL_LINES = 40


#: Notification deliveries (docs/notifications.md). Seconds one delivery may take in all
#: (connecting, sending and reading the answer together).
NOTIFY_TIMEOUT_S = 10.0
#: Attempts at one delivery before it is marked failed with its last error.
NOTIFY_MAX_ATTEMPTS = 8
#: Delay before the first retry; each further retry doubles it up to NOTIFY_BACKOFF_MAX_S,
#: and each delay is drawn between its half and its whole (jitter).
NOTIFY_BACKOFF_S = 10.0
NOTIFY_BACKOFF_MAX_S = 1800.0
#: Deliveries in flight at once in one server process.
NOTIFY_CONCURRENCY = 4
#: Seconds between two looks at the outbox for deliveries that came due.
NOTIFY_POLL_S = 1.0

#: Format of the log lines of ``runyard`` commands (the level comes from RUNYARD_LOG_LEVEL).
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

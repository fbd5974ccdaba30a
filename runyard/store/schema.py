"""The tables, defined once. Migrations in ``migrations/versions`` must match this file
(``tests/integration/test_store_migrations.py`` compares them).

Times are UNIX seconds as floats: they order exactly, compare cheaply in SQL on both
dialects and convert once at the API edge.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

Time = sa.Float(precision=53)
JSON = sa.JSON()

#: Values per IN (...) list, well under both databases' parameter limits.
IN_BATCH = 500

_QUEUED = "status = 'queued'"
# As each dialect renders `require_cuda == false()`, which is how the claim asks for it.
_QUEUED_CPU = {"sqlite": f"{_QUEUED} AND require_cuda = 0",
               "postgresql": f"{_QUEUED} AND require_cuda = false"}

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("project", sa.String(200), nullable=False, server_default="default"),
    sa.Column("version", sa.String(100), nullable=False, server_default=""),
    sa.Column("notes", sa.Text, nullable=False, server_default=""),
    # A JSON list of short labels users give a run (models.validate_tags); filtered in SQL
    # by substring (runyard.store.runlist), which their character set makes exact.
    sa.Column("tags", JSON, nullable=False, server_default="[]"),
    sa.Column("blueprint", sa.String(200)),
    sa.Column("command", JSON),
    sa.Column("config", JSON, nullable=False),
    # A manifest job's seed: part of its identity, and the `{seed}` command placeholder.
    sa.Column("seed", sa.BigInteger),
    sa.Column("constraints", JSON, nullable=False),
    sa.Column("env", JSON),
    sa.Column("owner", sa.String(200)),
    # Manifest jobs carry the sha256 of what defines their work; reload looks runs up by it.
    sa.Column("job_key", sa.String(64), unique=True),
    sa.Column("source", sa.String(500)),
    # Scheduling columns, copied out of `constraints` so the claim can prefilter in SQL.
    sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
    sa.Column("require_cuda", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("prefer_cuda", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("gpus", sa.Integer, nullable=False, server_default="0"),
    sa.Column("min_vram_gib", sa.Float, nullable=False, server_default="0"),
    sa.Column("min_ram_gib", sa.Float, nullable=False, server_default="0"),
    sa.Column("min_cpus", sa.Float, nullable=False, server_default="0"),
    # The required labels as one string (eligibility.labels_key; "" for none).
    sa.Column("labels_key", sa.Text, nullable=False, server_default=""),
    # Lifecycle.
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False, server_default="0"),
    sa.Column("attempt_id", sa.String(40)),
    sa.Column("host_id", sa.String(200)),
    sa.Column("executor", sa.String(20), nullable=False, server_default="agent"),
    # How a multi-node run starts on its nodes ("srun", "torchrun"); None: not a Slurm run.
    sa.Column("launcher", sa.String(16)),
    # Slurm options (partition, account, qos, time_limit, sbatch_args); None: none given.
    sa.Column("slurm", JSON),
    sa.Column("workdir", sa.Text),
    sa.Column("artifact_store", sa.Text),
    sa.Column("archived", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("termination_reason", sa.String(20)),
    sa.Column("exit_code", sa.Integer),
    sa.Column("stop_requested_at", Time),
    sa.Column("stop_deadline", Time),
    sa.Column("stop_intent", sa.String(20)),
    # A pending request for the training loop to save a checkpoint (docs/lifecycle.md):
    # set by `POST /v1/runs/{id}/checkpoint` or a rule, cleared when the attempt registers one.
    sa.Column("checkpoint_requested_at", Time),
    sa.Column("no_retry", sa.Boolean, nullable=False, server_default=sa.false()),
    # Retry policy.
    sa.Column("max_attempts", sa.Integer, nullable=False, server_default="3"),
    sa.Column("max_restarts_on_errors", sa.Integer, nullable=False, server_default="0"),
    sa.Column("retry_on_exit_codes", JSON, nullable=False),
    sa.Column("error_restarts", sa.Integer, nullable=False, server_default="0"),
    # Attempts made before the last manual requeue/restart: automatic retries count from here.
    sa.Column("budget_start", sa.Integer, nullable=False, server_default="0"),
    # None: the run names no probe interval, so its agent's applies.
    sa.Column("probe_interval_s", sa.Float),
    sa.Column("stall_after_s", sa.Float, nullable=False, server_default="600"),
    # Progress (latest snapshot; history in progress_snapshots).
    sa.Column("progress", JSON),
    sa.Column("progress_updated_at", Time),
    sa.Column("last_step_at", Time),
    sa.Column("stalled", sa.Boolean, nullable=False, server_default=sa.false()),
    # Per-run event counter: the next event gets event_seq + 1, in the same transaction.
    sa.Column("event_seq", sa.Integer, nullable=False, server_default="0"),
    # The run's own rules and its blueprint's, as checked at submit, each with its
    # "source" (docs/rules.md); NULL when it has none. Project and server rules live in
    # `rules`. How many rule hits the run had (the runs list's alert badge).
    sa.Column("rules", sa.JSON(none_as_null=True)),
    sa.Column("rule_hits", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("queued_at", Time),
    sa.Column("started_at", Time),
    sa.Column("ended_at", Time),
    sa.Column("updated_at", Time, nullable=False),
    # When the status last changed (updated_at moves with every write: progress, stalls,
    # edits). NULL only where a migration found no better value than updated_at's.
    sa.Column("status_updated_at", Time),
    # In the claim's order (priority high first, then oldest), so a claim reads the first
    # queued rows of the index instead of sorting every queued run.
    # The prefilter's columns ride along, so rows it rejects are skipped inside the index.
    # Queued runs only: a claim takes its run out instead of moving it to another status's
    # part of the index, and later status changes do not touch it at all. Queries must
    # spell the condition as this literal for the planners to use it (QUEUED_ONLY). The
    # constant status leads all the same: SQLite would otherwise rather look the status
    # up in ix_runs_status_created and sort what it finds.
    # The executor rides along too: a Slurm agent's claim steps over the fleet's runs
    # inside the index.
    sa.Index("ix_runs_claim", "status", sa.desc("priority"), "created_at", "id", "gpus",
             "min_vram_gib", "min_ram_gib", "min_cpus", "require_cuda", "prefer_cuda",
             "labels_key", "executor", sqlite_where=sa.text(_QUEUED),
             postgresql_where=sa.text(_QUEUED)),
    # The same for the runs a host without CUDA may take. Runs that need CUDA wait for the
    # scarcer GPU hosts and gather at the head of the queue; in ix_runs_claim every claim by
    # a CPU host steps over all of them (a claim's cost growing with the GPU backlog).
    sa.Index("ix_runs_claim_cpu", "status", sa.desc("priority"), "created_at", "id", "gpus",
             "min_vram_gib", "min_ram_gib", "min_cpus", "prefer_cuda", "labels_key", "executor",
             sqlite_where=sa.text(_QUEUED_CPU["sqlite"]),
             postgresql_where=sa.text(_QUEUED_CPU["postgresql"])),
    sa.Index("ix_runs_project_created", "project", "created_at"),
    # The runs page: one status, newest first.
    sa.Index("ix_runs_status_created", "status", "created_at", "id"),
)

#: The condition of ``ix_runs_claim``, spelled as the index has it: a bound parameter in its
#: place would keep the planners from using the index.
QUEUED_ONLY = runs.c.status == sa.literal_column("'queued'")

attempts = sa.Table(
    "attempts",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("run_id", sa.String(40), sa.ForeignKey("runs.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("host_id", sa.String(200), nullable=False),
    sa.Column("lease", sa.String(64), nullable=False),
    sa.Column("lease_expires_at", Time, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("stop_ack", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("claimed_at", Time, nullable=False),
    sa.Column("running_at", Time),
    sa.Column("ended_at", Time),
    sa.Column("termination_reason", sa.String(20)),
    sa.Column("exit_code", sa.Integer),
    sa.Column("details", JSON),
    # Where the executor placed the attempt: its job id (Slurm's) and node names.
    sa.Column("external_id", sa.String(200)),
    sa.Column("nodes", JSON),
    # The directory its process ran in, as its holder reported it (docs/executors.md).
    sa.Column("workdir", sa.Text),
    # sha256 of the attempt's own credential (docs/security.md); valid while active.
    sa.Column("token_hash", sa.String(64)),
    sa.UniqueConstraint("run_id", "number"),
    sa.Index("ix_attempts_token_hash", "token_hash", unique=True),
    # Active attempts only (the sweep's lapsed leases, a new worker's count): an attempt
    # that ends leaves it instead of moving to the inactive part. Queries spell the
    # condition as ``active = true`` (ACTIVE_ONLY), which both planners match to it.
    sa.Index("ix_attempts_active_lease", "lease_expires_at",
             sqlite_where=sa.text("active = 1"), postgresql_where=sa.text("active")),
)

#: The condition of ``ix_attempts_active_lease`` as queries spell it.
ACTIVE_ONLY = attempts.c.active == sa.true()

workers = sa.Table(
    "workers",
    metadata,
    sa.Column("host_id", sa.String(200), primary_key=True),
    sa.Column("hostname", sa.String(255), nullable=False, server_default=""),
    sa.Column("capabilities", JSON, nullable=False),
    sa.Column("has_cuda", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("slots", sa.Integer, nullable=False, server_default="1"),
    sa.Column("drained", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("token_name", sa.String(200)),
    sa.Column("registered_at", Time, nullable=False),
    sa.Column("last_seen_at", Time, nullable=False),
    # Kept by triggers on `attempts` (migration 0004), never written by the code.
    sa.Column("active_attempts", sa.Integer, nullable=False, server_default="0"),
)

host_policies = sa.Table(
    "host_policies",
    metadata,
    sa.Column("host_id", sa.String(200), primary_key=True),
    sa.Column("allow", JSON, nullable=False),
    sa.Column("deny", JSON, nullable=False),
    sa.Column("slots", sa.Integer),
    sa.Column("labels", JSON, nullable=False),
    sa.Column("source", sa.String(500)),
    sa.Column("updated_at", Time, nullable=False),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("run_id", sa.String(40), sa.ForeignKey("runs.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False, server_default="0"),
    sa.Column("at", Time, nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("details", JSON),
    sa.UniqueConstraint("run_id", "seq"),
)

metric_points = sa.Table(
    "metric_points",
    metadata,
    sa.Column("run_id", sa.String(40), sa.ForeignKey("runs.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("tag", sa.String(64), primary_key=True),
    sa.Column("step", sa.BigInteger, primary_key=True),
    sa.Column("attempt", sa.Integer, primary_key=True),
    # NaN/Inf survive as NULL value plus their spelling in `special` (SQLite stores NaN as NULL).
    sa.Column("value", sa.Float(precision=53)),
    sa.Column("special", sa.String(9)),
    sa.Column("at", Time, nullable=False),
    # SQLite: rows live in primary-key order (no rowid table beside the key), so a range of
    # steps is one b-tree walk instead of an index walk plus a lookup per row.
    sqlite_with_rowid=False,
)

# Per-block aggregates of metric_points, maintained on ingest (see runyard.store.rollups).
metric_rollups = sa.Table(
    "metric_rollups",
    metadata,
    sa.Column("run_id", sa.String(40), sa.ForeignKey("runs.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("tag", sa.String(64), primary_key=True),
    sa.Column("shift", sa.SmallInteger, primary_key=True),
    sa.Column("block", sa.BigInteger, primary_key=True),
    sa.Column("n", sa.BigInteger, nullable=False),
    sa.Column("vmin", sa.Float(precision=53)),
    sa.Column("vmax", sa.Float(precision=53)),
    sa.Column("last_step", sa.BigInteger, nullable=False),
    sa.Column("last_attempt", sa.Integer, nullable=False),
    sa.Column("last_value", sa.Float(precision=53)),
    sa.Column("last_special", sa.String(9)),
    sqlite_with_rowid=False,
)

progress_snapshots = sa.Table(
    "progress_snapshots",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("run_id", sa.String(40), sa.ForeignKey("runs.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("seq", sa.Integer),
    sa.Column("step", sa.BigInteger),
    sa.Column("received_at", Time, nullable=False),
    sa.Column("snapshot", JSON, nullable=False),
    sa.Index("ix_progress_snapshots_run", "run_id", "id"),
)

blobs = sa.Table(
    "blobs",
    metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("created_at", Time, nullable=False),
)

artifacts = sa.Table(
    "artifacts",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("run_id", sa.String(40), sa.ForeignKey("runs.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False, server_default="file"),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("sha256", sa.String(64), sa.ForeignKey("blobs.sha256"), nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.UniqueConstraint("run_id", "attempt", "name"),
    sa.Index("ix_artifacts_sha256", "sha256"),
)

checkpoints = sa.Table(
    "checkpoints",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("run_id", sa.String(40), sa.ForeignKey("runs.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("step", sa.BigInteger, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("name", sa.String(255)),
    sa.Column("sha256", sa.String(64), sa.ForeignKey("blobs.sha256")),
    sa.Column("size", sa.BigInteger),
    sa.Column("metrics", JSON),
    sa.Column("created_at", Time, nullable=False),
    sa.UniqueConstraint("run_id", "attempt", "step"),
    sa.Index("ix_checkpoints_sha256", "sha256"),
)

log_chunks = sa.Table(
    "log_chunks",
    metadata,
    sa.Column("run_id", sa.String(40), sa.ForeignKey("runs.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("attempt", sa.Integer, primary_key=True),
    sa.Column("stream", sa.String(8), primary_key=True),
    sa.Column("offset", sa.BigInteger, primary_key=True),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("at", Time, nullable=False),
)

blueprints = sa.Table(
    "blueprints",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("command", JSON, nullable=False),
    sa.Column("config_schema", JSON),
    sa.Column("defaults", JSON, nullable=False),
    sa.Column("source", sa.String(500)),
    sa.Column("updated_at", Time, nullable=False),
)

tokens = sa.Table(
    "tokens",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("role", sa.String(16), nullable=False),
    # sha256 of the secret: tokens are high-entropy, so a slow KDF buys nothing here.
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("last_used_at", Time),
    sa.Column("revoked_at", Time),
    # A worker token's host binding (runyard/enrolment.py): host ids and glob patterns,
    # comma-separated (a comma is in neither); NULL binds it to the first host it claims as.
    sa.Column("hosts", sa.Text),
    # How many hosts it may have registered at once; NULL: the server's default.
    sa.Column("max_hosts", sa.Integer),
)

# One-time sign-in links (docs/security.md): each code is used once, before it expires, for a
# fresh token of ``role`` named after ``name`` (who asked for the link). Only the sha256 of
# the code is kept: codes are 32 random bytes, like token secrets.
signin_codes = sa.Table(
    "signin_codes",
    metadata,
    sa.Column("code_hash", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("expires_at", Time, nullable=False),
    sa.Column("used_at", Time),
    # The token the code was exchanged for.
    sa.Column("token_name", sa.String(200)),
)

# Project and server-wide rules (docs/rules.md). `project` "" is server-wide; `owner` NULL
# watches every run of the scope, a user's name only that user's runs.
rules = sa.Table(
    "rules",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("project", sa.String(200), nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("owner", sa.String(200)),
    sa.Column("spec", JSON, nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.UniqueConstraint("project", "name"),
)

# One rule's state on one run: O(1) whatever the run's length (runyard.rules.conditions).
# `rule_key` is "run:<name>", "blueprint:<name>", "project:<id>" or "server:<id>".
rule_states = sa.Table(
    "rule_states",
    metadata,
    sa.Column("run_id", sa.String(40), sa.ForeignKey("runs.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("rule_key", sa.String(100), primary_key=True),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("feed", sa.String(8)),
    sa.Column("last_step", sa.BigInteger),
    sa.Column("best", sa.Float(precision=53)),
    sa.Column("count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("fired", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("hits", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_hit_at", Time),
    sa.Column("last_hit", JSON),
)
# Where notifications go (docs/notifications.md). ``url`` and ``secret`` are secrets (a Slack
# webhook URL is its own credential): no read endpoint shows them.
channels = sa.Table(
    "channels",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("secret", sa.Text),
    # "api", or the manifest's source name.
    sa.Column("source", sa.String(500)),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
)

_PENDING = "status = 'pending'"

# The outbox: one row per (notification, channel), delivered by the server's deliverer. No
# foreign key to runs: an enqueue inside an ingest transaction must never fail on one, and
# the log outlives a deleted run (only operators then see its rows).
notifications = sa.Table(
    "notifications",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("channel", sa.String(200), nullable=False),
    sa.Column("run_id", sa.String(40)),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("payload", JSON, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    # Pending rows: when the next attempt is due. A claimed row's is pushed out to the end of
    # its claim, so a deliverer that died mid-delivery leaves it due again, not lost.
    sa.Column("next_attempt_at", Time),
    # The claim of the deliverer holding the row: its result is recorded only under it.
    sa.Column("claim", sa.String(32)),
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
    sa.Column("delivered_at", Time),
    # Pending rows only, by due time: what the deliverer's poll reads.
    sa.Index("ix_notifications_due", "next_attempt_at",
             sqlite_where=sa.text(_PENDING), postgresql_where=sa.text(_PENDING)),
    sa.Index("ix_notifications_run", "run_id", "id"),
    sa.Index("ix_notifications_channel", "channel", "id"),
)

#: The condition of ``ix_notifications_due`` as queries spell it.
PENDING_ONLY = notifications.c.status == sa.literal_column("'pending'")

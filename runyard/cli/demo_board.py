"""The demo's terminal view: live progress bars while the jobs run, then their artifacts.

On a terminal the table redraws in place (Rich ``Live``); elsewhere (a pipe, a CI log) each
status change is one line, and the final table is printed once.
"""

from __future__ import annotations

import enum
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from runyard import errors
from runyard.cli import common
from runyard.client import Artifact, Client, Run

#: Seconds between two looks at the runs.
POLL_S = 0.5


class Outcome(enum.StrEnum):
    ENDED = "ended"  # every run ended (completed or not)
    INTERRUPTED = "interrupted"  # Ctrl-C / SIGTERM
    BROKEN = "broken"  # the server or the agent died
    TIMED_OUT = "timed_out"


def _elapsed(run: Run) -> float | None:
    if run.started_at is None:
        return None
    end = run.ended_at.timestamp() if run.ended_at is not None else time.time()
    return max(end - run.started_at.timestamp(), 0.0)


def stopped_by_rule(run: Run) -> str | None:
    """"stopped by rule 'flat' at step 256 (val_loss 0.136, best 0.128)" for a run a rule
    stopped (its ``last_hit`` in ``GET /v1/runs/{id}``), else None."""
    if run.status not in ("stopped", "failed") or run.termination_reason != "rule":
        return None
    hits = [r for r in run.raw.get("rules") or [] if isinstance(r, dict)
            and isinstance(r.get("last_hit"), dict)
            and {"stop", "fail"} & set(r.get("then") or [])]
    if not hits:
        return f"{run.status} by a rule"
    rule = max(hits, key=lambda r: str(r["last_hit"].get("at") or ""))
    hit = rule["last_hit"]
    text = f"{run.status} by rule '{rule.get('name')}'"
    if hit.get("step") is not None:
        text += f" at step {hit['step']}"
    evidence = [f"{hit['tag']} {_value(hit.get('value'))}"] if hit.get("tag") else []
    if hit.get("best") is not None:
        evidence.append(f"best {_value(hit['best'])}")
    return text + (f" ({', '.join(evidence)})" if evidence else "")


def _value(v: Any) -> str:
    """A hit's value: numbers as the tables show them, "NaN" and the like as they are."""
    if isinstance(v, int | float) and not isinstance(v, bool):
        return common.number(float(v))
    return str(v)


def ended_as_planned(run: Run) -> bool:
    """Completed, or stopped by one of its rules (which is what the rule is for)."""
    return run.status == "completed" or (run.status == "stopped"
                                         and run.termination_reason == "rule")


def frame(runs: list[Run], title: str) -> Table:
    """One table row per run: status, bar, steps, two metrics, ETA or time taken, host."""
    table = Table("job", "status", "progress", "", "step", "metrics", "eta/took", "host",
                  title=title, title_justify="left", box=None, pad_edge=False)
    for column in table.columns:
        column.no_wrap = True
    table.columns[5].overflow = "ellipsis"  # metrics: one line, cut when the terminal is narrow
    for run in runs:
        p = run.progress
        when = common.duration(_elapsed(run)) if run.is_terminal else \
            common.duration(p.eta_seconds if p else None)
        table.add_row(run.name or run.id, common.status_cell(run),
                      common.progress_bar(run, width=28),
                      "100%" if run.status == "completed" else common.percent(p), common.steps(p),
                      common.key_metrics(p, limit=2), when, run.host_id or "-")
    return table


class Board:
    """Watches ``runs`` through ``client`` until they all end (or something stops it)."""

    def __init__(self, client: Client, runs: list[Run], console: Console, *,
                 title: str) -> None:
        self.client = client
        self.runs = runs
        self.console = console
        self.title = title
        self._seen: dict[str, str | None] = {}

    def _refresh(self) -> None:
        fresh = []
        for run in self.runs:
            if not run.is_terminal:
                try:
                    run = self.client.get_run(run.id)
                except errors.TransportError:
                    pass  # the stack's own check says whether the server died
            fresh.append(run)
        self.runs = fresh

    def _lines(self) -> None:
        """Off a terminal: one line per status change."""
        for run in self.runs:
            if self._seen.get(run.id) == run.status:
                continue
            self._seen[run.id] = run.status
            text = f"demo: {run.name}: {stopped_by_rule(run) or common.status_text(run)}"
            if run.status == "running" and run.host_id:
                text += f" on {run.host_id}"
            if run.is_terminal:
                text += f" in {common.duration(_elapsed(run))}"
                metrics = common.key_metrics(run.progress, limit=2)
                text += f" ({metrics})" if metrics != "-" else ""
            self.console.print(text, highlight=False, soft_wrap=True)

    def watch(self, stopping: Callable[[], bool], broken: Callable[[], str | None],
              timeout_s: float) -> tuple[Outcome, str | None]:
        """Redraw until every run ended; the outcome and, when broken, why."""
        deadline = time.monotonic() + timeout_s
        live = self.console.is_terminal
        view: Live | None = None
        if live:
            view = Live(frame(self.runs, self.title), console=self.console,
                        refresh_per_second=4, transient=False)
            view.start()
        try:
            while True:
                self._refresh()
                if view is not None:
                    view.update(Group(frame(self.runs, self.title)))
                else:
                    self._lines()
                if all(r.is_terminal for r in self.runs):
                    return Outcome.ENDED, None
                problem = broken()
                if problem is not None:
                    return Outcome.BROKEN, problem
                if stopping():
                    return Outcome.INTERRUPTED, None
                if time.monotonic() > deadline:
                    return Outcome.TIMED_OUT, None
                end = time.monotonic() + POLL_S
                while time.monotonic() < end and not stopping():
                    time.sleep(0.05)
        finally:
            if view is not None:
                view.stop()
            else:
                self.console.print(frame(self.runs, self.title))

    # --- after the runs ---------------------------------------------------------------------

    def rule_stops(self) -> list[str]:
        """One line per run a rule stopped: which rule, at which step, on what evidence."""
        return [f"{run.name}: {text}" for run in self.runs
                if (text := stopped_by_rule(run)) is not None]

    def failures(self) -> list[str]:
        """One line per run that did not end as planned (:func:`ended_as_planned`): its
        reason and last stderr line."""
        out = []
        for run in self.runs:
            if ended_as_planned(run):
                continue
            line = f"{run.name}: {stopped_by_rule(run) or common.status_text(run)}"
            try:
                events = list(self.client.get_events(run.id, limit=1000).items)
            except errors.RunyardError:
                events = []
            ends = [e for e in events if e.details.get("stderr_tail") or e.details.get("error")]
            if ends:
                d = ends[-1].details
                tail = d.get("stderr_tail") or []
                line += f": {d.get('error') or (tail[-1] if tail else '')}"
            out.append(line)
        return out

    def artifacts(self, blob_root: Path) -> Table:
        """The latest attempt's artifacts of every run, with what each bundle holds."""
        from runyard.artifacts.base import blob_key

        table = Table("job", "artifact", "kind", "size", "sha256", "contains",
                      title=f"Artifacts (content-addressed blobs under {blob_root})",
                      title_justify="left", box=None, pad_edge=False)
        for column in table.columns[:5]:
            column.no_wrap = True
        for run in self.runs:
            try:
                items = self.client.get_artifacts(run.id)
            except errors.RunyardError:
                continue
            for art in _latest(items, run.attempt):
                path = blob_root / blob_key(art.sha256)
                table.add_row(run.name or run.id, art.name, art.kind or "-", _size(art.size),
                              art.sha256[:12], ", ".join(bundle_members(path)) or "-")
        return table


def _latest(items: list[Artifact], attempt: int | None) -> list[Artifact]:
    return [a for a in items if attempt is None or a.attempt in (None, attempt)]


def _size(n: int) -> str:
    size: float = n
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def bundle_members(path: Path, limit: int = 6) -> list[str]:
    """The file names inside a ``tar.zst`` blob (empty when it is not one)."""
    import zstandard

    try:
        with open(path, "rb") as fh:
            if fh.read(4) != b"\x28\xb5\x2f\xfd":  # the zstd magic number
                return []
            fh.seek(0)
            with zstandard.ZstdDecompressor().stream_reader(fh) as stream, \
                    tarfile.open(fileobj=stream, mode="r|") as tar:
                names: list[Any] = [m.name for m in tar if m.isfile()]
    except (OSError, tarfile.TarError, zstandard.ZstdError):
        return []
    return names[:limit] + ([f"+{len(names) - limit} more"] if len(names) > limit else [])

"""``runyard logs`` and ``runyard metrics``: what a run wrote (docs/cli.md)."""

from __future__ import annotations

import csv
import sys
import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from runyard.cli import common
from runyard.cli.common import (
    EXIT_USAGE,
    JsonOpt,
    ProjectOpt,
    ReadServerOpt,
    RunArg,
    TokenOpt,
    fail,
)
from runyard.client import LogChunk


def logs(run_ref: RunArg,
         follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new output "
                                              "until the run ends.")] = False,
         stderr: Annotated[bool, typer.Option("--stderr", help="The stderr stream.")] = False,
         attempt: Annotated[int | None, typer.Option(min=1, help="Attempt (default: latest).")
                            ] = None,
         interval: Annotated[float, typer.Option(min=0.1, help="Seconds between polls (-f).")
                             ] = 1.0,
         tail: Annotated[int | None, typer.Option(
             "--tail", "-n", min=1, help="Only the last N lines (then -f follows on).")] = None,
         project: ProjectOpt = None, server: ReadServerOpt = None,
         token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """Print a run's captured stdout (or --stderr)."""
    stream = "stderr" if stderr else "stdout"
    offset = 0

    def emit(chunk: LogChunk, at: int) -> None:
        if not chunk.data:
            return
        if as_json:
            common.print_json({"data": chunk.data, "offset": at,
                               "next_offset": chunk.next_offset, "attempt": chunk.attempt,
                               "stream": stream})
        else:
            sys.stdout.write(chunk.data)
            sys.stdout.flush()

    with common.reading(server, token) as client:
        run = common.find(client, run_ref, project)
        if tail is not None:
            last = client.get_logs(run, stream=stream, attempt=attempt, tail=tail,
                                   limit_bytes=16 << 20)
            emit(last, last.offset or 0)
            offset = last.next_offset
            if not follow:
                return
        while True:
            chunk = client.get_logs(run, stream=stream, offset=offset, attempt=attempt)
            emit(chunk, offset)
            moved = chunk.next_offset > offset
            offset = max(offset, chunk.next_offset)
            if moved and chunk.data:
                continue  # more may be waiting right away
            if not follow or client.get_run(run).is_terminal:
                # One last read after the end catches output flushed at exit.
                if follow:
                    emit(client.get_logs(run, stream=stream, offset=offset,
                                         attempt=attempt), offset)
                return
            time.sleep(interval)


def metrics(run_ref: RunArg,
            tag: Annotated[str | None, typer.Option(help="One metric (default: list tags).")
                           ] = None,
            as_csv: Annotated[bool, typer.Option("--csv", help="Every point as CSV.")] = False,
            points: Annotated[int | None, typer.Option(
                min=2, help="Downsample --tag to N buckets (min, max, last).")] = None,
            project: ProjectOpt = None, server: ReadServerOpt = None,
            token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """A run's metrics: the tags, one tag's points, a downsampled series, or all as CSV."""
    if points is not None and tag is None:
        raise fail("--points needs --tag", EXIT_USAGE)
    with common.reading(server, token) as client:
        run_ref = common.find(client, run_ref, project).id
        if points is not None and tag is not None:
            series = client.get_series(run_ref, tag, points=points)
            rows: list[list[Any]] = [[p.step, p.min, p.max, p.last, p.count]
                                     for p in series.points]
            header = ["step", "min", "max", "last", "count"]
            if as_json:
                common.print_json({"tag": series.tag, "total": series.total,
                                   "points": [dict(zip(header, r, strict=True)) for r in rows]})
                return
        elif tag is not None or as_csv:
            found = client.get_all_metrics(run_ref, tag=tag)
            header = ["step", "tag", "value", "at", "attempt"]
            rows = [[p.step, p.tag, p.value, common.iso(p.at), p.attempt] for p in found]
            if as_json:
                common.print_json({"items": [dict(zip(header, r, strict=True)) for r in rows]})
                return
        else:
            tags = client.get_metric_tags(run_ref)
            header = ["tag", "count", "last_step", "last_value"]
            rows = [[t.tag, t.count, t.last_step, t.last_value] for t in tags]
            if as_json:
                common.print_json({"items": [dict(zip(header, r, strict=True)) for r in rows]})
                return
    if as_csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(header)
        writer.writerows([[common.number(v) if isinstance(v, float) and v != v else v
                           for v in row] for row in rows])
        return
    table = Table(*header, box=None)
    for row in rows:
        table.add_row(*[common.number(v) if isinstance(v, float) else
                        ("-" if v is None else str(v)) for v in row])
    Console(soft_wrap=True).print(table if rows else "no metrics")


def checkpoints(run_ref: RunArg,
                step: Annotated[list[int] | None, typer.Option(
                    "--step", min=0, help="Only these steps (repeatable).")] = None,
                status: Annotated[list[str] | None, typer.Option(
                    "--status", help="incomplete or complete (repeatable).")] = None,
                after: Annotated[str | None, typer.Option(
                    "--after", help="Registered after this time (ISO 8601).")] = None,
                before: Annotated[str | None, typer.Option(
                    "--before", help="Registered before this time (ISO 8601).")] = None,
                sort: Annotated[list[str] | None, typer.Option(
                    "--sort", help="key:asc|desc of id, step, attempt, created_at "
                                   "(default step:asc).")] = None,
                limit: Annotated[int | None, typer.Option(
                    min=1, help="At most N (default: all).")] = None,
                project: ProjectOpt = None, server: ReadServerOpt = None,
                token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """A run's checkpoints: step, status, attempt, size, metrics, when."""
    filters: dict[str, Any] = {
        "steps": step or None, "status": status or None, "sort": sort or None,
        "created_after": common.parse_when(after, "--after"),
        "created_before": common.parse_when(before, "--before")}
    with common.reading(server, token) as client:
        run = common.find(client, run_ref, project)
        if limit is None:
            found = client.get_checkpoints(run, **filters)
        else:
            found = list(client.list_checkpoints(run, limit=limit, **filters).items)
    if as_json:
        common.print_json({"items": [c.raw for c in found]})
        return
    table = Table("step", "status", "attempt", "size", "metrics", "created", box=None)
    for c in found:
        table.add_row(str(c.step), c.status, str(c.attempt or "-"),
                      "-" if c.size is None else str(c.size),
                      " ".join(f"{k}={v}" for k, v in sorted(c.metrics.items())) or "-",
                      common.iso(c.created_at) or "-")
    Console(soft_wrap=True).print(table if found else "no checkpoints")

"""``runyard submit``: queue a run from a blueprint, a command line or an argv (docs/cli.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperCommand

from runyard.cli import common
from runyard.cli.common import EXIT_USAGE, JsonOpt, ServerOpt, TokenOpt, fail
from runyard.client.client import DEFAULT_SERVER, rule_object


def _pairs(items: list[str] | None, option: str) -> dict[str, str]:
    out = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise fail(f"{option}: expected KEY=VALUE, got {item!r}", EXIT_USAGE)
        out[key.strip()] = value
    return out


class ArgvCommand(TyperCommand):
    """Keeps everything after ``--`` as the run's argv instead of positional arguments
    (:func:`submit` is registered with this command class)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if "--" in args:
            cut = args.index("--")
            ctx.meta["runyard.argv"] = args[cut + 1:]
            args = args[:cut]
        return super().parse_args(ctx, args)


def submit(
    ctx: typer.Context,
    blueprint: Annotated[str | None, typer.Argument(
        help="Blueprint to run (or give --command, or the argv after --).")] = None,
    command: Annotated[str | None, typer.Option(
        "--command", "-c", help="Command line to run (split like a shell, run without one).")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Run name (default: blueprint or program).")
                    ] = None,
    project: Annotated[str | None, typer.Option(help="Project.")] = None,
    version: Annotated[str | None, typer.Option(help="Version label.")] = None,
    notes: Annotated[str | None, typer.Option(help="Free-form notes.")] = None,
    config: Annotated[list[str] | None, typer.Option(
        "--config", help="Config override KEY=VALUE (dotted keys nest); repeatable.")] = None,
    require_cuda: Annotated[bool, typer.Option("--require-cuda", help="Only CUDA hosts.")
                            ] = False,
    prefer_cuda: Annotated[bool, typer.Option("--prefer-cuda", help="CUDA hosts when free.")
                           ] = False,
    gpus: Annotated[int | None, typer.Option(min=0, help="GPUs needed.")] = None,
    min_vram_gib: Annotated[float | None, typer.Option(min=0, help="VRAM per GPU.")] = None,
    min_ram_gib: Annotated[float | None, typer.Option(min=0, help="Host RAM.")] = None,
    min_cpus: Annotated[float | None, typer.Option(min=0, help="Host CPUs.")] = None,
    host: Annotated[list[str] | None, typer.Option(
        "--host", help="Allowed host glob; repeatable.")] = None,
    label: Annotated[list[str] | None, typer.Option(
        "--label", help="Required host label KEY=VALUE; repeatable.")] = None,
    env: Annotated[list[str] | None, typer.Option(
        "--env", help="Environment variable NAME=VALUE for the run; repeatable.")] = None,
    priority: Annotated[int | None, typer.Option(help="Higher runs first.")] = None,
    max_attempts: Annotated[int | None, typer.Option(min=1, help="Attempts in all.")] = None,
    max_restarts_on_errors: Annotated[int | None, typer.Option(
        min=0, help="Retries after a non-zero exit.")] = None,
    stall_after_s: Annotated[float | None, typer.Option(
        help="Seconds without a new step before the run is marked stalled.")] = None,
    rule: Annotated[list[str] | None, typer.Option(
        "--rule", help="A rule, e.g. 'nan loss -> stop,no_retry' (docs/rules.md); "
                       "repeatable.")] = None,
    validate_only: Annotated[bool, typer.Option(
        "--validate", help="Only validate the submission; queue nothing.")] = False,
    server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """Submit a run: a BLUEPRINT, --command "...", or the argv after --."""
    argv: list[str] | None = ctx.meta.get("runyard.argv")
    given = [blueprint is not None, command is not None, bool(argv)]
    if sum(given) != 1:
        raise fail("give exactly one of BLUEPRINT, --command or -- ARGV...", EXIT_USAGE)
    run_command: str | list[str] | None = argv or command
    if name is None:
        program = Path(argv[0] if argv else (command or "").split()[0]).name if not blueprint \
            else blueprint
        name = program or "run"
    constraints: dict[str, Any] = {k: v for k, v in (
        ("gpus", gpus), ("min_vram_gib", min_vram_gib), ("min_ram_gib", min_ram_gib),
        ("min_cpus", min_cpus)) if v is not None}
    if require_cuda:
        constraints["require_cuda"] = True
    if prefer_cuda:
        constraints["prefer_cuda"] = True
    if host:
        constraints["allowed_hosts"] = list(host)
    if label:
        constraints["labels"] = _pairs(label, "--label")
    from runyard.manifest.overrides import parse_config_overrides  # brings jsonschema

    kwargs: dict[str, Any] = dict(
        project=project, version=version, notes=notes, blueprint=blueprint,
        command=run_command, config=parse_config_overrides(config or []),
        constraints=constraints or None, priority=priority, max_attempts=max_attempts,
        max_restarts_on_errors=max_restarts_on_errors, stall_after_s=stall_after_s,
        env=_pairs(env, "--env") or None,
        rules=[rule_object(r) for r in rule] if rule else None)
    with common.connect(server, token) as client:
        if validate_only:
            if blueprint is None:
                raise fail("--validate checks a config against a BLUEPRINT; give one",
                           EXIT_USAGE)
            result = client.validate_run(blueprint, kwargs["config"])
            if as_json:
                common.print_json(result)
            else:
                typer.echo(f"{name}: valid")
            return
        run = client.create_run(name, **kwargs)
    if as_json:
        common.print_json(run.raw)
    else:
        typer.echo(f"submitted run {run.id} ({run.name}): {run.status}")

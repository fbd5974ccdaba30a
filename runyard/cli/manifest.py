"""``runyard manifest``: check a manifest file offline (no server needed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table

from runyard import errors
from runyard.cli import common
from runyard.cli.common import EXIT_ERROR, JsonOpt, ServerOpt, TokenOpt
from runyard.client.client import DEFAULT_SERVER

if TYPE_CHECKING:
    from runyard.manifest import Manifest

manifest_app = typer.Typer(help="Validate and reload the TOML manifest.", no_args_is_help=True)


@manifest_app.command("validate")
def validate(
    file: Path = typer.Argument(..., help="The manifest (TOML) to check.", dir_okay=False),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Check FILE offline (no server): hosts, blueprints, jobs and every job config against
    its blueprint's schema. Every problem is listed, one per line, as FILE:LINE: KEY: WHAT."""
    manifest = _load_or_exit(file, as_json)
    if as_json:
        typer.echo(json.dumps({"ok": True, **manifest.to_dict()}))
    else:
        _print_summary(manifest)


@manifest_app.command("reload")
def reload(
    file: Path = typer.Argument(..., help="The manifest (TOML) to apply.", dir_okay=False),
    dry_run: bool = typer.Option(False, "--dry-run",
                                 help="Only show what would change; change nothing."),
    source: str | None = typer.Option(
        None, "--source", help="Name this manifest on the server (default: its full path). "
        "Jobs of the same source that the file no longer lists are reported as removed."),
    server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """Apply FILE on the server (operator): new jobs are queued, host policies and blueprints
    updated in place; unchanged jobs keep their runs; removed jobs stay until cancelled.
    Reloading the same file again changes nothing. FILE is validated here first."""
    _load_or_exit(file, as_json)
    with common.connect(server, token) as client:
        result = client.reload_manifest(file, dry_run=dry_run, source=source)
    if as_json:
        common.print_json(result)
        return
    _print_plan(result)


def blueprints(server: ServerOpt = DEFAULT_SERVER, token: TokenOpt = None,
               as_json: JsonOpt = False) -> None:
    """List the blueprints stored on the server (from manifests or POST /v1/blueprints)."""
    with common.connect(server, token) as client:
        found = client.list_blueprints()
    if as_json:
        common.print_json({"items": found})
        return
    if not found:
        typer.echo("no blueprints")
        return
    table = Table("blueprint", "command", "config schema", "source", "updated", box=None)
    for bp in found:
        schema = bp.get("config_schema") or {}
        keys = ", ".join(sorted(schema.get("properties") or {})) if schema else "none"
        table.add_row(bp["name"], " ".join(bp.get("command") or []), keys or "any",
                      bp.get("source") or "-", bp.get("updated_at") or "-")
    Console(soft_wrap=True).print(table)


def _load_or_exit(file: Path, as_json: bool) -> Manifest:
    # Here, not at the top: the manifest parser brings jsonschema, which every other
    # command (all of them load this module) would otherwise import at start.
    from runyard.manifest import load_manifest

    try:
        return load_manifest(file)
    except errors.ManifestError as exc:
        if as_json:
            typer.echo(json.dumps({"ok": False, "file": str(file), "errors": exc.errors}))
        else:
            for item in exc.errors:
                typer.echo(item.get("text") or item.get("message"), err=True)
            count = len(exc.errors)
            typer.echo(f"runyard: {file}: {count} problem{'s' * (count != 1)}", err=True)
        raise typer.Exit(EXIT_ERROR) from None


def _print_plan(result: dict[str, Any]) -> None:
    console = Console(soft_wrap=True)
    verb = "would be" if result.get("dry_run") else "were"
    table = Table("change", "job", "job id", "blueprint", box=None)
    for label, style, jobs in (("new", "green", result.get("new") or []),
                               ("unchanged", "dim", result.get("unchanged") or [])):
        for j in jobs:
            table.add_row(f"[{style}]{label}[/{style}]", j["name"], j["job_key"][:12],
                          j.get("blueprint") or "(command)")
    for key in result.get("removed") or []:
        table.add_row("[yellow]removed[/yellow]", "-", key[:12], "(stays until cancelled)")
    if table.row_count:
        console.print(table)
    for host in result.get("hosts_changed") or []:
        console.print(f"host policy {host['id']}: allow {host.get('allow') or ['*']}, "
                      f"deny {host.get('deny') or []}, slots {host.get('slots') or '-'}")
    for host in result.get("hosts_removed") or []:
        console.print(f"host policy {host}: no longer listed (kept)")
    for ch in result.get("channels") or []:
        if ch["state"] != "unchanged":
            console.print(f"channel {ch['name']} ({ch['kind']}): {ch['state']}")
    new = len(result.get("new") or [])
    console.print(f"{new} new run{'s' * (new != 1)} {verb} queued, "
                  f"{len(result.get('unchanged') or [])} unchanged, "
                  f"{len(result.get('removed') or [])} removed from the file"
                  + (" (dry run: nothing changed)" if result.get("dry_run") else ""))


def _print_summary(manifest: Manifest) -> None:
    console = Console(soft_wrap=True)
    console.print(f"[bold]{manifest.source}[/bold]: {len(manifest.hosts)} hosts, "
                  f"{len(manifest.blueprints)} blueprints, {len(manifest.jobs)} jobs, "
                  f"{len(manifest.channels)} channels — valid")
    if manifest.hosts:
        hosts = Table("host", "allow", "deny", "slots", "labels", title="Hosts")
        for h in manifest.hosts:
            hosts.add_row(h.host_id, ", ".join(h.allow) or "*", ", ".join(h.deny) or "-",
                          "-" if h.slots is None else str(h.slots),
                          ", ".join(f"{k}={v}" for k, v in h.labels.items()) or "-")
        console.print(hosts)
    if manifest.blueprints:
        bps = Table("blueprint", "command", "schema", title="Blueprints")
        for b in manifest.blueprints:
            bps.add_row(b.name, " ".join(b.command), "yes" if b.config_schema else "none")
        console.print(bps)
    if manifest.channels:
        chans = Table("channel", "kind", "url", "secret", title="Channels")
        for ch in manifest.channels:
            # The URL redacted even here: it is a credential, and terminals are shared.
            chans.add_row(ch.name, ch.kind, f"${ch.url_env}" if ch.url_env else
                          str(ch.to_dict()["url"]),
                          f"${ch.secret_env}" if ch.secret_env else "-")
        console.print(chans)
    if manifest.jobs:
        jobs = Table("job", "blueprint", "job id", "config", "constraints", title="Jobs")
        jobs.columns[0].no_wrap = jobs.columns[2].no_wrap = True
        for j in manifest.jobs:
            c = j.constraints
            needs = [n for n, on in (("require_cuda", c.require_cuda),
                                     ("prefer_cuda", c.prefer_cuda)) if on]
            needs += [f"{n}={v:g}" for n, v in (("gpus", c.gpus), ("min_vram_gib", c.min_vram_gib),
                                                ("min_ram_gib", c.min_ram_gib),
                                                ("min_cpus", c.min_cpus)) if v]
            config = " ".join(f"{k}={json.dumps(v)}" for k, v in sorted(j.config.items()))
            jobs.add_row(j.name, j.blueprint or "(command)", j.key[:12], config or "-",
                         ", ".join(needs) or "-")
        console.print(jobs)

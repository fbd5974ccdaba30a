"""``runyard manifest``: check a manifest file offline (no server needed)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from runyard import errors
from runyard.cli.app import EXIT_ERROR, app
from runyard.manifest import Manifest, load_manifest

manifest_app = typer.Typer(help="Validate and reload the TOML manifest.", no_args_is_help=True)
app.add_typer(manifest_app, name="manifest")


@manifest_app.command("validate")
def validate(
    file: Path = typer.Argument(..., help="The manifest (TOML) to check.", dir_okay=False),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Check FILE: hosts, blueprints, jobs and every job config against its schema."""
    try:
        manifest = load_manifest(file)
    except errors.ManifestError as exc:
        if as_json:
            typer.echo(json.dumps({"ok": False, "file": str(file), "errors": exc.errors}))
        else:
            for item in exc.errors:
                typer.echo(item.get("text") or item.get("message"), err=True)
            count = len(exc.errors)
            typer.echo(f"runyard: {file}: {count} problem{'s' * (count != 1)}", err=True)
        raise typer.Exit(EXIT_ERROR) from None
    if as_json:
        typer.echo(json.dumps({"ok": True, **manifest.to_dict()}))
    else:
        _print_summary(manifest)


def _print_summary(manifest: Manifest) -> None:
    console = Console(soft_wrap=True)
    console.print(f"[bold]{manifest.source}[/bold]: {len(manifest.hosts)} hosts, "
                  f"{len(manifest.blueprints)} blueprints, {len(manifest.jobs)} jobs — valid")
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

"""The TOML manifest: hosts, blueprints and jobs (docs/manifest.md).

    manifest = load_manifest("fleet.toml")        # or parse_manifest(text, source=...)
    for job in manifest.jobs:
        body = job.to_run_request()               # POST /v1/runs body, plus job_key
    plan = plan_reload(manifest, existing_keys, existing_hosts)

Every problem of a file is reported at once, in one :class:`runyard.errors.ManifestError`
whose ``.errors`` are ``{file, line, field, message, text}`` dicts, ``text`` reading
``fleet.toml:42: jobs[3].config.lr: -1 is less than or equal to the minimum of 0``.
Array indexes in field paths count from 0.
"""

from __future__ import annotations

from runyard.manifest.blueprint import Blueprint, config_errors, validate_config
from runyard.manifest.job import Job, canonical_json, job_key
from runyard.manifest.locator import LineIndex, format_path, parse_path
from runyard.manifest.overrides import parse_config_overrides
from runyard.manifest.parser import Manifest, load_manifest, parse_manifest, request_body
from runyard.manifest.problems import format_error
from runyard.manifest.reload import ReloadPlan, plan_reload
from runyard.placeholders import PLACEHOLDERS, render_command

__all__ = [
    "PLACEHOLDERS",
    "Blueprint",
    "Job",
    "LineIndex",
    "Manifest",
    "ReloadPlan",
    "canonical_json",
    "config_errors",
    "format_error",
    "format_path",
    "job_key",
    "load_manifest",
    "parse_config_overrides",
    "parse_manifest",
    "parse_path",
    "plan_reload",
    "render_command",
    "request_body",
    "validate_config",
]

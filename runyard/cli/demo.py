"""Placeholder: filled in by later work."""

from __future__ import annotations

from runyard.cli.app import app  # noqa: F401

"""Collect every problem of a manifest, then raise them together as one ManifestError."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runyard import errors
from runyard.manifest.locator import LineIndex, Path, format_path, parse_path


def format_error(item: dict[str, Any]) -> str:
    """``fleet.toml:42: jobs[3].config.lr: message`` (parts that are unknown are left out)."""
    where = str(item.get("file") or "<manifest>")
    if item.get("line") is not None:
        where += f":{item['line']}"
    field_name = item.get("field")
    head = f"{where}: {field_name}: " if field_name else f"{where}: "
    return head + str(item.get("message", ""))


def split_field(exc: errors.ValidationError) -> tuple[Path, str]:
    """A models-level error as (relative path, bare message): strips the ``field: `` prefix."""
    name = exc.field or ""
    message = exc.message
    if name and message.startswith(f"{name}: "):
        message = message[len(name) + 2:]
    return (parse_path(name) if name else ()), message


@dataclass
class Problems:
    """Accumulates ``{file, line, field, message, text}`` dicts for one manifest."""

    source: str
    index: LineIndex | None = None
    items: list[dict[str, Any]] = field(default_factory=list)

    def add(self, path: Path, message: str, *, line: int | None = None) -> None:
        if line is None and self.index is not None and path:
            line = self.index.line_of(path)
        item: dict[str, Any] = {
            "file": self.source,
            "line": line,
            "field": format_path(path) or None,
            "message": message,
        }
        item["text"] = format_error(item)
        self.items.append(item)

    def add_validation(self, base: Path, exc: errors.ValidationError) -> None:
        """Record an error raised by ``runyard.models`` under ``base``."""
        rel, message = split_field(exc)
        self.add(base + rel, message)

    def line(self, path: Path) -> int | None:
        return self.index.line_of(path) if self.index is not None else None

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_if_any(self) -> None:
        if not self.items:
            return
        # Reading order: by line, problems with no known line last, ties in discovery order.
        ordered = sorted(self.items, key=lambda i: (i["line"] is None, i["line"] or 0))
        first = ordered[0]
        more = len(ordered) - 1
        message = first["text"] + (f" (and {more} more problem{'s' * (more > 1)})" if more else "")
        raise errors.ManifestError(
            message, field=first["field"], errors=ordered, file=self.source
        )

"""What the framework adapters share: adopting or owning a run, and numeric logs only."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runyard.sdk.run import Run, start_run


class RunHolder:
    """A run given by the user (kept open) or started on demand (finished by :meth:`end`)."""

    def __init__(self, run: Run | None, options: Mapping[str, Any]) -> None:
        self._run = run
        self._owned = run is None
        self._options = dict(options)

    @property
    def run(self) -> Run | None:
        return self._run

    def begin(self, **defaults: Any) -> Run:
        """The run, started now if the callback owns it (user options win over defaults)."""
        if self._run is None:
            self._run = start_run(**{**defaults, **self._options})
        return self._run

    def end(self, error: BaseException | None = None) -> None:
        if self._owned and self._run is not None:
            self._run.finish(error=error)


def numbers(logs: Mapping[str, Any] | None, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The entries of a framework's logs that can be metrics (numbers, 0-d tensors)."""
    out: dict[str, Any] = {}
    for key, value in (logs or {}).items():
        if key in skip or isinstance(value, str | bytes | bool) or value is None:
            continue
        if isinstance(value, int | float) or hasattr(value, "__float__"):
            shape = getattr(value, "shape", ())
            if not shape or all(dim == 1 for dim in shape):
                out[str(key)] = value
    return out

"""The executors an agent can run, by name (docs/executors.md).

Apart from :mod:`runyard.agent.executor` so that the agent's options
(:mod:`runyard.agent.config`) can check an executor's name without importing the interface
that takes those options. The built-in executors' modules are imported on demand, so an
agent that never uses Slurm never imports its code.
"""

from __future__ import annotations

import importlib
from typing import Any, TypeVar

from runyard import errors

T = TypeVar("T", bound=type)

_REGISTRY: dict[str, type[Any]] = {}
_MODULES: dict[str, str] = {"local": "runyard.agent.local_executor",
                            "slurm": "runyard.agent.slurm"}


def register(cls: T) -> T:
    """Class decorator: make ``cls`` available as ``runyard agent --executor cls.name``."""
    _REGISTRY[cls.name] = cls  # type: ignore[attr-defined]
    return cls


def lookup(name: str) -> type[Any] | None:
    """The executor class registered as ``name`` (importing its module first), or None."""
    if name not in _REGISTRY and name in _MODULES:
        try:
            importlib.import_module(_MODULES[name])
        except ModuleNotFoundError as exc:
            if exc.name != _MODULES[name]:
                raise
    return _REGISTRY.get(name)


def available() -> list[str]:
    """The names of the executors this agent can run."""
    return sorted(n for n in {*_REGISTRY, *_MODULES} if lookup(n) is not None)


def check_name(name: Any) -> str:
    """``name`` if an executor of that name is available, else a clear ConfigError."""
    if not isinstance(name, str) or lookup(name) is None:
        raise errors.ConfigError(
            f"executor: {name!r} is not available in this agent (available: "
            f"{', '.join(available())})", field="executor")
    return name

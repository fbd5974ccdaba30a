"""Regular expressions on a run's log lines, with their cost bounded (docs/rules.md).

A rule's pattern comes from whoever submits a run and its lines from the training process,
so both may be hostile: a pattern such as ``(a|aa)+$`` backtracks exponentially on a line of
``a``s. Patterns are evaluated by the ``regex`` package, whose searches take a ``timeout``:

* a pattern is refused when it compiles to nothing usable, or when it is already too slow
  on a few probe lines made of its own characters (:func:`compile_problem`);
* at run time each line is cut to :data:`LINE_MAX` characters, each search has at most
  :data:`SEARCH_TIMEOUT_S`, and one request's searches together :data:`REQUEST_BUDGET_S`;
  a search that runs out counts as no match (and is logged), never as a stuck server.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

#: Characters of a line a pattern sees; the rest of a longer line is not searched.
LINE_MAX = 4096
#: Longest one search may take, and all of one request's searches together.
SEARCH_TIMEOUT_S = 0.05
REQUEST_BUDGET_S = 0.25
#: Longest a pattern may take on each probe line when it is checked.
PROBE_TIMEOUT_S = 0.02
#: Characters of the matched line kept as the hit's evidence.
EVIDENCE_MAX = 500


@functools.lru_cache(maxsize=1024)
def compiled(pattern: str) -> Any:
    """The compiled pattern (``^`` and ``$`` match at every line's ends)."""
    import regex

    return regex.compile(pattern, regex.MULTILINE)


def _probes(pattern: str) -> list[str]:
    chars = sorted({c for c in pattern if c.isalnum() or c in " _-."})[:8] or ["a"]
    lines = [c * 40 + "!" for c in chars]
    lines.append("".join(chars) * 8 + "!")
    lines += ["a" * 40 + "!", " " * 40 + "!", "0" * 40 + "!"]
    return lines


def compile_problem(pattern: str) -> str | None:
    """Why ``pattern`` cannot be a log rule's, or None."""
    import regex

    try:
        rx = compiled(pattern)
    except (regex.error, ValueError, OverflowError, RecursionError) as exc:
        return f"not a valid regular expression: {exc}"
    for line in _probes(pattern):
        try:
            rx.search(line, timeout=PROBE_TIMEOUT_S)
        except TimeoutError:
            return ("too slow to evaluate (catastrophic backtracking on a line of "
                    f"{len(line)} characters); simplify it")
    return None


@dataclass(frozen=True)
class Found:
    """A match: the stream, the chunk's byte offset, and the line it is in (cut)."""

    stream: str
    offset: int
    line: str


class Budget:
    """What is left of one request's searching time."""

    def __init__(self, total_s: float = REQUEST_BUDGET_S) -> None:
        self.deadline = time.monotonic() + total_s

    def left(self) -> float:
        return self.deadline - time.monotonic()


def _capped(text: str) -> str:
    """``text`` with every line cut to :data:`LINE_MAX` characters."""
    if len(text) <= LINE_MAX:
        return text
    lines = text.split("\n")
    if max(map(len, lines)) <= LINE_MAX:
        return text
    return "\n".join(line[:LINE_MAX] for line in lines)


def search(pattern: str, chunks: Iterable[dict[str, Any]], streams: Sequence[str],
           budget: Budget) -> Found | None:
    """The first match of ``pattern`` in ``chunks`` (``{stream, offset, data}``) of
    ``streams``, within ``budget``; None when there is none or the time ran out."""
    rx = compiled(pattern)
    for chunk in chunks:
        if chunk.get("stream") not in streams:
            continue
        left = min(SEARCH_TIMEOUT_S, budget.left())
        if left <= 0:
            log.warning("log rule %r: this request's search budget is spent; lines skipped",
                        pattern)
            return None
        text = _capped(str(chunk.get("data") or ""))
        try:
            m = rx.search(text, timeout=left)
        except TimeoutError:
            log.warning("log rule %r: a search ran out of time; counted as no match", pattern)
            return None
        if m is not None:
            start = text.rfind("\n", 0, m.start()) + 1
            end = text.find("\n", m.start())
            line = text[start:end if end >= 0 else len(text)]
            return Found(str(chunk["stream"]), int(chunk.get("offset") or 0),
                         line[:EVIDENCE_MAX])
    return None

"""Regular expressions on a run's log lines, with their cost bounded (docs/rules.md).

A rule's pattern comes from whoever submits a run and its lines from the training process,
so both may be hostile: a backtracking engine takes exponential time on ``(a|aa)+$`` against
a line of ``a``s. Patterns are therefore evaluated by RE2 (``google-re2``), whose searches
take time linear in the text, whatever the pattern. What RE2 cannot do in linear time
(backreferences, lookaround) it refuses to compile, and such a pattern is refused at
submission with RE2's reason. No search has a timeout, so no search depends on how busy the
machine is: a line either matches or it does not.

Each line is cut to :data:`LINE_MAX` characters, and a match never spans two lines (RE2's
``never_nl``): ``^`` and ``$`` match at each line's ends.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

#: Characters of a line a pattern sees; the rest of a longer line is not searched.
LINE_MAX = 4096
#: Characters of the matched line kept as the hit's evidence.
EVIDENCE_MAX = 500
#: Memory one compiled pattern may use (RE2's own bound on a pattern's automaton).
PATTERN_MAX_MEM = 8 << 20


@functools.lru_cache(maxsize=1024)
def compiled(pattern: str) -> Any:
    """The compiled pattern, line by line; raises ``ValueError`` with RE2's reason."""
    import re2

    options = re2.Options()
    options.log_errors = False  # a refused pattern is the submitter's 422, not a server log
    options.never_nl = True
    options.max_mem = PATTERN_MAX_MEM
    try:
        return re2.compile("(?m)" + pattern, options)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise ValueError(str(reason)) from None


def compile_problem(pattern: str) -> str | None:
    """Why ``pattern`` cannot be a log rule's, or None."""
    try:
        compiled(pattern)
    except ValueError as exc:
        return (f"not a regular expression RE2 evaluates ({exc}); backreferences and "
                "lookaround are not supported")
    return None


@dataclass(frozen=True)
class Found:
    """A match: the stream, the chunk's byte offset, and the line it is in (cut)."""

    stream: str
    offset: int
    line: str


def _capped(text: str) -> str:
    """``text`` with every line cut to :data:`LINE_MAX` characters."""
    if len(text) <= LINE_MAX:
        return text
    lines = text.split("\n")
    if max(map(len, lines)) <= LINE_MAX:
        return text
    return "\n".join(line[:LINE_MAX] for line in lines)


def search(pattern: str, chunks: Iterable[dict[str, Any]], streams: Sequence[str]
           ) -> Found | None:
    """The first match of ``pattern`` in ``chunks`` (``{stream, offset, data}``) of
    ``streams``, or None."""
    rx = compiled(pattern)
    for chunk in chunks:
        if chunk.get("stream") not in streams:
            continue
        text = _capped(str(chunk.get("data") or ""))
        m = rx.search(text)
        if m is not None:
            start = text.rfind("\n", 0, m.start()) + 1
            end = text.find("\n", m.start())
            line = text[start:end if end >= 0 else len(text)]
            return Found(str(chunk["stream"]), int(chunk.get("offset") or 0),
                         line[:EVIDENCE_MAX])
    return None

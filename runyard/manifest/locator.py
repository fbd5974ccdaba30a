"""Map key paths such as ``jobs[3].config.lr`` to the line of the TOML text that defines them.

``tomllib`` reports lines only for syntax errors, so this module re-scans the (already valid)
text structurally: table headers, ``[[array]]`` headers, ``key = value`` lines, inline tables and
arrays (also across lines). It is lenient on purpose: it only runs on text ``tomllib`` accepted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

#: One segment of a key path: a table key or an array index.
Segment = str | int
Path = tuple[Segment, ...]

_BARE = re.compile(r"[A-Za-z0-9_-]+")
_SCALAR = re.compile(r"[^,\]\}\n#]*")
_PATH_TOKEN = re.compile(r'\[(\d+)\]|\.?([A-Za-z0-9_-]+)|\.?("(?:[^"\\]|\\.)*")')


def format_path(path: Iterable[Segment]) -> str:
    """``("jobs", 3, "config", "lr")`` -> ``jobs[3].config.lr`` (odd keys are JSON-quoted)."""
    out = ""
    for seg in path:
        if isinstance(seg, int):
            out += f"[{seg}]"
        else:
            text = seg if _BARE.fullmatch(seg) else json.dumps(seg)
            out += f".{text}" if out else text
    return out


def parse_path(text: str) -> Path:
    """Inverse of :func:`format_path` (``allowed_hosts[1]`` -> ``("allowed_hosts", 1)``)."""
    out: list[Segment] = []
    pos = 0
    while pos < len(text):
        m = _PATH_TOKEN.match(text, pos)
        if not m or m.end() == pos:
            # Not a path we produced: keep the rest as one opaque key.
            out.append(text[pos:].lstrip("."))
            break
        index, bare, quoted = m.groups()
        if index is not None:
            out.append(int(index))
        elif bare is not None:
            out.append(bare)
        else:
            out.append(json.loads(quoted))
        pos = m.end()
    return tuple(out)


class LineIndex:
    """First line (1-based) at which each key path of a TOML document is written."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._pos = 0
        self._line = 1
        self._lines: dict[Path, int] = {}
        #: Arrays of tables seen so far (resolved path -> index of their last element).
        self._aot: dict[Path, int] = {}
        self._scan()

    def line_of(self, path: Iterable[Segment]) -> int | None:
        """The line of ``path``, else of its closest written ancestor, else ``None``."""
        p = tuple(path)
        for i in range(len(p), 0, -1):
            line = self._lines.get(p[:i])
            if line is not None:
                return line
        return None

    # ------------------------------------------------------------------ scanning

    def _record(self, path: Path, line: int) -> None:
        for i in range(1, len(path) + 1):
            self._lines.setdefault(path[:i], line)

    def _peek(self, s: str) -> bool:
        return self._text.startswith(s, self._pos)

    def _advance(self, n: int = 1) -> None:
        chunk = self._text[self._pos:self._pos + n]
        self._line += chunk.count("\n")
        self._pos += n

    def _skip_ws(self, newlines: bool) -> None:
        text = self._text
        while self._pos < len(text):
            ch = text[self._pos]
            if ch in " \t\r" or (newlines and ch == "\n"):
                self._advance()
            elif newlines and ch == "#":
                self._skip_comment()
            else:
                return

    def _skip_comment(self) -> None:
        end = self._text.find("\n", self._pos)
        self._pos = len(self._text) if end < 0 else end

    def _skip_line(self) -> None:
        self._skip_comment()

    def _resolve(self, keys: list[str], *, index_last: bool = True) -> Path:
        path: Path = ()
        for i, key in enumerate(keys):
            path += (key,)
            if (index_last or i < len(keys) - 1) and path in self._aot:
                path += (self._aot[path],)
        return path

    def _scan(self) -> None:
        current: Path = ()
        text = self._text
        while True:
            self._skip_ws(newlines=True)
            if self._pos >= len(text):
                return
            line = self._line
            if self._peek("[["):
                self._advance(2)
                keys = self._parse_key()
                base = self._resolve(keys, index_last=False)
                self._aot[base] = self._aot.get(base, -1) + 1
                current = base + (self._aot[base],)
                self._record(current, line)
                self._skip_line()
            elif self._peek("["):
                self._advance()
                current = self._resolve(self._parse_key())
                self._record(current, line)
                self._skip_line()
            else:
                start = self._pos
                keys = self._parse_key()
                self._skip_ws(newlines=False)
                if not keys or not self._peek("="):
                    # Unexpected here (the text was valid TOML): move on rather than loop.
                    self._pos = max(self._pos, start + 1)
                    self._skip_line()
                    continue
                self._advance()
                path = current + tuple(keys)
                self._record(path, line)
                self._parse_value(path)
                self._skip_line()

    def _parse_key(self) -> list[str]:
        keys: list[str] = []
        text = self._text
        while self._pos < len(text):
            self._skip_ws(newlines=False)
            if self._peek('"'):
                keys.append(self._parse_basic_string())
            elif self._peek("'"):
                end = text.find("'", self._pos + 1)
                end = len(text) if end < 0 else end
                keys.append(text[self._pos + 1:end])
                self._pos = end + 1
            else:
                m = _BARE.match(text, self._pos)
                if not m:
                    break
                keys.append(m.group())
                self._pos = m.end()
            self._skip_ws(newlines=False)
            if not self._peek("."):
                break
            self._advance()
        # Closing brackets of a header, if any.
        self._skip_ws(newlines=False)
        while self._peek("]"):
            self._advance()
        return keys

    def _parse_basic_string(self) -> str:
        text = self._text
        i = self._pos + 1
        while i < len(text) and text[i] != '"':
            i += 2 if text[i] == "\\" else 1
        raw = text[self._pos:i + 1]
        self._pos = i + 1
        try:
            value = json.loads(raw)
        except ValueError:  # TOML escapes JSON lacks (\e, \U...): the raw text is good enough
            return raw[1:-1]
        return value if isinstance(value, str) else raw[1:-1]

    def _parse_value(self, path: Path) -> None:
        self._skip_ws(newlines=False)
        text = self._text
        if self._peek("{"):
            self._advance()
            while self._pos < len(text):
                self._skip_ws(newlines=True)
                if self._peek("}"):
                    self._advance()
                    return
                line = self._line
                keys = self._parse_key()
                self._skip_ws(newlines=False)
                if not keys or not self._peek("="):
                    self._advance()
                    continue
                self._advance()
                self._record(path + tuple(keys), line)
                self._parse_value(path + tuple(keys))
                self._skip_ws(newlines=True)
                if self._peek(","):
                    self._advance()
        elif self._peek("["):
            self._advance()
            index = 0
            while self._pos < len(text):
                self._skip_ws(newlines=True)
                if self._peek("]"):
                    self._advance()
                    return
                if self._peek(","):
                    self._advance()
                    index += 1
                    continue
                self._record(path + (index,), self._line)
                before = self._pos
                self._parse_value(path + (index,))
                if self._pos == before:
                    self._advance()
        elif self._peek('"""') or self._peek("'''"):
            quote = text[self._pos:self._pos + 3]
            i = self._pos + 3
            while i < len(text) and not text.startswith(quote, i):
                i += 2 if quote == '"""' and text[i] == "\\" else 1
            i += 3
            while i < len(text) and text[i] == quote[0]:  # up to two quotes may close it
                i += 1
            self._advance(i - self._pos)
        elif self._peek('"'):
            self._parse_basic_string()
        elif self._peek("'"):
            end = text.find("'", self._pos + 1)
            self._pos = len(text) if end < 0 else end + 1
        else:
            m = _SCALAR.match(text, self._pos)
            assert m is not None  # the pattern matches the empty string
            self._pos = m.end()

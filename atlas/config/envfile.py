r"""The `KEY=VALUE` env-file format of `config/<env>.env`, parsed with the line of every key.

The grammar is the common denominator of systemd's EnvironmentFile, docker's --env-file and
python-dotenv, so one file serves all three:

- blank lines and lines starting with `#` are ignored; a UTF-8 BOM and CRLF line ends are accepted;
- an optional `export ` prefix (so the file can also be sourced by a shell);
- `KEY=value`: unquoted values end at ` #` (a comment) and are stripped, and cannot start with `#`;
- `KEY='value'`: literal; `KEY="value"`: backslash escapes `\\ \" \n \t \r \$`;
- `KEY=` is an empty value. A key set twice is an error (which one would win is a surprise).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from atlas.errors import ConfigError

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n", "t": "\t", "r": "\r", "$": "$"}


@dataclass(frozen=True)
class Entry:
    """One `KEY=value` line: the key, its unquoted value and its 1-based line number."""

    key: str
    value: str
    line: int


def parse_env(text: str, path: str) -> list[Entry]:
    """Entries of an env file's text, in order; `path` is only used in error messages.

    Raises ConfigError `path:line: ...` naming the fault.
    """
    text = text.removeprefix("\ufeff")
    entries: list[Entry] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.removesuffix("\r").strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export ") or line.startswith("export\t"):
            line = line[len("export") :].lstrip()
        match = _KEY.match(line)
        rest = line[match.end() :].lstrip() if match else ""
        if not match or not rest.startswith("="):
            shown = line if len(line) <= 60 else line[:57] + "..."
            raise ConfigError(f"{path}:{number}: expected KEY=VALUE, got {shown!r}")
        key = match.group()
        value = _value(rest[1:].lstrip(), f"{path}:{number}: {key}")
        if key in seen:
            raise ConfigError(f"{path}:{number}: {key}: set twice (first at line {seen[key]})")
        seen[key] = number
        entries.append(Entry(key, value, number))
    return entries


def _value(rest: str, where: str) -> str:
    if not rest:
        return ""
    quote = rest[0]
    if rest.startswith("#"):
        return ""  # `KEY= # note`: an unquoted value cannot start with #; quote it
    if quote not in "'\"":
        value, _, _comment = rest.partition(" #")
        value, _, _comment = value.partition("\t#")
        return value.strip()
    out: list[str] = []
    i = 1
    while i < len(rest):
        ch = rest[i]
        if ch == quote:
            tail = rest[i + 1 :].strip()
            if tail and not tail.startswith("#"):
                raise ConfigError(f"{where}: unexpected text after the closing quote: {tail!r}")
            return "".join(out)
        if ch == "\\" and quote == '"' and i + 1 < len(rest):
            nxt = rest[i + 1]
            if nxt not in _ESCAPES:
                raise ConfigError(
                    f'{where}: unknown escape \\{nxt} (expected one of \\\\ \\" \\n \\t \\r \\$)'
                )
            out.append(_ESCAPES[nxt])
            i += 2
            continue
        out.append(ch)
        i += 1
    raise ConfigError(f"{where}: the value's opening {quote} is never closed on this line")


def quote_env(value: str) -> str:
    """`value` written so `parse_env` reads it back unchanged (double-quoted when it must be)."""
    if value and re.fullmatch(r"[A-Za-z0-9_./:,@%+=*-]+", value):
        return value
    escaped = "".join(
        "\\" + c if c in '\\"$' else {"\n": "\\n", "\t": "\\t", "\r": "\\r"}.get(c, c) for c in value
    )
    return f'"{escaped}"'

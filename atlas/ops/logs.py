"""`atlas-ops logs`: a service's JSON log lines, filtered by age and level, from the local
supervisor's files (journald's are read by journalctl with the same filters: see the systemd backend).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path

LEVELS = ("debug", "info", "warning", "error", "critical")
# journalctl's priorities for the same levels (-p), so both backends filter alike.
JOURNAL_PRIORITY = {
    "debug": "debug",
    "info": "info",
    "warning": "warning",
    "error": "err",
    "critical": "crit",
}
_SINCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(raw: str) -> float:
    """`90s`, `15m`, `1h`, `2d` -> seconds; raises ValueError naming the value."""
    match = _SINCE.match(raw)
    if not match:
        raise ValueError(f"--since: expected a duration like 30s, 15m, 1h or 2d, got {raw!r}")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def _timestamp(record: dict[str, object]) -> float | None:
    raw = record.get("timestamp")
    if not isinstance(raw, str):
        return None
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def select(
    lines: Iterable[str], *, since_seconds: float | None, level: str | None, now: float
) -> Iterator[str]:
    """Lines newer than `since_seconds` and at or above `level`. A line that is not JSON (a
    traceback's continuation) goes with the JSON line before it."""
    floor = LEVELS.index(level) if level else 0
    keep = True
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict):
            at = _timestamp(record)
            recent = since_seconds is None or (at is not None and at >= now - since_seconds)
            name = str(record.get("level", "info")).lower()
            keep = recent and (LEVELS.index(name) if name in LEVELS else 1) >= floor
        if keep:
            yield line


def follow(path: Path, emit: Callable[[str], None], stop: Callable[[], bool], poll: float = 0.25) -> None:
    """Print lines appended to `path` until `stop()` (like tail -f; survives the file appearing late)."""
    offset = path.stat().st_size if path.exists() else 0
    pending = ""
    while not stop():
        try:
            with path.open("r", encoding="utf-8", errors="replace") as f:
                f.seek(offset)
                chunk = f.read()
                offset = f.tell()
        except FileNotFoundError:
            chunk = ""
        pending += chunk
        *complete, pending = pending.split("\n")
        for line in complete:
            emit(line)
        if not chunk:
            time.sleep(poll)

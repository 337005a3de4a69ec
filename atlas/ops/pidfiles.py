"""Pid files: where each running Atlas process says who it is.

Every long-running process writes DATA_DIR/run/<service>.pid (service = atlas-core, atlas-up,
atlas-exporter, ...) at start and removes it at exit, so the exporter can find Atlas's processes
the same way under systemd, under `atlas up` and in a shell. The file holds the decimal pid and a
newline, like systemd's PIDFile= expects.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Bounded label values: a pid file's stem becomes the exporter's `service` label.
SERVICE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,63}$")
MAX_SERVICES = 32


def run_dir(data_dir: Path) -> Path:
    return data_dir / "run"


def api_pid_name(port: int) -> str:
    """The API's pid file stem: one per port, so the blue-green partners (8000 and 8001) on one
    data directory each keep their own (one shared `atlas-api.pid` was taken over by the second
    and removed by whichever stopped first)."""
    return f"atlas-api-{port}"


@contextmanager
def pid_file(data_dir: Path, service: str, pid: int | None = None) -> Iterator[Path]:
    """Write run/<service>.pid for the duration of the block.

    Removed at exit only if it still names this process: a second instance that took the file over
    keeps it. Raises ValueError for a service name the exporter would not accept as a label.
    """
    if not SERVICE_NAME.match(service):
        raise ValueError(f"service name {service!r} must match {SERVICE_NAME.pattern}")
    pid = os.getpid() if pid is None else pid
    path = run_dir(data_dir) / f"{service}.pid"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{service}.pid.{pid}")
    tmp.write_text(f"{pid}\n", encoding="ascii")
    os.replace(tmp, path)  # atomic: a reader never sees a half-written pid
    try:
        yield path
    finally:
        try:
            if path.read_text(encoding="ascii").strip() == str(pid):
                path.unlink()
        except OSError:
            pass  # already gone: nothing to clean up


def read_pid_files(data_dir: Path) -> list[tuple[str, int]]:
    """[(service, pid)] for well-formed pid files, sorted by service, at most MAX_SERVICES."""
    try:
        entries = sorted(run_dir(data_dir).glob("*.pid"))
    except OSError:
        return []
    found = []
    for entry in entries:
        if not SERVICE_NAME.match(entry.stem):
            continue
        try:
            pid = int(entry.read_text(encoding="ascii").strip())
        except (OSError, ValueError):
            continue  # being written or removed right now, or not ours: skip this scrape
        found.append((entry.stem, pid))
        if len(found) == MAX_SERVICES:
            break
    return found

"""Scheduled backups: `backup schedule --daily|--weekly --retain N`, run by `atlas services`.

The schedule is DATA_DIR/backup-schedule.json, {"daily": {"retain": 7}, "weekly": {"retain": 4}}:
a file beside the database rather than a row in it, so restoring an old backup does not bring
back an old schedule. Each cadence writes into its own folder of the backup dir (daily/,
weekly/); a cadence is due when its newest archive is older than its period (or it has none), and
after each scheduled backup that folder is pruned to its newest `retain` archives.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from atlas.logging import get_logger
from atlas.ops.backup import ARCHIVE, BackupError, create_backup
from atlas.settings import Settings

PERIOD_SECONDS = {"daily": 86_400.0, "weekly": 7 * 86_400.0}
CHECK_SECONDS = 60.0
log = get_logger("atlas.ops.backup")


def schedule_path(settings: Settings) -> Path:
    return settings.data_dir / "backup-schedule.json"


def load_schedule(settings: Settings) -> dict[str, dict[str, int]]:
    try:
        raw: Any = json.loads(schedule_path(settings).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise BackupError(f"{schedule_path(settings)}: unreadable schedule: {exc}") from exc
    return {k: {"retain": int(v["retain"])} for k, v in raw.items() if k in PERIOD_SECONDS}


def set_schedule(settings: Settings, cadence: str, retain: int) -> dict[str, dict[str, int]]:
    """Add or replace one cadence (retain 0 removes it); returns the whole schedule."""
    if cadence not in PERIOD_SECONDS:
        raise BackupError(f"cadence must be daily or weekly, got {cadence!r}")
    schedule = load_schedule(settings)
    if retain <= 0:
        schedule.pop(cadence, None)
    else:
        schedule[cadence] = {"retain": retain}
    path = schedule_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(schedule, indent=2), encoding="utf-8")
    os.replace(tmp, path)
    return schedule


def _archives(folder: Path) -> list[Path]:
    """Archives in `folder`, newest first (names carry the UTC time, so names sort by age)."""
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if ARCHIVE.match(p.name)), key=lambda p: p.name, reverse=True)


def prune(folder: Path, retain: int) -> list[Path]:
    """Delete all but the newest `retain` archives in `folder`; returns those deleted."""
    doomed = _archives(folder)[retain:]
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed


def run_due(settings: Settings, clock: Callable[[], float] = time.time) -> list[dict[str, Any]]:
    """Take every backup that is due now and prune after each; returns what was done."""
    done = []
    for cadence, rule in sorted(load_schedule(settings).items()):
        folder = settings.backup_path / cadence
        newest = _archives(folder)[:1]
        if newest and clock() - newest[0].stat().st_mtime < PERIOD_SECONDS[cadence]:
            continue
        result = create_backup(settings, folder, clock=clock)
        removed = prune(folder, rule["retain"])
        log.info(
            "scheduled backup",
            cadence=cadence,
            path=result["path"],
            bytes=result["bytes"],
            pruned=[p.name for p in removed],
        )
        done.append({"cadence": cadence, "path": result["path"], "pruned": [str(p) for p in removed]})
    return done


def run_scheduler(settings: Settings, stop: threading.Event, check_seconds: float = CHECK_SECONDS) -> None:
    """Loop of `atlas services`: run due backups now, then every `check_seconds` until `stop`."""
    while True:
        try:
            run_due(settings)
        except Exception as exc:  # a failed backup must not end the other scheduled work
            log.error("scheduled backup failed", error=str(exc))
        if stop.wait(check_seconds):
            return

"""Restoring a backup into the configured data directory, with Atlas running there or not.

Order, when the local supervisor runs services on this data dir:
  1. verify the archive (refuse a bad one) and stage its database next to the live one
  2. maintenance on (writes get 503, engines stop claiming), then stop the services: writers, and
     readers too, since they hold the live database's WAL open
  3. keep the current database as atlas.db.pre-restore-<stamp> (an online copy: WAL included)
  4. install the staged copy: on SQLite an atomic rename over atlas.db (its stale -wal/-shm
     removed first); on PostgreSQL `pg_restore --clean --if-exists --single-transaction` into the
     configured database (the pre-restore copy of step 3 is then a pg_dump in the data dir)
  5. restart what was running (in maintenance: the staged copy carries the flag), maintenance off
A process running on the data dir outside the supervisor (a foreground `atlas up`) cannot be
stopped safely from here: the restore refuses and names it. On PostgreSQL that includes every
Atlas process with a session on the database (its application_name says which process on which
host) that is not a service of this supervisor: other hosts' APIs and engines keep writing.
"""

from __future__ import annotations

import os
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from atlas.errors import StoreError
from atlas.ops.backup import BackupError, verify_backup
from atlas.ops.maintenance import default_actor, mode_json, set_mode
from atlas.ops.pidfiles import read_pid_files
from atlas.ops.services import SERVICES
from atlas.ops.services.local import LocalSupervisor
from atlas.settings import Settings
from atlas.store import describe_database, open_archive, open_store
from atlas.store.models import BACKUP_KEY, MAINTENANCE_KEY
from atlas.store.protocols import DatabaseArchive


def _unmanaged(settings: Settings, managed: dict[str, int], files: DatabaseArchive) -> list[str]:
    """Atlas processes the restore cannot stop: pid files in the data dir of processes outside
    the supervisor, and (on a shared database server) sessions of processes on other hosts or
    outside the supervisor here."""
    pids = set(managed.values())
    local = [
        (service, pid)
        for service, pid in read_pid_files(settings.data_dir)
        if pid not in pids and psutil.pid_exists(pid) and pid != os.getpid()
    ]
    # Sessions of processes named already, of the managed services and their children (an
    # engine's workers, stopped with it) and of this process are not reported again.
    seen = {os.getpid(), *(pid for _, pid in local)}
    for pid in pids:
        try:
            seen |= {pid} | {child.pid for child in psutil.Process(pid).children(recursive=True)}
        except psutil.Error:
            continue
    try:
        sessions = files.foreign_sessions(seen)
    except StoreError as exc:
        raise BackupError(f"cannot list who uses the database: {exc}") from exc
    return [f"{service} (pid {pid})" for service, pid in local] + sessions


def _extract_config(archive: Path, dest: Path) -> list[str]:
    names = []
    with tarfile.open(archive, "r:gz") as tar:
        for info in tar:
            if info.isfile() and info.name.startswith("config/"):
                names.append(info.name)
                tar.extract(info, dest, filter="data")  # "data": no absolute paths, links or ..
    return names


def restore_backup(
    settings: Settings,
    archive: Path,
    supervisor: LocalSupervisor,
    *,
    by: str | None = None,
    database_only: bool = False,
    clock: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """Restore `archive` into settings' database; returns what was done. Raises BackupError."""
    by = by or default_actor()
    try:
        files = open_archive(settings)
    except StoreError as exc:
        raise BackupError(str(exc)) from exc
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(clock()))
    staged = files.beside_live(f".{{name}}.restore-{stamp}")
    report = verify_backup(archive, extract_db_to=staged)
    backend = report.manifest.get("backend", "sqlite")
    if report.ok and backend != files.backend:
        report.add("backend", False, f"a {backend} backup cannot be restored into a {files.backend} database")
    if not report.ok:
        staged.unlink(missing_ok=True)
        raise BackupError(f"refusing to restore {archive}: {report.failures()}")
    try:
        running = supervisor.running_pids()
        others = _unmanaged(settings, running, files)
        if others:
            raise BackupError(
                f"Atlas runs on {describe_database(settings)} outside atlas-ops's supervisor here:"
                f" {', '.join(others)}; stop it, then restore"
            )
        config_dir = None
        if not database_only and report.manifest.get("kind") == "full":
            # Config is put beside the data, not over the live config: an operator compares first.
            config_dir = settings.data_dir / f"restored-config-{stamp}"
            _extract_config(archive, config_dir)
        was_running = [name for name in SERVICES if name in running]
        if was_running and files.exists():
            store = open_store(settings, migrate=False)
            try:
                set_mode(store, True, reason=f"restoring {archive.name}", by=by, clock=clock)
            finally:
                store.close()
        for name in reversed(was_running):
            supervisor.stop(name)
        pre_restore = None
        if files.exists():
            # The backup just restored was recorded after its snapshot: carry the record over so
            # the exporter's last-backup gauges do not go back to an older backup (or "never").
            last = files.get_kv(files.beside_live("{name}"), BACKUP_KEY)
            if last is not None:
                files.set_kv(staged, BACKUP_KEY, last, clock())
            files.checkpoint_live()
            pre_restore = files.beside_live(f"{{name}}.pre-restore-{stamp}")
            files.copy_live(pre_restore)
        reason = f"restored from {archive.name}"
        files.set_kv(staged, MAINTENANCE_KEY, mode_json(bool(was_running), reason, by, clock()), clock())
        files.install(staged)
    finally:
        staged.unlink(missing_ok=True)
    restarted = [supervisor.start(name).name for name in was_running]
    if was_running:
        store = open_store(settings, migrate=True)  # the restarted services run this schema
        try:
            set_mode(store, False, reason=reason, by=by, clock=clock)
        finally:
            store.close()
    return {
        "restored": str(archive),
        "database": describe_database(settings),
        "pre_restore_copy": str(pre_restore) if pre_restore else None,
        "config_extracted_to": str(config_dir) if config_dir else None,
        "restarted": restarted,
        "items": report.manifest.get("items"),
        "schema_version": report.manifest.get("schema_version"),
        "created_at": report.manifest.get("created_at"),
    }

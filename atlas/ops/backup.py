"""Backups: create, verify and list `atlas_backup_<UTC timestamp>.tar.gz` archives.

An archive holds, in this order:
    manifest.json   Atlas version, schema version, environment, created-at, item counts, the
                    database backend, and the sha256 and size of every other member (first, so
                    `list` and `verify` read it without decompressing the rest)
    atlas.db        SQLite: an online, consistent copy of the database (its backup API, never a
                    file copy)
    atlas.pgdump    PostgreSQL: `pg_dump --format=custom` of one snapshot
    config/...      with --full: the config directory, encrypted secrets included, never a key file

Restoring is in atlas.ops.restore; schedules and pruning in atlas.ops.backup_schedule.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from atlas import __version__
from atlas.errors import AtlasError, StoreError
from atlas.fsutil import fsync_path
from atlas.settings import Settings
from atlas.store import DatabaseArchive, describe_database, open_archive, open_store

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DB_MEMBER = "atlas.db"  # SQLite's; each backend names its own (DatabaseArchive.member)
ARCHIVE = re.compile(r"^atlas_backup_(\d{8}T\d{6}Z)(?:_\d+)?\.tar\.gz$")
CHUNK_BYTES = 1 << 20


class BackupError(AtlasError):
    """A backup could not be made, read or restored."""


def archive_name(now: float, n: int = 0) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    return f"atlas_backup_{stamp}{f'_{n}' if n else ''}.tar.gz"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def latest_schema() -> int:
    return open_archive().latest_schema_version()


def _config_members(settings: Settings) -> Iterator[tuple[str, Path]]:
    """Files of the config directory as config/<relative path>, without any key file."""
    root = settings.config_dir
    if not root.is_dir():
        return
    key = settings.key_file_path.resolve()
    data = settings.data_dir.resolve()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        resolved = path.resolve()
        # The key decrypts the secrets: an archive holding both would hand them to anyone who
        # can read a backup. The data dir is skipped too, should it live inside the config dir.
        if resolved == key or path.suffix == ".key" or resolved.is_relative_to(data):
            continue
        yield f"config/{path.relative_to(root).as_posix()}", path


def create_backup(
    settings: Settings,
    out_dir: Path | None = None,
    *,
    full: bool = False,
    clock: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """Write an archive into `out_dir` (default: the backup dir) and return its manifest with "path"
    and "bytes". The archive is verified before the last-backup record (the exporter's gauges) is
    written. Raises BackupError."""
    try:
        files = open_archive(settings)
        live = files.exists()
    except StoreError as exc:
        raise BackupError(str(exc)) from exc
    if not live:
        raise BackupError(f"no database at {describe_database(settings)}: nothing to back up")
    out = out_dir or settings.backup_path
    out.mkdir(parents=True, exist_ok=True)
    started = clock()
    with tempfile.TemporaryDirectory(dir=out, prefix=".staging-") as tmp:
        copy = Path(tmp) / files.member
        try:
            files.copy_live(copy)
        except StoreError as exc:
            raise BackupError(f"cannot copy the database: {exc}") from exc
        problems = files.integrity_problems(copy)
        if problems:
            raise BackupError(f"the database copy failed its integrity check: {'; '.join(problems)}")
        schema_version, items, contents = files.facts(copy)
        members = [(files.member, copy), *(_config_members(settings) if full else [])]
        manifest: dict[str, Any] = {
            "format": FORMAT_VERSION,
            "backend": files.backend,
            "atlas_version": __version__,
            "schema_version": schema_version,
            "environment": settings.environment,
            "kind": "full" if full else "database",
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "created_at_unix": started,
            "items": items,
            "item_total": sum(items.values()),
            "contents": contents,
            "members": {name: {"sha256": sha256_file(p), "bytes": p.stat().st_size} for name, p in members},
        }
        n = 0
        while (final := out / archive_name(started, n)).exists():
            n += 1  # two backups in one second
        partial = out / f".{final.name}.partial"
        with tarfile.open(partial, "w:gz") as tar:
            body = json.dumps(manifest, indent=2).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mtime, info.mode = len(body), int(started), 0o600
            tar.addfile(info, io.BytesIO(body))
            for name, path in members:
                tar.add(path, arcname=name, recursive=False)
        with partial.open("rb") as f:
            os.fsync(f.fileno())
        os.replace(partial, final)  # a reader sees a whole archive or none
        fsync_path(out)
    report = verify_backup(final, schema=False)  # what was written is sound; restoring checks the schema
    if not report.ok:
        raise BackupError(f"{final}: the archive just written does not verify: {report.failures()}")
    size = final.stat().st_size
    store = open_store(settings, migrate=False)
    try:
        store.record_backup(clock(), size, str(final))
    finally:
        store.close()
    return {"path": str(final), "bytes": size, **manifest}


@dataclass
class Check:
    name: str
    ok: bool
    message: str


@dataclass
class VerifyReport:
    path: Path
    checks: list[Check] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def add(self, name: str, ok: bool, message: str) -> None:
        self.checks.append(Check(name, ok, message))

    def failures(self) -> str:
        return "; ".join(f"{c.name}: {c.message}" for c in self.checks if not c.ok)

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "ok": self.ok,
            "checks": [vars(c) for c in self.checks],
            "manifest": self.manifest,
        }


def _read_manifest(tar: tarfile.TarFile) -> dict[str, Any]:
    first = tar.next()
    if first is None or first.name != MANIFEST or not first.isfile():
        raise BackupError(f"the first member is not {MANIFEST}: not an Atlas backup")
    f = tar.extractfile(first)
    assert f is not None  # a regular file always has a reader
    try:
        manifest: Any = json.loads(f.read())
    except ValueError as exc:
        raise BackupError(f"{MANIFEST} is not JSON: {exc}") from None
    members = manifest.get("members") if isinstance(manifest, dict) else None
    try:
        member = archive_for(manifest).member
    except StoreError as exc:
        raise BackupError(f"{MANIFEST}: {exc}") from None
    if not isinstance(members, dict) or member not in members:
        raise BackupError(f"{MANIFEST} lists no members or no {member}")
    if manifest.get("format") != FORMAT_VERSION:
        raise BackupError(f"{MANIFEST}: format {manifest.get('format')!r}, this Atlas reads {FORMAT_VERSION}")
    return dict(manifest)


def archive_for(manifest: Any) -> DatabaseArchive:
    """The reader of the database files of the backend a manifest names (SQLite before it named
    one)."""
    backend = manifest.get("backend", "sqlite") if isinstance(manifest, dict) else "sqlite"
    return open_archive(backend=str(backend))


def _stream(src: IO[bytes], sink: IO[bytes] | None) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    while chunk := src.read(CHUNK_BYTES):
        digest.update(chunk)
        size += len(chunk)
        if sink is not None:
            sink.write(chunk)
    return digest.hexdigest(), size


def verify_backup(path: Path, *, extract_db_to: Path | None = None, schema: bool = True) -> VerifyReport:
    """Check an archive: readable, every member's sha256 and size as the manifest says (and no
    member it does not list), the backend's check of the extracted database (SQLite: PRAGMA
    integrity_check; PostgreSQL: pg_restore --list and the Atlas tables in it), and a schema this
    Atlas can run (not newer than its migrations; `schema=False` skips this one). With
    `extract_db_to`, the verified database is left there (restore swaps in exactly the bytes it
    checked)."""
    report = VerifyReport(path)
    with tempfile.TemporaryDirectory(prefix="atlas-verify-") as tmp:
        db_copy = extract_db_to or Path(tmp) / "database"
        seen: dict[str, tuple[str, int]] = {}
        try:
            with tarfile.open(path, "r:gz") as tar:
                report.manifest = _read_manifest(tar)
                expected: dict[str, Any] = report.manifest["members"]
                files = archive_for(report.manifest)
                manifest_seen = False
                for info in tar:  # from the start again: the manifest is yielded first
                    if info.name == MANIFEST and not manifest_seen:
                        manifest_seen = True
                        continue
                    if info.name not in expected or not info.isfile() or info.name in seen:
                        report.add("members", False, f"unexpected member {info.name!r}")
                        continue
                    src = tar.extractfile(info)
                    assert src is not None
                    if info.name == files.member:
                        with db_copy.open("wb") as sink:
                            seen[info.name] = _stream(src, sink)
                    else:
                        seen[info.name] = _stream(src, None)
        except BackupError as exc:
            report.add("manifest", False, str(exc))
            return report
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            report.add("archive", False, f"unreadable (truncated or not a .tar.gz): {exc}")
            return report
        report.add("archive", True, "readable")
        bad = []
        for name, want in sorted(expected.items()):
            got = seen.get(name)
            if got is None:
                bad.append(f"{name}: missing")
            elif got != (want.get("sha256"), want.get("bytes")):
                bad.append(
                    f"{name}: sha256/size mismatch (archive {got[0][:12]}.../{got[1]} bytes,"
                    f" manifest {str(want.get('sha256'))[:12]}.../{want.get('bytes')} bytes)"
                )
        report.add("checksums", not bad, "; ".join(bad) or f"{len(expected)} member(s) match the manifest")
        if files.member not in seen:
            return report
        problems = files.integrity_problems(db_copy)
        report.add("integrity", not problems, "; ".join(problems) or f"{files.check_name}: ok")
        if problems or not schema:
            return report
        try:
            version, latest = files.schema_version(db_copy), files.latest_schema_version()
        except StoreError as exc:
            report.add("schema", False, str(exc))
            return report
        if version != report.manifest.get("schema_version"):
            report.add(
                "schema",
                False,
                f"database schema {version}, manifest says {report.manifest.get('schema_version')}",
            )
        elif version > latest:
            report.add(
                "schema", False, f"schema {version} is newer than this Atlas's {latest}: upgrade Atlas first"
            )
        else:
            report.add("schema", True, f"schema {version} (this Atlas: {latest})")
    return report


def list_backups(root: Path) -> list[dict[str, Any]]:
    """Archives under `root` (scheduled ones in its daily/ and weekly/ folders), newest first."""
    found = []
    for path in root.rglob("atlas_backup_*.tar.gz") if root.is_dir() else []:
        match = ARCHIVE.match(path.name)
        if not match:
            continue
        entry: dict[str, Any] = {"path": str(path), "bytes": path.stat().st_size}
        try:
            with tarfile.open(path, "r:gz") as tar:
                m = _read_manifest(tar)
            entry |= {
                k: m.get(k) for k in ("created_at", "kind", "schema_version", "item_total", "environment")
            }
        except (BackupError, tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            entry |= {
                "created_at": time.strftime(
                    "%Y-%m-%dT%H:%M:%SZ", time.strptime(match.group(1), "%Y%m%dT%H%M%SZ")
                ),
                "kind": "unreadable",
                "error": str(exc),
            }
        found.append(entry)
    return sorted(found, key=lambda e: (str(e["created_at"]), e["path"]), reverse=True)

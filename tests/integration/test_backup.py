"""Backup archives: what they hold, how verify catches damage, restore refusing a bad one,
schedules and pruning. Real SQLite files, real archives, the CLI through the seed's shim."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from atlas.ops.backup import create_backup, list_backups, verify_backup
from atlas.ops.backup_schedule import load_schedule, prune, run_due, set_schedule
from atlas.secrets import write_key_file
from atlas.settings import Settings
from atlas.store.models import NewItem
from atlas.store.sqlite import SQLiteStore
from tests.conftest import atlas_env
from tests.helpers.engine import wait_for
from tests.helpers.opscli import atlas_ops, ok_json


@pytest.fixture
def cfg(tmp_path: Path) -> Iterator[Settings]:
    config = tmp_path / "config"
    config.mkdir()
    (config / "production.env").write_text("ATLAS_API_PORT=8000\n")
    (config / "production.secrets").write_text("encrypted-entries\n")
    write_key_file(config / "secrets.key", (Fernet.generate_key(),))
    settings = Settings(
        data_dir=tmp_path / "data",
        config_dir=config,
        secrets_key_file=config / "secrets.key",
        db_synchronous="NORMAL",
    )
    store = SQLiteStore(settings.sqlite_path, synchronous="NORMAL")
    store.enqueue([NewItem(kind="document", payload={"content": f"doc {i}"}) for i in range(25)])
    store.close()
    yield settings


def env_for(settings: Settings) -> dict[str, str]:
    return atlas_env(
        settings.data_dir,
        ATLAS_CONFIG_DIR=str(settings.config_dir),
        ATLAS_SECRETS_KEY_FILE=str(settings.key_file_path),
    )


def members(archive: Path) -> list[str]:
    with tarfile.open(archive, "r:gz") as tar:
        return tar.getnames()


def test_a_database_backup_holds_a_manifest_and_the_database(cfg: Settings, tmp_path: Path) -> None:
    result = create_backup(cfg, tmp_path / "out")
    archive = Path(result["path"])
    assert members(archive) == ["manifest.json", "atlas.db"]
    assert result["items"] == {"queued": 25} and result["item_total"] == 25
    assert result["schema_version"] >= 6 and result["atlas_version"] and result["created_at"].endswith("Z")
    assert verify_backup(archive).ok


def test_full_adds_config_and_secrets_never_the_key(cfg: Settings, tmp_path: Path) -> None:
    out = ok_json(env_for(cfg), "backup", "create", "--full", "--out", str(tmp_path / "out"))
    names = members(Path(out["path"]))
    assert "config/production.env" in names and "config/production.secrets" in names
    assert not [n for n in names if n.endswith(".key")]
    assert out["manifest"]["kind"] == "full"


def _rewrite(archive: Path, damage: str) -> None:
    """Re-pack the archive with one byte of a member flipped (a valid .tar.gz whose content lies)."""
    raw = bytearray(gzip.decompress(archive.read_bytes()))
    with tarfile.open(fileobj=io.BytesIO(bytes(raw))) as tar:
        info = tar.getmember(damage)
    raw[info.offset_data + info.size // 2] ^= 0x01
    archive.write_bytes(gzip.compress(bytes(raw)))


def test_verify_catches_a_flipped_byte_in_a_member(cfg: Settings, tmp_path: Path) -> None:
    archive = Path(create_backup(cfg, tmp_path / "out")["path"])
    _rewrite(archive, "atlas.db")
    done = atlas_ops(env_for(cfg), "backup", "verify", str(archive))
    assert done.returncode == 1
    assert "FAIL  checksums  atlas.db: sha256/size mismatch" in done.stdout
    assert "NOT SOUND" in done.stdout


def test_verify_catches_a_flipped_byte_in_the_compressed_stream(cfg: Settings, tmp_path: Path) -> None:
    archive = Path(create_backup(cfg, tmp_path / "out")["path"])
    raw = bytearray(archive.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    archive.write_bytes(bytes(raw))
    report = verify_backup(archive)
    assert not report.ok
    assert report.failures()  # a gzip CRC/data error or a checksum mismatch, named


def test_verify_catches_a_truncated_archive(cfg: Settings, tmp_path: Path) -> None:
    archive = Path(create_backup(cfg, tmp_path / "out")["path"])
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    done = atlas_ops(env_for(cfg), "backup", "verify", str(archive), "--format", "json")
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert report["ok"] is False
    assert "unreadable (truncated or not a .tar.gz)" in report["checks"][0]["message"]


def test_verify_refuses_a_schema_newer_than_this_atlas(cfg: Settings, tmp_path: Path) -> None:
    import hashlib
    import sqlite3

    # An archive written by a newer Atlas: this one refuses to back up (or open) a newer database,
    # so the archive is re-packed around a copy whose schema says 999, with a manifest to match.
    archive = Path(create_backup(cfg, tmp_path / "out")["path"])
    unpacked = tmp_path / "unpacked"
    with tarfile.open(archive) as tar:
        tar.extractall(unpacked, filter="data")
    conn = sqlite3.connect(unpacked / "atlas.db")
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    manifest = json.loads((unpacked / "manifest.json").read_text())
    body = (unpacked / "atlas.db").read_bytes()
    manifest["members"]["atlas.db"] = {"sha256": hashlib.sha256(body).hexdigest(), "bytes": len(body)}
    manifest["schema_version"] = 999
    (unpacked / "manifest.json").write_text(json.dumps(manifest))
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(unpacked / "manifest.json", "manifest.json")
        tar.add(unpacked / "atlas.db", "atlas.db")
    report = verify_backup(archive)
    assert not report.ok and "schema 999 is newer than this Atlas's" in report.failures()


def test_restore_refuses_a_damaged_archive_and_leaves_the_database_alone(
    cfg: Settings, tmp_path: Path
) -> None:
    archive = Path(create_backup(cfg, tmp_path / "out")["path"])
    _rewrite(archive, "atlas.db")
    before = cfg.sqlite_path.read_bytes()
    done = atlas_ops(env_for(cfg), "backup", "restore", str(archive))
    assert done.returncode == 1
    assert f"refusing to restore {archive}: checksums: atlas.db: sha256/size mismatch" in done.stderr
    assert cfg.sqlite_path.read_bytes() == before
    assert not list(cfg.data_dir.glob(".atlas.db.restore-*"))


def test_restore_into_a_stopped_installation(cfg: Settings, tmp_path: Path) -> None:
    archive = Path(create_backup(cfg, tmp_path / "out", full=True)["path"])
    store = SQLiteStore(cfg.sqlite_path, synchronous="NORMAL")
    store.enqueue([NewItem(kind="document", payload={"content": "after the backup"})])
    store.close()
    out = ok_json(env_for(cfg), "backup", "restore", str(archive))
    assert out["restarted"] == [] and Path(out["pre_restore_copy"]).is_file()
    assert (Path(out["config_extracted_to"]) / "config" / "production.env").is_file()
    store = SQLiteStore(cfg.sqlite_path, synchronous="NORMAL")
    assert sum(store.counts().values()) == 25
    assert json.loads(store.kv_get("maintenance") or "{}")["enabled"] is False
    store.close()
    pre = SQLiteStore(out["pre_restore_copy"], synchronous="NORMAL")
    assert sum(pre.counts().values()) == 26  # the database as it was, kept
    pre.close()


def test_list_shows_archives_newest_first(cfg: Settings, tmp_path: Path) -> None:
    first = create_backup(cfg, clock=lambda: 1_700_000_000.0)["path"]
    second = create_backup(cfg, full=True, clock=lambda: 1_700_086_400.0)["path"]
    rows = ok_json(env_for(cfg), "backup", "list")
    assert [r["path"] for r in rows] == [second, first]
    assert rows[0]["kind"] == "full" and rows[1]["created_at"] == "2023-11-14T22:13:20Z"
    assert [r["path"] for r in list_backups(cfg.backup_path)] == [second, first]


def test_schedule_persists_and_run_due_backs_up_and_prunes(cfg: Settings) -> None:
    ok_json(env_for(cfg), "backup", "schedule", "--daily", "--retain", "2")
    ok_json(env_for(cfg), "backup", "schedule", "--weekly", "--retain", "4")
    assert load_schedule(cfg) == {"daily": {"retain": 2}, "weekly": {"retain": 4}}
    day = 86_400.0
    t0 = 1_700_000_000.0
    for i in range(4):
        for path in (cfg.backup_path / "daily").glob("*.tar.gz"):
            import os

            os.utime(path, (t0 + (i - 1) * day, t0 + (i - 1) * day))  # the archives are as old as their names
        done = run_due(cfg, clock=lambda i=i: t0 + i * day)
        assert "daily" in [d["cadence"] for d in done]
    daily = sorted(p.name for p in (cfg.backup_path / "daily").glob("*.tar.gz"))
    assert len(daily) == 2 and daily[-1].startswith("atlas_backup_20231117")
    assert len(list((cfg.backup_path / "weekly").glob("*.tar.gz"))) == 1
    assert set_schedule(cfg, "weekly", 0) == {"daily": {"retain": 2}}
    assert prune(cfg.backup_path / "daily", 1)


def test_atlas_services_takes_the_scheduled_backup(cfg: Settings, tmp_path: Path) -> None:
    env = env_for(cfg) | {"ATLAS_SERVICE_BACKEND": "local"}
    ok_json(env, "backup", "schedule", "--daily", "--retain", "3")
    try:
        ok_json(env, "service", "start", "services")
        wait_for(lambda: bool(list((cfg.backup_path / "daily").glob("*.tar.gz"))), 60, "the daily backup")
    finally:
        ok_json(env, "service", "stop", "services")
    (archive,) = (cfg.backup_path / "daily").glob("*.tar.gz")
    assert verify_backup(archive).ok
    store = SQLiteStore(cfg.sqlite_path, synchronous="NORMAL")
    assert json.loads(store.kv_get("backup.last") or "{}")["path"] == str(archive)
    store.close()


def test_backup_of_a_missing_database_is_a_clear_error(tmp_path: Path) -> None:
    env = atlas_env(tmp_path / "nothing-here")
    done = atlas_ops(env, "backup", "create")
    assert done.returncode == 1
    assert f"no database at {tmp_path / 'nothing-here' / 'atlas.db'}: nothing to back up" in done.stderr
    assert not (tmp_path / "nothing-here" / "atlas.db").exists()

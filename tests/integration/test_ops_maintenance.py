"""maintenance mode, system check --health, database optimize and vacuum through the seed's shim,
against a real API serving the same database."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from atlas.settings import Settings
from atlas.store.models import NewItem
from atlas.store.sqlite import SQLiteStore
from tests.conftest import atlas_env
from tests.helpers.api import running_api
from tests.helpers.engine import wait_for
from tests.helpers.opscli import atlas_ops, ok_json


def env_of(settings: Settings, **extra: str) -> dict[str, str]:
    """atlas-ops's environment for the settings' data dir and database (either backend)."""
    if settings.database_backend == "postgresql":
        extra = {"ATLAS_DATABASE_URL": settings.database_url, **extra}
    return atlas_env(settings.data_dir, ATLAS_SERVICE_BACKEND="local", **extra)


# The flag lives in the shared database: every process on every host must see it (issue 17). The
# other tests here are about SQLite files (vacuum, optimize; PostgreSQL's in test_postgres_ops).
@pytest.mark.both_backends
def test_maintenance_mode_records_who_when_why_and_the_api_honours_it(settings: Settings) -> None:
    env = env_of(settings)
    with running_api(settings) as api:
        on = ok_json(env, "maintenance", "mode", "--enable", "--reason", "disk swap", "--by", "ops@host1")
        assert (
            on["enabled"] is True and on["reason"] == "disk swap" and on["by"] == "ops@host1" and on["since"]
        )

        def write_status() -> int:
            return httpx.post(
                f"{api.url}/v1/items", json={"content": "x"}, headers=api.auth("ingest")
            ).status_code

        wait_for(lambda: write_status() == 503, 15, "the API to refuse writes in maintenance")
        view = httpx.get(f"{api.url}/v1/admin/maintenance", headers=api.auth("admin")).json()
        assert view["by"] == "ops@host1" and view["reason"] == "disk swap"
        status = ok_json(env, "maintenance", "mode", "--status")
        assert status == on
        table = atlas_ops(env, "maintenance", "mode")
        assert "disk swap" in table.stdout and "ops@host1" in table.stdout

        off = ok_json(env, "maintenance", "mode", "--disable")
        assert off["enabled"] is False and "@" in off["by"]  # user@host by default
        wait_for(lambda: write_status() == 202, 15, "the API to accept writes again")


def test_maintenance_status_does_not_create_a_database(tmp_path: Path) -> None:
    env = atlas_env(tmp_path / "typo")
    done = atlas_ops(env, "maintenance", "mode", "--status")
    assert done.returncode == 2 and "no database at" in done.stderr
    assert not (tmp_path / "typo" / "atlas.db").exists()


def test_system_check_health_exit_code_follows_the_verdict(settings: Settings, tmp_path: Path) -> None:
    env = env_of(settings)
    # No database at all: unhealthy, exit 2, and nothing created.
    done = atlas_ops(env, "system", "check", "--health", "--format", "json")
    assert done.returncode == 2
    report = json.loads(done.stdout)
    assert report["status"] == "unhealthy"
    assert {c["name"]: c["status"] for c in report["components"]}["database"] == "unhealthy"
    assert not settings.sqlite_path.exists()

    store = SQLiteStore(settings.sqlite_path, synchronous="NORMAL")
    store.kv_set("engine.heartbeat.test", "9999999999")  # an engine reporting in
    store.close()
    done = atlas_ops(env, "system", "check", "--health", "--format", "json")
    by_name = {c["name"]: c for c in json.loads(done.stdout)["components"]}
    assert by_name["database"]["status"] == "healthy" and by_name["engine"]["status"] == "healthy"
    assert by_name["services"]["message"].startswith("running: none")
    # Healthy unless this shared machine's memory or disk says otherwise: the code matches the verdict.
    assert done.returncode == {"healthy": 0, "degraded": 1, "unhealthy": 2}[json.loads(done.stdout)["status"]]

    ok_json(env, "maintenance", "mode", "--enable", "--reason", "test")
    done = atlas_ops(env, "system", "check", "--health")
    assert done.returncode >= 1 and "maintenance" in done.stdout and "overall: " in done.stdout


def test_database_optimize_and_vacuum_reclaims_space(settings: Settings) -> None:
    env = env_of(settings, ATLAS_DISK_LOW_WATER_BYTES="0")
    store = SQLiteStore(settings.sqlite_path, synchronous="NORMAL")
    store.enqueue([NewItem(kind="document", payload={"content": "y" * 4000}) for _ in range(500)])
    for i in range(200):
        store.kv_set(f"bulk.{i}", "z" * 10_000)
    for i in range(200):
        store.kv_delete(f"bulk.{i}")  # ~2 MB of free pages
    store.close()
    opt = ok_json(env, "database", "optimize")
    assert opt["wal_bytes_after"] == 0 and opt["checkpoint_busy"] == 0
    result = ok_json(env, "database", "vacuum")
    assert result["bytes_reclaimed"] > 1_000_000
    assert result["bytes_after"] == settings.sqlite_path.stat().st_size
    store = SQLiteStore(settings.sqlite_path, synchronous="NORMAL")
    assert sum(store.counts().values()) == 500
    store.close()


def test_vacuum_refuses_without_enough_free_disk(settings: Settings) -> None:
    SQLiteStore(settings.sqlite_path, synchronous="NORMAL").close()
    env = env_of(settings, ATLAS_DISK_LOW_WATER_BYTES="1000TB")  # more than any test machine has free
    before = settings.sqlite_path.stat().st_mtime_ns
    done = atlas_ops(env, "database", "vacuum")
    assert done.returncode == 1
    assert "vacuum refused:" in done.stderr and "low-water reserve 1000000000000000" in done.stderr
    assert settings.sqlite_path.stat().st_mtime_ns == before


def test_database_commands_refuse_a_missing_database(tmp_path: Path) -> None:
    for cmd in ("optimize", "vacuum"):
        done = atlas_ops(atlas_env(tmp_path / "none"), "database", cmd)
        assert done.returncode == 2 and f"no database at {tmp_path / 'none' / 'atlas.db'}" in done.stderr
    assert not (tmp_path / "none" / "atlas.db").exists()

"""Operations on PostgreSQL (issue 17): `system check --database`, `database optimize|vacuum`,
pg_dump backups (create, verify, restore) and bounded memory samples, on a real server.

One fresh database for the whole file (a restore drops and recreates its tables: the session's
shared test database must not see that), one populated store, the CLI through the seed's shim.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from atlas.ops.backup import verify_backup
from atlas.store.models import ContentResult, NewItem, RssSample, Transition
from atlas.store.postgres import PostgresStore
from tests.conftest import atlas_env
from tests.helpers.opscli import atlas_ops, ok_json
from tests.helpers.postgres import scratch_database


@pytest.fixture(scope="module")
def pg_url(postgres_url: str) -> Iterator[str]:
    with scratch_database(postgres_url, "atlas_ops") as url:
        yield url


@pytest.fixture(scope="module")
def populated(pg_url: str) -> str:
    """20 items: 3 done with content, 2 leased, 15 queued; amcheck installed (Debian's postgresql
    ships it), so the check runs bt_index_check and every dump holds an extension a restore skips."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION amcheck")
    store = PostgresStore(pg_url, pool_size=2)
    try:
        store.enqueue([NewItem(kind="document", payload={"content": f"doc {i}"}) for i in range(20)])
        claimed = store.claim("test", 5, 60.0)
        store.apply(
            [
                Transition(c.id, c.token, "done", "done", result=ContentResult(f"h{i}", f"text number {i}"))
                for i, c in enumerate(claimed[:3])
            ]
        )
    finally:
        store.close()
    return pg_url


def env_for(url: str, data_dir: Path) -> dict[str, str]:
    return atlas_env(data_dir, ATLAS_DATABASE_URL=url)


Snapshot = tuple[dict[tuple[str, str], int], list[tuple[str, str]]]


def snapshot(url: str) -> Snapshot:
    store = PostgresStore(url, pool_size=1, migrate=False)
    try:
        with store.db.transaction() as conn:
            contents = [(r["item_id"], r["text"]) for r in conn.execute("SELECT item_id, text FROM contents")]
        return store.counts(), sorted(contents)
    finally:
        store.close()


@pytest.fixture(scope="module")
def backup(populated: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], Snapshot]:
    """One archive made by `backup create` on the populated database: (archive, manifest, what
    the database held when it was made)."""
    out = tmp_path_factory.mktemp("backups")
    before = snapshot(populated)
    created = ok_json(env_for(populated, out / "data"), "backup", "create", "--out", str(out))
    return Path(created["path"]), created["manifest"], before


def test_backup_create_verify_restore_round_trip(
    populated: str, backup: tuple[Path, dict[str, Any], Snapshot], tmp_path: Path
) -> None:
    archive, made, before = backup
    env = env_for(populated, tmp_path / "data")
    assert made["backend"] == "postgresql" and made["item_total"] == 20
    assert made["items"] == {"done": 3, "leased": 2, "queued": 15} and made["contents"] == 3
    with tarfile.open(archive) as tar:
        assert tar.getnames() == ["manifest.json", "atlas.pgdump"]
    verified = ok_json(env, "backup", "verify", str(archive))
    assert {c["name"]: c["ok"] for c in verified["checks"]} == {
        "archive": True,
        "checksums": True,
        "integrity": True,
        "schema": True,
    }
    # Written after the backup: the restore must take it away again.
    store = PostgresStore(populated, pool_size=1)
    store.enqueue([NewItem(kind="document", payload={"content": "after the backup"})])
    store.close()
    assert snapshot(populated) != before
    out = ok_json(env, "backup", "restore", str(archive))
    assert out["restarted"] == [] and Path(out["pre_restore_copy"]).is_file()
    assert snapshot(populated) == before
    store = PostgresStore(populated, pool_size=1, migrate=False)
    try:
        assert json.loads(store.kv_get("maintenance") or "{}")["enabled"] is False
        assert store.search("number")[0]  # the search index came back with the contents
    finally:
        store.close()


def test_a_corrupted_dump_fails_verify_and_restore_refuses_it(
    populated: str, backup: tuple[Path, dict[str, Any], Snapshot], tmp_path: Path
) -> None:
    archive = tmp_path / backup[0].name
    raw = bytearray(gzip.decompress(backup[0].read_bytes()))
    with tarfile.open(fileobj=io.BytesIO(bytes(raw))) as tar:
        info = tar.getmember("atlas.pgdump")
    raw[info.offset_data + info.size // 2] ^= 0x01  # a valid .tar.gz whose dump lies
    archive.write_bytes(gzip.compress(bytes(raw)))
    report = verify_backup(archive)
    assert not report.ok and "checksums: atlas.pgdump: sha256/size mismatch" in report.failures()
    done = atlas_ops(env_for(populated, tmp_path / "data"), "backup", "restore", str(archive))
    assert done.returncode == 1 and f"refusing to restore {archive}: checksums" in done.stderr


def test_system_check_optimize_and_vacuum(populated: str, tmp_path: Path) -> None:
    env = env_for(populated, tmp_path / "data")
    done = atlas_ops(env, "system", "check", "--database", "--format", "json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["integrity"]["status"] == "ok" and "verified by amcheck" in checks["integrity"]["message"]
    # With sequential scans disabled for the plan, every hot query has an index path.
    names = ["claim", "enqueue idempotency lookup", "search", "dlq list"]
    assert [c["query"] for c in report["query_plans"]] == names
    assert all(not q["full_scans"] for q in report["query_plans"]), report["query_plans"]
    items = next(r for r in report["relations"] if r["name"] == "items")
    assert items["total_bytes"] > 0 and items["index_bytes"] > 0
    assert report["pages"]["page_size"] == 8192 and report["pages"]["page_count"] > 0
    optimized = ok_json(env, "database", "optimize")
    assert optimized["tables_analyzed"] >= len(report["relations"])
    vacuumed = ok_json(env, "database", "vacuum")
    assert vacuumed["bytes_reclaimed"] == max(0, vacuumed["bytes_before"] - vacuumed["bytes_after"])


def test_system_check_flags_a_hot_query_without_its_index(populated: str) -> None:
    with psycopg.connect(populated, autocommit=True) as conn:
        conn.execute("DROP INDEX items_idempotency_key")
    store = PostgresStore(populated, pool_size=1, migrate=False)
    try:
        flagged = {name: [s.detail for s in steps if s.full_scan] for name, steps in store.query_plans()}
        [scan] = flagged["enqueue idempotency lookup"]
        assert scan.startswith("Seq Scan on items (Filter: (idempotency_key = ")
        assert not flagged["claim"]
    finally:
        store.close()
        with psycopg.connect(populated, autocommit=True) as conn:
            conn.execute(
                "CREATE UNIQUE INDEX items_idempotency_key ON items (idempotency_key)"
                " WHERE idempotency_key IS NOT NULL"
            )


def test_rss_samples_are_bounded_by_age_and_rows(pg_url: str) -> None:
    store = PostgresStore(pg_url, pool_size=1, clock=lambda: 1000.0)
    try:
        store.rss_record([RssSample(100.0 + i, "atlas-api", 1, 10 * i) for i in range(10)], 950.0, max_rows=6)
        assert [s.at for s in store.rss_history(0.0)] == [104.0, 105.0, 106.0, 107.0, 108.0, 109.0]
        dropped = store.rss_record([RssSample(999.0, "atlas-core", 2, 5)], retain_seconds=10.0, max_rows=6)
        assert dropped == 6
        assert store.rss_history(0.0) == [RssSample(999.0, "atlas-core", 2, 5)]
    finally:
        store.close()


def test_the_password_goes_in_the_environment_never_in_argv() -> None:
    from atlas.store.postgres.archive import PgArchive

    dbname, env = PgArchive("postgresql://atlas:s3cret@db.example:5433/atlas", None)._dbname_and_env()
    assert "s3cret" not in dbname and "db.example" in dbname and env["PGPASSWORD"] == "s3cret"

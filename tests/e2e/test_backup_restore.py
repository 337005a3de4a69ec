"""Backups for real: taken by `python tools/atlas_ops.py backup create` while the API and the engine
(each its own process under the local supervisor) keep accepting and processing items over HTTP,
then restored into the running installation; on SQLite and on PostgreSQL (issue 17).

A restore coordinates with the services it manages (maintenance on, stop, install, restart,
maintenance off) and refuses, naming it, an Atlas process on the data dir that it cannot stop.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from atlas.settings import Settings
from atlas.store import open_store
from exporters.business import BusinessCollector
from tests.conftest import atlas_env
from tests.helpers.engine import wait_for
from tests.helpers.net import free_port
from tests.helpers.opscli import atlas_ops, ok_json
from tests.helpers.postgres import scratch_database


class Producer:
    """Posts unique documents until stopped; remembers what each acknowledged (202) id was sent."""

    def __init__(self, url: str, key: str) -> None:
        self.url, self.key = url, key
        self.acked: dict[str, str] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self.run, name="producer")

    def run(self) -> None:
        n = 0
        with httpx.Client(headers={"Authorization": f"Bearer {self.key}"}, timeout=30) as client:
            while not self.stop.is_set():
                n += 1
                # Non-ASCII, a NUL-free control character and a long tail: "byte-identical" means something.
                content = f"item {n} \u00e9\u4e2d\U0001f600 \x07 " + "x" * (n % 997)
                try:
                    r = client.post(f"{self.url}/v1/items", json={"content": content})
                except httpx.HTTPError as exc:
                    self.errors.append(repr(exc))
                    continue
                if r.status_code == 202:
                    with self.lock:
                        self.acked[r.json()["id"]] = content
                elif r.status_code not in (429, 503):
                    self.errors.append(f"{r.status_code} {r.text}")

    def snapshot(self) -> dict[str, str]:
        with self.lock:
            return dict(self.acked)


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """Environment naming the database: SQLite in the data dir, or a PostgreSQL database of its
    own on the session's server (a restore drops and recreates every table: the session's shared
    test database must not see that), dropped afterwards."""
    if request.param == "sqlite":
        yield {}
        return
    with scratch_database(request.getfixturevalue("postgres_url"), "atlas_restore") as url:
        yield {"ATLAS_DATABASE_URL": url, "ATLAS_DB_POOL_SIZE": "4"}


@pytest.fixture
def env(tmp_path: Path, database: dict[str, str]) -> Iterator[dict[str, str]]:
    env = atlas_env(
        tmp_path / "data",
        ATLAS_API_PORT=str(free_port()),
        ATLAS_WORKERS="1",
        ATLAS_SERVICE_BACKEND="local",
        ATLAS_CONFIG_DIR=str(tmp_path / "config"),
        **database,
    )
    yield env
    atlas_ops(env, "service", "stop", "all")  # also when the test failed half-way


def settings_of(env: dict[str, str]) -> Settings:
    database = {"database_url": env["ATLAS_DATABASE_URL"]} if "ATLAS_DATABASE_URL" in env else {}
    return Settings(data_dir=Path(env["ATLAS_DATA_DIR"]), db_synchronous="NORMAL", **database)


def open_existing(env: dict[str, str]) -> Any:
    """The store of `env`'s database as the exporter opens it (no migration)."""
    return open_store(settings_of(env), migrate=False)


def test_backup_during_ingest_restores_every_acknowledged_item_byte_identical(
    env: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "backups"
    ok_json(env, "database", "migrate")  # atlas-ops commands create no database by themselves
    key = ok_json(env, "apikey", "create", "--name", "producer", "--scope", "admin")["key"]
    ok_json(env, "service", "start", "api")
    ok_json(env, "service", "start", "core")
    url = f"http://127.0.0.1:{env['ATLAS_API_PORT']}"
    producer = Producer(url, key)
    producer.thread.start()
    try:
        wait_for(lambda: len(producer.acked) >= 200, 120, "200 acknowledged items")
        before = producer.snapshot()  # acknowledged before the backup started
        created = ok_json(env, "backup", "create", "--out", str(out))
        after_backup = len(producer.snapshot())
        wait_for(lambda: len(producer.acked) >= after_backup + 50, 120, "ingest to go on after the backup")
    finally:
        producer.stop.set()
        producer.thread.join(timeout=60)
    assert not producer.errors, producer.errors[:5]
    archive = Path(created["path"])
    assert (
        archive.parent == out
        and archive.name.startswith("atlas_backup_")
        and archive.name.endswith(".tar.gz")
    )
    manifest = created["manifest"]
    assert manifest["item_total"] >= len(before) and manifest["environment"] == "development"
    member = "atlas.pgdump" if "ATLAS_DATABASE_URL" in env else "atlas.db"
    assert set(manifest["members"]) == {member}
    assert atlas_ops(env, "backup", "verify", str(archive)).returncode == 0

    # The exporter's backup gauges are fed by the backup just taken.
    collector = BusinessCollector(lambda: open_existing(env))
    families = {m.name: m for m in collector.collect()}
    collector.reader.close()  # a store left open here is an Atlas process the restore would refuse
    assert families["atlas_backup_last_size_bytes"].samples[0].value == archive.stat().st_size
    assert families["atlas_backup_last_success_timestamp_seconds"].samples[0].value > 0

    restored = ok_json(env, "backup", "restore", str(archive), "--by", "test-operator")
    assert restored["restarted"] == ["api", "core"]
    assert Path(restored["pre_restore_copy"]).is_file()

    store = open_existing(env)
    try:
        missing = [i for i in before if store.get_item(i) is None]
        assert not missing, f"{len(missing)} acknowledged items lost, e.g. {missing[:3]}"
        for item_id, content in before.items():
            item = store.get_item(item_id)
            assert item is not None and item.payload["content"].encode() == content.encode()
        # Restored to the backup's moment: the latest items were not in it.
        assert store.counts() and sum(store.counts().values()) == manifest["item_total"]
        maintenance = json.loads(store.kv_get("maintenance") or "{}")
        assert maintenance["enabled"] is False and maintenance["by"] == "test-operator"
    finally:
        store.close()
    # The restarted services serve the restored data and accept writes again.
    status = {s["name"]: s for s in ok_json(env, "service", "status", "all")["services"]}
    assert status["api"]["state"] == status["core"]["state"] == "running"
    one = next(iter(before))
    r = httpx.get(f"{url}/v1/items/{one}", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200
    r = httpx.post(f"{url}/v1/items", json={"content": "after"}, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 202
    families = {m.name: m for m in BusinessCollector(lambda: open_existing(env)).collect()}
    assert families["atlas_backup_last_size_bytes"].samples[0].value == archive.stat().st_size


def test_restore_refuses_an_atlas_process_it_does_not_manage_and_changes_nothing(
    env: dict[str, str], tmp_path: Path
) -> None:
    """A foreground `atlas api` not under atlas-ops's supervisor cannot be stopped safely by the
    restore: it refuses naming it. On SQLite the API runs on the data dir (its pid file there); on
    PostgreSQL it runs from another data dir, as another host's API would, and only its session on
    the shared database shows it (before, the restore went ahead and that API's items were lost)."""
    ok_json(env, "database", "migrate")
    api_env = env
    if "ATLAS_DATABASE_URL" in env:
        api_env = {**env, "ATLAS_DATA_DIR": str(tmp_path / "another-host")}
    key = ok_json(env, "apikey", "create", "--name", "fg", "--scope", "admin")["key"]
    archive = Path(ok_json(env, "backup", "create", "--out", str(tmp_path / "backups"))["path"])
    url = f"http://127.0.0.1:{env['ATLAS_API_PORT']}"
    log = tmp_path / "api.log"
    with log.open("ab") as out:
        api = subprocess.Popen([sys.executable, "-m", "atlas", "api"], env=api_env, stdout=out, stderr=out)
    try:
        auth = {"Authorization": f"Bearer {key}"}

        def ready() -> bool:
            try:
                return httpx.get(f"{url}/health/ready", timeout=2).status_code == 200
            except httpx.HTTPError:
                return api.poll() is not None

        wait_for(ready, 60, "the foreground API to be ready")
        assert api.poll() is None, log.read_text()
        posted = httpx.post(f"{url}/v1/items", json={"content": "after the backup"}, headers=auth)
        assert posted.status_code == 202
        done = atlas_ops(env, "backup", "restore", str(archive))
        assert done.returncode == 1, done.stderr
        assert "outside atlas-ops's supervisor" in done.stderr and f"(pid {api.pid}" in done.stderr
        # Nothing was touched: the item written after the backup is still there, writes go on.
        assert httpx.get(f"{url}/v1/items/{posted.json()['id']}", headers=auth).status_code == 200
        assert httpx.post(f"{url}/v1/items", json={"content": "still"}, headers=auth).status_code == 202
    finally:
        api.terminate()
        api.wait(timeout=60)
    store = open_existing(env)
    try:
        assert json.loads(store.kv_get("maintenance") or '{"enabled": false}')["enabled"] is False
        assert sum(store.counts().values()) == 2
    finally:
        store.close()

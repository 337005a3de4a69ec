"""`atlas services` upkeep (memory samples, DLQ retention, optimize + checkpoint) and the commands
that read what it leaves: `monitoring status|metrics|analyze --memory`, `system check --database`.

One stack for the module: a real database, a real `atlas exporter` and a real `atlas services`
process with short intervals; the commands run in-process (CliRunner) against it, and once through
the seed's `python tools/atlas_ops.py` shim as the operations guide writes them.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from atlas.cli.ops import ops
from atlas.store.models import ErrorInfo, NewItem, Transition
from atlas.store.sqlite import SQLiteStore
from tests.conftest import atlas_env
from tests.helpers.engine import wait_for
from tests.helpers.net import free_port
from tests.helpers.opscli import atlas_ops

DAY = 86_400.0


def _doc(n: int) -> NewItem:
    return NewItem(kind="document", payload={"content": f"text {n}", "content_type": "text/plain"})


def _fill(store: SQLiteStore) -> dict[str, str]:
    """Four items: one done, two dead (one of them 3 days old), one still queued."""
    ids = [r.id for r in store.enqueue([_doc(i) for i in range(4)])]
    claimed = {c.id: c for c in store.claim("t", 3, 30)}
    err = ErrorInfo("fetch", "HTTPError", "410 gone", "example.org")
    store.apply(
        [
            Transition(ids[0], claimed[ids[0]].token, "done", "done"),
            Transition(ids[1], claimed[ids[1]].token, "dead", "dead", error=err, dead_reason="permanent"),
            Transition(ids[2], claimed[ids[2]].token, "dead", "dead", error=err, dead_reason="permanent"),
        ]
    )
    conn = sqlite3.connect(store.path)
    conn.execute("UPDATE items SET updated_at = ? WHERE id = ?", (time.time() - 3 * DAY, ids[1]))
    conn.commit()
    conn.close()
    return {"done": ids[0], "old_dead": ids[1], "dead": ids[2], "queued": ids[3]}


def _start(command: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "atlas", command], env=env, stdout=out, stderr=out)


class Stack:
    def __init__(self, data_dir: Path, env: dict[str, str], ids: dict[str, str]) -> None:
        self.data_dir, self.env, self.ids = data_dir, env, ids
        self.log = data_dir / "services.log"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data_dir = tmp_path_factory.mktemp("monitoring")
    store = SQLiteStore(data_dir / "atlas.db", synchronous="NORMAL")
    ids = _fill(store)
    env = atlas_env(
        data_dir,
        ATLAS_EXPORTER_PORT=str(free_port()),
        ATLAS_API_PORT=str(free_port()),  # nothing listens: the API is down in this stack
        ATLAS_RSS_SAMPLE_SECONDS="0.2",
        ATLAS_DB_UPKEEP_INTERVAL_SECONDS="0.5",
        ATLAS_DLQ_RETENTION_DAYS="1",
        ATLAS_SERVICE_BACKEND="local",
    )
    s = Stack(data_dir, env, ids)
    procs = []
    try:
        procs.append(_start("exporter", env, data_dir / "exporter.log"))
        procs.append(_start("services", env, s.log))
        exporter_url = f"http://127.0.0.1:{env['ATLAS_EXPORTER_PORT']}/metrics"

        def exporter_up() -> bool:
            try:
                return httpx.get(exporter_url, timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(exporter_up, 60, "the exporter to serve")

        def sampled_both() -> bool:
            seen: dict[str, int] = {}
            for sample in store.rss_history(0):
                seen[sample.service] = seen.get(sample.service, 0) + 1
            return seen.get("atlas-services", 0) >= 3 and seen.get("atlas-exporter", 0) >= 3

        wait_for(sampled_both, 60, "three memory samples of atlas-services and atlas-exporter")
        wait_for(lambda: store.get_item(ids["old_dead"]) is None, 30, "DLQ retention to purge the old item")
        wait_for(lambda: "database upkeep" in s.log.read_text(), 30, "the upkeep log line")
        yield s
    finally:
        store.close()
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def cli(stack: Stack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    monkeypatch.chdir(tmp_path)  # no ./config/development.env
    for key in [k for k in os.environ if k.startswith("ATLAS_")]:
        monkeypatch.delenv(key)
    for key, value in stack.env.items():
        if key.startswith("ATLAS_"):
            monkeypatch.setenv(key, value)
    return CliRunner()


def test_services_upkeep_purges_only_expired_dead_items_and_logs_optimize_and_checkpoint(
    stack: Stack,
) -> None:
    store = SQLiteStore(stack.data_dir / "atlas.db", migrate=False)
    try:
        assert store.get_item(stack.ids["dead"]) is not None  # dead for a moment, kept for 1 day
        assert store.get_item(stack.ids["queued"]) is not None
    finally:
        store.close()
    upkeep = [json.loads(line) for line in stack.log.read_text().splitlines() if '"database upkeep"' in line]
    first = upkeep[0]
    assert first["dlq_purged"] == 1 and first["retention_days"] == 1.0
    assert {"checkpoint_busy", "wal_frames", "frames_checkpointed"} <= first.keys()


def test_analyze_memory_reports_every_sampled_service(cli: CliRunner) -> None:
    result = cli.invoke(ops, ["monitoring", "analyze", "--memory", "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = {r["service"]: r for r in json.loads(result.stdout)["services"]}
    assert {"atlas-services", "atlas-exporter"} <= rows.keys()
    for row in rows.values():
        # A few 0.2 s samples are not an hour's trend: no verdict yet, and no false alarm.
        assert row["samples"] >= 3 and row["last_mb"] > 1 and row["verdict"] == "insufficient data"
    table = cli.invoke(ops, ["monitoring", "analyze", "--memory"])
    assert "atlas-exporter" in table.output and "RATE_MB_PER_HOUR" in table.output


def test_status_shows_components_and_business_figures(cli: CliRunner) -> None:
    result = cli.invoke(ops, ["monitoring", "status", "--format", "json"])
    report = json.loads(result.stdout)
    components = {c["name"]: c for c in report["components"]}
    assert components["api"]["status"] == "unhealthy"  # nothing listens on ATLAS_API_PORT
    assert components["exporter"]["status"] == "healthy"
    assert components["database"]["status"] == "healthy"
    assert result.exit_code == 2 and report["status"] == "unhealthy"
    b = report["business"]
    assert (b["backlog"]["queued"], b["dlq"], b["done_last_hour"]) == (1, 1, 1)
    assert b["finished_last_hour"] == {"done": 1, "dead": 2}  # the purged item's completion stays
    assert b["oldest_queued_age_seconds"] > 0


def test_metrics_scrapes_the_running_exporter_and_filters(cli: CliRunner) -> None:
    result = cli.invoke(ops, ["monitoring", "metrics", "--filter", "memory", "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    up = {t["job"]: t["up"] for t in data["targets"]}
    assert up["node"] is True and up["atlas-api"] is False
    names = {s["name"] for s in data["samples"]}
    assert "atlas_process_resident_memory_bytes" in names
    assert all("memory" in n for n in names)
    text = cli.invoke(ops, ["monitoring", "metrics", "--format", "prometheus", "--filter", "memory"]).stdout
    assert "# TYPE atlas_process_resident_memory_bytes gauge" in text


def test_metrics_with_nothing_running_says_so_and_fails(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATLAS_EXPORTER_PORT", str(free_port()))
    result = cli.invoke(ops, ["monitoring", "metrics"])
    assert result.exit_code == 1
    assert "error: no Atlas metrics endpoint answered (is Atlas running?" in result.output


def test_database_check_is_ok_on_a_sound_database(cli: CliRunner) -> None:
    result = cli.invoke(ops, ["system", "check", "--database", "--format", "json"])
    report = json.loads(result.stdout)
    assert result.exit_code == 0, report
    assert [p["query"] for p in report["query_plans"]] == [
        "claim",
        "enqueue idempotency lookup",
        "search",
        "dlq list",
    ]
    assert all(p["plan"] and not p["full_scans"] for p in report["query_plans"])
    # Nothing serves the API's or the engine's /metrics in this stack: said plainly, no verdict.
    slow = report["slow_queries"]
    assert slow["available"] is False and slow["queries"] == []
    assert slow["message"].startswith("unknown, nothing is running: no Atlas metrics endpoint answered")
    assert f"127.0.0.1:{os.environ['ATLAS_API_PORT']}/metrics" in slow["message"]  # the URL tried


def test_database_check_lists_the_slowest_queries_of_a_running_api(
    stack: Stack, cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    env = {**stack.env, "ATLAS_API_PORT": str(port)}
    api = _start("api", env, stack.data_dir / "api.log")
    try:
        base = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            try:
                return httpx.get(f"{base}/health/ready", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, 60, "atlas api to be ready")
        # An unknown key is looked up (api_key_get) and refused: a named query, nothing stored.
        r = httpx.post(
            f"{base}/v1/items", json={"content": "x"}, headers={"Authorization": "Bearer atlas_nokey_x"}
        )
        assert r.status_code == 401, r.text
        monkeypatch.setenv("ATLAS_API_PORT", str(port))
        result = cli.invoke(ops, ["system", "check", "--database", "--format", "json"])
        report = json.loads(result.stdout)
        assert result.exit_code == 0, report
        slow = report["slow_queries"]
        assert slow["available"] is True and slow["scraped"] == ["atlas-api"]
        assert "ATLAS_CORE_METRICS_PORT=0" in slow["message"]  # the engine's queries are not in it
        rows = {q["query"]: q for q in slow["queries"]}
        assert 1 <= len(slow["queries"]) <= 10
        key = rows["api_key_get"]
        assert key["count"] >= 1 and key["jobs"] == ["atlas-api"]
        assert key["mean_seconds"] > 0 and 0 < key["p99_seconds"] <= 5
        p99s = [q["p99_seconds"] for q in slow["queries"]]
        assert p99s == sorted(p99s, reverse=True)
        table = cli.invoke(ops, ["system", "check", "--database"])
        assert "QUERY" in table.output and "P99_MS" in table.output and "api_key_get" in table.output
    finally:
        api.send_signal(signal.SIGTERM)
        try:
            api.wait(timeout=30)
        except subprocess.TimeoutExpired:
            api.kill()
            api.wait()


def test_the_guide_command_through_the_shim(stack: Stack) -> None:
    # `python tools/atlas_ops.py monitoring metrics --filter memory`, as OPERATIONS-GUIDE.md writes
    # it (one process start: the other commands run in-process above).
    metrics = atlas_ops(stack.env, "monitoring", "metrics", "--filter", "memory", timeout=60)
    assert metrics.returncode == 0, metrics.stderr
    assert "atlas_process_resident_memory_bytes" in metrics.stdout


def _database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ATLAS_DATA_DIR", str(tmp_path))
    store = SQLiteStore(tmp_path / "atlas.db", synchronous="NORMAL")
    store.enqueue([_doc(i) for i in range(1500)])  # enough rows for index pages of their own
    store.close()
    return tmp_path / "atlas.db"


def test_database_check_flags_a_whole_table_read_as_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without the items_dead_id index (migration 0009) the DLQ listing walks every item.
    db = _database(tmp_path, monkeypatch)
    conn = sqlite3.connect(db)
    conn.execute("DROP INDEX items_dead_id")
    conn.close()
    result = CliRunner().invoke(ops, ["system", "check", "--database", "--format", "json"])
    report = json.loads(result.stdout)
    assert result.exit_code == 1 and report["status"] == "warning"
    plans = {p["query"]: p["full_scans"] for p in report["query_plans"]}
    assert plans["dlq list"] == ["SCAN items USING INDEX sqlite_autoindex_items_1"]
    assert not plans["claim"]
    table = CliRunner().invoke(ops, ["system", "check", "--database"])
    assert "FULL TABLE SCAN: SCAN items" in table.output and "overall: warning" in table.output


def test_database_check_fails_on_a_corrupt_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = _database(tmp_path, monkeypatch)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'items_leased'").fetchone()[0]
    conn.close()
    with db.open("r+b") as f:  # overwrite the index's root page: the table itself stays readable
        f.seek((root - 1) * page_size)
        f.write(b"\xa5" * page_size)
    result = CliRunner().invoke(ops, ["system", "check", "--database", "--format", "json"])
    report = json.loads(result.stdout)
    assert result.exit_code == 2 and report["status"] == "failure"
    integrity = next(c for c in report["checks"] if c["name"] == "integrity")
    assert integrity["status"] == "failure" and integrity["message"]

"""atlas-ops and atlas as a user runs them: real processes / click runner on a real store."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from atlas.cli.ops import ops
from atlas.engine import queue
from atlas.engine.items import parse_item, with_request_hash
from atlas.store.models import ErrorInfo, NewItem
from atlas.store.sqlite import SQLiteStore
from tests.conftest import atlas_env
from tests.helpers.engine import finished, start_core, wait_for
from tests.helpers.net import free_port


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("ATLAS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ATLAS_DB_SYNCHRONOUS", "NORMAL")
    return CliRunner()


def dead_letter(store: SQLiteStore, n: int, error: ErrorInfo) -> list[str]:
    ids = [
        r.id for r in store.enqueue([NewItem("document", {"content": f"{error.host} {i}"}) for i in range(n)])
    ]
    policy = queue.RetryPolicy(max_attempts=1)
    store.apply(
        [
            queue.failed(c, error, permanent=False, policy=policy, now=0, rand=lambda: 0.0)
            for c in store.claim("t", n, 30)
        ]
    )
    return ids


def test_items_add_and_get_show_state_and_history(runner: CliRunner) -> None:
    assert runner.invoke(ops, ["database", "migrate"]).exit_code == 0  # items add never creates it
    added = runner.invoke(ops, ["items", "add", "--format", "json"], input="hello world")
    assert added.exit_code == 0, added.output
    item_id = json.loads(added.output)["id"]
    shown = runner.invoke(ops, ["items", "get", item_id])
    assert json.loads(shown.output)["state"] == "queued"
    assert runner.invoke(ops, ["items", "get", "nope"]).exit_code == 1


def test_bad_input_exits_2_naming_the_field(runner: CliRunner) -> None:
    result = runner.invoke(ops, ["items", "add", "--content-type", "image/gif"], input="x")
    assert result.exit_code == 2
    assert "content_type: expected one of" in result.output and "image/gif" in result.output


def test_an_idempotency_key_replays_the_real_state_and_refuses_other_content(
    runner: CliRunner, tmp_path: Path
) -> None:
    assert runner.invoke(ops, ["database", "migrate"]).exit_code == 0

    def add(content: str, *extra: str) -> Any:
        return runner.invoke(
            ops, ["items", "add", "--idempotency-key", "k1", "--format", "json", *extra], input=content
        )

    first = add("hi")
    assert first.exit_code == 0, first.output
    item_id = json.loads(first.output)["id"]
    assert json.loads(first.output) == {"id": item_id, "created": True, "state": "queued"}
    store = SQLiteStore(tmp_path / "atlas.db", synchronous="NORMAL")
    (claimed,) = store.claim("t", 1, 30)  # the item is processed: here it fails for good
    failure = ErrorInfo("extract", "Boom", "no")
    policy = queue.RetryPolicy(max_attempts=1)
    store.apply([queue.failed(claimed, failure, permanent=True, policy=policy, now=0, rand=lambda: 0.0)])

    again = add("hi")
    assert again.exit_code == 0, again.output
    assert json.loads(again.output) == {"id": item_id, "created": False, "state": "dead"}
    for other in (add("hi3"), add("hi", "--content-type", "text/markdown"), add("hi", "--source", "s")):
        assert other.exit_code == 2, other.output
        assert "--idempotency-key 'k1' was used with a different request" in other.output
        assert item_id in other.output and "Traceback" not in other.output
    assert store.counts() == {("dead", "document"): 1}
    stored = store.get_item(item_id)
    assert stored is not None and stored.payload["content"] == "hi" and stored.source is None


def test_an_idempotency_key_the_api_used_is_judged_alike_by_the_cli(
    runner: CliRunner, tmp_path: Path
) -> None:
    """One fingerprint for both doors: the request the CLI makes, sent to the API, is a replay."""
    assert runner.invoke(ops, ["database", "migrate"]).exit_code == 0
    store = SQLiteStore(tmp_path / "atlas.db", synchronous="NORMAL")
    sent = {"content": "hi", "content_type": "text/plain", "idempotency_key": "k2"}
    (created,) = store.enqueue([with_request_hash(parse_item(sent), sent)])
    args = ["items", "add", "--idempotency-key", "k2", "--format", "json"]
    replay = runner.invoke(ops, args, input="hi")
    assert replay.exit_code == 0, replay.output
    assert json.loads(replay.output) == {"id": created.id, "created": False, "state": "queued"}
    assert runner.invoke(ops, args, input="other").exit_code == 2


@pytest.mark.parametrize("command", ["list", "groups", "replay", "purge"])
@pytest.mark.parametrize(
    ("option", "allowed"),
    [
        ("--reason", ("max_attempts", "permanent", "quarantined", "lease_expired")),
        ("--kind", ("document", "url", "feed")),
    ],
)
def test_a_dlq_filter_outside_its_values_exits_2_naming_them(
    runner: CliRunner, tmp_path: Path, command: str, option: str, allowed: tuple[str, ...]
) -> None:
    store = SQLiteStore(tmp_path / "atlas.db", synchronous="NORMAL")
    dead_letter(store, 1, ErrorInfo("fetch", "ConnectError", "refused", "a.example"))
    result = runner.invoke(ops, ["dlq", command, option, "bogus", "--format", "json"])
    assert result.exit_code == 2, result.output
    assert option in result.output and "'bogus'" in result.output
    assert all(value in result.output for value in allowed), result.output
    assert store.counts() == {("dead", "document"): 1}  # nothing replayed or purged
    good = "max_attempts" if option == "--reason" else "document"
    assert runner.invoke(ops, ["dlq", "list", option, good, "--format", "json"]).exit_code == 0


def test_dlq_groups_dry_run_and_replay(runner: CliRunner, tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "atlas.db", synchronous="NORMAL")
    dead_letter(store, 3, ErrorInfo("fetch", "ConnectError", "refused", "a.example"))
    dead_letter(store, 2, ErrorInfo("fetch", "ReadTimeout", "slow", "b.example"))
    groups = json.loads(runner.invoke(ops, ["dlq", "groups", "--format", "json"]).output)
    assert [(g["host"], g["count"]) for g in groups] == [("a.example", 3), ("b.example", 2)]
    dry = json.loads(
        runner.invoke(ops, ["dlq", "replay", "--host", "b.example", "--dry-run", "--format", "json"]).output
    )
    assert dry == {"matched": 2, "dry_run": True}
    assert store.counts()[("dead", "document")] == 5
    done = json.loads(
        runner.invoke(ops, ["dlq", "replay", "--error-class", "ReadTimeout", "--format", "json"]).output
    )
    assert done == {"replayed": 2, "dry_run": False}
    assert store.counts() == {("dead", "document"): 3, ("queued", "document"): 2}
    purged = json.loads(runner.invoke(ops, ["dlq", "purge", "--format", "json"]).output)
    assert purged["purged"] == 3


def test_a_bad_setting_exits_2_without_a_traceback(tmp_path: Path) -> None:
    env = atlas_env(tmp_path, ATLAS_LEASE_SECONDS="forever")
    result = subprocess.run(
        [sys.executable, "-m", "atlas", "core"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "ATLAS_LEASE_SECONDS" in result.stderr and "forever" in result.stderr
    assert "Traceback" not in result.stderr


def test_atlas_core_serves_engine_metrics_and_records_a_heartbeat(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "atlas.db", synchronous="NORMAL")
    store.enqueue([NewItem("document", {"content": f"doc {i}"}) for i in range(20)])
    port = free_port()
    core = start_core(
        atlas_env(tmp_path, ATLAS_CORE_METRICS_PORT=str(port)),
        "atlas.pipeline:default_pipeline",
        tmp_path / "core.log",
    )
    try:
        wait_for(lambda: finished(store) == 20, 60, "20 items to finish")

        def samples() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
            body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            return {
                (s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(body)
                for s in family.samples
            }

        processed = ("atlas_engine_items_processed_total", (("kind", "document"), ("outcome", "done")))
        assert samples()[processed] == 20
        # ATLAS_WORKERS=0: one worker process per core, each counted once alive.
        cores = max(1, os.cpu_count() or 1)
        wait_for(lambda: samples()[("atlas_engine_workers", ())] == cores, 30, f"{cores} workers alive")
        assert any(k.startswith("engine.heartbeat.") for k in _kv_keys(tmp_path))
    finally:
        core.terminate()
        assert core.wait(timeout=30) == 0
    # A clean stop says so in its heartbeat entry (the exporter then drops the heartbeat age: a
    # planned stop does not page; a crash leaves the last beat to age).
    beats = [json.loads(v) for k, v in _kv_items(tmp_path) if k.startswith("engine.heartbeat.")]
    assert beats and all(b["status"] == "stopped" for b in beats), beats


def _kv_keys(tmp_path: Path) -> list[str]:
    return [key for key, _ in _kv_items(tmp_path)]


def _kv_items(tmp_path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(tmp_path / "atlas.db") as conn:
        return [(r[0], r[1]) for r in conn.execute("SELECT key, value FROM kv")]

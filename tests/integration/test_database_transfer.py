"""`atlas-ops database migrate --to postgresql://...` (issue 17): a real SQLite file with items in
every state, content, duplicates, dead letters, feeds, keys and kv, copied into the session's real
PostgreSQL database, verified, and then used through the PostgreSQL store. One source store is
built per module and copied by the first test; the refusals reuse it."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from atlas.api.keys import create_key
from atlas.cli.ops import ops
from atlas.settings import Settings
from atlas.store.models import MAINTENANCE_KEY, ContentResult, DLQFilter, ErrorInfo, NewItem, Transition
from atlas.store.sqlite import SQLiteStore
from tests.helpers.api import running_api

PEPPER = "transfer-test-pepper-0123456789abcdef"


def _migrate(data_dir: Path, *args: str) -> Any:
    env = {"ATLAS_DATA_DIR": str(data_dir), "ATLAS_DATABASE_URL": "", "ATLAS_API_KEY_PEPPER": PEPPER}
    return CliRunner().invoke(ops, ["database", "migrate", *args], env=env)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A SQLite store (closed) with one item in each state and the rest of what a store holds."""
    data_dir = tmp_path_factory.mktemp("transfer")
    s = SQLiteStore(data_dir / "atlas.db", synchronous="NORMAL")
    try:
        docs = [
            NewItem("document", {"text": f"doc {i}"}, source="t", idempotency_key=f"k{i}") for i in range(5)
        ]
        ids = [r.id for r in s.enqueue([*docs, NewItem("feed", {"url": "http://127.0.0.1:9/feed.xml"})])]
        claimed = {c.id: c for c in s.claim("engine-old", 10, 600)}
        zebra = ContentResult(content_hash="h-zebra", text="the quick zebra migrates north", title="Zebra")

        def t(i: int, state: str, outcome: str, **kw: Any) -> Transition:
            return Transition(ids[i], claimed[ids[i]].token, state, outcome, **kw)

        s.apply(
            [
                t(0, "done", "done", result=zebra),
                t(1, "done", "done", result=zebra),  # same content: a duplicate of ids[0]
                t(
                    2,
                    "dead",
                    "dead",
                    error=ErrorInfo("fetch", "TimeoutError", "timed out", "h1"),
                    dead_reason="max_attempts",
                ),
                t(3, "queued", "retry", error=ErrorInfo("parse", "ValueError", "bad"), next_attempt_at=0.0),
            ]
        )  # ids[4] and the feed item stay leased
        s.enqueue([NewItem("url", {"url": "http://127.0.0.1:9/page"})])
        key = create_key(s, PEPPER, "migrated", ["read"])
        s.kv_set(MAINTENANCE_KEY, json.dumps({"enabled": True, "reason": "moving", "since": 1.0}))
        counts = s.counts()
    finally:
        s.close()
    _router_outbox(data_dir / "alert-router.db")
    return {"data_dir": data_dir, "ids": ids, "key": key["key"], "counts": counts}


def _router_outbox(path: Path) -> None:
    """The router's outbox beside it: one delivery sent (with its email thread), one pending and
    leased by a router that is stopped for the cut-over, and their cooldowns."""
    from atlas.store.outbox import Candidate, Plan
    from atlas.store.sqlite_outbox import SQLiteOutbox

    box = SQLiteOutbox(path, synchronous="NORMAL")
    try:
        for i in range(2):
            plans = [Plan("email", (Candidate(f"f{i}", "firing", 600.0),))]
            box.accept(f"key{i}", f"group{i}", "firing", {"alerts": [], "n": i}, plans, now=100.0 + i)
        sent = box.claim("email", 1, now=200.0, lease_seconds=30)
        box.thread_root("group0", "email", "<root@atlas>")
        box.mark_sent(sent[0].id, now=201.0)
        assert [d.dedupe_key for d in box.claim("email", 1, now=202.0, lease_seconds=3600)] == ["key1"]
    finally:
        box.close()


@pytest.fixture(scope="module")
def empty_target(postgres_url: str) -> Iterator[str]:
    from tests.helpers.postgres import migrated_and_empty

    yield migrated_and_empty(postgres_url)


def test_copies_every_state_verifies_and_serves_from_postgres(
    source: dict[str, Any], empty_target: str, tmp_path: Path
) -> None:
    from atlas.store.postgres import PostgresStore

    done = _migrate(source["data_dir"], "--to", empty_target, "--format", "json")
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert report["verified"] is True and report["mismatches"] == []
    assert report["setting"] == f"ATLAS_DATABASE_URL={empty_target}"  # no password in the test URL
    assert report["leased_requeued"] == 2
    assert report["rows"]["items"] == 7 and report["rows"]["contents"] == 1 and report["rows"]["feeds"] == 1
    assert "copying items: 7/7" in done.stderr  # progress
    assert report["rows"]["notifications"] == 2 and report["rows"]["deliveries"] == 2
    assert report["rows"]["cooldowns"] == 2 and report["rows"]["threads"] == 1

    ids = source["ids"]
    pg = PostgresStore(empty_target, pool_size=2, migrate=False)
    try:
        # The leased items are queued, their attempts kept; everything else as it was.
        expected = dict(source["counts"])
        expected[("queued", "document")] = expected.get(("queued", "document"), 0) + 1
        expected[("queued", "feed")] = expected.get(("queued", "feed"), 0) + 1
        expected = {k: n for k, n in expected.items() if n and k[0] != "leased"}
        assert {k: n for k, n in pg.counts().items() if n} == expected
        leased = pg.get_item(ids[4])
        assert leased is not None and leased.state == "queued" and leased.attempts == 0
        dup = pg.get_item(ids[1])
        assert dup is not None and dup.state == "duplicate" and dup.duplicate_of == ids[0]
        groups = pg.dlq_groups(DLQFilter())
        assert [(g.stage, g.error_class, g.count) for g in groups] == [("fetch", "TimeoutError", 1)]
        hits, _ = pg.search("zebra")  # the tsvector index, rebuilt on the target
        assert [h.item_id for h in hits] == [ids[0]]
        assert json.loads(pg.kv_get(MAINTENANCE_KEY) or "{}")["reason"] == "moving"
        assert [f["url"] for f in pg.feed_list()] == ["http://127.0.0.1:9/feed.xml"]
        assert pg.stats_snapshot().contents == 1
        # New items take ids and sequence numbers after the copied ones.
        assert pg.enqueue([NewItem("document", {"text": "after"})])[0].created
    finally:
        pg.close()

    # The router's outbox came along: its pending delivery (leased on SQLite) is claimable at once,
    # the sent one stays sent, a cooldown and the thread root hold, new ids follow the copied ones.
    from atlas.store.outbox import Candidate, Plan
    from atlas.store.postgres.outbox import PgOutbox

    box = PgOutbox(empty_target, pool_size=1, lease_owner="new-router")
    try:
        assert [d.dedupe_key for d in box.claim("email", 5, now=203.0, lease_seconds=30)] == ["key1"]
        assert {d["state"] for d in box.deliveries(state="sent")} == {"sent"}
        assert box.thread_root("group0", "email", "<other@atlas>") == "<root@atlas>"
        again = [Plan("email", (Candidate("f0", "firing", 600.0),))]
        accepted = box.accept("key2", "group0", "firing", {"alerts": []}, again, now=300.0)
        assert accepted.notification_id == 3 and accepted.deliveries == {"email": "skipped"}
        assert box.accept("key0", "group0", "firing", {"alerts": []}, again, now=300.0).duplicate
    finally:
        box.close()

    # A key made on SQLite authenticates against an API serving from PostgreSQL (hash and pepper
    # id copied as they are), and its search finds the copied content.
    settings = Settings(
        data_dir=tmp_path,
        core_metrics_port=0,
        database_url=empty_target,
        db_pool_size=2,
        api_key_pepper=PEPPER,
    )
    with running_api(settings) as api:
        found = httpx.get(
            f"{api.url}/v1/search",
            params={"q": "zebra"},
            headers={"Authorization": f"Bearer {source['key']}"},
        )
        assert found.status_code == 200, found.text
        assert [h["item_id"] for h in found.json()["hits"]] == [ids[0]]

    # The target now holds data: refused without --force (exit 2, naming it), replaced with it.
    again = _migrate(source["data_dir"], "--to", empty_target)
    assert again.exit_code == 2, again.output
    assert "is not empty (rows in items" in again.stderr and "--force" in again.stderr
    forced = _migrate(source["data_dir"], "--to", empty_target, "--force")
    assert forced.exit_code == 0, forced.output
    assert "verified:" in forced.stdout and f"ATLAS_DATABASE_URL={empty_target}" in forced.stdout


def test_an_unreachable_url_or_a_missing_source_exits_2_naming_it(
    source: dict[str, Any], tmp_path: Path
) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"postgresql://atlas:s3cret@127.0.0.1:{port}/atlas"
    done = _migrate(source["data_dir"], "--to", url)
    assert done.exit_code == 2, done.output
    assert f"error: --to: cannot connect to postgresql://atlas:***@127.0.0.1:{port}/atlas" in done.stderr
    assert "s3cret" not in done.output

    missing = _migrate(tmp_path / "nothing", "--to", url)
    assert missing.exit_code == 2, missing.output
    assert f"error: source: no SQLite database at {tmp_path / 'nothing' / 'atlas.db'}" in missing.stderr
    assert not (tmp_path / "nothing").exists()

    not_pg = _migrate(source["data_dir"], "--to", "mysql://x@127.0.0.1/atlas")
    assert not_pg.exit_code == 2 and "is not a postgresql:// URL" in not_pg.stderr


def test_writes_during_the_copy_are_not_blocked_and_not_half_copied(
    source: dict[str, Any], empty_target: str
) -> None:
    """The source is one snapshot: an item and a kv entry committed while items are being copied
    (by another connection, as the running API would) reach neither items nor kv, read later."""
    from atlas.store.postgres import PostgresStore
    from atlas.store.transfer import copy_sqlite_to_postgres

    writer = SQLiteStore(source["data_dir"] / "atlas.db", synchronous="NORMAL", busy_timeout_ms=2000)
    written: list[str] = []

    def progress(table: str, done: int, total: int) -> None:
        if table == "items" and not written:
            written.append(writer.enqueue([NewItem("document", {"text": "late"})])[0].id)
            writer.kv_set("written.during.copy", "1")

    try:
        report = copy_sqlite_to_postgres(
            source["data_dir"] / "atlas.db", empty_target, force=True, progress=progress
        )
        assert report.mismatches == [] and report.tables["items"].rows == 7
    finally:
        writer.kv_delete("written.during.copy")
        writer.close()
    pg = PostgresStore(empty_target, pool_size=1, migrate=False)
    try:
        assert pg.get_item(written[0]) is None and pg.kv_get("written.during.copy") is None
    finally:
        pg.close()


def test_a_copy_that_differs_from_the_snapshot_exits_1_naming_the_table(
    source: dict[str, Any], empty_target: str
) -> None:
    """A target that changes what it is given (a trigger rewriting kv values) fails verification."""
    import psycopg

    with psycopg.connect(empty_target, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION test_mangle() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN NEW.value := NEW.value || '!'; RETURN NEW; END $$;"
            " CREATE TRIGGER test_mangle BEFORE INSERT ON kv FOR EACH ROW EXECUTE FUNCTION test_mangle()"
        )
    try:
        done = _migrate(source["data_dir"], "--to", empty_target, "--force")
    finally:
        with psycopg.connect(empty_target, autocommit=True) as conn:
            conn.execute("DROP TRIGGER test_mangle ON kv; DROP FUNCTION test_mangle()")
    assert done.exit_code == 1, done.output
    assert "VERIFY FAILED" in done.stdout and "  kv: " in done.stdout
    assert "items" not in done.stdout.split("VERIFY FAILED", 1)[1]  # only kv differs

    alone = _migrate(source["data_dir"], "--force")
    assert alone.exit_code == 2 and "error: --force: only with --to" in alone.stderr


def test_a_nul_character_in_the_source_is_refused_naming_the_row(
    source: dict[str, Any], empty_target: str, tmp_path: Path
) -> None:
    """SQLite text may hold NUL, PostgreSQL text cannot: exit 2 naming table, column and row, and
    the target keeps what it held (one transaction, rolled back)."""
    first = _migrate(source["data_dir"], "--to", empty_target, "--force")  # what the target holds
    assert first.exit_code == 0, first.output
    s = SQLiteStore(tmp_path / "atlas.db", synchronous="NORMAL")
    try:
        s.kv_set("bad\x00key", "v")
    finally:
        s.close()
    done = _migrate(tmp_path, "--to", empty_target, "--force")
    assert done.exit_code == 2, done.output
    assert "error: source: kv.key of the row key='bad\\x00key' holds a NUL character" in done.stderr
    kept = _migrate(source["data_dir"], "--to", empty_target)  # the first copy is still there
    assert kept.exit_code == 2 and "is not empty (rows in items" in kept.stderr

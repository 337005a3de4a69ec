"""Copy a live SQLite store into an empty PostgreSQL database, then verify the copy
(`atlas-ops database migrate --to postgresql://...`, issue 17).

Consistency: the source is read in ONE read transaction on a read-only connection. SQLite runs in
WAL mode, so that transaction sees one snapshot for the whole copy while the API and engine keep
writing (they are never blocked); whatever they commit after the snapshot is not copied, which is
why the report names the snapshot and the operator cuts over with Atlas stopped (or re-runs
`--force` after stopping it).

Leases: a lease held by an engine on the old store cannot be honoured by processes on the new one
(its owner never heartbeats there), so a `leased` item is copied as `queued` with its lease
cleared and its attempt counts kept: it runs again on the new store, at least once as always.

The target is written in ONE transaction: either the whole snapshot is there or nothing is. Rows
go in with COPY (streamed in batches of BATCH rows, each batch reported to `progress`); the search
index (`contents.tsv`) is made by PostgreSQL as rows arrive (migration 0005's trigger); serial
sequences are moved past the copied ids; the counters are recomputed from the copied rows.

Verification reads the target back in a new transaction after the commit: rows per table, items
per (state, kind) from the target's counters, and per table a checksum over every copied column
of every row (an order-free sum of row hashes, so neither side needs to sort) must equal what was
read from the snapshot.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from atlas.errors import StoreError, TransferRefused

if TYPE_CHECKING:
    from atlas.store.postgres import PostgresStore
    from atlas.store.postgres.connection import Conn

BATCH = 1000
CONNECT_TIMEOUT_SECONDS = 10
_MOD = 1 << 256


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[str, ...]  # target column order; the source SELECT yields the same
    source_select: str = ""  # defaults to the columns themselves
    serial: str | None = None  # a bigserial column whose sequence must move past the copied ids
    outbox: bool = False  # read from the router's outbox file, not from the store's


def _cols(names: str) -> tuple[str, ...]:
    return tuple(names.split())


_ITEM_COLUMNS = _cols(
    "id kind source idempotency_key priority state payload metadata attempts deaths lease_expiries"
    " isolate next_attempt_at lease_owner lease_token lease_until last_error_stage last_error_class"
    " last_error_message last_error_host dead_reason content_hash duplicate_of trace_context"
    " created_at updated_at done_at request_hash timings"
)
_STATE = _ITEM_COLUMNS.index("state")
_LEASE = tuple(_ITEM_COLUMNS.index(c) for c in ("lease_owner", "lease_token", "lease_until"))

# Every table of the PostgreSQL schema that holds data, parents first. Not copied: the counters
# (stats_*: recomputed on the target) and rss_samples (memory history of this host's processes,
# which PostgreSQL does not keep).
TABLES = (
    Table("items", _ITEM_COLUMNS),
    # SQLite orders an item's history by rowid; PostgreSQL by seq: the rowid becomes the seq.
    Table(
        "attempts",
        _cols("seq item_id attempt at outcome stage error_class message host"),
        "rowid, item_id, attempt, at, outcome, stage, error_class, message, host",
        serial="seq",
    ),
    Table(
        "contents",
        _cols(
            "seq item_id content_hash content_type title text canonical_url language bytes created_at"
            " author published url"
        ),
        serial="seq",
    ),
    Table("completions", ("seq", "item_id", "outcome", "lease_token", "at"), serial="seq"),
    Table("kv", ("key", "value", "updated_at")),
    Table("api_keys", _cols("id name scopes secret_hash created_at revoked_at last_used_at pepper_id")),
    Table("fetch_validators", _cols("url etag last_modified item_id content_hash updated_at")),
    Table(
        "feeds",
        _cols(
            "id url title interval_seconds etag last_modified next_poll_at last_polled_at last_status"
            " last_error failures entries_seen created_at"
        ),
    ),
    Table("feed_entries", ("feed_id", "entry_key", "item_id", "seen_at")),
    # The alert router's outbox (ATLAS_DATA_DIR/alert-router.db): its audit trail, pending
    # deliveries, cooldowns and email threads. Leases are cleared as for items: the router that
    # held them stops for the cut-over, and a delivery in flight is sent again (at-least-once).
    Table(
        "notifications", _cols("id dedupe_key group_key status body received_at"), serial="id", outbox=True
    ),
    Table(
        "deliveries",
        _cols(
            "id notification_id channel group_key state fingerprints attempts next_at lease_until"
            " lease_owner last_error created_at finished_at"
        ),
        "id, notification_id, channel, group_key, state, fingerprints, attempts, next_at, 0.0, '',"
        " last_error, created_at, finished_at",
        serial="id",
        outbox=True,
    ),
    Table("cooldowns", ("channel", "fingerprint", "status", "at"), outbox=True),
    Table("threads", ("group_key", "channel", "message_id"), outbox=True),
)
COUNTERS = ("stats_items", "stats_dlq", "stats_contents", "stats_completions")
# The counters, recomputed from the copied rows (the triggers' delta rows of the COPYs dropped).
_RECOUNT = (
    "INSERT INTO stats_items (state, kind, n) SELECT state, kind, count(*) FROM items GROUP BY state, kind",
    "INSERT INTO stats_dlq (stage, error_class, n)"
    " SELECT coalesce(last_error_stage, ''), coalesce(last_error_class, ''), count(*)"
    " FROM items WHERE state = 'dead' GROUP BY 1, 2",
    "INSERT INTO stats_contents (n, bytes) SELECT count(*), coalesce(sum(bytes), 0) FROM contents",
    # max(seq): SQLite's completed counter, which the copied seqs carry on.
    "INSERT INTO stats_completions (n) SELECT coalesce(max(seq), 0) FROM completions",
)

Progress = Callable[[str, int, int], None]  # (table, rows copied so far, rows in the snapshot)


def _row_hash(row: Sequence[Any]) -> int:
    # repr of the tuple: ints, floats (both sides are IEEE doubles), str and None print the same
    # whichever driver read them.
    return int.from_bytes(hashlib.sha256(repr(tuple(row)).encode("utf-8", "surrogatepass")).digest())


@dataclass
class TableReport:
    rows: int = 0
    checksum: int = 0
    target_rows: int = -1
    target_checksum: int = -1

    @property
    def ok(self) -> bool:
        return self.rows == self.target_rows and self.checksum == self.target_checksum


@dataclass
class TransferReport:
    source: str
    target: str
    schema_version: int = 0
    leased_requeued: int = 0
    tables: dict[str, TableReport] = field(default_factory=dict)
    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    target_counts: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def mismatches(self) -> list[str]:
        found = [
            f"{name}: {t.rows} rows (checksum {t.checksum:064x}) in the snapshot,"
            f" {t.target_rows} (checksum {t.target_checksum:064x}) on the target"
            for name, t in self.tables.items()
            if not t.ok
        ]
        for key in sorted(set(self.counts) | set(self.target_counts)):
            if self.counts.get(key, 0) != self.target_counts.get(key, 0):
                found.append(
                    f"items {key[0]}/{key[1]}: {self.counts.get(key, 0)} in the snapshot,"
                    f" {self.target_counts.get(key, 0)} counted on the target"
                )
        return found


def _open_outbox_snapshot(path: Path | None) -> sqlite3.Connection:
    """The router's outbox file read-only in one read transaction; a router that never ran has
    none: an empty outbox in memory stands in (nothing to copy, the same code path)."""
    from atlas.store.sqlite_outbox import _SCHEMA

    try:
        if path is None or not path.is_file():
            conn = sqlite3.connect(":memory:", isolation_level=None)
            conn.executescript(_SCHEMA)
        else:
            conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
        conn.execute("BEGIN")
        conn.execute("SELECT count(*) FROM deliveries").fetchone()  # the snapshot starts here
    except sqlite3.Error as exc:
        raise TransferRefused(f"source: cannot read the router's outbox {path}: {exc}") from exc
    return conn


def _open_snapshot(path: Path) -> sqlite3.Connection:
    """A read-only connection inside one read transaction (its snapshot is taken by the first read)."""
    if not path.is_file():
        raise TransferRefused(f"source: no SQLite database at {path} (ATLAS_DATA_DIR / ATLAS_DATABASE_URL)")
    from atlas.store.sqlite_connection import migrations

    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
        conn.execute("BEGIN")
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.Error as exc:
        raise TransferRefused(f"source: cannot read the SQLite database {path}: {exc}") from exc
    latest = migrations()[-1][0]
    if version != latest:
        conn.close()
        raise TransferRefused(
            f"source: {path} is at schema version {version}, this Atlas uses {latest}:"
            " run `atlas-ops database migrate` on it first"
        )
    return conn


def _open_target(url: str, pool_size: int) -> PostgresStore:
    """The PostgresStore on `url` with the schema created; TransferRefused when it cannot be reached
    (probed with one plain connection first: the pool would keep retrying for half a minute)."""
    import psycopg

    from atlas.store.postgres import PostgresStore
    from atlas.store.postgres.connection import redact

    if not url.startswith(("postgresql://", "postgres://")):
        raise TransferRefused(f"--to: {redact(url)!r} is not a postgresql:// URL")
    try:
        psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_SECONDS).close()
    except psycopg.Error as exc:
        raise TransferRefused(f"--to: cannot connect to {redact(url)}: {str(exc).strip()}") from exc
    try:
        return PostgresStore(url, pool_size=pool_size, migrate=True)
    except StoreError as exc:
        raise TransferRefused(f"--to: cannot use {redact(url)}: {exc}") from exc


def _source_rows(conn: sqlite3.Connection, table: Table) -> Iterator[list[tuple[Any, ...]]]:
    cur = conn.execute(f"SELECT {table.source_select or ', '.join(table.columns)} FROM {table.name}")
    while batch := cur.fetchmany(BATCH):
        yield batch


def copy_sqlite_to_postgres(
    sqlite_path: Path,
    url: str,
    *,
    force: bool = False,
    progress: Progress | None = None,
    outbox_path: Path | None = None,
) -> TransferReport:
    """Copy the SQLite store at `sqlite_path` (and the router's outbox at `outbox_path`, when
    there is one) into the PostgreSQL database `url` and verify it.

    Raises TransferRefused (nothing written) for a missing or old source, an unreachable target or
    one that holds data while `force` is not set; StoreError when the copy fails (the target is
    left as it was: one transaction). A verification mismatch is in the report's `mismatches`.
    """
    from atlas.store.postgres.connection import redact

    report = TransferReport(source=str(sqlite_path), target=redact(url))
    source = _open_snapshot(sqlite_path)
    try:
        outbox = _open_outbox_snapshot(outbox_path)
    except BaseException:
        source.close()
        raise
    try:
        report.schema_version = int(source.execute("PRAGMA user_version").fetchone()[0])

        def reader(t: Table) -> sqlite3.Connection:
            return outbox if t.outbox else source

        totals = {
            t.name: int(reader(t).execute(f"SELECT count(*) FROM {t.name}").fetchone()[0]) for t in TABLES
        }
        target = _open_target(url, pool_size=2)
        try:
            with target.db.transaction() as conn:
                # Nothing else writes into the target while it is checked and filled.
                names = ", ".join((*(t.name for t in TABLES), *COUNTERS))
                conn.execute(f"LOCK TABLE {names} IN SHARE ROW EXCLUSIVE MODE")
                held = [
                    t.name
                    for t in TABLES
                    if conn.execute(f"SELECT 1 FROM {t.name} LIMIT 1").fetchone() is not None
                ]
                if held and not force:
                    raise TransferRefused(
                        f"--to: {report.target} is not empty (rows in {', '.join(held)});"
                        " use --force to replace its contents"
                    )
                for name in (*(t.name for t in TABLES), *COUNTERS):
                    conn.execute(f"DELETE FROM {name}")
                for table in TABLES:
                    report.tables[table.name] = _copy_table(
                        conn, reader(table), table, totals[table.name], report, progress
                    )
                for name in COUNTERS:
                    conn.execute(f"DELETE FROM {name}")
                for sql in _RECOUNT:
                    conn.execute(sql)
            _verify(target, report)
        finally:
            target.close()
    except sqlite3.Error as exc:  # e.g. text that is not UTF-8: the target was rolled back
        raise StoreError(f"source: reading {sqlite_path} failed: {exc}; nothing was copied") from exc
    finally:
        source.close()
        outbox.close()
    return report


def _copy_table(
    conn: Conn,
    source: sqlite3.Connection,
    table: Table,
    total: int,
    report: TransferReport,
    progress: Progress | None,
) -> TableReport:
    out = TableReport()
    cols = ", ".join(table.columns)
    with conn.cursor().copy(f"COPY {table.name} ({cols}) FROM STDIN") as copy:
        for batch in _source_rows(source, table):
            for row in batch:
                if any(type(v) is str and "\x00" in v for v in row):
                    raise _nul_refused(table, row)
                if table.name == "items":
                    row = _requeue_if_leased(row, report)
                    report.counts[(row[_STATE], row[1])] = report.counts.get((row[_STATE], row[1]), 0) + 1
                copy.write_row(row)
                out.checksum = (out.checksum + _row_hash(row)) % _MOD
            out.rows += len(batch)
            if progress is not None:
                progress(table.name, out.rows, total)
    if progress is not None and out.rows == 0:
        progress(table.name, 0, total)
    if table.serial is not None:
        conn.execute(
            f"SELECT setval(pg_get_serial_sequence('{table.name}', '{table.serial}'),"
            f" coalesce((SELECT max({table.serial}) FROM {table.name}), 0) + 1, false)"
        )
    return out


def _nul_refused(table: Table, row: tuple[Any, ...]) -> TransferRefused:
    """SQLite text may hold NUL characters (rows stored before the API refused them); PostgreSQL
    text cannot. Named so the operator can fix or purge the row: nothing is written."""
    column = next(c for c, v in zip(table.columns, row, strict=True) if type(v) is str and "\x00" in v)
    return TransferRefused(
        f"source: {table.name}.{column} of the row {table.columns[0]}={row[0]!r} holds a NUL character,"
        " which PostgreSQL text cannot store; nothing was copied"
    )


def _requeue_if_leased(row: tuple[Any, ...], report: TransferReport) -> tuple[Any, ...]:
    """A leased item becomes queued, lease cleared, attempts kept (see the module docstring)."""
    if row[_STATE] != "leased":
        return row
    report.leased_requeued += 1
    fixed = list(row)
    fixed[_STATE] = "queued"
    for i in _LEASE:
        fixed[i] = None
    return tuple(fixed)


def _verify(target: PostgresStore, report: TransferReport) -> None:
    """Read the committed copy back: rows and checksums per table, items per (state, kind)."""
    from psycopg.rows import tuple_row

    with target.db.transaction() as conn:
        for table in TABLES:
            out = report.tables[table.name]
            out.target_rows, out.target_checksum = 0, 0
            # A server-side cursor: a large table is read back in batches, not held in memory whole.
            with conn.cursor(name=f"atlas_verify_{table.name}", row_factory=tuple_row) as cur:
                cur.execute(f"SELECT {', '.join(table.columns)} FROM {table.name}")
                while batch := cur.fetchmany(BATCH):
                    out.target_rows += len(batch)
                    for row in batch:
                        out.target_checksum = (out.target_checksum + _row_hash(row)) % _MOD
    report.target_counts = {k: n for k, n in target.counts().items() if n}
    report.counts = {k: n for k, n in report.counts.items() if n}

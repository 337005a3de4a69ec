"""bench/ingest.py --backend postgres: HTTP ingest on PostgreSQL against floors in the same run.

1. Single items: `POST /v1/items` on `atlas api` with ATLAS_DATABASE_URL, against the same bare
   FastAPI endpoint as on SQLite (32 connections, wrk or httpx). Goal: >= 0.80 of its requests/s.
2. Batches of 1,000 (4 connections, bodies encoded before the clock) against PostgreSQL's raw
   floor on the same server: the same rows (payload JSON-encoded inside the timing, as the SQLite
   floor does) committed per 1,000, once by COPY and once by one multi-row INSERT; the faster is
   the floor. Goal: >= 0.50.
3. Commit batching (issue 17's "durable 202s"): single-item ingest once more with one commit per
   request, serially (the real group committer limited to one request per transaction) and in
   parallel on the store's pool (PostgreSQL's own commit path; bench/pg/percommit_api.py).

synchronous_commit is the server's default, on: every 202 follows its transaction's WAL flush.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import psycopg

from atlas.api.keys import create_key
from atlas.store.ids import new_id
from bench.ingest import (
    BATCH,
    BATCH_CONNECTIONS,
    CONNECTIONS,
    DOC,
    ROOT,
    alternate_batches,
    floor_command,
    free_port,
    httpx_load,
    p50_p99_ms,
    rate_over,
    start,
    wrk_load,
)
from bench.pg import fresh_store, postgres_url

COLUMNS = 'id text COLLATE "C" PRIMARY KEY, kind text, state text, payload text, created_at double precision'


def _rows(b: int) -> list[tuple[str, str, str, str, float]]:
    now = time.time()
    return [
        (new_id(now), "document", "queued", json.dumps({"content": f"{DOC} {b}-{i}"}), now)
        for i in range(BATCH)
    ]


FLOORS = ("copy", "insert")


def open_pg_batch_floors(url: str) -> psycopg.Connection[Any]:
    """A connection with the floors' scratch tables, one per way of inserting (FLOORS)."""
    conn = psycopg.connect(url)
    conn.execute("SET synchronous_commit = on")  # the default, stated: each commit flushes WAL
    for how in FLOORS:
        conn.execute(f"DROP TABLE IF EXISTS bench_ingest_floor_{how}")
        conn.execute(f"CREATE TABLE bench_ingest_floor_{how} ({COLUMNS})")
    conn.commit()
    return conn


def close_pg_batch_floors(conn: psycopg.Connection[Any]) -> None:
    for how in FLOORS:
        conn.execute(f"DROP TABLE IF EXISTS bench_ingest_floor_{how}")
    conn.commit()
    conn.close()


def pg_batch_floor(conn: psycopg.Connection[Any], how: str, batches: int, first: int = 0) -> float:
    """Items/s of `batches` transactions of BATCH rows by COPY or one multi-row INSERT."""
    table = f"bench_ingest_floor_{how}"
    started = time.perf_counter()
    for b in range(first, first + batches):
        rows = _rows(b)
        if how == "copy":
            with conn.cursor() as cur, cur.copy(f"COPY {table} FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            values = ", ".join(["(%s, %s, %s, %s, %s)"] * len(rows))
            conn.execute(f"INSERT INTO {table} VALUES {values}", [v for row in rows for v in row])
        conn.commit()
    return batches * BATCH / (time.perf_counter() - started)


def _api(cmd: list[str], url: str, data: Path, key_holder: dict[str, str]) -> tuple[Any, int]:
    store = fresh_store(url)
    key_holder["key"] = str(create_key(store, "", "bench", ["ingest"])["key"])
    store.close()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATLAS_")}
    env.update(
        ATLAS_DATA_DIR=str(data),
        ATLAS_DATABASE_URL=url,
        ATLAS_API_PORT=str(port),
        ATLAS_LOG_LEVEL="WARNING",
        ATLAS_API_BATCH_MAX_ITEMS=str(BATCH),
        PYTHONPATH=str(ROOT),
    )
    return start(cmd, env, f"http://127.0.0.1:{port}/health/live"), port


def main_postgres(
    seconds: int, batches: int, order: str = "group,serial,parallel", batch_rounds: int = 5
) -> None:
    """Run the PostgreSQL ingest benchmark; `order`: the commit modes' order (the batches run in
    the group mode's turn), to see whether the machine's load drifting through a run favours one.
    The batch floors and Atlas alternate in `batch_rounds` slices of equal item counts, as on
    SQLite: a floor measured once ran at 76,297 items/s (COPY) against 48,000-60,000 in other runs."""
    load = wrk_load if shutil.which("wrk") else httpx_load
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATLAS_")}
    load_before = os.getloadavg()[0]
    with postgres_url() as url, tempfile.TemporaryDirectory(prefix="atlas-bench-") as tmp:
        port = free_port()
        floor = start(
            floor_command(port),
            env,
            f"http://127.0.0.1:{port}/docs",
        )
        try:
            floor_single = load(f"http://127.0.0.1:{port}/v1/items", "x", seconds)
        finally:
            floor.terminate()
            floor.wait(timeout=30)

        singles: dict[str, dict[str, float]] = {}
        floor_rates: dict[str, list[float]] = {how: [] for how in FLOORS}
        atlas_rates: list[float] = []
        key: dict[str, str] = {}
        commands = {
            "group": [sys.executable, "-m", "atlas", "api"],
            "serial": [sys.executable, "-m", "bench.pg.percommit_api", "serial"],
            "parallel": [sys.executable, "-m", "bench.pg.percommit_api", "parallel"],
        }
        names = order.split(",")
        if sorted(names) != sorted(commands):
            raise SystemExit(f"--commit-order: name each of {', '.join(commands)} once (got {order!r})")
        modes = {name: commands[name] for name in names}
        for mode, cmd in modes.items():
            api, port = _api(cmd, url, Path(tmp), key)
            try:
                singles[mode] = load(f"http://127.0.0.1:{port}/v1/items", key["key"], seconds)
                if mode == "group":
                    batch_url = f"http://127.0.0.1:{port}/v1/items/batch"
                    floor_conn = open_pg_batch_floors(url)
                    try:
                        floor_rates, atlas_rates, latencies, serial_batch = alternate_batches(
                            batch_url,
                            key["key"],
                            batches,
                            batch_rounds,
                            {how: partial(pg_batch_floor, floor_conn, how) for how in FLOORS},
                        )
                    finally:
                        close_pg_batch_floors(floor_conn)
                    batch_p50, batch_p99 = p50_p99_ms(latencies)
            finally:
                api.terminate()
                api.wait(timeout=30)
    floors = {how: rate_over(rates) for how, rates in floor_rates.items()}
    atlas_batch = rate_over(atlas_rates)
    floor_batch = max(floors.values())
    batch_rounds_ratios = [a / max(floor_rates[how][r] for how in FLOORS) for r, a in enumerate(atlas_rates)]
    atlas_single = singles["group"]
    ratio = atlas_single["rps"] / floor_single["rps"]
    batch_ratio = atlas_batch / floor_batch
    print(
        f"PostgreSQL (synchronous_commit=on); load generator {load.__name__}, {CONNECTIONS} connections,"
        f" {seconds}s each; load average before {load_before:.2f}, after {os.getloadavg()[0]:.2f}"
    )
    print(
        f"floor  bare FastAPI 202: {floor_single['rps']:8.0f} req/s  p50 {floor_single['p50_ms']:.1f} ms"
        f"  p99 {floor_single['p99_ms']:.1f} ms"
    )
    for mode, label in (
        ("group", "group commit (shipped)"),
        ("serial", "1 commit/request, serial"),
        ("parallel", "1 commit/request, pool"),
    ):
        s = singles[mode]
        print(
            f"atlas  POST /v1/items, {label:26}: {s['rps']:8.0f} req/s  p50 {s['p50_ms']:.1f} ms"
            f"  p99 {s['p99_ms']:.1f} ms  non-2xx {s['non_2xx']:.0f}"
        )
    print(
        f"floor  raw PostgreSQL batches of {BATCH}: COPY {floors['copy']:8.0f} items/s,"
        f" multi-row INSERT {floors['insert']:8.0f} items/s"
    )
    print(
        f"atlas  POST /v1/items/batch, {BATCH_CONNECTIONS} connections: {atlas_batch:8.0f} items/s"
        f"  p50 {batch_p50:.0f} ms  p99 {batch_p99:.0f} ms (1 connection: {serial_batch:.0f})"
    )
    print(
        f"  batches: {len(atlas_rates)} alternating rounds; batch ratio of each round: "
        + ", ".join(f"{r:.3f}" for r in batch_rounds_ratios)
    )
    print(f"ratio single {ratio:.3f} (goal >= 0.80), batch {batch_ratio:.3f} (goal >= 0.50)")
    print(
        json.dumps(
            {
                "bench": "ingest",
                "backend": "postgres",
                "load": load.__name__,
                "connections": CONNECTIONS,
                "seconds": seconds,
                "commit_order": order,
                "load_average_before": round(load_before, 2),
                "floor_rps": round(floor_single["rps"], 1),
                **{f"atlas_{m}_rps": round(s["rps"], 1) for m, s in singles.items()},
                **{f"atlas_{m}_p99_ms": round(s["p99_ms"], 2) for m, s in singles.items()},
                **{f"atlas_{m}_non_2xx": s["non_2xx"] for m, s in singles.items()},
                "floor_batch_copy_items_per_s": round(floors["copy"], 1),
                "floor_batch_insert_items_per_s": round(floors["insert"], 1),
                "atlas_batch_items_per_s": round(atlas_batch, 1),
                "atlas_batch_one_connection_items_per_s": round(serial_batch, 1),
                "batch_round_ratios": [round(r, 4) for r in batch_rounds_ratios],
                "batch_p50_ms": round(batch_p50, 1),
                "batch_p99_ms": round(batch_p99, 1),
                "ratio": round(ratio, 4),
                "batch_ratio": round(batch_ratio, 4),
                "goal": 0.80,
                "batch_goal": 0.50,
            }
        )
    )

"""bench/engine.py --backend postgres: the engine on PostgreSQL against a raw PostgreSQL floor.

Floor: raw psycopg, one multi-row INSERT of BATCH rows per transaction, then one UPDATE to done
of BATCH ids per transaction (the SQLite floor's shape: insert everything, then mark it done, in
transactions of BATCH), synchronous_commit on. Atlas: `atlas core` with ATLAS_DATABASE_URL on the
same server and database, default workers, the queue filled in one transaction (as the SQLite run
and the issue have it: a filled queue, accept-to-done) once a warm-up item has gone through.

Also reported when the server runs on this machine: its CPU per item (every server process: the
engine's backends, the bench's, autovacuum), the share of the work a remote server would take.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import psycopg

from bench.engine import BATCH, body, combined, drain, drive, percentile, rate_of
from bench.pg import fresh_store, postgres_url


def pg_floor(url: str, n: int) -> float:
    """Items/s of the raw insert + mark-done floor on `url` (a scratch table, dropped after)."""
    with psycopg.connect(url) as conn:
        # The server's default, set anyway: the floor must wait for each commit's WAL flush.
        conn.execute("SET synchronous_commit = on")
        conn.execute("DROP TABLE IF EXISTS bench_engine_floor")
        conn.execute(
            'CREATE TABLE bench_engine_floor (id text COLLATE "C" PRIMARY KEY, state text NOT NULL,'
            " payload text NOT NULL)"
        )
        conn.commit()
        started = time.perf_counter()
        for start in range(0, n, BATCH):
            rows = [(f"item-{i:08d}", "queued", body(i)) for i in range(start, min(n, start + BATCH))]
            values = ", ".join(["(%s, %s, %s)"] * len(rows))
            conn.execute(
                f"INSERT INTO bench_engine_floor VALUES {values}",
                [v for row in rows for v in row],
            )
            conn.commit()
        for start in range(0, n, BATCH):
            ids = [f"item-{i:08d}" for i in range(start, min(n, start + BATCH))]
            conn.execute("UPDATE bench_engine_floor SET state = 'done' WHERE id = ANY(%s)", (ids,))
            conn.commit()
        elapsed = time.perf_counter() - started
        done = conn.execute("SELECT count(*) FROM bench_engine_floor WHERE state = 'done'").fetchone()
        conn.execute("DROP TABLE bench_engine_floor")
        conn.commit()
    if done is None or done[0] != n:
        raise SystemExit(f"the floor marked {done} rows done, not {n}")
    return n / elapsed


def server_cpu_meter(url: str) -> Callable[[], float] | None:
    """A function giving the CPU seconds the server of `url` has used so far (its postmaster, the
    backends that have exited, those alive); None when the server is not a process on this host."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
    try:
        postmaster = psutil.Process(row[0] if row else -1).parent()
    except psutil.Error:
        return None
    if postmaster is None:
        return None

    def seconds() -> float:
        t = postmaster.cpu_times()  # children_*: the backends that exited (the postmaster reaps them)
        total = t.user + t.system + t.children_user + t.children_system
        for child in postmaster.children():
            try:
                total += sum(child.cpu_times()[:2])
            except psutil.Error:
                pass  # exited meanwhile: counted in children_* from now on
        return total

    return seconds


def atlas_run_pg(url: str, data_dir: Path, n: int, extra_env: dict[str, str]) -> dict[str, float]:
    store = fresh_store(url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATLAS_")}
    env.update(
        ATLAS_DATA_DIR=str(data_dir),
        ATLAS_DATABASE_URL=url,
        ATLAS_CORE_METRICS_PORT="0",
        ATLAS_LOG_LEVEL="WARNING",
        ATLAS_POLL_INTERVAL_MS="20",
    )
    env.update(extra_env)  # --env: settings to try
    run = drive(store, env, n, filled=True, server_cpu=server_cpu_meter(url))
    with psycopg.connect(url) as conn:
        latencies = [
            float(r[0])
            for r in conn.execute(
                "SELECT done_at - created_at FROM items WHERE created_at >= %s", (run["started"],)
            )
        ]
        row = conn.execute("SELECT count(*) FROM items WHERE state = 'dead'").fetchone()
    store.close()
    return {
        "items_per_s": run["items_per_s"],
        "enqueue_items_per_s": run["enqueue_items_per_s"],
        "p50_accept_to_done_s": percentile(latencies, 0.50),
        "p99_accept_to_done_s": percentile(latencies, 0.99),
        "peak_rss_mib": run["peak_rss_mib"],
        **{k: v for k, v in run.items() if k.endswith("_cpu_us_per_item")},
        "dead": float(row[0]) if row else -1.0,
    }


def store_only_pg(url: str, n: int) -> float:
    """bench/engine.py's store_only on PostgreSQL: the store's work without the engine (items/s),
    the ceiling the store sets on the engine's ratio."""
    store = fresh_store(url)
    try:
        return drain(store, n)
    finally:
        store.close()


def main_postgres(items: int, report: Callable[..., Any], extra_env: dict[str, str], rounds: int) -> None:
    """The floor and Atlas alternate `rounds` times, as on SQLite (bench/engine.py): the floor,
    bound by its 200 commits' WAL flushes, moved by a third from one run to the next here, and one
    floor run against one Atlas run put that drift into the ratio."""
    floors: list[float] = []
    results: list[dict[str, float]] = []
    with postgres_url() as url, tempfile.TemporaryDirectory(prefix="atlas-bench-") as tmp:
        for r in range(rounds):
            floors.append(pg_floor(url, items))
            (Path(tmp) / f"atlas-{r}").mkdir()
            results.append(atlas_run_pg(url, Path(tmp) / f"atlas-{r}", items, extra_env))
        ceiling = store_only_pg(url, items)  # after: its deleted rows would burden Atlas's runs
    floor_rate, result = rate_of(floors), combined(results)
    round_ratios = [round(a["items_per_s"] / f, 4) for a, f in zip(results, floors, strict=True)]
    print(f"store alone (no engine, one process): {ceiling:,.0f} items/s, ratio {ceiling / floor_rate:.3f}")
    result = {**result, "store_only_items_per_s": ceiling, "store_only_ratio": ceiling / floor_rate}
    label = f"raw PostgreSQL, multi-row INSERT + UPDATE, batches of {BATCH}, synchronous_commit=on"
    extra: dict[str, Any] = {"backend": "postgres", "synchronous_commit": "on", "rounds": rounds}
    report(items, label, floor_rate, result, {**extra, "round_ratios": round_ratios})

"""Scaling out on PostgreSQL: processing with 1, 2 and 4 `atlas core` processes, and ingest.

1. Processing: URL items fetched from the tests' local origin (tests.helpers.origin) on 127.0.0.1,
   answering for 20 *.test hosts after `--latency-ms` per response, by real `atlas core` processes
   (1 worker each, `--concurrency` items at a time, the real guarded fetch only:
   tests.helpers.pipelines:fetch_only; extraction's CPU would measure the CPUs instead) sharing
   one PostgreSQL database. Politeness is set well
   above what the run needs so it measures the engines, not the per-host budget. Each run: start
   N processes, warm them up (workers import their stages on their first items), then enqueue
   `--items` URLs at once and time until every one is final. Ratio: items/s over 1 process's.
   Goal: >= 1.8 at 2 processes and >= 3.2 at 4 (the work is I/O-bound: a process spends most of
   an item waiting on the origin, so processes add capacity until the CPUs or the database run out).
2. Ingest: `atlas api` on PostgreSQL next to `atlas api` on SQLite, the same loads as
   bench/ingest.py: single items (`POST /v1/items`, 32 connections) as a ratio to the bare
   FastAPI floor, batches of 1,000 (4 connections) as a ratio to the backend's raw floor (SQLite:
   executemany in transactions of 1,000; PostgreSQL: the same rows with psycopg's executemany in
   transactions of 1,000), all in this run.

PostgreSQL: ATLAS_TEST_POSTGRES_URL (wiped!), else a throwaway cluster from Debian's binaries.
Last line: one JSON object; "ratio" is the 4-process processing ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from atlas.api.keys import create_key  # noqa: E402
from atlas.store.ids import new_id  # noqa: E402
from atlas.store.models import FINAL_STATES, NewItem  # noqa: E402
from atlas.store.postgres import PostgresStore  # noqa: E402
from atlas.store.sqlite import SQLiteStore  # noqa: E402
from bench.ingest import (  # noqa: E402
    BATCH,
    BATCH_CONNECTIONS,
    DOC,
    api_env,
    batch_atlas,
    batch_floor,
    floor_command,
    free_port,
    httpx_load,
    open_batch_floor,
    start,
    wrk_load,
)
from tests.helpers import postgres  # noqa: E402
from tests.helpers.origin import running_origin  # noqa: E402

HOSTS = [f"s{i}.test" for i in range(20)]
PIPELINE = "tests.helpers.pipelines:fetch_only"


def finished(store: Any) -> int:
    return sum(n for (state, _), n in store.counts().items() if state in FINAL_STATES)


def wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def base_env(url: str, data: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATLAS_")}
    env.update(
        ATLAS_DATA_DIR=str(data),
        ATLAS_DATABASE_URL=url,
        ATLAS_CORE_METRICS_PORT="0",
        ATLAS_LOG_LEVEL="WARNING",
        PYTHONPATH=str(ROOT),
    )
    env.update(extra)
    return env


def processing(url: str, n: int, args: argparse.Namespace, origin: Any, tmp: Path) -> float:
    """Items/s of `n` engine processes draining `args.items` URL items."""
    store = PostgresStore(url, pool_size=2, migrate=True)
    postgres.wipe(store)
    env = base_env(
        url,
        tmp,
        ATLAS_WORKERS="1",
        ATLAS_WORKER_CONCURRENCY=str(args.concurrency),
        ATLAS_DB_POOL_SIZE="4",
        ATLAS_FETCH_ALLOW_HOSTS="127.0.0.1",
        ATLAS_HOST_RATE_PER_SECOND="10000",
        ATLAS_HOST_RATE_BURST="1000",
        ATLAS_HOST_MAX_CONCURRENCY="256",
    )
    if args.claim_batch is not None:
        env["ATLAS_CLAIM_BATCH_SIZE"] = str(args.claim_batch)
    procs = []
    try:
        for k in range(n):
            (tmp / f"core{n}-{k}").mkdir()
            env["ATLAS_DATA_DIR"] = str(tmp / f"core{n}-{k}")
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "atlas", "core", "--pipeline", PIPELINE],
                    env=env,
                    cwd=ROOT,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        warm = [
            NewItem(
                kind="url",
                payload={"url": origin.url(HOSTS[k % len(HOSTS)], f"/article/{n * 100_000 + 50_000 + k}")},
            )
            for k in range(8 * n * args.concurrency)
        ]
        store.enqueue(warm)
        wait(lambda: finished(store) == len(warm), 180, "the warm-up items")
        items = [
            NewItem(
                kind="url", payload={"url": origin.url(HOSTS[k % len(HOSTS)], f"/article/{n * 100_000 + k}")}
            )
            for k in range(args.items)
        ]
        total = len(warm) + len(items)
        started = time.perf_counter()
        store.enqueue(items)
        wait(lambda: finished(store) == total, 600, f"{args.items} URL items")
        elapsed = time.perf_counter() - started
        counts = store.counts()
        # Every page is unique (its own host and number), so every item must be done.
        if counts.get(("done", "url"), 0) != total:
            raise SystemExit(f"not every item reached done with {n} processes: {counts}")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=60)
        store.close()
    return args.items / elapsed


def pg_batch_floor(url: str, batches: int) -> float:
    """PostgreSQL's raw floor: the same rows as bench.ingest.batch_floor, committed per 1,000."""
    import psycopg

    with psycopg.connect(url) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_floor")
        conn.execute(
            "CREATE TABLE bench_floor (id text PRIMARY KEY, kind text, state text, payload text,"
            " created_at double precision)"
        )
        conn.commit()
        started = time.perf_counter()
        for b in range(batches):
            now = time.time()
            rows = [
                (new_id(now), "document", "queued", json.dumps({"content": f"{DOC} {b}-{i}"}), now)
                for i in range(BATCH)
            ]
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO bench_floor VALUES (%s, %s, %s, %s, %s)", rows)
            conn.commit()
        elapsed = time.perf_counter() - started
        conn.execute("DROP TABLE bench_floor")
        conn.commit()
    return batches * BATCH / elapsed


def ingest(url: str, args: argparse.Namespace, tmp: Path) -> dict[str, float]:
    load = wrk_load if shutil.which("wrk") else httpx_load
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATLAS_")}
    port = free_port()
    floor = start(floor_command(port), env, f"http://127.0.0.1:{port}/docs")
    try:
        out: dict[str, float] = {
            "floor_rps": load(f"http://127.0.0.1:{port}/v1/items", "x", args.seconds)["rps"]
        }
    finally:
        floor.terminate()
        floor.wait(timeout=30)
    for backend in ("sqlite", "postgresql"):
        data = tmp / f"ingest-{backend}"
        data.mkdir()
        store: Any
        if backend == "sqlite":
            store = SQLiteStore(data / "atlas.db", synchronous="FULL")
        else:
            store = PostgresStore(url, pool_size=2, migrate=True)
            postgres.wipe(store)
        key = str(create_key(store, "", "bench", ["ingest"])["key"])
        store.close()
        port = free_port()
        environment = api_env(env, data, port, ATLAS_API_BATCH_MAX_ITEMS=str(BATCH))
        if backend == "postgresql":
            environment["ATLAS_DATABASE_URL"] = url
        api = start(
            [sys.executable, "-m", "atlas", "api"], environment, f"http://127.0.0.1:{port}/health/live"
        )
        try:
            single = load(f"http://127.0.0.1:{port}/v1/items", key, args.seconds)
            batch, _ = batch_atlas(
                f"http://127.0.0.1:{port}/v1/items/batch", key, args.batches, BATCH_CONNECTIONS
            )
        finally:
            api.terminate()
            api.wait(timeout=30)
        out[f"{backend}_rps"] = single["rps"]
        out[f"{backend}_non_2xx"] = single["non_2xx"]
        out[f"{backend}_batch_items_per_s"] = batch
    floor = open_batch_floor(tmp / "floor.db")
    out["sqlite_batch_floor"] = batch_floor(floor, args.batches)
    floor.close()
    out["postgresql_batch_floor"] = pg_batch_floor(url, args.batches)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=600, help="URL items per processing run")
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", type=int, default=4, help="items in flight per engine process")
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--seconds", type=int, default=5, help="single-item ingest load per backend")
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument(
        "--claim-batch",
        type=int,
        default=None,
        help="ATLAS_CLAIM_BATCH_SIZE (default: the setting's default); what an engine holds is capped"
        " near what its workers run either way (atlas.engine.budget)",
    )
    parser.add_argument("--no-ingest", action="store_true", help="processing only")
    args = parser.parse_args()
    counts = [int(n) for n in args.processes.split(",")]
    load_before = os.getloadavg()
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="atlas-scale-")))
        url = os.environ.get("ATLAS_TEST_POSTGRES_URL", "")
        if url:
            postgres.wait_until_ready(url)
        else:
            bindir = postgres.find_bindir()
            if bindir is None:
                raise SystemExit("PostgreSQL is not installed (Debian package 'postgresql')")
            cluster = postgres.Cluster(bindir)
            stack.callback(cluster.stop)
            cluster.start()
            url = cluster.url
        origin = stack.enter_context(running_origin())
        origin.latency_seconds = args.latency_ms / 1000
        rates = {n: processing(url, n, args, origin, tmp) for n in counts}
        origin.latency_seconds = 0
        ing = ingest(url, args, tmp) if not args.no_ingest else {}
    one = rates[counts[0]]
    ratios = {n: rates[n] / one for n in counts}
    print(
        f"processing: {args.items} URL items, {args.latency_ms:g} ms origin latency, 1 worker x "
        f"{args.concurrency} per process; load average before {load_before[0]:.2f},"
        f" after {os.getloadavg()[0]:.2f}"
    )
    for n in counts:
        print(f"  {n} process(es): {rates[n]:8.1f} items/s  ratio {ratios[n]:.2f}")
    if ing:
        print("ingest (synchronous=FULL on SQLite; PostgreSQL fsync=on):")
        print(f"  floor bare FastAPI 202:       {ing['floor_rps']:8.0f} req/s")
    for b in ("sqlite", "postgresql") if ing else ():
        rps, batch, floor = ing[f"{b}_rps"], ing[f"{b}_batch_items_per_s"], ing[f"{b}_batch_floor"]
        print(
            f"  {b:10} single {rps:8.0f} req/s (ratio {rps / ing['floor_rps']:.3f});"
            f" batch {batch:8.0f} items/s against raw floor {floor:8.0f} (ratio {batch / floor:.3f})"
        )
    result: dict[str, Any] = {
        "bench": "scale",
        "items": args.items,
        "latency_ms": args.latency_ms,
        "concurrency_per_process": args.concurrency,
        "claim_batch": args.claim_batch,
        "load_average_before": round(load_before[0], 2),
        "items_per_s": {str(n): round(rates[n], 1) for n in counts},
        "ratios": {str(n): round(ratios[n], 3) for n in counts},
        "goal": {"2": 1.8, "4": 3.2},
        "ingest": {k: round(v, 1) for k, v in ing.items()},
        "ingest_ratio_single": {
            b: round(ing[f"{b}_rps"] / ing["floor_rps"], 4) for b in ("sqlite", "postgresql") if ing
        },
        "ingest_ratio_batch": {
            b: round(ing[f"{b}_batch_items_per_s"] / ing[f"{b}_batch_floor"], 4)
            for b in ("sqlite", "postgresql")
            if ing
        },
        "ratio": round(ratios[counts[-1]], 4),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()

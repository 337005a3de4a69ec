"""HTTP ingest against floors measured in the same run.

1. Single items: `POST /v1/items` on `atlas api` (synchronous=FULL, auth on) against a bare FastAPI
   endpoint on the same uvicorn settings that reads the body and answers 202 without storing.
   Load: a closed loop of 32 connections for the same duration each, by wrk (Debian's package) or,
   without it, an async httpx client. Goal: >= 0.80 of the floor's requests/s. Measured on both of
   uvicorn's stacks, asyncio/h11 and uvloop/httptools (ATLAS_API_EVENT_LOOP): per stack both
   servers run and the load alternates between them in 1 s rounds (--rounds), so each side gets
   the same moments of a machine whose speed drifts; "ratio" is the stack Atlas ships by default,
   "stacks" has both, with each round's ratio.
2. Batches: `POST /v1/items/batch` with 1,000 items per request against raw SQLite inserting the
   same rows in transactions of 1,000 (synchronous=FULL), in one loop. Load: a closed loop of 4
   connections (producers send batches concurrently; while one batch's rows are written, with the
   GIL released, the next is parsed); one connection is measured and printed too. The floor and
   Atlas alternate in slices (--batch-rounds) of equal item counts, each side's rate being its items
   over its summed time. Goal: >= 0.50 of the floor's items/s.

Last line: one JSON object; "ratio" is the single-item ratio, "batch_ratio" the batch one.

`--backend postgres`: the same loads on PostgreSQL against PostgreSQL's raw floors, plus one
commit per request next to the group commit (bench/pg/ingest.py).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import fields
from functools import partial
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from atlas.api.keys import create_key  # noqa: E402
from atlas.settings import Settings  # noqa: E402
from atlas.store.ids import new_id  # noqa: E402
from atlas.store.sqlite import SQLiteStore  # noqa: E402
from tests.helpers.net import free_port  # noqa: E402

CONNECTIONS = 32
# Single items are measured on both stacks uvicorn offers (issue 18), floor and Atlas alike:
# ATLAS_API_EVENT_LOOP -> (uvicorn --loop, --http). "ratio" is the one Atlas ships by default.
STACKS = {"asyncio": ("asyncio", "h11"), "uvloop": ("uvloop", "httptools")}
SHIPPED_STACK = next(f.default for f in fields(Settings) if f.name == "api_event_loop")


def api_env(env: dict[str, str], data: Path, port: int, **extra: str) -> dict[str, str]:
    """`env` plus what every bench's `atlas api` runs with: its data directory and port,
    synchronous=FULL, warnings only; `extra` (ATLAS_* names) on top."""
    return {
        **env,
        "ATLAS_DATA_DIR": str(data),
        "ATLAS_API_PORT": str(port),
        "ATLAS_DB_SYNCHRONOUS": "FULL",
        "ATLAS_LOG_LEVEL": "WARNING",
        **extra,
    }


def floor_command(port: int, stack: str = SHIPPED_STACK) -> list[str]:
    """The bare endpoint (bench/floor_app.py) under uvicorn on `stack`, named: uvicorn's "auto"
    picks uvloop/httptools whenever they are installed, and a floor on another stack than the one
    Atlas serves on makes the ratio compare stacks, not Atlas's own cost."""
    loop, http = STACKS[stack]
    return [
        *(sys.executable, "-m", "uvicorn", "bench.floor_app:app", "--port", str(port)),
        *("--loop", loop, "--http", http, "--no-access-log", "--log-level", "warning"),
    ]


BATCH = 1000
BATCH_CONNECTIONS = 4
DOC = "Atlas benchmark document. " * 8
WRK_SCRIPT = """
counter = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %s"
request = function()
  counter = counter + 1
  return wrk.format(nil, nil, nil, '{"content": "%s ' .. counter .. '"}')
end
"""


def wait_ready(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def start(cmd: list[str], env: dict[str, str], url: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ready(url)
    return proc


def wrk_load(url: str, key: str, seconds: int) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(WRK_SCRIPT % (key, DOC))
    out = subprocess.run(
        ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", "-s", f.name, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    os.unlink(f.name)

    def latency(label: str) -> float:
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
        if not m:
            return float("nan")
        return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]

    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
        "non_2xx": float(non2xx.group(1)) if non2xx else 0.0,
        "socket_errors": 1.0 if errors else 0.0,
    }


def httpx_load(url: str, key: str, seconds: int) -> dict[str, float]:
    latencies: list[float] = []
    bad = 0

    async def client(n: int, deadline: float) -> None:
        nonlocal bad
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=10) as c:
            i = 0
            while time.monotonic() < deadline:
                i += 1
                t = time.perf_counter()
                r = await c.post(url, json={"content": f"{DOC} {n}-{i}"})
                latencies.append(time.perf_counter() - t)
                bad += r.status_code >= 300

    async def run() -> float:
        started = time.monotonic()
        await asyncio.gather(*(client(n, started + seconds) for n in range(CONNECTIONS)))
        return time.monotonic() - started

    elapsed = asyncio.run(run())
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "non_2xx": float(bad),
        "socket_errors": 0.0,
    }


def merged(slices: list[dict[str, float]]) -> dict[str, float]:
    """Slices of equal length as one run: mean rate, median p50, worst p99, errors summed."""
    p50s = sorted(s["p50_ms"] for s in slices)
    return {
        "rps": sum(s["rps"] for s in slices) / len(slices),
        "p50_ms": p50s[len(p50s) // 2],
        "p99_ms": max(s["p99_ms"] for s in slices),
        "non_2xx": sum(s["non_2xx"] for s in slices),
        "socket_errors": max(s["socket_errors"] for s in slices),
    }


def open_batch_floor(path: Path) -> sqlite3.Connection:
    """The raw SQLite floor's database: WAL, synchronous=FULL, one table with a primary key."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute(
        "CREATE TABLE items (id TEXT PRIMARY KEY, kind TEXT, state TEXT, payload TEXT, created_at REAL)"
    )
    return conn


def batch_floor(conn: sqlite3.Connection, batches: int, first: int = 0) -> float:
    """Items/s of `batches` transactions of BATCH rows (numbered from batch `first`)."""
    started = time.perf_counter()
    for b in range(first, first + batches):
        now = time.time()
        rows = [
            (new_id(now), "document", "queued", json.dumps({"content": f"{DOC} {b}-{i}"}), now)
            for i in range(BATCH)
        ]
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?)", rows)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    return batches * BATCH / elapsed


def rate_over(rates: list[float]) -> float:
    """The rate over slices of equal item counts: their items over their summed time."""
    return len(rates) / sum(1 / r for r in rates)


def p50_p99_ms(seconds: list[float]) -> tuple[float, float]:
    """The median and 99th percentile of request times, in ms."""
    ordered = sorted(seconds)
    return ordered[len(ordered) // 2] * 1000, ordered[int(len(ordered) * 0.99)] * 1000


def batch_atlas(
    url: str, key: str, batches: int, connections: int, first: int = 0
) -> tuple[float, list[float]]:
    """Items/s and each request's seconds of `batches` batch requests (numbered from batch `first`)
    over a closed loop of `connections`."""
    # Bodies are encoded before the clock starts: the load generator's JSON is not Atlas's cost
    # (the floor builds its rows inside its timing, as Atlas parses them inside its).
    bodies = iter(
        [
            json.dumps({"items": [{"content": f"{DOC} {b}-{i}"} for i in range(BATCH)]}).encode()
            for b in range(first, first + batches)
        ]
    )
    lock = threading.Lock()
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def client() -> None:
        with httpx.Client(headers=headers, timeout=60) as c:
            while True:
                with lock:
                    body = next(bodies, None)
                if body is None:
                    return
                t = time.perf_counter()
                r = c.post(url, content=body)
                with lock:
                    latencies.append(time.perf_counter() - t)
                assert r.status_code == 202, r.text

    threads = [threading.Thread(target=client) for _ in range(connections)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    return batches * BATCH / elapsed, latencies


def alternate_batches(
    url: str, key: str, batches: int, rounds: int, floors: dict[str, Callable[[int, int], float]]
) -> tuple[dict[str, list[float]], list[float], list[float], float]:
    """The batch floors and Atlas in `rounds` alternating slices of equal item counts: a floor
    measured once, at another moment than Atlas, put the machine's drift (up to 50% within minutes
    here) into the ratio. `floors`: name -> callable(batches, first batch) giving items/s.
    Returns each floor's and Atlas's rate per round, Atlas's request seconds, and Atlas's rate on
    one connection (measured first, on batches numbered after the rounds')."""
    per_round = max(BATCH_CONNECTIONS, batches // rounds)
    serial, _ = batch_atlas(url, key, per_round, 1, first=rounds * per_round)
    floor_rates: dict[str, list[float]] = {name: [] for name in floors}
    atlas_rates: list[float] = []
    latencies: list[float] = []
    for r in range(rounds):
        for name, floor in floors.items():
            floor_rates[name].append(floor(per_round, r * per_round))
        rate, seconds = batch_atlas(url, key, per_round, BATCH_CONNECTIONS, r * per_round)
        atlas_rates.append(rate)
        latencies += seconds
    return floor_rates, atlas_rates, latencies, serial


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--seconds", type=int, help="single items: seconds of load on each side (SQLite 20, PostgreSQL 10)"
    )
    # 1 s slices: one slice's ratio moves by a standard deviation of 0.13-0.16 on this 2-core
    # machine (measured over 20), so 5 slices of 2 s left the ratio's mean a spread of +-0.07.
    parser.add_argument(
        "--rounds", type=int, default=20, help="single items: slices the seconds are cut into"
    )
    parser.add_argument(
        "--batches", type=int, default=100, help="batches: requests of 1,000 items on each side"
    )
    parser.add_argument(
        "--batch-rounds", type=int, default=5, help="batches: slices floor and Atlas alternate in"
    )
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument(
        "--commit-order", default="group,serial,parallel", help="postgres: commit modes' order"
    )
    args = parser.parse_args()
    if args.backend == "postgres":
        from bench.pg.ingest import main_postgres

        main_postgres(args.seconds or 10, args.batches, args.commit_order, args.batch_rounds)
        return
    args.seconds = args.seconds or 20
    load = wrk_load if shutil.which("wrk") else httpx_load
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATLAS_")}
    shipped = SHIPPED_STACK
    stacks = [s for s in STACKS if s == "asyncio" or importlib.util.find_spec("uvloop") is not None]
    if len(stacks) < len(STACKS):
        print("uvloop is not installed: single-item ingest measured on asyncio/h11 only", file=sys.stderr)
    single: dict[str, dict[str, dict[str, float]]] = {}
    rounds: dict[str, list[float]] = {}
    floor_rates: list[float] = []
    atlas_rates: list[float] = []
    with tempfile.TemporaryDirectory(prefix="atlas-bench-") as tmp:
        data = Path(tmp)
        store = SQLiteStore(data / "atlas.db", synchronous="FULL")
        key = str(create_key(store, "", "bench", ["ingest"])["key"])
        store.close()

        # Per stack, both servers up and the load alternating between them in short slices, so
        # the floor and Atlas share the machine's moments (a 2-core machine's speed drifts by
        # 10-20% from one 10 s run to the next, which back-to-back runs put into the ratio).
        for stack in stacks:
            floor_port, port = free_port(), free_port()
            floor = start(floor_command(floor_port, stack), env, f"http://127.0.0.1:{floor_port}/docs")
            environment = api_env(
                env, data, port, ATLAS_API_BATCH_MAX_ITEMS=str(BATCH), ATLAS_API_EVENT_LOOP=stack
            )
            try:
                api = start(
                    [sys.executable, "-m", "atlas", "api"],
                    environment,
                    f"http://127.0.0.1:{port}/health/live",
                )
            except BaseException:
                floor.terminate()
                raise
            try:
                urls = {
                    "floor": f"http://127.0.0.1:{floor_port}/v1/items",
                    "atlas": f"http://127.0.0.1:{port}/v1/items",
                }
                for url in urls.values():
                    load(url, key, 1)  # warm-up, not counted
                slices: dict[str, list[dict[str, float]]] = {"floor": [], "atlas": []}
                for _ in range(args.rounds):
                    for name, url in urls.items():
                        slices[name].append(load(url, key, max(1, args.seconds // args.rounds)))
                single[stack] = {name: merged(results) for name, results in slices.items()}
                rounds[stack] = [
                    a["rps"] / f["rps"] for f, a in zip(slices["floor"], slices["atlas"], strict=True)
                ]
                if stack == shipped:  # batches on what Atlas ships
                    batch_url = f"http://127.0.0.1:{port}/v1/items/batch"
                    floor_conn = open_batch_floor(data / "floor.db")
                    try:
                        floor_by_name, atlas_rates, latencies, serial_batch = alternate_batches(
                            batch_url,
                            key,
                            args.batches,
                            args.batch_rounds,
                            {"sqlite": partial(batch_floor, floor_conn)},
                        )
                    finally:
                        floor_conn.close()
                    floor_rates = floor_by_name["sqlite"]
                    batch_p50, batch_p99 = p50_p99_ms(latencies)
            finally:
                for proc in (api, floor):
                    proc.terminate()
                    proc.wait(timeout=30)

    floor_single, atlas_single = single[shipped]["floor"], single[shipped]["atlas"]
    ratio = atlas_single["rps"] / floor_single["rps"]
    # Slices of equal item counts: each side's rate is its items over its summed time.
    floor_batch, atlas_batch = rate_over(floor_rates), rate_over(atlas_rates)
    batch_ratio = atlas_batch / floor_batch
    batch_rounds = [a / f for f, a in zip(floor_rates, atlas_rates, strict=True)]
    print(
        f"load generator: {load.__name__}, {CONNECTIONS} connections, {args.seconds}s on each side"
        f" in {args.rounds} alternating rounds"
    )
    for stack, pair in single.items():
        f, a = pair["floor"], pair["atlas"]
        label = f"{stack}/{STACKS[stack][1]}" + (" (shipped)" if stack == shipped else "")
        print(f"single item, {label}:")
        print(
            f"  floor  bare FastAPI 202:     {f['rps']:8.0f} req/s  p50 {f['p50_ms']:.1f} ms"
            f"  p99 {f['p99_ms']:.1f} ms"
        )
        print(
            f"  atlas  POST /v1/items (FULL): {a['rps']:8.0f} req/s  p50 {a['p50_ms']:.1f} ms"
            f"  p99 {a['p99_ms']:.1f} ms  non-2xx {a['non_2xx']:.0f}  ratio {a['rps'] / f['rps']:.3f}"
        )
        print("  ratio of each round: " + ", ".join(f"{r:.3f}" for r in rounds[stack]))
    per_round = max(BATCH_CONNECTIONS, args.batches // args.batch_rounds)
    print(f"batches: {len(floor_rates)} alternating rounds of {per_round} requests on each side")
    print(f"floor  raw SQLite batches of {BATCH}: {floor_batch:8.0f} items/s")
    print(
        f"atlas  POST /v1/items/batch, {BATCH_CONNECTIONS} connections: {atlas_batch:8.0f} items/s"
        f"  p50 {batch_p50:.0f} ms  p99 {batch_p99:.0f} ms"
    )
    print(f"atlas  POST /v1/items/batch, 1 connection:  {serial_batch:8.0f} items/s")
    print("  batch ratio of each round: " + ", ".join(f"{r:.3f}" for r in batch_rounds))
    print(f"ratio single {ratio:.3f} (goal >= 0.80, {shipped}), batch {batch_ratio:.3f} (goal >= 0.50)")
    print(
        json.dumps(
            {
                "bench": "ingest",
                "load": load.__name__,
                "connections": CONNECTIONS,
                "seconds": args.seconds,
                "rounds": args.rounds,
                "stack": shipped,
                "floor_rps": round(floor_single["rps"], 1),
                "atlas_rps": round(atlas_single["rps"], 1),
                "atlas_p50_ms": round(atlas_single["p50_ms"], 2),
                "atlas_p99_ms": round(atlas_single["p99_ms"], 2),
                "floor_p50_ms": round(floor_single["p50_ms"], 2),
                "floor_p99_ms": round(floor_single["p99_ms"], 2),
                "atlas_non_2xx": atlas_single["non_2xx"],
                "stacks": {
                    stack: {
                        "floor_rps": round(pair["floor"]["rps"], 1),
                        "atlas_rps": round(pair["atlas"]["rps"], 1),
                        "atlas_p99_ms": round(pair["atlas"]["p99_ms"], 2),
                        "ratio": round(pair["atlas"]["rps"] / pair["floor"]["rps"], 4),
                        "round_ratios": [round(r, 4) for r in rounds[stack]],
                    }
                    for stack, pair in single.items()
                },
                "floor_batch_items_per_s": round(floor_batch, 1),
                "atlas_batch_items_per_s": round(atlas_batch, 1),
                "batch_connections": BATCH_CONNECTIONS,
                "batch_round_ratios": [round(r, 4) for r in batch_rounds],
                "atlas_batch_one_connection_items_per_s": round(serial_batch, 1),
                "batch_ratio_one_connection": round(serial_batch / floor_batch, 4),
                "batch_p50_ms": round(batch_p50, 1),
                "batch_p99_ms": round(batch_p99, 1),
                "ratio": round(ratio, 4),
                "batch_ratio": round(batch_ratio, 4),
                "goal": 0.80,
                "batch_goal": 0.50,
            }
        )
    )


if __name__ == "__main__":
    main()

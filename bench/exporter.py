"""Scrape cost of `atlas exporter` against Debian's prometheus-node-exporter, same machine, same run.

Setup: a store holding 1,000,000 items (raw executemany inserts into the real schema, migrations
and triggers included) served by a real `atlas exporter` process; node_exporter with its default
collectors on another free loopback port. Scrapes send Prometheus 2.x's Accept and gzip headers,
one new connection each (what Prometheus does against a server that closes connections), and
alternate between the two exporters so both see the same machine noise.

Prints p50/p99 scrape latency for both (goal: p50 ratio <= 1.0, p99 ratio <= 1.5), the exporter's
RSS after 100 and after 10,000 scrapes (goal: within 10%), the store read time at 1,000 vs
1,000,000 items (maintained counters: should be flat), and the write cost the counter triggers add
to enqueue and claim+complete. Last line: one JSON object, "ratio" = the p50 ratio.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from atlas.store.models import NewItem, Transition  # noqa: E402
from atlas.store.sqlite import SQLiteStore  # noqa: E402
from exporters.business import BusinessCollector  # noqa: E402
from tests.helpers.net import free_port  # noqa: E402
from tests.helpers.stores import stats_opener  # noqa: E402

HEADERS = {
    "Accept": "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "Accept-Encoding": "gzip",
    "User-Agent": "Prometheus/2.42.0",
    "X-Prometheus-Scrape-Timeout-Seconds": "10",
}
# Enqueue counts its inserts itself (migration 0005); these are the triggers left.
STATS_TRIGGERS = (
    "stats_items_delete",
    "stats_items_update",
    "stats_dlq_update",
    "stats_contents_insert",
    "stats_contents_delete",
)


def build_store(path: Path, n: int) -> None:
    """n items in a realistic mix of states through the real schema, counters rebuilt after."""
    SQLiteStore(path, synchronous="OFF").close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    now = time.time()
    states = ["done"] * 14 + ["queued"] * 4 + ["dead", "leased"]

    def rows(start: int, stop: int) -> object:
        for i in range(start, stop):
            state = states[i % len(states)]
            dead = state == "dead"
            yield (
                f"{i:026d}",
                ("url", "document", "feed")[i % 3],
                state,
                f'{{"url":"https://example.org/{i}"}}',
                (0, 5, -1)[i % 3],
                now - 3600 + (i % 1000),
                "fetch" if dead else None,
                f"Error{i % 40}" if dead else None,
                now - 7200,
                now - 60,
            )

    for start in range(0, n, 100_000):
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO items (id, kind, state, payload, priority, next_attempt_at, last_error_stage,"
            " last_error_class, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows(start, min(n, start + 100_000)),  # type: ignore[arg-type]
        )
        conn.executemany(
            "INSERT INTO completions (item_id, outcome, at) VALUES (?, 'done', ?)",
            ((f"{i:026d}", now) for i in range(start, min(n, start + 100_000), 2)),
        )
        conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    store = SQLiteStore(path, synchronous="OFF")
    store.recount_items()  # the rows went in by hand, not through enqueue
    store.close()


def store_read_ms(path: Path, reads: int) -> float:
    collector = BusinessCollector(stats_opener(path))
    times = []
    for _ in range(reads):
        started = time.perf_counter()
        families = {f.name: f for f in collector.collect()}
        times.append((time.perf_counter() - started) * 1000)
        # A failed read is fast too: make sure every read measured is a real one.
        if families["atlas_exporter_store_up"].samples[0].value != 1 or "atlas_items" not in families:
            raise RuntimeError(f"the business collector could not read {path}")
    collector.reader.close()
    return statistics.median(times)


def write_cost(tmp: Path, n: int, repeats: int) -> dict[str, float]:
    """Seconds for enqueue and claim+complete of n items with and without the counter triggers."""
    figures: dict[str, list[float]] = {"enqueue_on": [], "enqueue_off": [], "cycle_on": [], "cycle_off": []}
    for r in range(repeats):
        for mode in ("on", "off"):
            path = tmp / f"write-{mode}-{r}.db"
            store = SQLiteStore(path, synchronous="NORMAL")
            if mode == "off":
                conn = sqlite3.connect(path)
                for name in STATS_TRIGGERS:
                    conn.execute(f"DROP TRIGGER {name}")
                conn.commit()
                conn.close()
            started = time.perf_counter()
            for start in range(0, n, 500):
                store.enqueue([NewItem(kind="url", payload={"n": i}) for i in range(start, start + 500)])
            figures[f"enqueue_{mode}"].append(time.perf_counter() - started)
            started = time.perf_counter()
            while claimed := store.claim("bench", 256, 60):
                store.apply([Transition(c.id, c.token, "done", "done") for c in claimed])
            figures[f"cycle_{mode}"].append(time.perf_counter() - started)
            store.close()
    return {k: statistics.median(v) for k, v in figures.items()}


def scrape(port: int) -> float:
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/metrics", headers=HEADERS)
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    elapsed = time.perf_counter() - started
    if resp.status != 200 or not body:
        raise RuntimeError(f"scrape of 127.0.0.1:{port} answered {resp.status}")
    return elapsed * 1000


def collector_costs(port: int, scrapes: int) -> dict[str, float]:
    """Median node_scrape_collector_duration_seconds per collector over `scrapes` scrapes, in ms."""
    seen: dict[str, list[float]] = {}
    for _ in range(scrapes):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/metrics", headers={"Accept": "text/plain"})
        body = conn.getresponse().read().decode()
        conn.close()
        for line in body.splitlines():
            if line.startswith('node_scrape_collector_duration_seconds{collector="'):
                name = line.split('"')[1]
                seen.setdefault(name, []).append(float(line.rsplit(" ", 1)[1]) * 1000)
    return {name: round(statistics.median(v), 4) for name, v in sorted(seen.items())}


def wait_serving(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            scrape(port)
            return
        except (OSError, RuntimeError, http.client.HTTPException):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not serve /metrics within 60 s") from None
            time.sleep(0.1)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--scrapes", type=int, default=200)
    parser.add_argument("--rss-scrapes", type=int, default=10_000)
    parser.add_argument("--write-items", type=int, default=20_000)
    args = parser.parse_args()
    node_exporter = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
    if node_exporter is None:
        sys.exit(
            "bench/exporter.py needs Debian's prometheus-node-exporter"
            " (apt-get install prometheus-node-exporter)"
        )

    tmp = Path(tempfile.mkdtemp(prefix="atlas-bench-exporter-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        started = time.perf_counter()
        build_store(tmp / "small" / "atlas.db", 1_000)
        build_store(tmp / "atlas.db", args.items)
        print(f"built stores: {args.items:,} items in {time.perf_counter() - started:.1f} s", flush=True)
        read_small = store_read_ms(tmp / "small" / "atlas.db", 200)
        read_big = store_read_ms(tmp / "atlas.db", 200)
        print(
            f"store read (business collector): 1,000 items {read_small:.3f} ms, "
            f"{args.items:,} items {read_big:.3f} ms",
            flush=True,
        )

        atlas_port, node_port = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("ATLAS_")}
        env.update(
            ATLAS_DATA_DIR=str(tmp),
            ATLAS_EXPORTER_PORT=str(atlas_port),
            ATLAS_EXPORTER_HOST="127.0.0.1",
            ATLAS_LOG_LEVEL="WARNING",
            PYTHONPATH=str(ROOT),
        )
        atlas = subprocess.Popen([sys.executable, "-m", "atlas", "exporter"], env=env)
        node = subprocess.Popen(
            [node_exporter, f"--web.listen-address=127.0.0.1:{node_port}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs += [atlas, node]
        wait_serving(atlas_port, atlas, "atlas exporter")
        wait_serving(node_port, node, "node_exporter")

        for _ in range(20):  # warm-up: page cache, SQLite cache, Go's first-scrape allocations
            scrape(atlas_port)
            scrape(node_port)
        ours, theirs = [], []
        # CPU each process spends per scrape (user + system, all threads): the cost itself, apart
        # from how the machine schedules it (node_exporter spreads its collectors over the cores).
        cpu_procs = (psutil.Process(atlas.pid), psutil.Process(node.pid))
        cpu_before = [sum(p.cpu_times()[:2]) for p in cpu_procs]
        for _ in range(args.scrapes):
            ours.append(scrape(atlas_port))
            theirs.append(scrape(node_port))
        cpu_ms = [
            (sum(p.cpu_times()[:2]) - before) / args.scrapes * 1000
            for p, before in zip(cpu_procs, cpu_before, strict=True)
        ]
        print(f"CPU per scrape: atlas {cpu_ms[0]:.2f} ms, node_exporter {cpu_ms[1]:.2f} ms", flush=True)
        p50 = (statistics.median(ours), statistics.median(theirs))
        p99 = (pct(ours, 0.99), pct(theirs, 0.99))
        print(
            f"scrape p50: atlas {p50[0]:.2f} ms, node_exporter {p50[1]:.2f} ms, ratio {p50[0] / p50[1]:.2f}"
        )
        print(
            f"scrape p99: atlas {p99[0]:.2f} ms, node_exporter {p99[1]:.2f} ms, ratio {p99[0] / p99[1]:.2f}"
        )

        costs = {"atlas": collector_costs(atlas_port, 50), "node_exporter": collector_costs(node_port, 50)}
        print("per-collector median ms (atlas / node_exporter):")
        for name, ms in costs["atlas"].items():
            print(f"  {name:12s} {ms:8.3f} / {costs['node_exporter'].get(name, float('nan')):8.3f}")

        rss = psutil.Process(atlas.pid)
        done = 20 + args.scrapes + 1 + 50
        while done < 100:
            scrape(atlas_port)
            done += 1
        rss_100 = rss.memory_info().rss
        while done < args.rss_scrapes:
            scrape(atlas_port)
            done += 1
        rss_10k = rss.memory_info().rss
        print(
            f"exporter RSS: {rss_100 / 2**20:.1f} MiB after 100 scrapes, "
            f"{rss_10k / 2**20:.1f} MiB after {done:,} ({(rss_10k / rss_100 - 1) * 100:+.1f}%)",
            flush=True,
        )

        cost = write_cost(tmp, args.write_items, 5)
        enqueue_ratio = cost["enqueue_on"] / cost["enqueue_off"]
        cycle_ratio = cost["cycle_on"] / cost["cycle_off"]
        print(
            f"counter triggers' write cost on {args.write_items:,} items: enqueue x{enqueue_ratio:.2f} "
            f"({cost['enqueue_off']:.2f} s -> {cost['enqueue_on']:.2f} s), claim+complete x{cycle_ratio:.2f} "
            f"({cost['cycle_off']:.2f} s -> {cost['cycle_on']:.2f} s)"
        )
        print(
            json.dumps(
                {
                    "ratio": round(p50[0] / p50[1], 3),
                    "p99_ratio": round(p99[0] / p99[1], 3),
                    "p50_ms": {"atlas": round(p50[0], 3), "node_exporter": round(p50[1], 3)},
                    "p99_ms": {"atlas": round(p99[0], 3), "node_exporter": round(p99[1], 3)},
                    "scrapes": args.scrapes,
                    "cpu_ms_per_scrape": {"atlas": round(cpu_ms[0], 3), "node_exporter": round(cpu_ms[1], 3)},
                    "load_average": os.getloadavg(),
                    "collector_ms": costs,
                    "items": args.items,
                    "rss_bytes_after_100": rss_100,
                    "rss_bytes_after_10000": rss_10k,
                    "rss_growth": round(rss_10k / rss_100 - 1, 4),
                    "store_read_ms": {"1000_items": round(read_small, 4), "full_store": round(read_big, 4)},
                    "store_read_ratio": round(read_big / read_small, 3),
                    "trigger_write_cost": {
                        "enqueue": round(enqueue_ratio, 3),
                        "claim_complete": round(cycle_ratio, 3),
                    },
                }
            )
        )
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

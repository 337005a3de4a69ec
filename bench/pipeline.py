"""Content pipeline throughput: URL items from 10 hosts with 20 ms added latency, politely.

Origin: the tests' local origin (tests.helpers.origin) on 127.0.0.1, answering for h0.test ...
h9.test with realistic article pages after `--latency-ms`. Both runs share one politeness budget
(`--rate` requests/s per host, burst `--burst`) and one concurrency (workers x worker concurrency,
at most `--host-concurrency` per host):

- floor: a plain httpx client fetching the same URLs under the same per-host token buckets and
  concurrency, and doing nothing with the bodies (no extraction, no database);
- Atlas: a real engine (worker processes, the default stages: guarded fetch, extraction, dedupe,
  normalise, FTS5 store) draining the same URLs enqueued up front.

Politeness is checked from the origin's own arrival log: the most requests any host saw in any
one-second window, against rate + burst. CPU per item for extraction is measured in-process on
the fetched pages (trafilatura + charset detection), and the worker processes' CPU per item (all
stages) beside it; the supervisor runs in this process beside the origin, so its share is not
separated out. Last line: one JSON object with "ratio" = Atlas items/s
over the floor's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from atlas.engine.supervisor import Engine  # noqa: E402
from atlas.pipeline.extract import decode, extract_page  # noqa: E402
from atlas.reliability.token_bucket import TokenBucket  # noqa: E402
from atlas.settings import Settings  # noqa: E402
from atlas.store.models import NewItem  # noqa: E402
from atlas.store.sqlite import SQLiteStore  # noqa: E402
from tests.helpers.engine import engine_thread, wait_for  # noqa: E402
from tests.helpers.origin import Origin, running_origin  # noqa: E402

HOSTS = [f"h{i}.test" for i in range(10)]


def urls(n: int, run: str) -> list[tuple[str, str]]:
    """(host, path) pairs, round-robin over the hosts; `run` keeps the two runs' pages distinct."""
    return [(HOSTS[i % len(HOSTS)], f"/article/{i}?topic={run}") for i in range(n)]


async def floor(origin: Origin, targets: list[tuple[str, str]], args: argparse.Namespace, conc: int) -> float:
    buckets = {h: TokenBucket(rate=args.rate, burst=args.burst) for h in HOSTS}
    per_host = {h: asyncio.Semaphore(args.host_concurrency) for h in HOSTS}
    slots = asyncio.Semaphore(conc)
    done = 0

    async def one(client: httpx.AsyncClient, host: str, path: str) -> None:
        nonlocal done
        async with slots, per_host[host]:
            while (wait := buckets[host].take(time.monotonic())) > 0:
                await asyncio.sleep(wait)
            r = await client.get(f"http://127.0.0.1:{origin.port}{path}", headers={"Host": host})
            r.raise_for_status()
            done += 1

    limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
    async with httpx.AsyncClient(limits=limits, trust_env=False, timeout=30) as client:
        started = time.perf_counter()
        await asyncio.gather(*(one(client, h, p) for h, p in targets))
        elapsed = time.perf_counter() - started
    assert done == len(targets)
    return len(targets) / elapsed


def atlas_run(
    origin: Origin, targets: list[tuple[str, str]], settings: Settings, tmp: Path
) -> dict[str, float]:
    store = SQLiteStore(tmp / "atlas.db", synchronous=settings.db_synchronous)
    items = [NewItem(kind="url", payload={"url": origin.url(h, p)}) for h, p in targets]
    me = psutil.Process()
    with engine_thread(settings, store, "tests.helpers.pipelines:web") as engine:
        wait_for(lambda: engine.metrics.workers._value.get() == settings.worker_count, 60, "workers")
        assert isinstance(engine, Engine)
        # Warm up: workers import their stages (trafilatura, lxml: about a CPU-second each) and
        # open connections on their first items; neither belongs in a per-item figure.
        warm = [origin.url(h, f"/article/{1_000_000 + k}?topic=warmup") for k, h in enumerate(HOSTS)]
        store.enqueue([NewItem(kind="url", payload={"url": u}) for u in warm])
        wait_for(lambda: _finished(store) >= len(HOSTS), 120, "the warm-up items", poll=0.02)
        cpu_before = _workers_cpu(me)
        started = time.perf_counter()
        store.enqueue(items)
        wait_for(lambda: _finished(store) >= len(items) + len(HOSTS), 600, "the URL items", poll=0.02)
        elapsed = time.perf_counter() - started
        cpu = _workers_cpu(me) - cpu_before
    counts = store.counts()
    store.close()
    done = counts.get(("done", "url"), 0) - len(HOSTS)
    if done != len(items):
        raise SystemExit(f"only {done} of {len(items)} items reached done: {counts}")
    return {"items_per_s": len(items) / elapsed, "worker_cpu_ms_per_item": cpu * 1000 / len(items)}


def _finished(store: SQLiteStore) -> int:
    return sum(n for (state, _), n in store.counts().items() if state in ("done", "duplicate", "dead"))


def _workers_cpu(proc: psutil.Process) -> float:
    """CPU of the engine's worker processes (the supervisor shares this process with the origin)."""
    total = 0.0
    for p in proc.children(recursive=True):
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def extraction_cpu_ms(origin: Origin, n: int) -> float:
    pages = [
        httpx.get(f"http://127.0.0.1:{origin.port}/article/{i}?topic=cpu", headers={"Host": HOSTS[i % 10]})
        for i in range(n)
    ]
    started = time.process_time()
    for r in pages:
        extract_page(decode(r.content, r.charset_encoding, str(r.url)), str(r.url))
    return (time.process_time() - started) * 1000 / n


def max_per_second(times: list[float]) -> int:
    """Most arrivals in any one-second window."""
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= 1.0:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=20.0, help="politeness: requests/s per host")
    parser.add_argument("--burst", type=int, default=4)
    parser.add_argument("--host-concurrency", type=int, default=8)
    args = parser.parse_args()
    workers = os.cpu_count() or 1
    settings = Settings(
        workers=workers,
        worker_concurrency=16,
        db_synchronous="NORMAL",
        core_metrics_port=0,
        poll_interval_ms=10,
        fetch_allow_hosts=("127.0.0.1",),
        host_rate_per_second=args.rate,
        host_rate_burst=args.burst,
        host_max_concurrency=args.host_concurrency,
    )
    conc = workers * settings.worker_concurrency
    with running_origin() as origin, tempfile.TemporaryDirectory(prefix="atlas-bench-") as tmp:
        origin.latency_seconds = args.latency_ms / 1000
        floor_rate = asyncio.run(floor(origin, urls(args.items, "floor"), args, conc))
        floor_peak = max(max_per_second(sorted(origin.times[h])) for h in HOSTS)
        origin.times.clear()
        result = atlas_run(origin, urls(args.items, "atlas"), settings.replace(data_dir=Path(tmp)), Path(tmp))
        atlas_peak = max(max_per_second(sorted(origin.times[h])) for h in HOSTS)
        origin.latency_seconds = 0
        extract_ms = extraction_cpu_ms(origin, 100)
    ratio = result["items_per_s"] / floor_rate
    allowed = args.rate + args.burst
    print(
        f"origin: {len(HOSTS)} hosts, {args.latency_ms:g} ms added latency; "
        f"politeness {args.rate:g}/s per host"
    )
    print(f"floor (plain httpx, same politeness and concurrency {conc}): {floor_rate:,.1f} items/s")
    print(f"atlas ({workers} workers x {settings.worker_concurrency}): {result['items_per_s']:,.1f} items/s")
    print(f"busiest host-second: floor {floor_peak}, atlas {atlas_peak} requests (allowed {allowed:g})")
    print(
        f"CPU per item: extraction {extract_ms:.1f} ms; "
        f"worker processes (fetch, extract, dedupe, normalise) {result['worker_cpu_ms_per_item']:.1f} ms"
    )
    print(f"ratio {ratio:.3f}")
    print(
        json.dumps(
            {
                "bench": "pipeline",
                "items": args.items,
                "hosts": len(HOSTS),
                "latency_ms": args.latency_ms,
                "rate_per_host": args.rate,
                "floor_items_per_s": round(floor_rate, 1),
                "atlas_items_per_s": round(result["items_per_s"], 1),
                "max_requests_per_host_second": atlas_peak,
                "politeness_respected": atlas_peak <= allowed,
                "extract_cpu_ms_per_item": round(extract_ms, 2),
                "worker_cpu_ms_per_item": round(result["worker_cpu_ms_per_item"], 2),
                "ratio": round(ratio, 4),
            }
        )
    )


if __name__ == "__main__":
    main()

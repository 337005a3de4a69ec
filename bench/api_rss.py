"""The API process's memory over 100,000 requests: RSS growth after warm-up (issue 18, goal <= 10%).

RSS is the API process's plus its commit process's (atlas.api.commitproc), each printed too.

A real `atlas api` (synchronous=FULL, auth on) on a fresh data directory gets a warm-up of
requests, then its RSS is read (psutil); then 100,000 more requests, and its RSS is read again.
The mix is what producers and dashboards send, error paths included, since a leak may hide in
any of them (per 100 requests):
  70 POST /v1/items (a new document each)      10 POST /v1/items with a repeated Idempotency-Key
   5 POST /v1/items, invalid (422)              10 GET /v1/items/{id} of an accepted item
   4 GET /health/live                            1 GET /metrics
The load is a small asyncio HTTP/1.1 keep-alive client over a few connections (cheaper per request
than httpx, so the API, not the client, sets the pace on 2 shared cores).

Last line: one JSON object; "ratio" is RSS after / RSS after warm-up (goal <= 1.10).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from atlas.api.keys import create_key  # noqa: E402
from atlas.store.sqlite import SQLiteStore  # noqa: E402
from bench.ingest import api_env  # noqa: E402
from tests.helpers.net import free_port  # noqa: E402

CONNECTIONS = 8
GOAL = 1.10
REQUEST_TIMEOUT_SECONDS = 30.0


def wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the API exited with {proc.returncode} before it was ready")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def request(method: str, path: str, key: str, body: bytes = b"", extra: str = "") -> bytes:
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    )
    return head.encode() + body


class Client:
    """One keep-alive connection; `send` returns (status, body)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, raw: bytes) -> tuple[int, bytes]:
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = await self.reader.readexactly(length) if length else b""
        return status, body


async def run_load(port: int, key: str, start: int, count: int, ids: list[str]) -> dict[str, int]:
    """Send requests start..start+count-1 of the mix over CONNECTIONS connections; statuses seen."""
    statuses: dict[str, int] = {}
    numbers = iter(range(start, start + count))

    async def connection(c: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = Client(reader, writer)
        try:
            for n in numbers:
                slot = n % 100
                if slot < 70:
                    raw = request("POST", "/v1/items", key, json.dumps({"content": f"rss doc {n}"}).encode())
                elif slot < 80:
                    body = json.dumps({"content": f"keyed doc {n % 1000}"}).encode()
                    raw = request("POST", "/v1/items", key, body, f"Idempotency-Key: k{n % 1000}\r\n")
                elif slot < 85:
                    raw = request("POST", "/v1/items", key, b'{"content": 5, "priority": "x"}')
                elif slot < 95 and ids:
                    raw = request("GET", f"/v1/items/{ids[n % len(ids)]}", key)
                elif slot < 99:
                    raw = request("GET", "/health/live", key)
                else:
                    raw = request("GET", "/metrics", key)
                status, body = await asyncio.wait_for(client.send(raw), REQUEST_TIMEOUT_SECONDS)
                statuses[str(status)] = statuses.get(str(status), 0) + 1
                if status == 202 and len(ids) < 1000:
                    ids.append(json.loads(body)["id"])
        finally:
            writer.close()

    await asyncio.gather(*(connection(c) for c in range(CONNECTIONS)))
    return statuses


def tree_rss(proc: psutil.Process) -> tuple[int, list[tuple[str, int]]]:
    """RSS of the API and its children (the commit process, atlas.api.commitproc): the sum, and
    (name, RSS) of each."""
    parts = [("api", proc.memory_info().rss)]
    for child in proc.children(recursive=True):
        parts.append((" ".join(child.cmdline()[-1:]) or str(child.pid), child.memory_info().rss))
    return sum(rss for _, rss in parts), parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--warmup", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=100_000)
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATLAS_")}
    with tempfile.TemporaryDirectory(prefix="atlas-bench-rss-") as tmp:
        data = Path(tmp)
        store = SQLiteStore(data / "atlas.db", synchronous="FULL")
        key = str(create_key(store, "", "bench", ["ingest", "read"])["key"])
        store.close()
        port = free_port()
        environment = api_env(env, data, port, ATLAS_API_RATE_LIMIT_PER_KEY="0")
        api = subprocess.Popen(
            [sys.executable, "-m", "atlas", "api"],
            env=environment,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_ready(f"http://127.0.0.1:{port}/health/live", api)
            proc = psutil.Process(api.pid)
            rss_start, _ = tree_rss(proc)
            ids: list[str] = []
            warm = asyncio.run(run_load(port, key, 0, args.warmup, ids))
            rss_warm, _ = tree_rss(proc)
            started = time.perf_counter()
            measured = asyncio.run(run_load(port, key, args.warmup, args.requests, ids))
            elapsed = time.perf_counter() - started
            rss_end, parts = tree_rss(proc)
            db_bytes = sum(p.stat().st_size for p in data.glob("atlas.db*"))
        finally:
            api.terminate()
            api.wait(timeout=30)
    ratio = rss_end / rss_warm
    mib = 1 << 20
    print(
        f"API RSS: {rss_start / mib:.1f} MiB at start, {rss_warm / mib:.1f} MiB after {args.warmup} requests"
    )
    print(
        f"API RSS: {rss_end / mib:.1f} MiB after {args.requests} more ({args.requests / elapsed:.0f} req/s,"
        f" statuses {measured}); database {db_bytes / mib:.1f} MiB"
    )
    print("at the end, per process: " + ", ".join(f"{name} {rss / mib:.1f} MiB" for name, rss in parts))
    print(f"ratio {ratio:.3f} (goal <= {GOAL:.2f})")
    print(
        json.dumps(
            {
                "bench": "api_rss",
                "warmup_requests": args.warmup,
                "requests": args.requests,
                "connections": CONNECTIONS,
                "requests_per_s": round(args.requests / elapsed, 1),
                "statuses_warmup": warm,
                "statuses": measured,
                "rss_start_bytes": rss_start,
                "rss_warm_bytes": rss_warm,
                "rss_end_bytes": rss_end,
                "rss_end_by_process": dict(parts),
                "database_bytes": db_bytes,
                "ratio": round(ratio, 4),
                "goal": GOAL,
            }
        )
    )


if __name__ == "__main__":
    main()

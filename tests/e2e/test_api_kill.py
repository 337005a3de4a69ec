"""SIGKILL `atlas api` under concurrent ingest: every item that got a 202 is there after restart."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from atlas.api.keys import create_key
from atlas.store.postgres import PostgresStore
from atlas.store.sqlite import SQLiteStore
from tests.conftest import atlas_env
from tests.helpers.api import free_port
from tests.helpers.engine import wait_for
from tests.helpers.postgres import wipe

CLIENTS = 16
MAX_REQUESTS = 20_000


def start_api(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "atlas", "api"], env=env, stdout=out, stderr=out)


def ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


async def load(url: str, key: str, acked: list[str], refused: list[str]) -> None:
    """CLIENTS closed-loop producers; each stops when the server goes away (bounded in count and time).

    Nothing sheds with the default settings: every answer is a 202 (in `acked`) or the connection
    fails; any other answer lands in `refused`."""
    sent = 0
    deadline = time.monotonic() + 30

    async def client(n: int) -> None:
        nonlocal sent
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=5) as c:
            while sent < MAX_REQUESTS and time.monotonic() < deadline:
                sent += 1
                try:
                    r = await c.post(f"{url}/v1/items", json={"content": f"client {n} item {sent}"})
                except httpx.HTTPError:
                    return  # the server is gone
                if r.status_code == 202:
                    acked.append(r.json()["id"])
                else:
                    refused.append(f"{r.status_code} {r.text[:200]}")

    await asyncio.gather(*(client(n) for n in range(CLIENTS)))


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Any, dict[str, str]]]:
    """(store, extra environment for `atlas api`): SQLite in tmp_path with FULL sync (a 202 means
    fsynced), or the session's PostgreSQL database emptied (its commits are durable by default)."""
    if request.param == "sqlite":
        sqlite = SQLiteStore(tmp_path / "atlas.db", synchronous="FULL")
        yield sqlite, {"ATLAS_DB_SYNCHRONOUS": "FULL"}
        sqlite.close()
        return
    url = request.getfixturevalue("postgres_url")
    pg = PostgresStore(url, pool_size=2, migrate=True)
    wipe(pg)
    yield pg, {"ATLAS_DATABASE_URL": url, "ATLAS_DB_POOL_SIZE": "4"}
    pg.close()


def test_every_acknowledged_item_survives_a_sigkill_of_the_api(
    tmp_path: Path, backend: tuple[Any, dict[str, str]]
) -> None:
    store, backend_env = backend
    key = str(create_key(store, "", "kill-test", ["ingest", "read"])["key"])
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = atlas_env(tmp_path, ATLAS_API_PORT=str(port), **backend_env)
    api = start_api(env, tmp_path / "api.log")
    wait_for(lambda: ready(url), 60, "the API to be ready")
    acked: list[str] = []
    refused: list[str] = []
    kill_at = random.Random(4).uniform(0.0, 0.3)

    async def run() -> None:
        loader = asyncio.create_task(load(url, key, acked, refused))
        # Kill at a random moment once the load is well under way (bounded wait).
        deadline = time.monotonic() + 30
        while len(acked) < 300 and time.monotonic() < deadline and not loader.done():
            await asyncio.sleep(0.01)
        await asyncio.sleep(kill_at)
        api.send_signal(signal.SIGKILL)  # mid-load: requests in flight, commits in progress
        await loader
        api.wait(timeout=10)

    asyncio.run(run())
    assert len(acked) > 100, "the load never got going"
    assert refused == [], f"answers other than 202 before the kill: {refused[:5]}"

    api = start_api(env, tmp_path / "api.log")
    try:
        wait_for(lambda: ready(url), 60, "the restarted API to be ready")
        with httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=10) as c:
            missing = [i for i in acked if c.get(f"{url}/v1/items/{i}").status_code != 200]
    finally:
        api.terminate()
        api.wait(timeout=30)
    assert missing == [], f"{len(missing)} of {len(acked)} acknowledged items were lost"
    assert sum(store.counts().values()) >= len(acked)

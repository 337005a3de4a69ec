"""PostgreSQL for the benchmarks: ATLAS_BENCH_POSTGRES_URL, else a throwaway cluster.

The throwaway cluster is the tests' (tests.helpers.postgres: Debian's binaries, fsync on,
synchronous_commit at its default `on`, 127.0.0.1 only), started and removed by the benchmark.
A database named by ATLAS_BENCH_POSTGRES_URL is wiped: the benchmarks empty Atlas's tables.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from tests.helpers import postgres

if TYPE_CHECKING:
    from atlas.store.postgres import PostgresStore


@contextmanager
def postgres_url() -> Iterator[str]:
    """Yield the URL of a reachable PostgreSQL database; SystemExit when none can be had."""
    url = os.environ.get("ATLAS_BENCH_POSTGRES_URL", "")
    if url:
        postgres.wait_until_ready(url)
        yield url
        return
    bindir = postgres.find_bindir()
    if bindir is None:
        raise SystemExit(
            "PostgreSQL is not installed (Debian package 'postgresql'); or set ATLAS_BENCH_POSTGRES_URL"
        )
    cluster = postgres.Cluster(bindir)
    try:
        cluster.start()
        yield cluster.url
    finally:
        cluster.stop()


def fresh_store(url: str) -> PostgresStore:
    """A migrated PostgresStore on `url` with every Atlas table emptied (2 pooled connections).

    TRUNCATE, not the tests' DELETE: a round (bench/engine.py runs several) must not inherit the
    last one's dead rows. Each round stores the same documents, and the content hashes' index
    still held the dead entries of every earlier round until a vacuum: each lookup of a batch's
    hashes visited them all (measured: 20 ms a batch, six times a fresh table's)."""
    from atlas.store.postgres import PostgresStore

    store = PostgresStore(url, pool_size=2, migrate=True)
    with store.db.transaction() as conn:
        conn.execute(f"TRUNCATE {', '.join(postgres.TABLES)} RESTART IDENTITY")
    return store

"""A throwaway PostgreSQL cluster for the tests, from Debian's binaries (package `postgresql`).

`ATLAS_TEST_POSTGRES_URL` names a database to use instead (it is wiped: every table truncated).
Otherwise the session starts its own cluster: initdb into a temporary directory (as the
`postgres` user when the tests run as root: the server refuses to run as root), listening on
127.0.0.1 on a free port with its socket in that directory, fsync on, and removes it afterwards.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

START_TIMEOUT_SECONDS = 60.0
TEST_DATABASE = "atlas_test"


def find_bindir() -> Path | None:
    """Debian keeps the server programs out of PATH, in /usr/lib/postgresql/<major>/bin."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """A running cluster in its own directory; `url` names its test database."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="atlas-pg-"))
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.port = _free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/{TEST_DATABASE}"

    def _run(self, *args: str) -> None:
        proc = subprocess.run([*self.as_user, *args], capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr}{proc.stdout}\n{log}"
            )

    def start(self) -> None:
        self._run(
            str(self.bindir / "initdb"),
            "-D", str(self.data),
            "-U", "postgres",
            "--auth=trust",  # only 127.0.0.1 and a socket in a private directory
            "--locale=C.UTF-8",
            "--encoding=UTF8",
            # initdb's own final flush of its files only (seconds on a loaded disk): a throwaway
            # cluster does not need its template to survive power loss. The server runs fsync=on.
            "--no-sync",
        )  # fmt: skip
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} -c fsync=on -c max_connections=200"
        )
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options, "-w",
                  "-t", str(int(START_TIMEOUT_SECONDS)), "start")  # fmt: skip
        self._run(str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                  TEST_DATABASE)  # fmt: skip

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


# Every table the migrations create except the schema version, the counters last (deleting items
# and contents adds counter rows). DELETE, not TRUNCATE: on tables this small it is several times
# faster (TRUNCATE makes new files and syncs them at commit).
TABLES = (
    "items", "attempts", "contents", "completions", "kv", "api_keys", "fetch_validators", "feeds",
    "feed_entries", "rss_samples", "stats_items", "stats_dlq", "stats_contents", "stats_completions",
    "deliveries", "notifications", "cooldowns", "threads",  # the router's outbox (0004)
)  # fmt: skip


def wipe(store: Any) -> None:
    """Empty every Atlas table of a PostgresStore's database, in one transaction."""
    with store.db.transaction() as conn:
        for table in TABLES:
            conn.execute(f"DELETE FROM {table}")
        # Sequences too: ids that tests compare (attempt order, content seq) start afresh.
        conn.execute(RESTART_SEQUENCES)


@contextmanager
def scratch_database(server_url: str, prefix: str) -> Iterator[str]:
    """A new, empty database on the server of `server_url` (for a test that must not share the
    session's database: a restore drops every table, a migration test needs no schema); yields
    its URL and drops it afterwards, whatever sessions are still open on it."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield server_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def migrated_and_empty(url: str) -> str:
    """Migrate the database at `url` to this Atlas's schema and empty it; returns `url`."""
    from atlas.store.postgres import PostgresStore

    pg = PostgresStore(url, pool_size=1)
    try:
        wipe(pg)
    finally:
        pg.close()
    return url


RESTART_SEQUENCES = """
DO $$
DECLARE s record;
BEGIN
    FOR s IN SELECT sequence_name FROM information_schema.sequences
             WHERE sequence_schema = current_schema() LOOP
        EXECUTE format('ALTER SEQUENCE %I RESTART', s.sequence_name);
    END LOOP;
END $$
"""


def wait_until_ready(url: str) -> None:
    import psycopg

    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        try:
            psycopg.connect(url, connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)

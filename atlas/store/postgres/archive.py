"""PostgreSQL backups: the DatabaseArchive protocol over pg_dump / pg_restore (custom format).

The archive's database member is a `pg_dump --format=custom` file of the whole Atlas schema:
- copy_live: pg_dump with the snapshot of a REPEATABLE READ transaction this module holds open
  (pg_export_snapshot), so the manifest's item counts are read from exactly the data dumped;
- integrity_problems: `pg_restore --list` reads the archive's table of contents (a damaged or
  foreign file fails) and it must hold the Atlas tables;
- schema_version: the atlas_schema rows, read from the dump by `pg_restore --data-only`;
- install: `pg_restore --clean --if-exists --single-transaction` into the configured database
  (all or nothing), then the kv rows a restore sets on the staged copy (maintenance, last backup).
Programs come from the server's major version (/usr/lib/postgresql/<major>/bin on Debian): a
pg_dump older than the server refuses to dump it. The password, if the URL has one, is passed in
PGPASSWORD, never in argv or in messages.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from atlas.errors import StoreError
from atlas.fsutil import fsync_path
from atlas.store.postgres.connection import SESSION_NAME, migrations, redact, session_host

MEMBER = "atlas.pgdump"
TOOL_TIMEOUT_SECONDS = 3600.0
# Tables every Atlas dump holds (0001_init.sql); a dump without them is not an Atlas database.
REQUIRED_TABLES = ("atlas_schema", "items", "contents", "kv")
_KV_UPSERT = (
    "INSERT INTO kv (key, value, updated_at) VALUES (%s, %s, %s)"
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at"
)


def _tool(name: str, major: int | None) -> str:
    """The path of `name` (pg_dump, pg_restore) for server major `major`, else the newest
    installed (a newer pg_dump reads older servers; pg_restore reads older archives)."""
    if major is not None and os.access(f"/usr/lib/postgresql/{major}/bin/{name}", os.X_OK):
        return f"/usr/lib/postgresql/{major}/bin/{name}"
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(Path(p).parts[4]))
    path = found[-1] if found else shutil.which(name)
    if path is None:
        raise StoreError(f"{name} is not installed (Debian package postgresql-client)")
    return path


class PgArchive:
    """Backups of the database at `url`; files beside the live database go in `local_dir`."""

    backend = "postgresql"
    member = MEMBER
    check_name = "pg_restore --list (table of contents readable, Atlas tables present)"

    def __init__(self, url: str | None, local_dir: Path | None) -> None:
        self._url = url
        self._dir = local_dir
        self._facts: dict[Path, tuple[int, dict[str, int], int]] = {}
        self._kv: dict[Path, dict[str, tuple[str, float]]] = {}

    # -- connection details, without the password in argv -----------------------------------------

    @property
    def url(self) -> str:
        if self._url is None:
            raise StoreError("no database given: this archive reader only reads backup files")
        return self._url

    def _dbname_and_env(self) -> tuple[str, dict[str, str]]:
        params = conninfo_to_dict(self.url)
        password = params.pop("password", None)
        env = dict(os.environ)
        if password is not None:
            env["PGPASSWORD"] = str(password)
        return make_conninfo(**{k: str(v) for k, v in params.items() if v is not None}), env

    def _connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        try:
            return psycopg.connect(self.url, autocommit=True)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to {redact(self.url)}: {exc}") from exc

    def _major(self) -> int:
        with self._connect() as conn:
            return int(conn.info.server_version) // 10000

    def _run(self, args: list[str], env: dict[str, str] | None = None) -> str:
        try:
            proc = subprocess.run(
                args, capture_output=True, text=True, env=env, timeout=TOOL_TIMEOUT_SECONDS, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise StoreError(f"{Path(args[0]).name} failed: {exc}") from exc
        if proc.returncode != 0:
            tail = proc.stderr.strip()[-2000:]
            raise StoreError(f"{Path(args[0]).name} failed ({proc.returncode}): {tail}")
        return proc.stdout

    # -- the live database ----------------------------------------------------------------------

    def foreign_sessions(self, local_pids: set[int]) -> list[str]:
        """Atlas processes with a session on the database that a restore from here cannot stop:
        on another host, or on this one but not among `local_pids`. Exporters only read (a
        restore on SQLite lets them be too); sessions of other programs (psql) are not Atlas's."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT application_name FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND application_name LIKE 'atlas pid=%%'"
            ).fetchall()
        found = set()
        for (name,) in rows:
            match = SESSION_NAME.match(name)
            if match is None or match[3].endswith("exporter"):
                continue
            pid, host, cmd = int(match[1]), match[2], match[3]
            if host == session_host() and pid in local_pids:
                continue
            found.add(f"{cmd} (pid {pid} on {host})")
        return sorted(found)

    def exists(self) -> bool:
        with self._connect() as conn:
            row = conn.execute("SELECT to_regclass('atlas_schema') IS NOT NULL").fetchone()
        return bool(row and row[0])

    def beside_live(self, template: str) -> Path:
        if self._dir is None:
            raise StoreError("no local directory given for PostgreSQL backup files")
        self._dir.mkdir(parents=True, exist_ok=True)
        return self._dir / template.format(name=MEMBER)

    def latest_schema_version(self) -> int:
        return max(version for version, _, _ in migrations())

    def copy_live(self, dest: Path) -> None:
        dest.unlink(missing_ok=True)
        dbname, env = self._dbname_and_env()
        with self._connect() as conn:
            pg_dump = _tool("pg_dump", int(conn.info.server_version) // 10000)
            # The snapshot lives while this transaction is open: the counts and the dump see the
            # same commits.
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                row = conn.execute("SELECT pg_export_snapshot()").fetchone()
                assert row is not None
                snapshot = str(row[0])
                version_row = conn.execute("SELECT coalesce(max(version), 0) FROM atlas_schema").fetchone()
                by_state = conn.execute("SELECT state, count(*) FROM items GROUP BY state")
                items = {str(state): int(n) for state, n in by_state}
                contents_row = conn.execute("SELECT count(*) FROM contents").fetchone()
                self._run(
                    [pg_dump, "--format=custom", "--no-owner", "--no-privileges", f"--snapshot={snapshot}",
                     f"--file={dest}", f"--dbname={dbname}"],
                    env,
                )  # fmt: skip
        fsync_path(dest)
        self._facts[dest] = (
            int(version_row[0]) if version_row else 0,
            items,
            int(contents_row[0]) if contents_row else 0,
        )

    def checkpoint_live(self) -> None:
        """Nothing to do: the server's own checkpoints keep its WAL, and a dump reads the server."""

    def get_kv(self, path: Path, key: str) -> str | None:
        if path != self.beside_live("{name}"):
            raise StoreError(f"{path}: a dump's kv rows are read after it is restored")
        with self._connect() as conn:
            row = conn.execute("SELECT value FROM kv WHERE key = %s", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_kv(self, path: Path, key: str, value: str, now: float) -> None:
        """Remembered for `install(path)`, which writes it right after restoring the dump."""
        self._kv.setdefault(path, {})[key] = (value, now)

    def install(self, staged: Path) -> Path:
        """Restore the dump `staged` over the configured database, in one transaction: the
        dump's objects are dropped and recreated; what it does not hold is left alone."""
        dbname, env = self._dbname_and_env()
        pg_restore = _tool("pg_restore", self._major())
        # Extensions are the server's business (amcheck, say, needs a superuser): restore only
        # the schema's own objects, by the archive's table of contents without EXTENSION entries.
        toc = self._run([pg_restore, "--list", str(staged)])
        use_list = staged.with_name(staged.name + ".list")
        use_list.write_text("\n".join(line for line in toc.splitlines() if " EXTENSION " not in line) + "\n")
        try:
            self._run(
                [pg_restore, "--clean", "--if-exists", "--single-transaction", "--exit-on-error",
                 "--no-owner", "--no-privileges", f"--use-list={use_list}", f"--dbname={dbname}",
                 str(staged)],
                env,
            )  # fmt: skip
        finally:
            use_list.unlink(missing_ok=True)
        pending = self._kv.pop(staged, {})
        if pending:
            with self._connect() as conn, conn.transaction():
                for key, (value, now) in pending.items():
                    conn.execute(_KV_UPSERT, (key, value, now))
        return self.beside_live("{name}")

    # -- dump files -----------------------------------------------------------------------------

    def integrity_problems(self, path: Path) -> list[str]:
        try:
            toc = self._run([_tool("pg_restore", None), "--list", str(path)])
        except StoreError as exc:
            return [str(exc)]
        tables = set(re.findall(r" TABLE DATA \S+ (\S+) ", toc))
        missing = [t for t in REQUIRED_TABLES if t not in tables]
        return [f"the dump holds no table {t}: not an Atlas database" for t in missing]

    def facts(self, path: Path) -> tuple[int, dict[str, int], int]:
        """Read in the dump's own snapshot by copy_live (counting a dump's rows would mean
        restoring it)."""
        if path not in self._facts:
            raise StoreError(f"{path}: facts are known only of a dump this process made")
        return self._facts[path]

    def schema_version(self, path: Path) -> int:
        out = self._run(
            [_tool("pg_restore", None), "--data-only", "--table=atlas_schema", "--file=-", str(path)]
        )
        versions, copying = [], False
        for line in out.splitlines():
            if line.startswith("COPY ") and "atlas_schema" in line:
                copying = True
            elif copying and line == "\\.":
                copying = False
            elif copying and line:
                versions.append(int(line.split("\t", 1)[0]))
        if not versions:
            raise StoreError(f"{path}: the dump holds no schema version (atlas_schema is empty)")
        return max(versions)

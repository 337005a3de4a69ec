"""Shared fixtures: a fresh SQLite store per test, settings pointing at tmp_path, and the rule for
tests that need an external program: skip loudly on a developer's machine, fail in CI."""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from atlas.settings import Settings
from atlas.store.sqlite import SQLiteStore

ROOT = Path(__file__).resolve().parent.parent


def require_program(name: str, package: str) -> str:
    """Path of `name`; without it skip with a loud reason, or fail when ATLAS_REQUIRE_INTEGRATION=1."""
    path = shutil.which(name)
    if path is None:
        skip_or_fail(f"{name} is not installed (Debian package {package!r}): INTEGRATION TEST NOT RUN")
    assert path is not None
    return path


def skip_or_fail(reason: str) -> None:
    """Skip loudly, or fail when ATLAS_REQUIRE_INTEGRATION=1 (CI), for a missing external part."""
    if os.environ.get("ATLAS_REQUIRE_INTEGRATION") == "1":
        pytest.fail(f"{reason}, and ATLAS_REQUIRE_INTEGRATION=1 requires it")
    print(f"\n*** SKIPPED: {reason} ***", file=sys.stderr)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL database for the tests: ATLAS_TEST_POSTGRES_URL (wiped by the tests!), or a
    throwaway cluster this session starts from Debian's binaries and removes afterwards."""
    from tests.helpers import postgres

    url = os.environ.get("ATLAS_TEST_POSTGRES_URL")
    if url:
        postgres.wait_until_ready(url)
        yield url
        return
    bindir = postgres.find_bindir()
    if bindir is None:
        skip_or_fail(
            "PostgreSQL is not installed (Debian package 'postgresql') and ATLAS_TEST_POSTGRES_URL is"
            " unset: POSTGRESQL TESTS NOT RUN"
        )
    assert bindir is not None
    cluster = postgres.Cluster(bindir)
    try:
        cluster.start()
        yield cluster.url
    finally:
        cluster.stop()


@pytest.fixture
def store_clock() -> Callable[[], float]:
    """The clock `any_store` stores run on; a test module overrides it with a fake one."""
    return time.time


StoreFactory = Callable[[], Any]


@pytest.fixture(params=["sqlite", "postgres"])
def store_factory(
    request: pytest.FixtureRequest, tmp_path: Path, store_clock: Callable[[], float]
) -> Iterator[StoreFactory]:
    """Makes empty stores of one backend (the test runs once per backend); all closed afterwards.

    PostgreSQL stores share the session's database, emptied for each new store.
    """
    made: list[Any] = []
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
        from atlas.store.postgres import PostgresStore
        from tests.helpers.postgres import wipe

        def make() -> Any:
            made.append(PostgresStore(url, pool_size=4, clock=store_clock))
            wipe(made[-1])
            return made[-1]
    else:

        def make() -> Any:
            made.append(
                SQLiteStore(tmp_path / f"atlas{len(made)}.db", synchronous="NORMAL", clock=store_clock)
            )
            return made[-1]

    yield make
    for s in made:
        s.close()


@pytest.fixture
def pg(postgres_url: str) -> Iterator[Any]:
    """A PostgresStore on the session's database, every table emptied (4 pooled connections)."""
    from atlas.store.postgres import PostgresStore
    from tests.helpers.postgres import wipe

    store = PostgresStore(postgres_url, pool_size=4)
    wipe(store)
    yield store
    store.close()


@pytest.fixture(params=["sqlite", "postgres"])
def any_outbox(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """An empty router outbox, once on SQLite (its own file) and once in the session's PostgreSQL
    database (migrated, then emptied)."""
    if request.param == "postgres":
        from atlas.store.postgres.outbox import PgOutbox
        from tests.helpers.postgres import migrated_and_empty

        url = migrated_and_empty(request.getfixturevalue("postgres_url"))
        box: Any = PgOutbox(url, pool_size=2, lease_owner=f"test:{tmp_path}")
    else:
        from atlas.store.sqlite_outbox import SQLiteOutbox

        box = SQLiteOutbox(tmp_path / "alert-router.db", synchronous="NORMAL")
    yield box
    box.close()


@pytest.fixture
def any_store(store_factory: StoreFactory) -> Any:
    """A fresh store, once on SQLite and once on PostgreSQL: the same test proves both backends."""
    return store_factory()


# The database the `settings` fixture (and so every stack built from it: running_api, processes)
# points at. ATLAS_TEST_SETTINGS_BACKEND=postgres puts every such test on the session's PostgreSQL
# database; a module marked `both_backends` runs each of its tests once per backend (issue 17).
SETTINGS_BACKEND = os.environ.get("ATLAS_TEST_SETTINGS_BACKEND", "sqlite")
BACKENDS = ("sqlite", "postgres")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`pytestmark = pytest.mark.both_backends`: every test of the module that builds on the
    `settings` fixture runs on SQLite and on PostgreSQL (the ids say which)."""
    marked = metafunc.definition.get_closest_marker("both_backends") is not None
    if marked and "settings_backend" in metafunc.fixturenames:
        metafunc.parametrize("settings_backend", BACKENDS)


@pytest.fixture
def settings_backend() -> str:
    """sqlite or postgres: the `settings` fixture's database (parametrised by `both_backends`)."""
    return SETTINGS_BACKEND


@pytest.fixture
def settings(request: pytest.FixtureRequest, tmp_path: Path, settings_backend: str) -> Settings:
    """Settings on tmp_path; on PostgreSQL pointing at the session's database, emptied first."""
    base = Settings(data_dir=tmp_path, core_metrics_port=0, db_synchronous="NORMAL")
    if settings_backend != "postgres":
        return base
    from tests.helpers.postgres import migrated_and_empty

    url = migrated_and_empty(request.getfixturevalue("postgres_url"))
    return base.replace(database_url=url, db_pool_size=4)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "atlas.db", synchronous="NORMAL")
    yield s
    s.close()


def atlas_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """Environment for an `atlas` subprocess on `data_dir` with no fixed ports."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("ATLAS_") or k == "ATLAS_REQUIRE_INTEGRATION"
    }
    env.update(
        ATLAS_DATA_DIR=str(data_dir),
        ATLAS_CORE_METRICS_PORT="0",
        ATLAS_EXPORTER_PORT="0",
        ATLAS_ROUTER_PORT="0",
        ATLAS_DB_SYNCHRONOUS="NORMAL",
        PYTHONPATH=str(ROOT),
    )
    env.update(extra)
    return env


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The failure drills' table (tests/e2e/test_drills.py), whether output was captured or not."""
    rows = [
        value
        for reports in terminalreporter.stats.values()
        for report in reports
        if getattr(report, "when", None) == "teardown"
        for key, value in getattr(report, "user_properties", ())
        if key == "drill"
    ]
    if rows:
        terminalreporter.write_line("\n| failure mode | alert | seconds to firing | seconds to resolved |")
        terminalreporter.write_line("|---|---|---|---|")
        for row in rows:
            terminalreporter.write_line(str(row))

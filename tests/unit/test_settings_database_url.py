"""ATLAS_DATABASE_URL names SQLite or PostgreSQL (issue 17); ATLAS_DB_POOL_SIZE sizes the pool."""

from __future__ import annotations

from pathlib import Path

import pytest

from atlas.config.loader import load_settings
from atlas.errors import ConfigError


def env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"ATLAS_CONFIG_DIR": str(tmp_path), **extra}


@pytest.mark.parametrize("url", ["postgresql://atlas@db.internal:5432/atlas", "postgres://db/atlas"])
def test_a_postgresql_url_is_accepted_and_names_the_backend(tmp_path: Path, url: str) -> None:
    s = load_settings(env(tmp_path, ATLAS_DATABASE_URL=url, ATLAS_DB_POOL_SIZE="25"))
    assert (s.database_backend, s.database_url, s.db_pool_size) == ("postgresql", url, 25)


def test_sqlite_stays_the_default_backend(tmp_path: Path) -> None:
    s = load_settings(env(tmp_path, ATLAS_DATA_DIR="/tmp/x"))
    assert (s.database_backend, str(s.sqlite_path), s.db_pool_size) == ("sqlite", "/tmp/x/atlas.db", 10)


def test_code_that_needs_sqlite_says_so_on_a_postgresql_url(tmp_path: Path) -> None:
    s = load_settings(env(tmp_path, ATLAS_DATABASE_URL="postgresql://db/atlas"))
    with pytest.raises(ConfigError, match="needs SQLite"):
        s.sqlite_path  # noqa: B018


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {"ATLAS_DATABASE_URL": "postgresql://"},
            "ATLAS_DATABASE_URL: no host or database in 'postgresql://'",
        ),
        ({"ATLAS_DB_POOL_SIZE": "0"}, "ATLAS_DB_POOL_SIZE"),
    ],
)
def test_bad_database_settings_name_the_variable(tmp_path: Path, extra: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(env(tmp_path, **extra))

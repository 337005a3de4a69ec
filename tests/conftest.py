"""Shared fixtures: a fresh SQLite store per test, settings pointing at tmp_path, and the rule for
tests that need an external program: skip loudly on a developer's machine, fail in CI."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from atlas.settings import Settings
from atlas.store import SQLiteStore

ROOT = Path(__file__).resolve().parent.parent


def require_program(name: str, package: str) -> str:
    """Path of `name`; without it skip with a loud reason, or fail when ATLAS_REQUIRE_INTEGRATION=1."""
    path = shutil.which(name)
    if path is None:
        reason = f"{name} is not installed (Debian package {package!r}): INTEGRATION TEST NOT RUN"
        if os.environ.get("ATLAS_REQUIRE_INTEGRATION") == "1":
            pytest.fail(f"{reason}, and ATLAS_REQUIRE_INTEGRATION=1 requires it")
        print(f"\n*** SKIPPED: {reason} ***", file=sys.stderr)
        pytest.skip(reason)
    return path


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, core_metrics_port=0, db_synchronous="NORMAL")


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

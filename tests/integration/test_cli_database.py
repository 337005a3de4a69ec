"""atlas-ops never creates or migrates a database behind the operator's back: only `atlas up|core|api`
and `atlas-ops database migrate` do. Real files: a missing path stays missing, an old schema stays
old, and both exit 2 naming the path and what to do."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from atlas.cli.ops import ops
from atlas.store.sqlite import SQLiteStore, _split_sql, migrations

LATEST = migrations()[-1][0]

# Every atlas-ops command that opens the database, read and write alike.
COMMANDS = [
    ["queue"],
    ["items", "get", "0123"],
    ["items", "add"],
    ["dlq", "list"],
    ["dlq", "groups"],
    ["dlq", "replay", "--dry-run"],
    ["dlq", "replay"],
    ["dlq", "purge"],
    ["dlq", "retention"],
    ["apikey", "list"],
    ["apikey", "create", "--name", "n", "--scope", "read"],
    ["apikey", "revoke", "k"],
    ["maintenance", "mode", "--status"],
    ["feeds", "list"],
    ["feeds", "poll", "0123"],
    ["database", "optimize"],
    ["database", "vacuum"],
    ["monitoring", "status"],
    ["monitoring", "analyze", "--memory"],
    ["system", "check", "--database"],
]

# Commands that open no database, or check for it themselves with their own verdict (each tested in
# its own file): services and logs, the archive commands (`restore` into an empty data dir is how
# a machine is rebuilt; `create` refuses a missing database itself), the health report.
OWN_RULES = {
    "alerts compile",  # reads config files only
    "alerts outbox list",  # the alert router's own outbox (DATA_DIR/alert-router.db)
    "alerts outbox purge",
    "alerts outbox retry",
    "backup create",
    "backup list",
    "backup restore",
    "backup schedule",
    "backup verify",
    # The deployment manager works on releases under the install prefix and on running services;
    # a deploy's backup and health gate are `backup create` and `system check --health` above.
    "deploy prepare",
    "deployment status",
    "rollback",
    "version list",
    "install",  # opens no database: lays out a host (atlas/ops/install.py)
    "logs",
    "monitoring metrics",  # scrapes /metrics endpoints; opens no database
    "service restart",
    "service start",
    "service status",
    "service stop",
    "system check",  # --health: its own verdict (a missing database is an unhealthy component);
    # --database follows the rule and is in COMMANDS
    # Never the configured database: a throwaway stack in a temporary directory (or --target's API).
    "test failover",
    "test load",
}


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)  # no ./config/development.env: defaults and the variables below
    monkeypatch.setenv("ATLAS_DB_SYNCHRONOUS", "NORMAL")
    return CliRunner()


def test_every_command_that_opens_the_database_is_listed_here() -> None:
    import click

    def leaves(group: click.Group, prefix: list[str]) -> set[str]:
        out: set[str] = set()
        for name, cmd in group.commands.items():
            if isinstance(cmd, click.Group):
                out |= leaves(cmd, [*prefix, name])
            else:
                out.add(" ".join([*prefix, name]))
        return out

    listed = {" ".join(c[:2]) if c[0] != "queue" else "queue" for c in COMMANDS}
    # dashboards build|render read config/ and Prometheus, never the database.
    opening = {c for c in leaves(ops, []) if not c.startswith(("config", "database migrate", "dashboards"))}
    assert opening - OWN_RULES == listed - OWN_RULES and listed <= opening


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_a_missing_database_is_an_error_naming_the_path_and_is_not_created(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    data_dir = tmp_path / "mistyped"
    monkeypatch.setenv("ATLAS_DATA_DIR", str(data_dir))
    result = runner.invoke(ops, args, input="a document")
    assert result.exit_code == 2, result.output
    assert f"error: no database at {data_dir / 'atlas.db'}: check ATLAS_DATA_DIR" in result.output
    assert not data_dir.exists()  # neither the file nor its directory


def _old_database(path: Path, version: int) -> None:
    """A real database as an older Atlas left it: the shipped migrations up to `version`."""
    conn = sqlite3.connect(path, isolation_level=None)
    for number, _, sql in migrations():
        if number <= version:
            for statement in _split_sql(sql):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
    conn.close()


def _version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_an_old_schema_is_an_error_pointing_at_database_migrate_and_is_left_alone(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    monkeypatch.setenv("ATLAS_DATA_DIR", str(tmp_path))
    db = tmp_path / "atlas.db"
    _old_database(db, LATEST - 2)
    result = runner.invoke(ops, args, input="a document")
    assert result.exit_code == 2, result.output
    assert (
        f"error: the database at {db} is at schema version {LATEST - 2}, this Atlas uses {LATEST}: "
        "run `atlas-ops database migrate`"
    ) in result.output
    assert _version(db) == LATEST - 2


def test_database_migrate_creates_or_migrates_and_then_commands_work(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATLAS_DATA_DIR", str(tmp_path / "old"))
    (tmp_path / "old").mkdir()
    _old_database(tmp_path / "old" / "atlas.db", 1)
    migrated = runner.invoke(ops, ["database", "migrate", "--format", "json"])
    assert migrated.exit_code == 0, migrated.output
    assert json.loads(migrated.output) == {
        "path": str(tmp_path / "old" / "atlas.db"),
        "created": False,
        "migrations_applied": LATEST - 1,
        "schema_version": LATEST,
    }
    assert runner.invoke(ops, ["queue", "--format", "json"]).output.strip() == "[]"

    monkeypatch.setenv("ATLAS_DATA_DIR", str(tmp_path / "new"))
    created = runner.invoke(ops, ["database", "migrate", "--format", "json"])
    assert json.loads(created.output)["created"] is True
    assert _version(tmp_path / "new" / "atlas.db") == LATEST
    again = json.loads(runner.invoke(ops, ["database", "migrate", "--format", "json"]).output)
    assert (again["created"], again["migrations_applied"]) == (False, 0)


def test_a_newer_schema_is_refused_too(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATLAS_DATA_DIR", str(tmp_path))
    SQLiteStore(tmp_path / "atlas.db").close()
    conn = sqlite3.connect(tmp_path / "atlas.db")
    conn.execute(f"PRAGMA user_version = {LATEST + 1}")
    conn.close()
    result = runner.invoke(ops, ["queue"])
    assert result.exit_code == 2 and "this Atlas uses" in result.output and "upgrade Atlas" in result.output

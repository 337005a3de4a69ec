"""`atlas-ops maintenance mode`, `system check --health|--database`, `database optimize|vacuum`."""

from __future__ import annotations

import sys
from typing import Any

import click

from atlas.cli.common import clean_errors, emit, format_option, settings_or_exit
from atlas.cli.database import database
from atlas.cli.ops_service import atlas_has_command, backend_option
from atlas.ops.checks import EXIT_CODES, health_report
from atlas.ops.dbcheck import EXIT_CODES as DB_EXIT_CODES
from atlas.ops.dbcheck import database_report
from atlas.ops.maintenance import get_mode, set_mode
from atlas.ops.services import pick_manager
from atlas.settings import Settings
from atlas.store import open_store
from atlas.store.protocols import AtlasStore


def existing_store(settings: Settings) -> AtlasStore:
    """The store as it is: a missing database or an older schema is an error (DatabaseNotReady,
    exit 2), never a fresh empty installation or a migration (`atlas-ops database migrate` does that)."""
    return open_store(settings, migrate=False)


@click.group()
def maintenance() -> None:
    """Maintenance mode: writes get 503, engines stop claiming, /health/ready fails."""


@maintenance.command("mode")
@click.option("--enable", "action", flag_value="enable", help="Turn maintenance on.")
@click.option("--disable", "action", flag_value="disable", help="Turn maintenance off.")
@click.option("--status", "action", flag_value="status", default=True, help="Show it (the default).")
@click.option("--reason", default=None, help="Why (recorded, shown by the API and health checks).")
@click.option("--by", default=None, help="Who [default: user@host].")
@format_option
@clean_errors
def mode(action: str, reason: str | None, by: str | None, fmt: str) -> None:
    """Turn maintenance mode on or off, or show it with who set it, when and why.

    Every Atlas process sees a change within about two seconds.
    """
    store = existing_store(settings_or_exit())
    try:
        if action == "status":
            state = get_mode(store)
        else:
            state = set_mode(store, action == "enable", reason=reason, by=by)
    finally:
        store.close()
    emit(fmt, state)


@click.group()
def system() -> None:
    """Checks of the whole installation."""


@system.command("check")
@click.option(
    "--health", "what", flag_value="health", default=True, help="Health of every component (the default)."
)
@click.option(
    "--database",
    "what",
    flag_value="database",
    help="Integrity, WAL size, free pages, the hot queries' plans (full table scans flagged), the"
    " slowest queries of the running API and engine.",
)
@backend_option
@format_option
@clean_errors
def check(what: str, backend: str | None, fmt: str) -> None:
    """--health: database, engine heartbeat, backlog, maintenance, disk, memory and services.
    --database: PRAGMA integrity_check, WAL size, free pages, EXPLAIN QUERY PLAN of the claim,
    enqueue idempotency lookup, search and DLQ listing queries; the slowest named queries (p99 and
    mean of atlas_db_query_duration_seconds, top 10) scraped from the API and engine /metrics on
    this machine (information only, not part of the verdict; says so when nothing is running).

    \b
    Exit codes (as monitoring plugins read them):
    --health    0 healthy, 1 degraded, 2 unhealthy
    --database  0 ok, 1 warning (big WAL, many free pages, a full table scan), 2 failure (integrity
                check findings, or no database / an old schema: nothing is created or migrated)
    """
    settings = settings_or_exit()
    if what == "database":
        _database_check(settings, fmt)
        return
    manager = pick_manager(settings, backend or settings.service_backend, installed=atlas_has_command)
    report = health_report(settings, manager)
    if fmt == "json":
        emit(fmt, report)
    else:
        emit(fmt, report["components"], ["name", "status", "value", "threshold", "message"])
        click.echo(f"overall: {report['status']}")
    sys.exit(EXIT_CODES[report["status"]])


def _database_check(settings: Settings, fmt: str) -> None:
    report = database_report(settings)
    if fmt == "json":
        emit(fmt, report)
    else:
        emit(fmt, report["checks"], ["name", "status", "value", "message"])
        slow = report["slow_queries"]
        click.echo(f"slowest queries: {slow['message']}")
        if slow["queries"]:
            rows = [
                {
                    "query": q["query"],
                    "p99_ms": f"{q['p99_seconds'] * 1000:.3f}",
                    "mean_ms": f"{q['mean_seconds'] * 1000:.3f}",
                    "count": q["count"],
                    "from": ",".join(q["jobs"]),
                }
                for q in slow["queries"]
            ]
            emit(fmt, rows, ["query", "p99_ms", "mean_ms", "count", "from"])
        click.echo(f"overall: {report['status']}")
    sys.exit(DB_EXIT_CODES[report["status"]])


@database.command("optimize")
@format_option
@clean_errors
def optimize_cmd(fmt: str) -> None:
    """Fresh planner statistics (safe while Atlas runs): SQLite: PRAGMA optimize, ANALYZE and a
    TRUNCATE WAL checkpoint; PostgreSQL: ANALYZE of Atlas's tables."""
    settings = settings_or_exit()
    store = existing_store(settings)  # a missing database or an older schema: exit 2, nothing created
    try:
        result = store.optimize()
    finally:
        store.close()
    emit(fmt, result)


@database.command("vacuum")
@format_option
@clean_errors
def vacuum_cmd(fmt: str) -> None:
    """Give free space back; reports bytes reclaimed.

    SQLite rebuilds the file: refused (exit 1) unless twice the database's size is free with the
    disk low-water mark (ATLAS_DISK_LOW_WATER_BYTES) to spare, and writers wait for it: run it in
    a quiet hour or in maintenance mode. PostgreSQL runs VACUUM (ANALYZE) on Atlas's tables:
    writers go on, dead rows' space becomes reusable, trailing empty pages go back to the disk.
    """
    settings = settings_or_exit()
    store = existing_store(settings)  # a missing database or an older schema: exit 2, nothing created
    try:
        result: dict[str, Any] = store.vacuum(reserve_bytes=settings.disk_low_water_bytes)
    finally:
        store.close()
    emit(fmt, result)

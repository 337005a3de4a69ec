"""`atlas-ops`: operate Atlas (queue, dead-letter queue; more groups arrive with their issues).

Every command here opens the database without creating or migrating it (`migrate=False`): a
missing database (a mistyped ATLAS_DATA_DIR) or an older schema exits 2 naming the path; only
`atlas up|core|api` and `atlas-ops database migrate` create or migrate.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from atlas import __version__
from atlas.api.keys import SCOPES, create_key, pepper_labeller
from atlas.cli.alerts import alerts
from atlas.cli.common import clean_errors, document_exit_codes, emit, format_option, settings_or_exit, when
from atlas.cli.config import config
from atlas.cli.dashboards import dashboards
from atlas.cli.database import database
from atlas.cli.ops_backup import backup
from atlas.cli.ops_deploy import deploy, deployment, rollback, version
from atlas.cli.ops_install import install
from atlas.cli.ops_logs import logs
from atlas.cli.ops_maint import maintenance, system
from atlas.cli.ops_monitor import monitoring
from atlas.cli.ops_service import service
from atlas.cli.ops_test import test_group
from atlas.cli.outbox import outbox
from atlas.engine.items import parse_item, with_request_hash
from atlas.errors import ItemError
from atlas.store import open_store
from atlas.store.models import DEAD_REASONS, ITEM_KINDS, MAINTENANCE_KEY, DLQFilter, Item


@click.group()
@click.version_option(__version__, prog_name="atlas-ops")
def ops() -> None:
    """Operate Atlas."""


ops.add_command(config)
ops.add_command(service)
ops.add_command(backup)
ops.add_command(monitoring)
ops.add_command(maintenance)
ops.add_command(system)
ops.add_command(database)
ops.add_command(logs)
ops.add_command(alerts)
alerts.add_command(outbox)
ops.add_command(test_group)
ops.add_command(install)
ops.add_command(dashboards)
ops.add_command(deploy)
ops.add_command(rollback)
ops.add_command(deployment)
ops.add_command(version)


# -- items ---------------------------------------------------------------------------------------


@ops.group()
def items() -> None:
    """Add and inspect items."""


@items.command("add")
@click.option(
    "--file",
    "path",
    type=click.File("r", encoding="utf-8"),
    default="-",
    help="Document content (default: stdin).",
)
@click.option("--content-type", default="text/plain", show_default=True)
@click.option("--source", default=None)
@click.option("--idempotency-key", default=None)
@format_option
@clean_errors
def items_add(
    path: Any, content_type: str, source: str | None, idempotency_key: str | None, fmt: str
) -> None:
    """Enqueue one document.

    With --idempotency-key, a repeat of the same request answers the first item (created false,
    its current state); the key with other content or options is refused (exit 2), as the API
    answers 409, and nothing is added.
    """
    # The request as an API client would send it (no null fields), so both doors fingerprint it alike.
    request = {
        k: v
        for k, v in {
            "content": path.read(),
            "content_type": content_type,
            "source": source,
            "idempotency_key": idempotency_key,
        }.items()
        if v is not None
    }
    item = with_request_hash(parse_item(request), request)
    store = open_store(settings_or_exit(), migrate=False)
    # Maintenance refuses writes from every door, as the API does with its 503.
    maintenance = json.loads(store.kv_get(MAINTENANCE_KEY) or "{}")
    if maintenance.get("enabled"):
        click.echo(
            f"error: maintenance mode is on ({maintenance.get('reason') or 'no reason given'}): "
            "items are refused until it is turned off "
            "(atlas-ops maintenance mode --disable)",
            err=True,
        )
        sys.exit(1)
    result = store.enqueue([item])[0]
    state = "queued"
    if not result.created:
        if result.request_hash != item.request_hash:
            raise ItemError(
                f"--idempotency-key {idempotency_key!r} was used with a different request "
                f"(item {result.id}); nothing was added"
            )
        current = store.get_item(result.id)
        state = current.state if current else state
    emit(fmt, {"id": result.id, "created": result.created, "state": state})


@items.command("get")
@click.argument("item_id")
@clean_errors
def items_get(item_id: str) -> None:
    """Show one item with its attempt history (JSON)."""
    store = open_store(settings_or_exit(), migrate=False)
    item = store.get_item(item_id)
    if item is None:
        click.echo(f"error: no item {item_id!r}", err=True)
        sys.exit(1)
    data = _item_dict(item)
    data["history"] = [vars(a) for a in store.item_attempts(item_id)]
    click.echo(json.dumps(data, indent=2, default=str))


@ops.command("queue")
@format_option
@clean_errors
def queue_status(fmt: str) -> None:
    """Items by state and kind."""
    counts = open_store(settings_or_exit(), migrate=False).counts()
    emit(fmt, [{"state": s, "kind": k, "count": n} for (s, k), n in sorted(counts.items())])


# -- dead-letter queue ---------------------------------------------------------------------------


def _filters(fn: Any) -> Any:
    for opt in reversed(
        [
            click.option("--id", "ids", multiple=True, help="Item id (repeatable)."),
            click.option("--stage"),
            click.option("--error-class"),
            click.option("--host"),
            click.option("--kind", type=click.Choice(ITEM_KINDS)),
            click.option("--source"),
            click.option("--reason", type=click.Choice(DEAD_REASONS), help="Why the item is dead."),
            click.option("--older-than-days", type=float, default=None),
        ]
    ):
        fn = opt(fn)
    return fn


def _flt(
    ids: tuple[str, ...],
    stage: str | None,
    error_class: str | None,
    host: str | None,
    kind: str | None,
    source: str | None,
    reason: str | None,
    older_than_days: float | None,
) -> DLQFilter:
    before = time.time() - older_than_days * 86400 if older_than_days is not None else None
    return DLQFilter(
        ids=ids,
        stage=stage,
        error_class=error_class,
        host=host,
        kind=kind,
        source=source,
        reason=reason,
        dead_before=before,
    )


def _item_dict(item: Item) -> dict[str, Any]:
    d = {k: v for k, v in vars(item).items() if k not in ("payload", "last_error")}
    d["last_error"] = vars(item.last_error) if item.last_error else None
    return d


@ops.group()
def dlq() -> None:
    """The dead-letter queue: inspect, group, replay, purge."""


@dlq.command("list")
@_filters
@click.option("--limit", type=int, default=100, show_default=True)
@format_option
@clean_errors
def dlq_list(limit: int, fmt: str, **f: Any) -> None:
    """Dead items matching the filters."""
    rows = open_store(settings_or_exit(), migrate=False).dlq_list(_flt(**f), limit=limit)
    data = [_item_dict(i) for i in rows]
    if fmt == "table":
        data = [
            {
                "id": d["id"],
                "kind": d["kind"],
                "reason": d["dead_reason"],
                "attempts": d["attempts"],
                "error": (d["last_error"] or {}).get("error_class", ""),
            }
            for d in data
        ]
    emit(fmt, data)


@dlq.command("groups")
@_filters
@format_option
@clean_errors
def dlq_groups(fmt: str, **f: Any) -> None:
    """Dead items grouped by error fingerprint (stage, error class, host)."""
    groups = open_store(settings_or_exit(), migrate=False).dlq_groups(_flt(**f))
    emit(fmt, [vars(g) for g in groups], ["count", "stage", "error_class", "host", "sample_message"])


@dlq.command("replay")
@_filters
@click.option("--dry-run", is_flag=True, help="Only count what would be replayed.")
@format_option
@clean_errors
def dlq_replay(dry_run: bool, fmt: str, **f: Any) -> None:
    """Put matching dead items back in the queue with fresh attempts."""
    n = open_store(settings_or_exit(), migrate=False).dlq_replay(_flt(**f), dry_run=dry_run)
    emit(fmt, {"matched" if dry_run else "replayed": n, "dry_run": dry_run})


@dlq.command("purge")
@_filters
@click.option("--dry-run", is_flag=True, help="Only count what would be deleted.")
@format_option
@clean_errors
def dlq_purge(dry_run: bool, fmt: str, **f: Any) -> None:
    """Delete matching dead items and their history."""
    n = open_store(settings_or_exit(), migrate=False).dlq_purge(_flt(**f), dry_run=dry_run)
    emit(fmt, {"matched" if dry_run else "purged": n, "dry_run": dry_run})


@dlq.command("retention")
@click.option("--dry-run", is_flag=True)
@format_option
@clean_errors
def dlq_retention(dry_run: bool, fmt: str) -> None:
    """Purge dead items older than ATLAS_DLQ_RETENTION_DAYS."""
    settings = settings_or_exit()
    flt = DLQFilter(dead_before=time.time() - settings.dlq_retention_days * 86400)
    n = open_store(settings, migrate=False).dlq_purge(flt, dry_run=dry_run)
    emit(
        fmt,
        {
            "matched" if dry_run else "purged": n,
            "dry_run": dry_run,
            "retention_days": settings.dlq_retention_days,
        },
    )


# -- API keys ------------------------------------------------------------------------------------


@ops.group()
def apikey() -> None:
    """API keys: create (the key is printed once), list, revoke."""


@apikey.command("create")
@click.option("--name", required=True, help="Who or what uses the key.")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    type=click.Choice(SCOPES),
    help="ingest, read or admin (repeatable; admin implies the others).",
)
@format_option
@clean_errors
def apikey_create(name: str, scopes: tuple[str, ...], fmt: str) -> None:
    """Create a key and print it once; only its hash is stored."""
    settings = settings_or_exit()
    key = create_key(open_store(settings, migrate=False), settings.api_key_pepper, name, scopes)
    emit(fmt, key)


@apikey.command("list")
@format_option
@clean_errors
def apikey_list(fmt: str) -> None:
    """Keys with their scopes, state, last use (to the minute) and pepper (never the keys themselves).

    pepper: `current`, `old` (hashed with a pepper kept in api_key_pepper_previous: re-hashed when
    next used; it stops working once that is removed), `unverifiable` (hashed with a pepper that
    is neither: the key no longer works) or `unknown` (not used since before Atlas recorded peppers).
    """
    settings = settings_or_exit()
    label = pepper_labeller(settings)
    rows = open_store(settings, migrate=False).api_key_list()
    for row in rows:
        row["pepper"] = label(row["pepper_id"])
    if fmt == "json":
        emit(fmt, rows)
        return
    for row in rows:
        for column in ("created_at", "revoked_at", "last_used_at"):
            row[column] = when(row[column], "never" if column == "last_used_at" else "")
    emit(fmt, rows, ["id", "name", "scopes", "created_at", "revoked_at", "last_used_at", "pepper"])


@apikey.command("revoke")
@click.argument("key_id")
@format_option
@clean_errors
def apikey_revoke(key_id: str, fmt: str) -> None:
    """Revoke a key by id; API processes stop accepting it within seconds."""
    if not open_store(settings_or_exit(), migrate=False).api_key_revoke(key_id):
        click.echo(f"error: no active key {key_id!r}", err=True)
        sys.exit(1)
    emit(fmt, {"id": key_id, "revoked": True})


# -- feeds ---------------------------------------------------------------------------------------


@ops.group()
def feeds() -> None:
    """Feed subscriptions: list, poll now."""


@feeds.command("list")
@format_option
@clean_errors
def feeds_list(fmt: str) -> None:
    """Subscriptions with their last poll's status and error."""
    emit(
        fmt,
        open_store(settings_or_exit(), migrate=False).feed_list(limit=10_000),
        ["id", "url", "last_status", "failures", "next_poll_at", "last_error"],
    )


@feeds.command("poll")
@click.argument("feed_id")
@format_option
@clean_errors
def feeds_poll(feed_id: str, fmt: str) -> None:
    """Poll a feed at once: it becomes due now and its error backoff is reset; the feed poller
    (atlas services / atlas up) reads it within a second."""
    row = open_store(settings_or_exit(), migrate=False).feed_poll_now(feed_id)
    if row is None:
        click.echo(f"error: no feed {feed_id!r}", err=True)
        sys.exit(1)
    emit(fmt, {k: row[k] for k in ("id", "url", "next_poll_at", "failures", "last_status", "last_error")})


document_exit_codes(ops)  # last: every command is added by now

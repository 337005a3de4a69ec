"""`atlas-ops alerts outbox`: the alert router's deliveries: list, retry dead ones, purge old ones."""

from __future__ import annotations

import time

import click

from atlas.cli.common import clean_errors, emit, format_option, settings_or_exit
from atlas.store.outbox import Outbox, open_outbox

_STATES = ("pending", "sent", "dead", "skipped")


def _outbox() -> Outbox:
    settings = settings_or_exit()
    return open_outbox(settings)


@click.group()
def outbox() -> None:
    """The alert router's outbox (ATLAS_DATA_DIR/alert-router.db, or the PostgreSQL database)."""


@outbox.command("list")
@click.option("--state", type=click.Choice(_STATES), default=None)
@click.option("--channel", default=None, help="email | webhook | slack")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@format_option
@clean_errors
def outbox_list(state: str | None, channel: str | None, limit: int, fmt: str) -> None:
    """Deliveries, newest first (state, attempts, last error)."""
    rows = _outbox().deliveries(state=state, channel=channel, limit=limit)
    emit(fmt, rows, ["id", "channel", "state", "attempts", "status", "last_error"] if rows else None)


@outbox.command("retry")
@click.option(
    "--id", "ids", type=int, multiple=True, help="Delivery id (repeatable; default: every dead one)."
)
@click.option("--channel", default=None)
@format_option
@clean_errors
def outbox_retry(ids: tuple[int, ...], channel: str | None, fmt: str) -> None:
    """Put dead deliveries back in the queue; a running router sends them within a second."""
    emit(fmt, {"retried": _outbox().retry(ids=ids, channel=channel, now=time.time())})


@outbox.command("purge")
@click.option(
    "--state",
    "states",
    type=click.Choice(("sent", "dead", "skipped")),
    multiple=True,
    help="Which finished deliveries (repeatable; default: sent and skipped).",
)
@click.option("--older-than-days", type=click.FloatRange(min=0), default=30.0, show_default=True)
@format_option
@clean_errors
def outbox_purge(states: tuple[str, ...], older_than_days: float, fmt: str) -> None:
    """Delete finished deliveries older than N days (pending ones are never purged)."""
    chosen = states or ("sent", "skipped")
    n = _outbox().purge(states=chosen, older_than=time.time() - older_than_days * 86_400)
    emit(fmt, {"purged": n, "states": list(chosen), "older_than_days": older_than_days})

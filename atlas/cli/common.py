"""What every command shares: settings loading with clean errors, JSON or table output."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import wraps
from typing import Any, TypeVar

import click

from atlas.config.loader import load_settings
from atlas.errors import AtlasError, ConfigError, DatabaseNotReady, ItemError
from atlas.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])


def error_lines(exc: Exception) -> None:
    """Print an error on stderr, `error: ` before each of its lines (config errors list several)."""
    for line in str(exc).splitlines() or [type(exc).__name__]:
        click.echo(f"error: {line}", err=True)


def settings_or_exit() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        error_lines(exc)
        sys.exit(2)


def clean_errors(fn: F) -> F:
    """Turn Atlas errors into one line on stderr, no traceback: exit 2 for bad input (a bad setting,
    item, or a database that is missing or needs migrating), 1 otherwise."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (ConfigError, ItemError, DatabaseNotReady) as exc:
            error_lines(exc)
            sys.exit(2)
        except AtlasError as exc:
            error_lines(exc)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


DEFAULT_EXIT_CODES = (
    "Exit codes: 0 done; 1 failed (the error says why); 2 bad input: a bad option, setting or item,"
    " or no database / one that needs migrating (the error names the field or file:line)."
)


def document_exit_codes(group: click.Group) -> None:
    """Give every command under `group` whose help names no exit codes the ones clean_errors and
    click use (DEFAULT_EXIT_CODES), as its epilog: every command's --help states them."""
    for command in group.commands.values():
        if isinstance(command, click.Group):
            document_exit_codes(command)
        elif "exit codes" not in (command.help or "").lower() and not command.epilog:
            command.epilog = DEFAULT_EXIT_CODES


def format_choice(choices: Sequence[str], help: str) -> Callable[[F], F]:
    """The --format option (the value reaches the command as `fmt`); the first choice is the default."""
    return click.option(
        "--format", "fmt", type=click.Choice(choices), default=choices[0], show_default=True, help=help
    )


format_option = format_choice(["table", "json"], "json for programs, table for people.")


def when(at: float | None, missing: str = "-") -> str:
    """Unix seconds as UTC ISO-8601 to the second, for people."""
    if at is None:
        return missing
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def cell(column: str, value: Any) -> str:
    """A value as a table shows it: no Python spellings (None, True, ['a']) and times as UTC ISO-8601
    (a number in a column named *_at or *_until); JSON output keeps the values as they are."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)) and column.endswith(("_at", "_until")):
        return when(value) if value > 0 else "-"  # 0: never (an empty queue's oldest_queued_at)
    if isinstance(value, (list, tuple)):
        return ",".join(cell(column, v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"), default=str)
    return str(value)


def emit(fmt: str, data: Any, columns: Sequence[str] | None = None) -> None:
    if fmt == "json":
        click.echo(json.dumps(data, indent=2, default=str))
        return
    rows = data if isinstance(data, list) else [data]
    if not rows:
        click.echo("(none)")
        return
    cols = list(columns or rows[0].keys())
    table = [[cell(c, r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in table)) for i, c in enumerate(cols)]
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip())
    for row in table:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())

"""What every command shares: settings loading with clean errors, JSON or table output."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
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


format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="json for programs, table for people.",
)


def emit(fmt: str, data: Any, columns: Sequence[str] | None = None) -> None:
    if fmt == "json":
        click.echo(json.dumps(data, indent=2, default=str))
        return
    rows = data if isinstance(data, list) else [data]
    if not rows:
        click.echo("(none)")
        return
    cols = list(columns or rows[0].keys())
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols}
    click.echo("  ".join(c.upper().ljust(widths[c]) for c in cols))
    for r in rows:
        click.echo("  ".join(str(r.get(c, "")).ljust(widths[c]) for c in cols))

"""structlog JSON logs on stderr, one object per line, with the current trace and span ids.

Secrets never reach a log line: `Redactor` replaces the value of every field whose name says it is
secret (password, token, pepper, ...) and every occurrence of a known secret value (the decrypted
secrets and secret settings, handed in by `configure_logging`) in structlog events and in records
of the standard library's logging (uvicorn, libraries).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog
from opentelemetry import trace


def _add_trace_ids(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        event.setdefault("trace_id", format(ctx.trace_id, "032x"))
        event.setdefault("span_id", format(ctx.span_id, "016x"))
    return event


REDACTED = "[REDACTED]"
# Field names that hold secrets whatever their value (matched anywhere in the name, any case).
SECRET_FIELD = re.compile(
    r"pass(word|wd)?|secret|token|pepper|authorization|api_?key|webhook_url|cookie", re.I
)
# Shorter values are not searched for in text: "1" or "yes" would redact half of every line.
MIN_SECRET_CHARS = 4


class Redactor:
    """Removes secret values and secret-named fields from structlog events and logging records."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        values = sorted({s for s in secrets if len(s) >= MIN_SECRET_CHARS}, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, values))) if values else None

    def text(self, value: str) -> str:
        return self._pattern.sub(REDACTED, value) if self._pattern else value

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: REDACTED if SECRET_FIELD.search(str(k)) else self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.value(v) for v in value)
        if self._pattern and not isinstance(value, int | float | bool | type(None)):
            text = str(value)
            redacted = self.text(text)
            return redacted if redacted != text else value
        return value

    def __call__(self, _: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        for key, value in list(event.items()):
            event[key] = REDACTED if SECRET_FIELD.search(key) and value else self.value(value)
        return event


class _RedactingFormatter(logging.Formatter):
    """The standard library's records, message and traceback alike, redacted after formatting."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__("%(message)s")
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        return self.redactor.text(super().format(record))


def configure_logging(level: str = "INFO", *, process: str = "atlas", secrets: Iterable[str] = ()) -> None:
    """Route structlog and the standard library's logging to JSON lines on stderr.

    `secrets` are values that must never appear in a log line (see `Redactor`).
    """
    numeric = logging.getLevelName(level.upper())
    redactor = Redactor(secrets)
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_trace_ids,
        structlog.processors.format_exc_info,
        # Last before rendering: exception text (format_exc_info) can quote a secret too.
        redactor,
        structlog.processors.JSONRenderer(),
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.bind_contextvars(process=process)
    logging.basicConfig(level=numeric, stream=sys.stderr, format="%(message)s")
    for handler in logging.getLogger().handlers:
        handler.setFormatter(_RedactingFormatter(redactor))


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)

"""Everything one API process holds, built once by the app factory and handed to the routers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from opentelemetry import trace

from atlas.api.groupcommit import Committer
from atlas.api.guards import ApiError, Authenticator
from atlas.api.pressure import Pressure
from atlas.settings import Settings
from atlas.store.protocols import AtlasStore


@dataclass
class Services:
    settings: Settings
    store: AtlasStore
    committer: Committer
    pressure: Pressure
    auth: Authenticator
    metrics: Any  # ApiMetrics

    @property
    def durability(self) -> Literal["fsync", "wal"]:
        return "fsync" if self.settings.db_synchronous == "FULL" else "wal"

    def check_writable(self) -> None:
        """Raise the 429/503 a write must get now (maintenance, disk, backpressure), if any."""
        verdict = self.pressure.write_verdict()
        if verdict is not None:
            self.metrics.shed.labels(str(verdict.status)).inc()
            raise ApiError(verdict.status, verdict.reason, {"Retry-After": str(verdict.retry_after)})


def current_traceparent() -> str | None:
    """The W3C traceparent of the span handling this request, to store with the item."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"

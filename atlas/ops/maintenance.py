"""Maintenance mode from the command line: the flag the API and the engine already honour.

The flag is the kv row MAINTENANCE_KEY, JSON {"enabled", "reason", "since", "by"}: the API's
pressure sampler and the engine's claim loop read it about once a second, so every process sees a
change within a couple of seconds (writes get 503, engines stop claiming, /health/ready fails).
`by` records who changed it: the API writes no `by`; atlas-ops writes user@host unless told.
"""

from __future__ import annotations

import getpass
import json
import socket
import time
from collections.abc import Callable
from typing import Any

from atlas.store.models import MAINTENANCE_KEY
from atlas.store.protocols import KVStore


def default_actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for this uid (containers)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def get_mode(store: KVStore) -> dict[str, Any]:
    raw = store.kv_get(MAINTENANCE_KEY)
    if not raw:
        return {"enabled": False, "reason": None, "since": None, "by": None}
    try:
        state: dict[str, Any] = json.loads(raw)
    except ValueError:
        return {"enabled": False, "reason": f"unreadable flag {raw!r}", "since": None, "by": None}
    return {"enabled": bool(state.get("enabled")), "reason": None, "since": None, "by": None} | state


def set_mode(
    store: KVStore,
    enabled: bool,
    *,
    reason: str | None,
    by: str | None = None,
    clock: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """Turn maintenance on or off, recording who, when and why; returns the new state."""
    state: dict[str, Any] = {
        "enabled": enabled,
        "reason": reason,
        "since": clock(),
        "by": by or default_actor(),
    }
    store.kv_set(MAINTENANCE_KEY, json.dumps(state))
    return state


def mode_json(enabled: bool, reason: str | None, by: str, now: float) -> str:
    """The flag's stored text, for writing into a database no store has open (a staged restore)."""
    return json.dumps({"enabled": enabled, "reason": reason, "since": now, "by": by})

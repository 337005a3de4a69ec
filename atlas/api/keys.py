"""API keys: created once and shown once, stored as a peppered SHA-256, checked in constant time.

A key reads `atlas_<id>_<secret>`. The id finds the row; only the secret's hash is stored, so a
copy of the database does not hand out working keys. Lookups are cached briefly, so a revocation
takes effect within CACHE_SECONDS on every API process.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from atlas.errors import ItemError
from atlas.store.sqlite import SQLiteStore

SCOPES = ("ingest", "read", "admin")
CACHE_SECONDS = 5.0
_PREFIX = "atlas_"


@dataclass(frozen=True)
class Principal:
    key_id: str
    name: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


def _hash(pepper: str, secret: str) -> str:
    return hashlib.sha256(f"{pepper}\x00{secret}".encode()).hexdigest()


def create_key(store: SQLiteStore, pepper: str, name: str, scopes: Sequence[str]) -> dict[str, object]:
    """Create a key; the returned dict holds the only copy of the key itself."""
    if not name.strip():
        raise ItemError("name: must not be empty")
    bad = sorted(set(scopes) - set(SCOPES))
    if bad or not scopes:
        raise ItemError(f"scope: expected one or more of {', '.join(SCOPES)}, got {', '.join(bad) or 'none'}")
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    store.api_key_insert(key_id, name.strip(), sorted(set(scopes)), _hash(pepper, secret))
    return {
        "id": key_id,
        "key": f"{_PREFIX}{key_id}_{secret}",
        "name": name.strip(),
        "scopes": sorted(set(scopes)),
    }


class KeyChecker:
    """Verifies presented keys against the store, with a short cache."""

    def __init__(self, store: SQLiteStore, pepper: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.store, self.pepper, self.clock = store, pepper, clock
        self._cache: dict[str, tuple[float, dict[str, object] | None]] = {}

    def check(self, presented: str) -> Principal | None:
        """The key's principal, or None for a malformed, unknown, revoked or wrong key."""
        if not presented.startswith(_PREFIX):
            return None
        key_id, sep, secret = presented[len(_PREFIX) :].partition("_")
        if not sep or not key_id or not secret:
            return None
        now = self.clock()
        cached = self._cache.get(key_id)
        if cached is None or now - cached[0] > CACHE_SECONDS:
            cached = (now, self.store.api_key_get(key_id))
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key_id] = cached
        row = cached[1]
        expected = str(row["secret_hash"]) if row else _hash(self.pepper, "-")
        # Compare even for unknown ids so timing does not tell which ids exist.
        matches = hmac.compare_digest(_hash(self.pepper, secret), expected)
        if row is None or not matches or row["revoked_at"] is not None:
            return None
        return Principal(key_id, str(row["name"]), frozenset(str(row["scopes"]).split(",")))

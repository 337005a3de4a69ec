"""API keys: created once and shown once, stored as a peppered SHA-256, checked in constant time.

A key reads `atlas_<id>_<secret>`. The id finds the row; only the secret's hash is stored, so a
copy of the database does not hand out working keys. Lookups are cached briefly, so a revocation
takes effect within CACHE_SECONDS on every API process.

Changing the pepper keeps keys working: the previous peppers (secret `api_key_pepper_previous`,
kept by `atlas-ops config secrets set api_key_pepper`; the empty one too, when the first pepper is
set) still verify, and a key verified with one is re-hashed with the current pepper. That write and
`last_used_at` (at most once per TOUCH_SECONDS per key and process) are handed to a background
thread (KeyUsage): a request never waits for them.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from atlas.errors import ItemError, StoreError
from atlas.logging import get_logger
from atlas.secrets import KEEP_PREVIOUS, previous_values
from atlas.settings import Settings
from atlas.store.protocols import AtlasStore

SCOPES = ("ingest", "read", "admin")
CACHE_SECONDS = 5.0
TOUCH_SECONDS = 60.0  # last_used_at is a "when roughly", not an access log: one write a minute at most
_PREFIX = "atlas_"
log = get_logger("atlas.api.keys")


@dataclass(frozen=True)
class Principal:
    key_id: str
    name: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


def _hash(pepper: str, secret: str) -> str:
    return hashlib.sha256(f"{pepper}\x00{secret}".encode()).hexdigest()


def pepper_id(pepper: str) -> str:
    """A short public fingerprint of a pepper (8 hex digits of a SHA-256): names it, reveals nothing."""
    return hashlib.sha256(f"atlas-api-key-pepper\x00{pepper}".encode()).hexdigest()[:8]


def previous_peppers(settings: Settings) -> list[str]:
    """The peppers that still verify keys: the `api_key_pepper_previous` secret, newest first."""
    return previous_values(settings.secrets.get(KEEP_PREVIOUS["api_key_pepper"]))


def pepper_labeller(settings: Settings) -> Callable[[str | None], str]:
    """Labels a key's pepper id for `apikey list`: `current`, `old` (a kept previous pepper still
    verifies it), `unverifiable` (no pepper Atlas holds does: the key cannot work) or `unknown`
    (None: hashed before pepper ids were recorded, so any of them may verify it)."""
    current = pepper_id(settings.api_key_pepper)
    kept = {pepper_id(p) for p in previous_peppers(settings)}

    def label(key_pepper_id: str | None) -> str:
        if key_pepper_id is None:
            return "unknown"
        if key_pepper_id == current:
            return "current"
        return "old" if key_pepper_id in kept else "unverifiable"

    return label


def create_key(store: AtlasStore, pepper: str, name: str, scopes: Sequence[str]) -> dict[str, object]:
    """Create a key; the returned dict holds the only copy of the key itself."""
    if not name.strip():
        raise ItemError("name: must not be empty")
    bad = sorted(set(scopes) - set(SCOPES))
    if bad or not scopes:
        raise ItemError(f"scope: expected one or more of {', '.join(SCOPES)}, got {', '.join(bad) or 'none'}")
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    store.api_key_insert(key_id, name.strip(), sorted(set(scopes)), _hash(pepper, secret), pepper_id(pepper))
    return {
        "id": key_id,
        "key": f"{_PREFIX}{key_id}_{secret}",
        "name": name.strip(),
        "scopes": sorted(set(scopes)),
    }


class KeyUsage:
    """Records key use off the request path: `touch` and `rehash` only note what to write (a dict
    update under a lock); a daemon thread writes it in one transaction, woken when there is work."""

    def __init__(self, store: AtlasStore, clock: Callable[[], float] = time.monotonic) -> None:
        self.store, self.clock = store, clock
        self._touched: dict[str, float] = {}  # key id -> clock() of the last touch noted
        self._touches: dict[str, float] = {}  # key id -> wall time, waiting to be written
        self._rehashes: dict[str, tuple[str, str, str]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def touch(self, key_id: str) -> None:
        now = self.clock()
        last = self._touched.get(key_id)
        if last is not None and now - last < TOUCH_SECONDS:
            return  # the hot path: one dict read
        if len(self._touched) > 10_000:
            self._touched.clear()
        self._touched[key_id] = now
        with self._lock:
            self._touches[key_id] = self.store.clock()
        self._notify()

    def rehash(self, key_id: str, old_hash: str, new_hash: str, new_pepper_id: str) -> None:
        with self._lock:
            self._rehashes[key_id] = (old_hash, new_hash, new_pepper_id)
        self._notify()

    def _notify(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None and not self._stopping:
                    self._thread = threading.Thread(target=self._run, name="atlas-key-usage", daemon=True)
                    self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait()
            self._wake.clear()
            self.flush()

    def flush(self) -> None:
        """Write what is waiting. A failed write is logged and dropped: the next use notes it again."""
        with self._lock:
            touches, self._touches = self._touches, {}
            rehashes, self._rehashes = self._rehashes, {}
        if not touches and not rehashes:
            return
        try:
            self.store.api_key_record_use(
                list(touches.items()), [(k, o, n, p) for k, (o, n, p) in rehashes.items()]
            )
        except StoreError as exc:
            for key_id in touches:
                self._touched.pop(key_id, None)
            log.warning("recording API key use failed", error=str(exc))

    def stop(self) -> None:
        """Stop the writer after writing what is waiting."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.flush()


class KeyChecker:
    """Verifies presented keys against the store, with a short cache."""

    def __init__(
        self,
        store: AtlasStore,
        pepper: str,
        clock: Callable[[], float] = time.monotonic,
        previous: Sequence[str] = (),
    ) -> None:
        self.store, self.pepper, self.clock = store, pepper, clock
        self.pepper_id = pepper_id(pepper)
        # Verifiers: the current pepper first, then the previous ones, newest first.
        self.peppers = (pepper, *(p for p in previous if p != pepper))
        self.usage = KeyUsage(store, clock)
        self._cache: dict[str, tuple[float, dict[str, object] | None]] = {}
        # key id -> (the row's checked_at, the secret that verified against it, its principal): a
        # request repeating that secret within the row's CACHE_SECONDS is not hashed again (a
        # SHA-256 and a Principal a request were ~4% of single-item ingest's loop, issue 18).
        self._verified: dict[str, tuple[float, bytes, Principal]] = {}

    @classmethod
    def for_settings(cls, store: AtlasStore, settings: Settings) -> KeyChecker:
        return cls(store, settings.api_key_pepper, previous=previous_peppers(settings))

    def close(self) -> None:
        self.usage.stop()

    def check(self, presented: str) -> Principal | None:
        """The key's principal, or None for a malformed, unknown, revoked or wrong key."""
        if not presented.startswith(_PREFIX):
            return None
        key_id, sep, secret = presented[len(_PREFIX) :].partition("_")
        if not sep or not key_id or not secret:
            return None
        now = self.clock()
        cached = self._cache.get(key_id)
        presented_bytes = secret.encode("utf-8", "surrogatepass")
        if cached is not None and now - cached[0] <= CACHE_SECONDS:
            known = self._verified.get(key_id)
            # The same secret against the same row (checked_at): verified already, no hashing.
            if known is not None and known[0] == cached[0] and hmac.compare_digest(known[1], presented_bytes):
                self.usage.touch(key_id)
                return known[2]
        if cached is None or now - cached[0] > CACHE_SECONDS:
            cached = (now, self.store.api_key_get(key_id))
            if len(self._cache) > 10_000:
                self._cache.clear()
                self._verified.clear()
            self._cache[key_id] = cached
        row = cached[1]
        expected = str(row["secret_hash"]) if row else _hash(self.pepper, "-")
        # Compare even for unknown ids so timing does not tell which ids exist.
        current = _hash(self.pepper, secret)
        matches = hmac.compare_digest(current, expected)
        if not matches:
            matches = any(hmac.compare_digest(_hash(p, secret), expected) for p in self.peppers[1:])
        if row is None or not matches or row["revoked_at"] is not None:
            return None
        if current != expected or row.get("pepper_id") != self.pepper_id:
            # Verified with an old pepper (or made before pepper ids): re-hash with the current one.
            self.usage.rehash(key_id, expected, current, self.pepper_id)
            self._cache[key_id] = (cached[0], {**row, "secret_hash": current, "pepper_id": self.pepper_id})
        self.usage.touch(key_id)
        principal = Principal(key_id, str(row["name"]), frozenset(str(row["scopes"]).split(",")))
        self._verified[key_id] = (cached[0], presented_bytes, principal)
        return principal

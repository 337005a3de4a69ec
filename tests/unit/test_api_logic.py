import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from atlas import secrets as sec
from atlas.api import keys as keys_module
from atlas.api.guards import json_too_deep
from atlas.api.keys import KeyChecker, create_key
from atlas.api.pressure import Pressure
from atlas.config.loader import load_settings
from atlas.reliability.token_bucket import TokenBucket
from atlas.settings import Settings
from atlas.store.sqlite import SQLiteStore


def test_json_depth_counts_brackets_but_not_inside_strings() -> None:
    assert not json_too_deep(b'{"a": [[1]], "s": "[[[[[[[["}', 3)
    assert json_too_deep(b'{"a": [[[1]]]}', 3)
    assert not json_too_deep(b'{"s": "\\"[[[[[[", "b": 1}', 1)
    assert not json_too_deep(b'{"s": "a\\\\", "t": "[[[\\\\\\"[["}', 1)  # \\ then \"


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


# Strings made of the characters that could fool a bracket counter: brackets, quotes, backslashes.
_tricky = st.text(alphabet='[]{}"\\ab', max_size=8)
_json_values = st.recursive(
    st.none() | st.integers() | _tricky,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_tricky, inner, max_size=3),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(value=_json_values, limit=st.integers(0, 6), ascii_only=st.booleans())
def test_json_depth_agrees_with_the_parsed_depth(value: Any, limit: int, ascii_only: bool) -> None:
    body = json.dumps(value, ensure_ascii=ascii_only).encode()
    assert json_too_deep(body, limit) == (_depth(value) > limit)


def _byte_loop_too_deep(body: bytes, limit: int) -> bool:
    """The guard's first version, a loop over every structural byte: the answer any faster version
    must keep, malformed bodies (a lone quote, unbalanced brackets) included."""
    structure = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    structure = bytes(b for b in structure if b in b'[]{}"')
    depth = 0
    for byte in re.sub(rb'"[^"]*"', b"", structure):
        depth += 1 if byte in b"[{" else -1
        if depth > limit:
            return True
    return False


@settings(max_examples=600, deadline=None)
@example(body=b'"[[""[[[[', limit=4)  # a lone quote: adjacent quotes must not be paired first
@given(
    body=st.binary(max_size=40) | st.text(alphabet='[]{}"\\a', max_size=40).map(str.encode),
    limit=st.integers(0, 5),
)
def test_json_depth_answers_any_body_as_the_byte_loop_did(body: bytes, limit: int) -> None:
    assert json_too_deep(body, limit) == _byte_loop_too_deep(body, limit)


def test_token_bucket_allows_a_burst_then_paces() -> None:
    bucket = TokenBucket(rate=2.0, burst=3)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == 0.5  # one token arrives every half second
    assert bucket.take(0.5) == 0.0


def test_revocation_takes_effect_once_the_cache_expires(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "a.db")
    now = [0.0]
    checker = KeyChecker(store, "pepper", clock=lambda: now[0])
    key = create_key(store, "pepper", "ci", ["read"])
    assert checker.check(str(key["key"])) is not None
    assert checker.check(str(key["key"]) + "x") is None  # wrong secret
    assert KeyChecker(store, "other pepper").check(str(key["key"])) is None
    store.api_key_revoke(str(key["id"]))
    assert checker.check(str(key["key"])) is not None  # still cached
    now[0] += 6
    assert checker.check(str(key["key"])) is None


def test_the_first_pepper_verifies_keys_made_without_one_until_the_empty_one_is_dropped(
    tmp_path: Path,
) -> None:
    """set_secret (what `config secrets set` calls) on a real secrets file, settings loaded from it."""
    store = SQLiteStore(tmp_path / "a.db")
    used, idle = (str(create_key(store, "", name, ["read"])["key"]) for name in ("used", "idle"))
    used_id, idle_id = used.split("_")[1], idle.split("_")[1]
    ring = sec.KeyRing((sec.DEVELOPMENT_KEY,), "dev")
    sec.set_secret(tmp_path / "development.secrets", ring, "api_key_pepper", "s3cretpepper")
    environ = {"ATLAS_CONFIG_DIR": str(tmp_path), "ATLAS_ENVIRONMENT": "development"}
    settings = load_settings(environ)
    label = keys_module.pepper_labeller(settings)
    assert [label(store.api_key_get(k)["pepper_id"]) for k in (used_id, idle_id)] == ["old", "old"]

    checker = KeyChecker.for_settings(store, settings)
    assert checker.check(used) is not None
    checker.close()  # writes the re-hash
    rehashed = keys_module._hash("s3cretpepper", used.split("_", 2)[2])
    assert store.api_key_get(used_id)["secret_hash"] == rehashed
    assert label(store.api_key_get(used_id)["pepper_id"]) == "current"

    assert sec.remove_secret(tmp_path / "development.secrets", "api_key_pepper_previous")
    settings = load_settings(environ)
    checker = KeyChecker.for_settings(store, settings)
    assert checker.check(used) is not None and checker.check(idle) is None
    checker.close()
    assert keys_module.pepper_labeller(settings)(store.api_key_get(idle_id)["pepper_id"]) == "unverifiable"
    assert keys_module.pepper_labeller(settings)(None) == "unknown"


def test_a_verified_secret_is_not_hashed_again_but_any_other_is_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SQLiteStore(tmp_path / "a.db")
    now = [0.0]
    checker = KeyChecker(store, "pepper", clock=lambda: now[0])
    key = str(create_key(store, "pepper", "ci", ["ingest"])["key"])
    first = checker.check(key)
    hashed: list[str] = []
    real = keys_module._hash
    monkeypatch.setattr(keys_module, "_hash", lambda p, s: hashed.append(s) or real(p, s))
    assert checker.check(key) is first and hashed == []  # the verified secret: no hashing
    for wrong in (key[:-1] + ("A" if key[-1] != "A" else "B"), key + "x", key[:-1], key + "\xff"):
        assert checker.check(wrong) is None
    assert len(hashed) == 4 and checker.check(key) is first  # each wrong one was hashed and refused
    store.api_key_revoke(key.split("_")[1])
    now[0] += 6  # the row is read again: the secret is verified against it, and it is revoked
    assert checker.check(key) is None


def test_retry_after_is_the_time_to_drain_the_excess(tmp_path: Path) -> None:
    p = Pressure(Settings(data_dir=tmp_path, api_backlog_high_water=1000), SQLiteStore(tmp_path / "a.db"))
    p.queued, p.drain_rate, p.disk_free = 1500, 50.0, 1 << 40
    verdict = p.write_verdict()
    assert verdict is not None and (verdict.status, verdict.retry_after) == (429, 10)
    p.drain_rate = 0.0
    assert p.write_verdict().retry_after == 60  # type: ignore[union-attr]
    p.queued = 900
    assert p.write_verdict() is None
    p.disk_free = 1
    assert p.write_verdict().status == 503  # type: ignore[union-attr]

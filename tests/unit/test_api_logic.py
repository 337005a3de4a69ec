from pathlib import Path

from atlas.api.guards import json_too_deep
from atlas.api.keys import KeyChecker, create_key
from atlas.api.pressure import Pressure
from atlas.reliability.token_bucket import TokenBucket
from atlas.settings import Settings
from atlas.store import SQLiteStore


def test_json_depth_counts_brackets_but_not_inside_strings() -> None:
    assert not json_too_deep(b'{"a": [[1]], "s": "[[[[[[[["}', 3)
    assert json_too_deep(b'{"a": [[[1]]]}', 3)
    assert not json_too_deep(b'{"s": "\\"[[[[[[", "b": 1}', 1)


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

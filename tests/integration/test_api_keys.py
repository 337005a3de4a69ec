"""API keys across real processes: `atlas api` over real HTTP, `atlas-ops` for keys and secrets.

Covers last_used_at (set off the request path, shown by `apikey list`), a pepper change that keeps
every key working (old pepper kept as a verifier, keys re-hashed on use, old pepper then dropped),
the first pepper doing the same for keys made without one, and `secrets set` refusing an empty
value.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from atlas.api import keys
from atlas.api.keys import _hash, pepper_id
from atlas.settings import Settings
from atlas.store import open_store
from tests.conftest import ROOT, atlas_env
from tests.helpers.api import free_port
from tests.helpers.engine import wait_for

OPS = [sys.executable, "-c", "from atlas.cli.ops import ops; ops()"]


def ops(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([*OPS, *args], env=env, input=stdin, capture_output=True, text=True, timeout=60)


@pytest.fixture
def env(tmp_path: Path, settings: Settings) -> dict[str, str]:
    """Development environment on a copy of the shipped config, secrets under the development key;
    on the `settings` fixture's database when that is PostgreSQL (tests marked both_backends)."""
    shutil.copytree(ROOT / "config", tmp_path / "config")
    on_postgres = settings.database_backend == "postgresql"
    database = {"ATLAS_DATABASE_URL": settings.database_url} if on_postgres else {}
    return atlas_env(
        tmp_path / "data",
        ATLAS_CONFIG_DIR=str(tmp_path / "config"),
        ATLAS_ENVIRONMENT="development",
        ATLAS_API_PORT=str(free_port()),
        **database,
    )


@contextmanager
def atlas_api(env: dict[str, str], log: Path) -> Iterator[str]:
    base = f"http://127.0.0.1:{env['ATLAS_API_PORT']}"
    with log.open("a") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "atlas", "api"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_for(lambda: _ready(base) or proc.poll() is not None, 60, "atlas api to be ready")
        assert proc.poll() is None, log.read_text()
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def _ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/health/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def create_key(env: dict[str, str], name: str) -> dict[str, str]:
    created = ops(env, "apikey", "create", "--name", name, "--scope", "ingest", "--format", "json")
    assert created.returncode == 0, created.stderr
    return dict(json.loads(created.stdout))


def listed(env: dict[str, str]) -> dict[str, dict[str, object]]:
    result = ops(env, "apikey", "list", "--format", "json")
    assert result.returncode == 0, result.stderr
    return {row["id"]: row for row in json.loads(result.stdout)}


def post(base: str, key: str) -> int:
    r = httpx.post(f"{base}/v1/items", json={"content": "hello"}, headers={"Authorization": f"Bearer {key}"})
    return r.status_code


def row(env: dict[str, str], key_id: str) -> dict[str, object]:
    """The key's stored row, read from the database `env` names (either backend)."""
    database = {"database_url": env["ATLAS_DATABASE_URL"]} if "ATLAS_DATABASE_URL" in env else {}
    store = open_store(Settings(data_dir=Path(env["ATLAS_DATA_DIR"]), **database), migrate=False)
    try:
        got = store.api_key_get(key_id)
    finally:
        store.close()
    assert got is not None
    return got


# SQLite only: each run costs ~15 CLI processes and two `atlas api` starts, and what it proves of
# the store (key use recorded, re-hash on use) runs on both backends in test_store.py and below.
def test_a_pepper_change_keeps_keys_working_and_key_use_is_recorded(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """One run for two things, as each `atlas api` start costs seconds: keys outlive a pepper change
    (verified with the old pepper, re-hashed with the new one, the old pepper then dropped), and
    last_used_at is written off the request path and shown by `apikey list`."""
    old, new = "pepper-old-4b1f", "pepper-new-93ce"
    assert ops(env, "config", "secrets", "set", "api_key_pepper", stdin=old + "\n").returncode == 0
    assert ops(env, "database", "migrate").returncode == 0  # atlas-ops creates no database by itself
    used, idle = create_key(env, "used"), create_key(env, "idle")
    secret = used["key"].split("_", 2)[2]
    assert row(env, used["id"])["secret_hash"] == _hash(old, secret)

    changed = ops(env, "config", "secrets", "set", "api_key_pepper", stdin=new + "\n")
    assert changed.returncode == 0, changed.stderr
    assert "api_key_pepper_previous" in changed.stderr  # says what happens to existing keys
    revealed = ops(env, "config", "secrets", "get", "api_key_pepper_previous", "--reveal")
    assert revealed.stdout == f"{old}\n<empty>\n"  # newest first; <empty>: kept by the first set
    rows = listed(env)
    assert {r["pepper"] for r in rows.values()} == {"old"}
    assert {r["last_used_at"] for r in rows.values()} == {None}

    with atlas_api(env, tmp_path / "api.log") as base:
        assert post(base, used["key"]) == 202  # verified with the old pepper
        wait_for(lambda: row(env, used["id"])["secret_hash"] == _hash(new, secret), 30, "the re-hash")
        assert post(base, used["key"]) == 202
        wait_for(lambda: row(env, used["id"])["last_used_at"] is not None, 30, "last_used_at")
    assert row(env, used["id"])["pepper_id"] == pepper_id(new)
    rows = listed(env)
    assert (rows[used["id"]]["pepper"], rows[idle["id"]]["pepper"]) == ("current", "old")
    assert isinstance(rows[used["id"]]["last_used_at"], float) and rows[idle["id"]]["last_used_at"] is None
    table = ops(env, "apikey", "list")
    assert table.returncode == 0 and "LAST_USED_AT" in table.stdout
    lines = {line.split()[0]: line for line in table.stdout.splitlines()[1:]}
    assert "never" in lines[idle["id"]] and "never" not in lines[used["id"]]
    utc = re.compile(r"\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\b")  # times for people, not Unix seconds
    assert len(utc.findall(lines[used["id"]])) == 2 and len(utc.findall(lines[idle["id"]])) == 1

    # The old pepper dropped: re-hashed keys work; a key never used since the change does not.
    assert ops(env, "config", "secrets", "rm", "api_key_pepper_previous").returncode == 0
    fresh = create_key(env, "fresh")
    with atlas_api(env, tmp_path / "api.log") as base:
        assert post(base, used["key"]) == 202
        assert post(base, fresh["key"]) == 202
        assert post(base, idle["key"]) == 401


def test_setting_the_first_pepper_keeps_keys_made_without_one_working(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """The new-user walkthrough: a key made before any pepper (hashed with "") still works after
    the first `secrets set api_key_pepper` and a restart, and is re-hashed with the pepper on use;
    once api_key_pepper_previous is removed, a key not used meanwhile no longer verifies."""
    assert ops(env, "database", "migrate").returncode == 0
    used, idle = create_key(env, "used"), create_key(env, "idle")
    secret = used["key"].split("_", 2)[2]
    assert (row(env, used["id"])["secret_hash"], row(env, used["id"])["pepper_id"]) == (
        _hash("", secret),
        pepper_id(""),
    )
    with atlas_api(env, tmp_path / "api.log") as base:
        assert post(base, used["key"]) == 202

    pepper = "s3cretpepper"
    changed = ops(env, "config", "secrets", "set", "api_key_pepper", stdin=pepper)
    assert changed.returncode == 0, changed.stderr
    assert "previous value (none: keys so far have no pepper) is kept in api_key_pepper_previous" in (
        " ".join(changed.stderr.split())
    )
    names = {r["name"] for r in json.loads(ops(env, "config", "secrets", "list", "--format", "json").stdout)}
    assert names == {"api_key_pepper", "api_key_pepper_previous"}
    assert {r["pepper"] for r in listed(env).values()} == {"old"}  # true: "" still verifies them

    with atlas_api(env, tmp_path / "api.log") as base:
        assert post(base, used["key"]) == 202  # verified with the empty pepper
        wait_for(lambda: row(env, used["id"])["secret_hash"] == _hash(pepper, secret), 30, "the re-hash")
        assert post(base, used["key"]) == 202
    assert row(env, used["id"])["pepper_id"] == pepper_id(pepper)
    rows = listed(env)
    assert (rows[used["id"]]["pepper"], rows[idle["id"]]["pepper"]) == ("current", "old")

    # The empty pepper dropped: the re-hashed key works, the idle one cannot, and says so.
    assert ops(env, "config", "secrets", "rm", "api_key_pepper_previous").returncode == 0
    rows = listed(env)
    assert (rows[used["id"]]["pepper"], rows[idle["id"]]["pepper"]) == ("current", "unverifiable")
    with atlas_api(env, tmp_path / "api.log") as base:
        assert post(base, used["key"]) == 202
        assert post(base, idle["key"]) == 401


def test_secrets_set_refuses_an_empty_value_naming_the_entry(tmp_path: Path, env: dict[str, str]) -> None:
    for stdin in ("", "\n", "   \n"):
        result = ops(env, "config", "secrets", "set", "smtp_password", stdin=stdin)
        assert result.returncode == 2, result.stderr
        assert "smtp_password" in result.stderr and "empty" in result.stderr
        assert "Traceback" not in result.stderr
    listing = ops(env, "config", "secrets", "list", "--format", "json")
    assert json.loads(listing.stdout) == []  # nothing was stored


class RecordingStore:
    """The real store (either backend) through its protocol, noting every key-use write it makes."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.writes: list[tuple[list[tuple[str, float]], list[tuple[str, str, str, str]]]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def api_key_record_use(
        self, touches: Sequence[tuple[str, float]], rehashes: Sequence[tuple[str, str, str, str]]
    ) -> None:
        self.writes.append((list(touches), list(rehashes)))
        self.store.api_key_record_use(touches, rehashes)


@pytest.fixture
def wall() -> list[float]:
    return [1_700_000_000.0]


@pytest.fixture
def store_clock(wall: list[float]) -> Any:
    """The stores `any_store` makes here run on the test's wall clock."""
    return lambda: wall[0]


def test_key_use_is_written_at_most_once_a_minute_per_key(any_store: Any, wall: list[float]) -> None:
    mono = [0.0]
    store = RecordingStore(any_store)
    a, b = (str(keys.create_key(store, "p", n, ["ingest"])["key"]) for n in ("a", "b"))
    checker = keys.KeyChecker(store, "p", clock=lambda: mono[0])
    for step in (0.0, 10.0, 30.0, 59.0, 61.0):
        mono[0], wall[0] = step, 1_700_000_000.0 + step
        assert checker.check(a) is not None
        if step == 0.0:
            wait_for(lambda: store.writes, 30, "the first use to be written")
    assert checker.check(b) is not None
    checker.close()  # writes what is still waiting
    touches = [t for written, _ in store.writes for t in written]
    a_id, b_id = a.split("_")[1], b.split("_")[1]
    # Uses at +10, +30 and +59 s are not written: within a minute of the one at +0.
    assert [at - 1_700_000_000.0 for k, at in touches if k == a_id] == [0.0, 61.0]
    assert [at for k, at in touches if k == b_id] == [1_700_000_061.0]
    assert [r for _, rehashed in store.writes for r in rehashed] == []  # made with this pepper: no re-hash
    assert store.api_key_get(a.split("_")[1])["last_used_at"] == 1_700_000_061.0

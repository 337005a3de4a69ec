"""`atlas-ops config` as operators run it: real processes, real files, real keys.

Covers validate (exit 0/2, JSON, the seed's shim), the secrets commands, a key rotation across
processes holding different keys, bad config stopping `atlas core` with exit 2 and no traceback,
and a full `atlas up` run whose logs contain no secret value.
"""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet

from atlas import secrets as sec
from atlas.api.keys import _hash
from atlas.store.sqlite import SQLiteStore
from tests.conftest import ROOT, atlas_env
from tests.helpers.api import free_port
from tests.helpers.engine import wait_for
from tests.helpers.origin import running_origin

OPS = [sys.executable, "-c", "from atlas.cli.ops import ops; ops()"]


def ops(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([*OPS, *args], env=env, input=stdin, capture_output=True, text=True, timeout=60)


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """A copy of the shipped config directory."""
    target = tmp_path / "config"
    shutil.copytree(ROOT / "config", target)
    return target


def env(tmp_path: Path, config_dir: Path, environment: str = "staging", **extra: str) -> dict[str, str]:
    return atlas_env(
        tmp_path / "data",
        ATLAS_CONFIG_DIR=str(config_dir),
        ATLAS_ENVIRONMENT=environment,
        ATLAS_SECRETS_KEY_FILE=str(tmp_path / "secrets.key"),
        **extra,
    )


def test_validate_all_passes_on_the_shipped_files_and_the_shim_matches(tmp_path: Path) -> None:
    e = atlas_env(tmp_path)
    result = ops(e, "config", "validate", "--all", "--format", "json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report == {"ok": True, "environments": ["development", "staging", "production"], "findings": []}
    shim = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "config_cli.py"), "validate", "--all", "--format", "json"],
        env=e,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (shim.returncode, json.loads(shim.stdout)) == (0, report)


def test_validate_reports_every_fault_with_file_line_and_exits_2(tmp_path: Path, config_dir: Path) -> None:
    prod, alerting = config_dir / "production.env", config_dir / "alerting.yaml"
    text = prod.read_text()
    port_line = text[: text.index("ATLAS_API_PORT=8000")].count("\n") + 1
    cors_line = text[: text.index("ATLAS_API_CORS_ORIGINS=")].count("\n") + 1
    text = text.replace("ATLAS_API_PORT=8000", "ATLAS_API_PORT=80a")
    prod.write_text(
        text.replace("ATLAS_API_CORS_ORIGINS=https://atlas.example.org", "ATLAS_API_CORS_ORIGINS=*")
    )
    yaml_text = alerting.read_text()
    cpu_line = yaml_text[: yaml_text.index("  cpu_usage:")].count("\n") + 3
    alerting.write_text(
        yaml_text.replace(
            "  cpu_usage:\n    warning: 70\n    critical: 85",
            "  cpu_usage:\n    warning: 70\n    critical: 60",
        )
    )
    result = ops(env(tmp_path, config_dir), "config", "validate", "--all", "--format", "json")
    assert result.returncode == 2
    found = {
        (f["environment"], f["file"], f["line"], f["key"]) for f in json.loads(result.stdout)["findings"]
    }
    assert ("production", str(prod), port_line, "ATLAS_API_PORT") in found
    assert ("staging", str(alerting), cpu_line, "alerts.cpu_usage.critical") in found
    # The guard needs a whole configuration, so CORS '*' shows once the port is fixed.
    prod.write_text(prod.read_text().replace("ATLAS_API_PORT=80a", "ATLAS_API_PORT=8000"))
    result = ops(env(tmp_path, config_dir), "config", "validate", "--env", "production", "--format", "json")
    found = {(f["file"], f["line"], f["key"]) for f in json.loads(result.stdout)["findings"]}
    assert (str(prod), cors_line, "ATLAS_API_CORS_ORIGINS") in found
    prod.write_text(prod.read_text().replace("ATLAS_API_PORT=8000", "ATLAS_API_PORT=80a"))
    table = ops(env(tmp_path, config_dir), "config", "validate", "--env", "production")
    assert table.returncode == 2 and "expected an integer 1-65535, got '80a'" in table.stdout
    assert "Traceback" not in table.stderr


def test_a_bad_env_file_stops_atlas_core_with_exit_2_naming_file_line_key(
    tmp_path: Path, config_dir: Path
) -> None:
    (config_dir / "staging.env").write_text("# staging\nATLAS_LEASE_SECONDS=forever\nATLAS_WORKRES=2\n")
    result = subprocess.run(
        [sys.executable, "-m", "atlas", "core"],
        env=env(tmp_path, config_dir),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    path = config_dir / "staging.env"
    assert f"error: {path}:2: ATLAS_LEASE_SECONDS: expected a number 1-3600, got 'forever'" in result.stderr
    assert f"error: {path}:3: ATLAS_WORKRES: not a setting (did you mean ATLAS_WORKERS?)" in result.stderr
    assert "Traceback" not in result.stderr


def test_show_and_diff_name_sources_and_mask_secrets(tmp_path: Path, config_dir: Path) -> None:
    e = env(tmp_path, config_dir, ATLAS_API_PORT="8123")
    assert ops(e, "config", "secrets", "keygen").returncode == 0
    assert ops(e, "config", "secrets", "set", "api_key_pepper", stdin="pepper-value-xyz\n").returncode == 0
    shown = {r["key"]: r for r in json.loads(ops(e, "config", "show", "--format", "json").stdout)}
    assert shown["ATLAS_API_PORT"] == {"key": "ATLAS_API_PORT", "value": "8123", "source": "environment"}
    workers_line = (config_dir / "staging.env").read_text().splitlines().index("ATLAS_WORKERS=2") + 1
    assert shown["ATLAS_WORKERS"]["source"] == f"{config_dir}/staging.env:{workers_line}"
    assert shown["ATLAS_API_KEY_PEPPER"]["value"] == "********"
    assert shown["ATLAS_MAX_DEATHS"]["source"] == "default"
    diff = json.loads(ops(e, "config", "diff", "staging", "production", "--format", "json").stdout)
    keys = {r["key"]: r for r in diff}
    assert keys["ATLAS_API_RATE_LIMIT_PER_KEY"]["staging"] == "50"
    assert keys["ATLAS_API_RATE_LIMIT_PER_KEY"]["production"] == "100"
    assert "ATLAS_API_PORT" not in keys  # the process environment is not part of a file diff


def test_secrets_set_get_list_rm(tmp_path: Path, config_dir: Path) -> None:
    e = env(tmp_path, config_dir)
    assert ops(e, "config", "secrets", "keygen").returncode == 0
    assert stat.S_IMODE((tmp_path / "secrets.key").stat().st_mode) == 0o600
    assert ops(e, "config", "secrets", "keygen").returncode == 2  # never overwrites a key
    assert ops(e, "config", "secrets", "set", "smtp_password", stdin="s3cret-smtp\n").returncode == 0
    assert "s3cret-smtp" not in (config_dir / "staging.secrets").read_text()
    assert stat.S_IMODE((config_dir / "staging.secrets").stat().st_mode) == 0o600
    hidden = ops(e, "config", "secrets", "get", "smtp_password")
    assert hidden.returncode == 2 and "s3cret-smtp" not in hidden.stdout + hidden.stderr
    assert ops(e, "config", "secrets", "get", "smtp_password", "--reveal").stdout == "s3cret-smtp\n"
    listed = json.loads(ops(e, "config", "secrets", "list", "--format", "json").stdout)
    assert [r["name"] for r in listed] == ["smtp_password"] and "s3cret" not in json.dumps(listed)
    assert ops(e, "config", "secrets", "set", "Bad-Name", stdin="x").returncode == 2
    in_env = ops({**e, "ATLAS_SECRETS_KEY": Fernet.generate_key().decode()}, "config", "secrets", "rotate")
    assert in_env.returncode == 2 and "ATLAS_SECRETS_KEY: rotate maintains the key file" in in_env.stderr
    assert ops(e, "config", "secrets", "rm", "smtp_password").returncode == 0
    assert ops(e, "config", "secrets", "rm", "smtp_password").returncode == 2


def test_rotation_keeps_every_process_working_and_tells_an_old_one_which_key_it_needs(
    tmp_path: Path, config_dir: Path
) -> None:
    e = env(tmp_path, config_dir)
    assert ops(e, "config", "secrets", "keygen").returncode == 0
    key_a = sec.parse_keys((tmp_path / "secrets.key").read_text(), "k")[0]
    values = {
        "smtp_password": "smtp-A1",
        "slack_webhook_url": "https://hooks.example/x",
        "api_key_pepper": "p-A",
    }
    for name, value in values.items():
        assert ops(e, "config", "secrets", "set", name, stdin=value).returncode == 0

    assert ops(e, "config", "secrets", "rotate").returncode == 0
    keys = sec.parse_keys((tmp_path / "secrets.key").read_text(), "k")
    key_b = keys[0]
    assert keys == (key_b, key_a) and key_b != key_a
    # A second process that holds A+B (in the environment, not the key file) reads every value ...
    both = {**e, "ATLAS_SECRETS_KEY": f"{key_a.decode()},{key_b.decode()}"}
    for name, value in values.items():
        assert ops(both, "config", "secrets", "get", name, "--reveal").stdout == value + "\n"

    assert ops(e, "config", "secrets", "rotate", "--finish").returncode == 0
    assert sec.parse_keys((tmp_path / "secrets.key").read_text(), "k") == (key_b,)
    for holder in (both, e):  # ... before and after the finish, as does the key file (B only)
        for name, value in values.items():
            assert ops(holder, "config", "secrets", "get", name, "--reveal").stdout == value + "\n"
    listed = json.loads(ops(e, "config", "secrets", "list", "--format", "json").stdout)
    assert {r["key_id"] for r in listed} == {sec.key_id(key_b)}

    only_a = ops(
        {**e, "ATLAS_SECRETS_KEY": key_a.decode()}, "config", "secrets", "get", "smtp_password", "--reveal"
    )
    assert only_a.returncode == 2
    assert only_a.stderr.strip() == (
        f"error: cannot decrypt {config_dir}/staging.secrets: the key does not match (key id "
        f"{sec.key_id(key_b)} is needed; ATLAS_SECRETS_KEY has {sec.key_id(key_a)})"
    )
    core = subprocess.run(
        [sys.executable, "-m", "atlas", "core"],
        env={**e, "ATLAS_SECRETS_KEY": key_a.decode()},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert core.returncode == 2 and f"key id {sec.key_id(key_b)} is needed" in core.stderr
    assert "Traceback" not in core.stderr


def test_a_full_run_logs_no_secret_value(tmp_path: Path, config_dir: Path) -> None:
    """`atlas services` then `atlas up` (API, engine, workers, feed poller, exporter) with secrets
    configured serve documents, URLs and feeds, some failing with a secret in their URL: no
    process of either tree (workers included: their output is inherited) logs a secret value."""
    for name in ("staging.env", "production.env"):
        (config_dir / name).unlink()
    ring = sec.KeyRing((sec.DEVELOPMENT_KEY,), "dev")
    secrets = {
        "api_key_pepper": "pepper-8f3a1c2b9d",
        "router_bearer_token": "router-token-77e1c0",
        "smtp_password": "smtp-password-51ab",
        "slack_webhook_url": "https://hooks.slack.example/services/T000/B000/XYZ123secret",
    }
    for name, value in secrets.items():
        sec.set_secret(config_dir / "development.secrets", ring, name, value)
    port = free_port()
    e = env(
        tmp_path,
        config_dir,
        "development",
        ATLAS_API_PORT=str(port),
        ATLAS_LOG_LEVEL="DEBUG",
        ATLAS_FETCH_ALLOW_HOSTS="127.0.0.1",
    )
    e["ATLAS_DATA_DIR"] = str(tmp_path / "data")
    assert ops(e, "database", "migrate").returncode == 0  # apikey create never creates a database
    created = ops(e, "apikey", "create", "--name", "t", "--scope", "admin", "--format", "json")
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)
    secret = secrets["smtp_password"]  # what a careless user puts in a URL's query string
    logs_of = {"services": tmp_path / "services.log", "up": tmp_path / "up.log"}
    with running_origin() as origin:
        # `atlas services` alone polls the feeds subscribed before it starts: the failing one logs
        # its URL, the good one enqueues its entries for the engine.
        store = SQLiteStore(tmp_path / "data" / "atlas.db", synchronous="NORMAL")
        good_feed = store.feed_add(origin.url("127.0.0.1", f"/feed.rss?key={secret}"))
        bad_feed = store.feed_add(origin.url("127.0.0.1", f"/notafeed?key={secret}"))
        with logs_of["services"].open("w") as log:
            services = subprocess.Popen(
                [sys.executable, "-m", "atlas", "services"], env=e, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            polled = (good_feed["id"], bad_feed["id"])
            wait_for(
                lambda: (
                    all((store.feed_get(f) or {}).get("last_polled_at") for f in polled)
                    or services.poll() is not None
                ),
                60,
                "atlas services to poll both feeds",
            )
            assert services.poll() is None, logs_of["services"].read_text()
        finally:
            services.terminate()
            services.wait(timeout=60)
        with logs_of["up"].open("w") as log:
            up = subprocess.Popen(
                [sys.executable, "-m", "atlas", "up"], env=e, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_for(lambda: _ready(base) or up.poll() is not None, 60, "atlas up to be ready")
            assert up.poll() is None, logs_of["up"].read_text()
            auth = {"Authorization": f"Bearer {key['key']}"}
            ids = []
            for body in (
                {"content": "hello"},
                {"url": origin.url("127.0.0.1", "/article/1")},
                {"url": origin.url("127.0.0.1", f"/status?code=500&token={secret}")},  # fails, retried
                {"url": origin.url("127.0.0.1", f"/status?code=404&token={secret}")},  # fails for good
                # fetched, then no main text: the worker's extractor logs the URL as it gives up
                {"url": origin.url("127.0.0.1", f"/empty?token={secret}")},
            ):
                item = httpx.post(f"{base}/v1/items", json=body, headers=auth)
                assert item.status_code == 202, item.text
                ids.append(item.json()["id"])
            feed = httpx.post(
                f"{base}/v1/feeds", json={"url": origin.url("127.0.0.1", f"/empty?t={secret}")}, headers=auth
            )
            assert feed.status_code == 201, feed.text
            assert httpx.get(f"{base}/v1/items/{ids[0]}", headers=auth).status_code == 200
            wrong = {"Authorization": f"Bearer {secrets['router_bearer_token']}"}
            assert httpx.post(f"{base}/v1/items", json={"content": "x"}, headers=wrong).status_code == 401

            def ran(item_id: str) -> bool:
                got = httpx.get(f"{base}/v1/items/{item_id}", headers=auth).json()
                return got["state"] not in ("queued", "leased") or got["attempts"] > 0

            wait_for(lambda: all(ran(i) for i in ids), 60, "every item to be attempted")
            feed_items = httpx.get(f"{base}/v1/items", params={"kind": "url"}, headers=auth).json()
            assert len(feed_items["items"]) > 5, feed_items  # the good feed's entries were enqueued
            assert store.feed_get(feed.json()["id"])["last_polled_at"]  # `atlas up` polled its feed
        finally:
            up.terminate()
            up_code = up.wait(timeout=60)
            store.close()
    for process, path in logs_of.items():
        logs = path.read_text()
        leaked = [name for name, value in secrets.items() if value in logs]
        assert leaked == [], f"atlas {process} logged secrets {leaked}"
        assert "[REDACTED]" in logs  # the redactor ran where the secret would have been
    up_logs = logs_of["up"].read_text()
    assert up_code == 0, up_logs[-3000:]  # SIGTERM is a clean stop
    assert '"event": "settings"' in up_logs and '"api_key_pepper": "[REDACTED]"' in up_logs
    assert "extraction: http://127.0.0.1" in up_logs  # the workers' output is in there too (trafilatura's)
    # The pepper from the secrets file is what the API key's hash was made with.
    store = SQLiteStore(tmp_path / "data" / "atlas.db", synchronous="NORMAL")
    row = store.api_key_get(key["id"])
    assert row is not None and row["secret_hash"] == _hash(
        secrets["api_key_pepper"], key["key"].split("_", 2)[2]
    )
    store.close()


def _ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/health/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False

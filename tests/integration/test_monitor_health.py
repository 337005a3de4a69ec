"""`python tools/monitoring_agent.py --check-health` against real Atlas processes: nothing running,
`atlas up` serving, then the API and the exporter without an engine."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import ROOT, atlas_env
from tests.helpers.engine import wait_for
from tests.helpers.net import free_port
from tests.helpers.opscli import ok_json

SHIM = ROOT / "tools" / "monitoring_agent.py"
CODES = {"healthy": 0, "degraded": 1, "unhealthy": 2}


def check(env: dict[str, str]) -> tuple[int, dict[str, Any], dict[str, dict[str, Any]]]:
    done = subprocess.run(
        [sys.executable, str(SHIM), "--check-health", "--format", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode in CODES.values(), done.stderr
    report = json.loads(done.stdout)
    return done.returncode, report, {c["name"]: c for c in report["components"]}


@contextmanager
def atlas(env: dict[str, str], log: Path, *command: str) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "atlas", *command], env=env, stdout=out, stderr=out)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()


def serving(url: str, proc: subprocess.Popen[bytes], log: Path) -> bool:
    assert proc.poll() is None, log.read_text()
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_check_health_follows_real_processes(tmp_path: Path) -> None:
    api_port, exporter_port = free_port(), free_port()
    env = atlas_env(
        tmp_path / "data",
        ATLAS_SERVICE_BACKEND="local",
        ATLAS_API_PORT=str(api_port),
        ATLAS_EXPORTER_PORT=str(exporter_port),
        ATLAS_WORKERS="1",
        ATLAS_LEASE_SECONDS="3",
        ATLAS_DISK_LOW_WATER_BYTES="1MiB",
    )
    api, metrics = f"http://127.0.0.1:{api_port}/health/ready", f"http://127.0.0.1:{exporter_port}/metrics"

    # Nothing running, no database: unhealthy, exit 2; the table form says the same.
    code, report, by_name = check(env)
    assert (code, report["status"]) == (2, "unhealthy")
    assert by_name["database"]["status"] == "unhealthy" and by_name["api"]["status"] == "unhealthy"
    assert by_name["exporter"]["status"] == "degraded"
    table = subprocess.run(
        [sys.executable, str(SHIM), "--check-health"], env=env, capture_output=True, text=True, timeout=120
    )
    assert table.returncode == 2 and "overall: unhealthy" in table.stdout and "NAME" in table.stdout
    assert {"api", "database", "engine", "disk", "memory", "services", "exporter", "backups"} <= set(by_name)

    log = tmp_path / "atlas.log"
    with atlas(env, log, "up") as up:
        wait_for(lambda: serving(api, up, log), 60, "atlas up's API")
        wait_for(lambda: serving(metrics, up, log), 30, "atlas up's exporter")
        # No backup yet: degraded, and the message says what to do.
        code, report, by_name = check(env)
        assert by_name["backups"]["status"] == "degraded" and "backup create" in by_name["backups"]["message"]
        ok_json(env, "backup", "create", "--out", str(tmp_path / "backups"))
        code, report, by_name = check(env)
        assert {"backlog", "maintenance"} <= set(by_name)
        not_ours = {"memory"}  # this shared machine's memory is what it is
        bad = {n: c for n, c in by_name.items() if n not in not_ours and c["status"] != "healthy"}
        assert not bad, bad
        assert code == CODES[report["status"]]
        if by_name["memory"]["status"] == "healthy":
            assert (code, report["status"]) == (0, "healthy")

    # The API and the exporter without an engine: the engine's heartbeat goes stale -> degraded, 1.
    with atlas(env, log, "api") as api_proc, atlas(env, log, "exporter") as exp_proc:
        wait_for(lambda: serving(api, api_proc, log), 60, "atlas api")
        wait_for(lambda: serving(metrics, exp_proc, log), 30, "atlas exporter")
        wait_for(lambda: check(env)[2]["engine"]["status"] == "degraded", 60, "a stale engine heartbeat")
        code, report, by_name = check(env)
        assert by_name["api"]["status"] == "healthy" and by_name["exporter"]["status"] == "healthy"
        assert report["status"] in ("degraded", "unhealthy") and code == CODES[report["status"]] >= 1

"""`atlas-ops logs` over the local supervisor's files: age and level filters, --follow."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from atlas.config.loader import load_settings
from atlas.ops.logs import parse_since
from atlas.ops.services import ServiceError
from atlas.ops.services.local import LocalSupervisor, log_path
from tests.conftest import atlas_env
from tests.helpers.engine import wait_for
from tests.helpers.net import free_port
from tests.helpers.opscli import SHIM, atlas_ops


def test_level_and_since_filters(tmp_path: Path) -> None:
    env = atlas_env(tmp_path, ATLAS_API_PORT=str(free_port()), ATLAS_SERVICE_BACKEND="local")
    sup = LocalSupervisor(load_settings(env), env=env | {"ATLAS_API_PORT": "0"})  # refused: exits 2
    with pytest.raises(ServiceError):
        sup.start("api")
    path = log_path(tmp_path, "api")
    old = {"event": "from last year", "level": "error", "timestamp": "2020-01-01T00:00:00Z"}
    with path.open("a") as f:
        f.write(json.dumps(old) + "\n")

    everything = atlas_ops(env, "logs", "api").stdout.splitlines()
    assert any('"starting"' in line for line in everything) and any(
        "from last year" in line for line in everything
    )
    errors = atlas_ops(env, "logs", "api", "--level", "error").stdout.splitlines()
    assert errors and all(json.loads(line)["level"] == "error" for line in errors)
    assert any("exited during start" in line for line in errors)
    recent = atlas_ops(env, "logs", "api", "--level", "error", "--since", "1h").stdout
    assert "exited during start" in recent and "from last year" not in recent
    assert len(atlas_ops(env, "logs", "api", "-n", "1").stdout.splitlines()) == 1
    bad = atlas_ops(env, "logs", "api", "--since", "yesterday")
    assert (
        bad.returncode == 2 and "expected a duration like 30s, 15m, 1h or 2d, got 'yesterday'" in bad.stderr
    )


def test_follow_prints_new_lines_as_they_come(tmp_path: Path) -> None:
    env = atlas_env(tmp_path / "data", ATLAS_SERVICE_BACKEND="local")
    out = tmp_path / "follow.out"
    with out.open("wb") as sink:
        tailer = subprocess.Popen(
            [sys.executable, str(SHIM), "logs", "services", "--follow"], env=env, stdout=sink
        )
    try:
        subprocess.run([sys.executable, str(SHIM), "database", "migrate"], env=env, check=True)
        sup = LocalSupervisor(load_settings(env), env=env)
        sup.start("services")
        try:
            wait_for(lambda: "services running" in out.read_text(), 60, "the followed log to show the start")
        finally:
            sup.stop("services")
    finally:
        tailer.send_signal(signal.SIGINT)
        assert tailer.wait(timeout=30) == 0


def test_since_parsing() -> None:
    assert [parse_since(s) for s in ("90s", "15m", "1h", "2d", "0.5h")] == [90, 900, 3600, 172800, 1800]

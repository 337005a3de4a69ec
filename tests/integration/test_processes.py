"""`atlas up|core|api|exporter` as real processes: what they do when they cannot start, when their
workers keep dying, and when they are asked to stop."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import atlas_env
from tests.helpers.engine import wait_for
from tests.helpers.net import free_port

PORT_SETTINGS = ("ATLAS_API_PORT", "ATLAS_CORE_METRICS_PORT", "ATLAS_EXPORTER_PORT")


def atlas(
    command: str, env: dict[str, str], *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "atlas", command, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def all_ports_free(data_dir: Path, **extra: str) -> dict[str, str]:
    settings = {name: str(free_port()) for name in PORT_SETTINGS}
    hosts = ("ATLAS_API_HOST", "ATLAS_CORE_METRICS_HOST", "ATLAS_EXPORTER_HOST")
    settings.update(dict.fromkeys(hosts, "127.0.0.1"))
    settings.update(extra)
    return atlas_env(data_dir, **settings)


@contextmanager
def listening() -> Iterator[int]:
    """A real socket listening on 127.0.0.1; yields its port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("command", "setting"),
    [
        ("up", "ATLAS_API_PORT"),
        ("up", "ATLAS_CORE_METRICS_PORT"),
        ("up", "ATLAS_EXPORTER_PORT"),
        ("api", "ATLAS_API_PORT"),
        ("core", "ATLAS_CORE_METRICS_PORT"),
        ("exporter", "ATLAS_EXPORTER_PORT"),
    ],
)
def test_a_port_in_use_stops_the_command_before_it_starts_anything(
    tmp_path: Path, command: str, setting: str
) -> None:
    with listening() as port:
        env = all_ports_free(tmp_path, **{setting: str(port)})
        result = atlas(command, env, timeout=30)
    assert result.returncode == 2, result.stderr
    # One line naming the setting and the port, and nothing else: no log line of a part that started.
    assert result.stderr == f"error: {setting}={port}: address 127.0.0.1:{port} already in use\n"
    assert not (tmp_path / "run").exists() or not list((tmp_path / "run").iterdir())  # no pid file


def test_two_settings_on_one_port_are_refused_before_start(tmp_path: Path) -> None:
    port = free_port()
    env = all_ports_free(tmp_path, ATLAS_API_PORT=str(port), ATLAS_EXPORTER_PORT=str(port))
    result = atlas("up", env, timeout=30)
    assert result.returncode == 2, result.stderr
    assert result.stderr == f"error: ATLAS_EXPORTER_PORT={port}: the same port as ATLAS_API_PORT\n"


def _ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.parametrize(
    ("command", "when", "sig"),
    # `atlas up` is stopped while its parts are still starting: once serving it always drained
    # cleanly, but a signal before the engine took over killed it (143) or aborted it (exit 1).
    # The exporter always stopped cleanly; one case keeps it so.
    [
        ("api", "serving", signal.SIGINT),
        ("api", "serving", signal.SIGTERM),
        ("up", "starting", signal.SIGINT),
        ("up", "starting", signal.SIGTERM),
        ("exporter", "serving", signal.SIGTERM),
    ],
    ids=["api-SIGINT", "api-SIGTERM", "up-SIGINT", "up-SIGTERM", "exporter-SIGTERM"],
)
def test_a_stop_signal_is_a_clean_exit_0(
    tmp_path: Path, command: str, when: str, sig: signal.Signals
) -> None:
    env = all_ports_free(tmp_path)
    if command == "exporter":
        url = f"http://127.0.0.1:{env['ATLAS_EXPORTER_PORT']}/metrics"
    else:
        url = f"http://127.0.0.1:{env['ATLAS_API_PORT']}/health/ready"
    log = tmp_path / "out.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "atlas", command], env=env, stdout=out, stderr=out)
    try:
        if when == "serving":
            wait_for(lambda: _ready(url) or proc.poll() is not None, 60, f"atlas {command} to serve")
        else:  # it has logged its settings: past the checks, its parts are starting
            wait_for(
                lambda: '"event": "settings"' in log.read_text() or proc.poll() is not None,
                60,
                f"atlas {command} to start",
                poll=0.01,
            )
        assert proc.poll() is None, log.read_text()
        proc.send_signal(sig)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = log.read_text()
    assert code == 0, output
    assert "Aborted!" not in output and "Traceback" not in output, output


def test_core_exits_at_start_when_the_pipeline_cannot_be_built(tmp_path: Path) -> None:
    env = atlas_env(tmp_path)
    broken = atlas("core", env, "--pipeline", "tests.helpers.pipelines:broken_build", timeout=60)
    assert broken.returncode == 1, broken.stderr
    assert broken.stderr.splitlines()[-1] == (
        "error: pipeline tests.helpers.pipelines:broken_build cannot be built:"
        " RuntimeError: the test pipeline refuses to build"
    )
    assert "Traceback" not in broken.stderr and "engine starting" not in broken.stderr
    missing = atlas("core", env, "--pipeline", "tests.helpers.no_such_module:pipeline", timeout=60)
    assert missing.returncode == 1, missing.stderr
    assert missing.stderr.splitlines()[-1] == (
        "error: pipeline tests.helpers.no_such_module:pipeline cannot be built:"
        " ModuleNotFoundError: No module named 'tests.helpers.no_such_module'"
    )


def test_up_with_a_setting_the_pipeline_cannot_use_exits_before_serving(tmp_path: Path) -> None:
    env = all_ports_free(tmp_path, ATLAS_HOST_RATE_OVERRIDES="example.org=fast")
    result = atlas("up", env, timeout=60)
    # A bad setting: refused at load (exit 2) with one line naming it, before any part starts.
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        "error: ATLAS_HOST_RATE_OVERRIDES: 'example.org=fast' is not a rate: expected host=rate with"
        " requests per second, 0-1000000 (e.g. example.org=0.5)\n"
    )


def _restarts(metrics_url: str) -> dict[str, float]:
    try:
        text = httpx.get(metrics_url, timeout=2).text
    except httpx.HTTPError:
        return {}
    return {
        s.labels["reason"]: s.value
        for family in text_string_to_metric_families(text)
        if family.name == "atlas_engine_worker_restarts"
        for s in family.samples
        if s.name.endswith("_total")
    }


def test_workers_that_keep_dying_back_off_count_restarts_and_make_the_engine_unhealthy(
    tmp_path: Path,
) -> None:
    env = all_ports_free(tmp_path, ATLAS_WORKERS="1")
    metrics_url = f"http://127.0.0.1:{env['ATLAS_CORE_METRICS_PORT']}/metrics"
    base = f"http://127.0.0.1:{env['ATLAS_API_PORT']}"
    core_log, api_log = tmp_path / "core.log", tmp_path / "api.log"
    with core_log.open("w") as out:
        core = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "atlas",
                "core",
                "--pipeline",
                "tests.helpers.pipelines:crash_after_start",
            ],
            env=env,
            stdout=out,
            stderr=out,
        )
    with api_log.open("w") as out:
        api = subprocess.Popen([sys.executable, "-m", "atlas", "api"], env=env, stdout=out, stderr=out)
    try:
        wait_for(
            lambda: _restarts(metrics_url).get("exit", 0) >= 3 or core.poll() is not None,
            90,
            "three restarts of the worker that exits after start",
        )
        assert core.poll() is None, core_log.read_text()

        def engine_component() -> dict[str, object]:
            body = httpx.get(f"{base}/health", timeout=5).json()
            return next(c for c in body["components"] if c["name"] == "engine")

        wait_for(lambda: _ready(f"{base}/health/live") or api.poll() is not None, 60, "atlas api to serve")
        health = httpx.get(f"{base}/health", timeout=5)
        assert health.status_code == 503, health.text
        engine = engine_component()
        assert engine["status"] == "unhealthy", engine
        assert "restarts in a row" in str(engine["message"]), engine
        ready = httpx.get(f"{base}/health/ready", timeout=5)
        assert ready.status_code == 503, ready.text
        assert any(r.startswith("engine unhealthy:") for r in ready.json()["reasons"]), ready.text
    finally:
        for proc in (core, api):
            proc.terminate()
        codes = [proc.wait(timeout=60) for proc in (core, api)]
    assert codes == [0, 0], core_log.read_text()[-2000:] + api_log.read_text()[-2000:]
    lost = [
        json.loads(line)
        for line in core_log.read_text().splitlines()
        if line.startswith("{") and '"event": "worker lost"' in line
    ]
    # The wait before each restart doubles (the policy's figures, not a measured time).
    delays = [e["restart_in_seconds"] for e in lost if e["restart_in_seconds"] is not None]
    assert delays[:3] == [0.0, 0.5, 1.0], delays
    assert {e["restart_reason"] for e in lost} == {"exit"}

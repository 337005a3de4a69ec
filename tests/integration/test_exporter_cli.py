"""`atlas up` serves the exporter from a thread beside the engine, on its own registry."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import atlas_env
from tests.helpers.engine import wait_for
from tests.helpers.net import free_port


def test_atlas_up_serves_the_exporter_and_writes_its_pid_file(tmp_path: Path) -> None:
    exporter_port, core_port, api_port = free_port(), free_port(), free_port()
    env = atlas_env(
        tmp_path,
        ATLAS_EXPORTER_PORT=str(exporter_port),
        ATLAS_CORE_METRICS_PORT=str(core_port),
        ATLAS_API_PORT=str(api_port),
        ATLAS_WORKERS="1",
    )
    log_path = tmp_path / "up.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "atlas", "up"], env=env, stdout=log, stderr=log)
    body: list[str] = []

    def scraped() -> bool:
        assert proc.poll() is None, log_path.read_text()
        try:
            text = httpx.get(f"http://127.0.0.1:{exporter_port}/metrics", timeout=2).text
        except httpx.TransportError:
            return False
        body[:] = [text]
        return 'atlas_process_resident_memory_bytes{service="atlas-up"}' in text

    try:
        wait_for(scraped, 60, "atlas up's exporter to report atlas-up's own process")
        text = body[0]
        assert "atlas_exporter_store_up 1.0" in text
        assert "node_cpu_seconds_total{" in text
        assert "atlas_engine_" not in text  # the engine's families stay on the engine's /metrics
        core = httpx.get(f"http://127.0.0.1:{core_port}/metrics", timeout=5).text
        assert "atlas_engine_workers" in core and "node_cpu_seconds_total" not in core
        assert (tmp_path / "run" / "atlas-up.pid").read_text().strip() == str(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    assert code == 0, log_path.read_text()
    assert not (tmp_path / "run" / "atlas-up.pid").exists()


def test_a_port_in_use_is_a_config_error_naming_the_setting(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = atlas_env(tmp_path, ATLAS_EXPORTER_PORT=str(port), ATLAS_EXPORTER_HOST="127.0.0.1")
        out = subprocess.run(
            [sys.executable, "-m", "atlas", "exporter"], env=env, capture_output=True, text=True, timeout=60
        )
    assert out.returncode == 2, out.stderr
    assert out.stderr == f"error: ATLAS_EXPORTER_PORT={port}: address 127.0.0.1:{port} already in use\n"
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "run" / "atlas-exporter.pid").exists()

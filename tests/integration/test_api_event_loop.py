"""ATLAS_API_EVENT_LOOP picks the API's uvicorn stack by name (issue 18): asyncio with h11, or
uvloop with httptools; uvicorn's own "auto" would take uvloop whenever it is installed."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest

from atlas.config.loader import load_settings
from atlas.errors import ConfigError
from atlas.ops.processes import _api_server
from tests.helpers.engine import wait_for
from tests.helpers.net import free_port


@pytest.mark.parametrize(
    ("loop", "server_module", "protocol"),
    [("asyncio", "asyncio", "H11Protocol"), ("uvloop", "uvloop", "HttpToolsProtocol")],
)
def test_the_api_serves_on_the_loop_and_parser_the_setting_names(
    tmp_path: Path, loop: str, server_module: str, protocol: str
) -> None:
    port = free_port()
    settings = load_settings(
        {"ATLAS_DATA_DIR": str(tmp_path), "ATLAS_API_PORT": str(port), "ATLAS_API_EVENT_LOOP": loop},
        files=False,
    )
    server = _api_server(settings)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started or not thread.is_alive(), 30, "the API to start")
        assert server.started, "the API's thread ended before it started serving"
        assert httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=10).status_code == 200
        # The listening socket's server object belongs to the running loop's library.
        assert type(server.servers[0]).__module__.split(".")[0] == server_module
        assert server.config.http_protocol_class.__name__ == protocol  # type: ignore[union-attr]
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    assert not thread.is_alive()


def test_an_unknown_event_loop_is_refused_naming_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ATLAS_API_EVENT_LOOP"):
        load_settings({"ATLAS_DATA_DIR": str(tmp_path), "ATLAS_API_EVENT_LOOP": "trio"}, files=False)

"""sd_notify for real: `atlas api|core|exporter|services|alert-router|monitor` started as processes
the way systemd starts a Type=notify unit (NOTIFY_SOCKET on a datagram socket this test binds,
WATCHDOG_USEC set) must say READY=1 once they serve and keep sending WATCHDOG=1, and stop pinging
when their main loop is stuck."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from atlas.ops.sdnotify import Notifier
from atlas.ops.units import Layout, render_units
from atlas.settings import Settings
from atlas.store import open_store
from tests.conftest import atlas_env
from tests.helpers.net import free_port
from tests.helpers.router import config_dir

WATCHDOG_USEC = 2_000_000  # pings every second; the engine's idle loop turns at least once a second
BOUND_SECONDS = 60.0  # an upper bound for a process to start, never a goal


class NotifySocket:
    """The manager's side: a bound AF_UNIX datagram socket collecting what the process sends."""

    def __init__(self, address: str, sock: socket.socket) -> None:
        self.address = address  # what goes in NOTIFY_SOCKET
        self.sock = sock
        self.messages: list[str] = []

    def next(self, timeout: float) -> str | None:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096).decode()
        except TimeoutError:
            return None
        self.messages.append(data)
        return data

    def wait_for(self, wanted: str, timeout: float = BOUND_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            message = self.next(left)
            if message is not None and wanted in message.split("\n"):
                return
        raise AssertionError(f"no {wanted} within {timeout}s; got {self.messages}")

    def count_pings(self, pings: int, timeout: float = BOUND_SECONDS) -> None:
        for _ in range(pings):
            self.wait_for("WATCHDOG=1", timeout)


@contextmanager
def notify_socket(tmp_path: Path, abstract: bool = False) -> Iterator[NotifySocket]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        if abstract:
            name = f"atlas-test-{os.getpid()}-{time.monotonic_ns()}"
            sock.bind("\0" + name)
            yield NotifySocket("@" + name, sock)
        else:
            path = tmp_path / "notify.sock"
            sock.bind(str(path))
            yield NotifySocket(str(path), sock)


@contextmanager
def started(argv: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def exited(proc: subprocess.Popen[bytes]) -> str:
    """The process's exit code and stderr, or that it still runs (its stderr is not read then)."""
    code = proc.poll()
    if code is None:
        return "still running"
    err = proc.stderr.read().decode(errors="replace") if proc.stderr is not None else ""
    return f"exited {code}, stderr: {err[-3000:]}"


def children(pid: int) -> list[int]:
    """The process's children, from every one of its threads (Linux's /proc/PID/task/TID/children)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except FileNotFoundError:  # the thread ended while we looked
            pass
    return out


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(entry.decode().split("=", 1) for entry in raw if b"=" in entry)


def notify_env(tmp_path: Path, sock: NotifySocket, **extra: str) -> dict[str, str]:
    return atlas_env(tmp_path / "data", NOTIFY_SOCKET=sock.address, WATCHDOG_USEC=str(WATCHDOG_USEC), **extra)


def test_notifier_speaks_to_path_and_abstract_sockets(tmp_path: Path) -> None:
    for abstract in (False, True):
        with notify_socket(tmp_path, abstract=abstract) as sock:
            env = {
                "NOTIFY_SOCKET": sock.address,
                "WATCHDOG_USEC": "4000000",
                "WATCHDOG_PID": str(os.getpid()),
            }
            notifier = Notifier.from_env(env)
            assert env == {}, "the variables are taken, so child processes do not inherit them"
            assert notifier.watchdog_seconds == 4.0
            notifier.ready("serving")
            assert sock.next(5) == "READY=1\nSTATUS=serving"


def test_watchdog_of_another_pid_is_not_ours() -> None:
    env = {"NOTIFY_SOCKET": "/nonexistent", "WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "1"}
    assert Notifier.from_env(env).watchdog_seconds == 0.0


def test_api_says_ready_once_it_serves_and_keeps_pinging(tmp_path: Path) -> None:
    port = free_port()
    with notify_socket(tmp_path) as sock:
        env = notify_env(tmp_path, sock, ATLAS_API_PORT=str(port), ATLAS_API_HOST="127.0.0.1")
        with started([sys.executable, "-m", "atlas", "api"], env) as proc:
            try:
                sock.wait_for("READY=1")
            except AssertionError as exc:
                raise AssertionError(f"{exc}; the API: {exited(proc)}") from None
            # READY=1 promises the process can serve: the very next request is answered.
            assert httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=10).status_code == 200
            sock.count_pings(3)
            proc.send_signal(signal.SIGTERM)
            sock.wait_for("STOPPING=1")
            assert proc.wait(timeout=30) == 0


def test_core_says_ready_after_spawning_workers_and_keeps_pinging(tmp_path: Path) -> None:
    with notify_socket(tmp_path) as sock:
        env = notify_env(tmp_path, sock, ATLAS_WORKERS="1")
        with started([sys.executable, "-m", "atlas", "core"], env) as proc:
            sock.wait_for("READY=1")
            assert (tmp_path / "data" / "run" / "atlas-core.pid").read_text().strip() == str(proc.pid)
            sock.count_pings(3)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0


def test_exporter_says_ready_once_listening_and_keeps_pinging(tmp_path: Path) -> None:
    port = free_port()
    with notify_socket(tmp_path, abstract=True) as sock:
        env = notify_env(tmp_path, sock, ATLAS_EXPORTER_PORT=str(port), ATLAS_EXPORTER_HOST="127.0.0.1")
        with started([sys.executable, "-m", "atlas", "exporter"], env):
            sock.wait_for("READY=1")
            r = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30)
            assert r.status_code == 200 and "atlas_build_info" in r.text
            sock.count_pings(3)


def test_services_says_ready_and_keeps_pinging(tmp_path: Path) -> None:
    with notify_socket(tmp_path) as sock:
        env = notify_env(tmp_path, sock)
        # `atlas services` owns no schema: the engine (here: a migrating open) creates it.
        settings = Settings(data_dir=tmp_path / "data", db_synchronous="NORMAL")
        open_store(settings, migrate=True).close()
        with started([sys.executable, "-m", "atlas", "services"], env):
            sock.wait_for("READY=1")
            sock.count_pings(3)


# A real `atlas api` whose app is wrapped with one extra route that blocks the event loop — the bug
# a watchdog exists for (a synchronous call in an async handler). Everything else is the real CLI.
STUCK_API = """
import time, sys
import atlas.api.app as app_module
real_create_app = app_module.create_app

def create_app(*args, **kwargs):
    app = real_create_app(*args, **kwargs)

    @app.get("/_test/block-the-loop")
    async def block() -> None:
        time.sleep(3600)

    return app

app_module.create_app = create_app
from atlas.cli.main import atlas
atlas(["api"])
"""


def test_api_whose_event_loop_is_stuck_stops_pinging(tmp_path: Path) -> None:
    port = free_port()
    with notify_socket(tmp_path) as sock:
        env = notify_env(tmp_path, sock, ATLAS_API_PORT=str(port), ATLAS_API_HOST="127.0.0.1")
        with started([sys.executable, "-c", STUCK_API], env) as proc:
            sock.wait_for("READY=1")
            sock.count_pings(2)
            with pytest.raises(httpx.ReadTimeout):
                httpx.get(f"http://127.0.0.1:{port}/_test/block-the-loop", timeout=0.5)
            # Pings already in flight may still arrive; after that, silence for longer than WatchdogSec
            # (systemd would kill the process here) while the process itself lives on.
            quiet = 3 * WATCHDOG_USEC / 1e6
            deadline = time.monotonic() + 4 * quiet
            while (message := sock.next(quiet)) is not None:
                assert time.monotonic() < deadline, f"still pinging with a stuck loop: {sock.messages}"
                assert message == "WATCHDOG=1"
            assert proc.poll() is None, "the process is alive: only its loop is stuck"
            proc.kill()  # as systemd would (SIGABRT, then SIGKILL); SIGTERM cannot reach a stuck loop
            proc.wait(timeout=30)


def test_alert_router_says_ready_once_senders_run_and_keeps_pinging(tmp_path: Path) -> None:
    port = free_port()
    cfg = config_dir(tmp_path, webhook_url="http://127.0.0.1:9/unused")
    with notify_socket(tmp_path) as sock:
        env = notify_env(
            tmp_path,
            sock,
            ATLAS_CONFIG_DIR=str(cfg),
            ATLAS_ENVIRONMENT="development",
            ATLAS_ROUTER_PORT=str(port),
            ATLAS_ROUTER_HOST="127.0.0.1",
        )
        with started([sys.executable, "-m", "atlas", "alert-router"], env) as proc:
            sock.wait_for("READY=1")
            # READY=1 promises intake and delivery: listening, and the sender process has started.
            assert httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=10).status_code == 200
            senders = children(proc.pid)
            assert senders, "the sender process runs"
            for child in senders:  # only the main process may notify (NotifyAccess=main)
                assert not {"NOTIFY_SOCKET", "WATCHDOG_USEC"} & set(environ(child)), child
            sock.count_pings(3)
            proc.send_signal(signal.SIGTERM)
            sock.wait_for("STOPPING=1")
            assert proc.wait(timeout=60) == 0


def test_monitor_says_ready_and_keeps_pinging_between_evaluations(tmp_path: Path) -> None:
    # The evaluation interval (15 s by default) is longer than WatchdogSec here: waiting for the
    # next evaluation must feed the watchdog. The API it scrapes is down: a finding, not a failure.
    cfg = config_dir(tmp_path, webhook_url="http://127.0.0.1:9/unused")
    with notify_socket(tmp_path, abstract=True) as sock:
        env = notify_env(
            tmp_path,
            sock,
            ATLAS_CONFIG_DIR=str(cfg),
            ATLAS_ENVIRONMENT="development",
            ATLAS_API_PORT=str(free_port()),
        )
        with started([sys.executable, "-m", "atlas", "monitor"], env) as proc:
            sock.wait_for("READY=1")
            sock.count_pings(3)
            proc.send_signal(signal.SIGTERM)
            sock.wait_for("STOPPING=1")
            assert proc.wait(timeout=60) == 0


# Every `atlas` command a Type=notify unit runs, and the test above proving it says READY=1 and
# pings. A new notify unit without an entry here fails the guard below.
NOTIFY_TESTS = {
    "api": "test_api_says_ready_once_it_serves_and_keeps_pinging",
    "core": "test_core_says_ready_after_spawning_workers_and_keeps_pinging",
    "exporter": "test_exporter_says_ready_once_listening_and_keeps_pinging",
    "services": "test_services_says_ready_and_keeps_pinging",
    "alert-router": "test_alert_router_says_ready_once_senders_run_and_keeps_pinging",
    "monitor": "test_monitor_says_ready_and_keeps_pinging_between_evaluations",
}


def test_every_notify_unit_runs_a_command_with_an_sd_notify_test() -> None:
    layout = Layout()
    commands = {}
    for name, text in render_units(layout).items():
        lines = text.splitlines()
        if "Type=notify" not in lines:
            continue
        exec_start = next(line for line in lines if line.startswith("ExecStart="))
        program, *args = exec_start.removeprefix("ExecStart=").split()
        assert program == str(layout.bin / "atlas") and len(args) == 1, f"{name}: {exec_start}"
        commands[name] = args[0]
    assert commands, "no Type=notify unit rendered: the guard would guard nothing"
    untested = {unit: cmd for unit, cmd in commands.items() if cmd not in NOTIFY_TESTS}
    assert not untested, f"Type=notify units whose command has no sd_notify test: {untested}"
    missing = [test for test in NOTIFY_TESTS.values() if not callable(globals().get(test))]
    assert not missing, f"NOTIFY_TESTS names tests that do not exist: {missing}"

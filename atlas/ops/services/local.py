"""The local supervisor: Atlas's processes without systemd (development, containers, CI).

Each service runs detached (its own session, so it outlives the `atlas-ops` that started it and a
SIGKILL can take its worker processes with it), its stdout and stderr appended to
DATA_DIR/logs/<service>.log (the JSON lines the process logs, plus the supervisor's own events in
the same shape). What was started is recorded in DATA_DIR/run/local/<service>.json: pid, the
process's start time (so a reused pid is not mistaken for it) and whether it should be running.
A service that should be running but is not is `failed`; its status carries the log's last lines.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from atlas.ops.pidfiles import api_pid_name, run_dir
from atlas.ops.services import (
    ServiceError,
    ServiceSpec,
    ServiceStatus,
    api_ready,
    health_verdict,
    spec,
    wait_until,
)
from atlas.settings import Settings

# `atlas up` runs these services in one process (atlas.ops.processes.run_up), with this pid file.
# Service -> the setting whose port 0 leaves it out ("": always in).
UP_SERVICES = {"api": "", "core": "", "exporter": "exporter_port", "alert-router": "router_port"}
UP_PROCESS = "atlas-up"
START_TIMEOUT_SECONDS = 60.0
STOP_GRACE_SECONDS = 30.0
LOG_TAIL_LINES = 20
# psutil's create_time is rounded differently from one read to the next by a few milliseconds.
CREATE_TIME_SLACK_SECONDS = 1.0


@dataclass
class Record:
    pid: int
    create_time: float
    started_at: float
    argv: list[str]
    desired: str  # running | stopped


def logs_dir(data_dir: Path) -> Path:
    return data_dir / "logs"


def log_path(data_dir: Path, name: str) -> Path:
    return logs_dir(data_dir) / f"{name}.log"


def tail(path: Path, lines: int) -> list[str]:
    """The last `lines` lines of a file ([] when it does not exist)."""
    try:
        with path.open("r", encoding="utf-8", errors="replace") as f:
            return [line.rstrip("\n") for line in deque(f, maxlen=lines)]
    except OSError:
        return []


class LocalSupervisor:
    backend = "local"

    def __init__(
        self,
        settings: Settings,
        *,
        installed: Callable[[str], bool] = lambda _command: True,
        env: dict[str, str] | None = None,
        start_timeout: float = START_TIMEOUT_SECONDS,
        stop_grace: float = STOP_GRACE_SECONDS,
        python: str | None = None,
    ) -> None:
        self.settings = settings
        self.installed = installed
        self.env = dict(os.environ if env is None else env)
        self.start_timeout = start_timeout
        self.stop_grace = stop_grace
        self.state_dir = run_dir(settings.data_dir) / "local"
        # The interpreter that runs `-m atlas ...`: a release's (the deployment manager) or ours.
        self.python = python or sys.executable

    def key(self, name: str) -> str:
        """The record's name: the API's carries its port, so two API processes (blue-green) on one
        data directory are two records, as they are two units under systemd."""
        return f"api-{self.settings.api_port}" if name == "api" else name

    def pid_file_name(self, s: ServiceSpec) -> str:
        return api_pid_name(self.settings.api_port) if s.name == "api" else s.process

    # -- records ----------------------------------------------------------------------------------

    def _record_path(self, name: str) -> Path:
        return self.state_dir / f"{self.key(name)}.json"

    def _read(self, name: str) -> Record | None:
        try:
            return Record(**json.loads(self._record_path(name).read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return None

    def _write(self, name: str, record: Record) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        path = self._record_path(name)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(asdict(record)), encoding="utf-8")
        os.replace(tmp, path)

    def _event(self, name: str, event: str, level: str = "info", **fields: object) -> None:
        # The supervisor's own lines use the processes' JSON shape so `atlas-ops logs` reads one format.
        path = log_path(self.settings.data_dir, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        line: dict[str, object] = {"event": event, "level": level, "process": "supervisor", "service": name}
        line |= {"timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **fields}
        with path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")

    def _process(self, record: Record | None) -> psutil.Process | None:
        """The recorded process if it is still the one we started and has not exited."""
        if record is None:
            return None
        try:
            proc = psutil.Process(record.pid)
            if abs(proc.create_time() - record.create_time) > CREATE_TIME_SLACK_SECONDS:
                return None  # the pid now belongs to another process
            if proc.status() == psutil.STATUS_ZOMBIE:
                _reap(record.pid)
                return None
            return proc
        except psutil.Error:
            return None

    # -- the interface -----------------------------------------------------------------------------

    def status(self, name: str) -> ServiceStatus:
        s = spec(name)
        if not self.installed(s.command):
            return ServiceStatus(
                name, "not-installed", self.backend, message=f"`atlas {s.command}` is not in this build"
            )
        record = self._read(name)
        proc = self._process(record)
        if record is not None and proc is not None:
            return self._running(name, proc, record.create_time)
        if record is not None and record.desired == "running":
            return ServiceStatus(
                name,
                "failed",
                self.backend,
                pid=record.pid,
                message=f"pid {record.pid} is gone; log {log_path(self.settings.data_dir, name)}",
                log_tail=tail(log_path(self.settings.data_dir, name), LOG_TAIL_LINES),
            )
        inside = self._inside_up(name)
        if inside is not None:
            return inside
        return ServiceStatus(name, "stopped", self.backend)

    def _inside_up(self, name: str) -> ServiceStatus | None:
        """The service's status when a running `atlas up` serves it (one process: the API, the
        engine, the exporter and the alert router), else None. The supervisor neither started it
        nor can stop it: `atlas up` is stopped as a whole."""
        port = UP_SERVICES.get(name)
        if port is None or (port and not getattr(self.settings, port)):  # a port of 0: left out
            return None
        try:
            pid = int((run_dir(self.settings.data_dir) / f"{UP_PROCESS}.pid").read_text(encoding="ascii"))
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE or "up" not in proc.cmdline():
                return None  # a pid file left by a killed `atlas up`, its pid since reused
            started = proc.create_time()
        except (OSError, ValueError, psutil.Error):
            return None
        status = self._running(name, proc, started)
        status.message = f"inside `atlas up` (pid {pid}): stop or restart `atlas up` itself"
        return status

    def _running(self, name: str, proc: psutil.Process, create_time: float) -> ServiceStatus:
        """A running service's status: its process's pid, uptime, RSS and the service's health."""
        try:
            rss: int | None = proc.memory_info().rss
        except psutil.Error:
            rss = None
        return ServiceStatus(
            name,
            "running",
            self.backend,
            pid=proc.pid,
            uptime_seconds=max(0.0, time.time() - create_time),
            rss_bytes=rss,
            health=health_verdict(self.settings, name),
        )

    def start(self, name: str) -> ServiceStatus:
        s = spec(name)
        current = self.status(name)
        if current.state in ("running", "not-installed"):
            if current.state == "running":
                current.message = "already running"
            return current
        # -P: the working directory is not put on sys.path, so `atlas` is the interpreter's own
        # (a release's), never a checkout atlas-ops happens to be run from.
        argv = [self.python, "-P", "-m", "atlas", s.command]
        path = log_path(self.settings.data_dir, name)
        self._event(name, "starting", argv=argv)
        pid = _spawn(argv, self.env, path)
        try:
            created = psutil.Process(pid).create_time()
        except psutil.Error:
            created = time.time()  # exited already: the readiness wait below reports it
        self._write(name, Record(pid, created, time.time(), argv, "running"))
        exit_code: list[int] = []

        def exited() -> bool:
            code = _exit_code(pid)
            if code is not None:
                exit_code.append(code)
            return bool(exit_code)

        if not wait_until(lambda: exited() or self._ready(s, pid), self.start_timeout):
            self._kill_group(pid)
            wait_until(exited, 10.0)
            self._event(name, "not ready in time; killed", level="error", timeout=self.start_timeout)
            raise ServiceError(
                f"{name} was not ready within {self.start_timeout:g}s; see {path}:\n"
                + "\n".join(tail(path, LOG_TAIL_LINES))
            )
        if exit_code:
            self._event(name, "exited during start", level="error", exit_code=exit_code[0])
            raise ServiceError(
                f"{name} exited with code {exit_code[0]} while starting; see {path}:\n"
                + "\n".join(tail(path, LOG_TAIL_LINES))
            )
        self._event(name, "ready", pid=pid)
        return self.status(name)

    def _ready(self, s: ServiceSpec, pid: int) -> bool:
        if s.readiness == "http":
            return api_ready(self.settings, timeout=1.0)
        try:
            written = (run_dir(self.settings.data_dir) / f"{self.pid_file_name(s)}.pid").read_text(
                encoding="ascii"
            )
        except OSError:
            return False
        return written.strip() == str(pid)

    def stop(self, name: str) -> ServiceStatus:
        s = spec(name)
        record = self._read(name)
        proc = self._process(record)
        if record is None:
            return self.status(name)
        if proc is not None:
            self._event(name, "stopping", pid=record.pid, grace_seconds=self.stop_grace)
            try:
                proc.send_signal(signal.SIGTERM)  # the process drains (the engine gives back leases)
            except psutil.Error:
                pass
            if not wait_until(lambda: self._process(record) is None, self.stop_grace):
                self._event(name, "grace period over; SIGKILL", level="warning", pid=record.pid)
                self._kill_group(record.pid)
                wait_until(lambda: self._process(record) is None, 10.0)
        # A killed process leaves its pid file behind; the exporter would keep looking for it.
        pid_file = run_dir(self.settings.data_dir) / f"{self.pid_file_name(s)}.pid"
        try:
            if pid_file.read_text(encoding="ascii").strip() == str(record.pid):
                pid_file.unlink()
        except OSError:
            pass
        record.desired = "stopped"
        self._write(name, record)
        self._event(name, "stopped", pid=record.pid)
        return self.status(name)

    def restart(self, name: str) -> ServiceStatus:
        self.stop(name)
        return self.start(name)

    def log_lines(self, name: str, lines: int) -> list[str]:
        spec(name)
        return tail(log_path(self.settings.data_dir, name), lines)

    def running_pids(self) -> dict[str, int]:
        """{service: pid} of every service this supervisor runs right now (an API on another port
        than this supervisor's as `api-<port>`)."""
        out = {}
        for stem in [p.stem for p in sorted(self.state_dir.glob("*.json"))]:
            name = "api" if stem == self.key("api") else stem
            try:
                record = Record(**json.loads((self.state_dir / f"{stem}.json").read_text(encoding="utf-8")))
            except (OSError, ValueError, TypeError):
                continue
            if self._process(record) is not None:
                out[name] = record.pid
        return out

    @staticmethod
    def _kill_group(pid: int) -> None:
        try:
            os.killpg(pid, signal.SIGKILL)  # the session leader's group: its workers too
        except (ProcessLookupError, PermissionError):
            pass


def _spawn(argv: list[str], env: dict[str, str], log: Path) -> int:
    """Start `argv` in a new session, stdin from /dev/null, stdout and stderr appended to `log`.

    posix_spawn rather than subprocess.Popen: the process outlives this one, and a Popen object
    dropped while its process runs is a ResourceWarning (an error under `pytest -W error`).
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    return os.posix_spawn(argv[0], argv, env, file_actions=actions, setsid=True)


def _exit_code(pid: int) -> int | None:
    """The exit code of our child `pid` once it has exited (reaping it), else None."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        # Not our child (started by another atlas-ops): exited when it no longer exists.
        return None if psutil.pid_exists(pid) else -1
    return os.waitstatus_to_exitcode(status) if done == pid else None


def _reap(pid: int) -> None:
    # Only our own children can be reaped; anyone else's zombie is its parent's business.
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass

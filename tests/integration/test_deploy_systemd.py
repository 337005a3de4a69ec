"""The deployment manager on the systemd backend (this machine has no systemd as PID 1).

systemctl is the seam, as in tests/unit/test_service_systemd.py: `Systemctl` records each argv
and answers as systemd would for units whose ExecStart is <prefix>/current/bin/atlas, i.e. a unit
(re)started runs the release `current` points at *at that moment*. Everything else is real:
releases prepared with `--link-current-env`, the SQLite store, the migration check, the health
gates read over HTTP from a small server on 127.0.0.1 at the blue and green ports (it answers for
the release its port's unit runs), nginx's upstream include rewritten and a real reload command.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from atlas.ops import deploy as dm
from atlas.ops import releases
from atlas.ops.nginx import Nginx
from atlas.ops.services import names
from atlas.settings import Settings
from atlas.store import open_store
from tests.conftest import ROOT

BAD = "v3"  # a release whose API answers /health unhealthy


@dataclass
class Systemctl:
    """Records (verb, unit, release `current` points at, nginx's upstream port) per state change."""

    prefix: Path
    upstream: Path
    running: dict[str, str] = field(default_factory=dict)  # unit -> release it runs
    calls: list[tuple[str, str, str, int | None]] = field(default_factory=list)

    def current(self) -> str:
        return Path(os.readlink(self.prefix / "current")).name

    def __call__(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        assert argv[0] == "systemctl", argv
        verb, unit = argv[1], argv[2]
        out = ""
        if verb == "show":
            active = "active" if unit in self.running else "inactive"
            out = f"LoadState=loaded\nActiveState={active}\nSubState=x\nMainPID=0\n"
        else:
            self.calls.append((verb, unit, self.current(), Nginx(self.upstream).current_port()))
            if verb in ("start", "restart"):
                self.running[unit] = self.current()
            elif verb == "stop":
                self.running.pop(unit, None)
        return subprocess.CompletedProcess(list(argv), 0, out, "")

    def changes(self) -> list[tuple[str, str, str, int | None]]:
        done, self.calls = self.calls, []
        return done


def _health_server(sim: Systemctl) -> ThreadingHTTPServer:
    """/health/ready, /health and the smoke ingest of the API unit bound to this server's port."""

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, code: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            release = sim.running.get(f"atlas-api@{self.server.server_address[1]}.service")
            if release is None:
                self._answer(503, {"status": "unhealthy", "reasons": ["down"]})
            elif self.path == "/health/ready":
                self._answer(200, {"status": "ready"})
            elif self.path == "/health":
                self._answer(
                    200, {"status": "unhealthy" if release == BAD else "healthy", "release": release}
                )
            else:
                self._answer(200, {"id": self.path.rsplit("/", 1)[-1]})

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self._answer(202, {"id": "smoke-1"})

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


@pytest.fixture(scope="module")
def release_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    prefix = tmp_path_factory.mktemp("releases")
    for version in ("v1", "v2", BAD):
        releases.prepare(prefix, ROOT, version, link_env=True)
    return prefix / "releases"


@dataclass
class Host:
    target: dm.Target
    sim: Systemctl
    blue: int
    green: int


@pytest.fixture
def host(tmp_path: Path, release_dir: Path) -> Iterator[Host]:
    prefix = tmp_path / "opt"
    prefix.mkdir()
    (prefix / "releases").symlink_to(release_dir)
    (prefix / "current").symlink_to(prefix / "releases" / "v1")
    upstream = tmp_path / "atlas-upstream.conf"
    sim = Systemctl(prefix, upstream)
    servers = [_health_server(sim), _health_server(sim)]
    blue, green = (s.server_address[1] for s in servers)
    settings = Settings(data_dir=tmp_path / "data", api_port=blue, exporter_port=0)
    open_store(settings, migrate=True).close()
    for name in names("all"):
        unit = f"atlas-api@{blue}.service" if name == "api" else f"atlas-{name}.service"
        sim.running[unit] = "v1"
    (prefix / "deploy").mkdir()
    (prefix / "deploy" / "prod.json").write_text(json.dumps({"version": "v1", "api_port": blue}))
    reloads = tmp_path / "reloads"
    target = dm.Target(
        prefix=prefix,
        environment="prod",
        settings=settings,
        env={},
        backend="systemd",
        ports=(blue, green),
        nginx=Nginx(upstream, reload_command=f"sh -c 'echo reload >> {reloads}'"),
        gate_timeout=5.0,
        drain_timeout=0.0,
        by="test",
        systemctl=sim,
    )
    target.nginx.write(blue)  # type: ignore[union-attr]
    yield Host(target, sim, blue, green)
    for s in servers:
        s.shutdown()
        s.server_close()


ROLLING_ORDER = ["core", "services", "monitoring", "exporter", "alert-router", "api"]


def _unit(name: str, port: int) -> str:
    return f"atlas-api@{port}.service" if name == "api" else f"atlas-{name}.service"


def test_rolling_points_current_before_each_restart_and_a_failed_gate_goes_back(host: Host) -> None:
    t, sim = host.target, host.sim
    entry = dm.deploy(t, "v2", "rolling", backup=False)
    assert entry["result"] == "ok" and entry["backend"] == "systemd"
    restarts = [(verb, unit, cur) for verb, unit, cur, _ in sim.changes()]
    assert restarts == [("restart", _unit(n, host.blue), "v2") for n in ROLLING_ORDER]
    assert sim.current() == "v2"

    # v3's API fails its gate (/health unhealthy): everything restarted goes back to v2.
    with pytest.raises(dm.DeployError, match=r"api failed its gate on v3.*rolled back to v2"):
        dm.deploy(t, BAD, "rolling", backup=False)
    restarts = [(verb, unit, cur) for verb, unit, cur, _ in sim.changes()]
    forward = [("restart", _unit(n, host.blue), BAD) for n in ROLLING_ORDER]
    back = [("restart", _unit(n, host.blue), "v2") for n in reversed(ROLLING_ORDER)]
    assert restarts == forward + back
    assert sim.current() == "v2" and set(sim.running.values()) == {"v2"}
    assert dm.read_state(t)["version"] == "v2"

    # (c) rollback to v1 re-points current and restarts every service on it.
    entry = dm.rollback(t, "v1", "rolling", backup=False)
    assert (entry["action"], entry["result"], entry["from_version"]) == ("rollback", "ok", "v2")
    restarts = [(verb, unit, cur) for verb, unit, cur, _ in sim.changes()]
    assert restarts == [("restart", _unit(n, host.blue), "v1") for n in ROLLING_ORDER]
    assert sim.current() == "v1"

    # (d) every attempt is in the history with its backend.
    got = [(e["version"], e["result"], e["backend"]) for e in dm.history(t.prefix, "prod")]
    assert got == [("v2", "ok", "systemd"), (BAD, "failed", "systemd"), ("v1", "ok", "systemd")]


def test_blue_green_starts_the_idle_port_on_the_new_release_switches_then_stops_the_old(
    host: Host,
) -> None:
    t, sim = host.target, host.sim
    live, idle = host.blue, host.green
    entry = dm.deploy(t, "v2", "blue-green", backup=False)
    assert (entry["result"], entry["api_port"], entry["backend"]) == ("ok", idle, "systemd")
    calls = sim.changes()
    others = [n for n in ROLLING_ORDER if n != "api"]
    assert calls == [
        ("stop", f"atlas-api@{idle}.service", "v1", live),  # a leftover of an earlier attempt
        ("start", f"atlas-api@{idle}.service", "v2", live),  # the new color, before the switch
        *[("restart", _unit(n, live), "v2", live) for n in others],
        ("stop", f"atlas-api@{live}.service", "v2", idle),  # after the switch, current stays on v2
    ]
    assert (t.prefix.parent / "reloads").read_text() == "reload\n"
    assert sim.current() == "v2" and sim.running[f"atlas-api@{idle}.service"] == "v2"

    # A release whose API fails its gate: the new color stops, traffic and current stay.
    with pytest.raises(dm.DeployError, match="failed before the switch"):
        dm.deploy(t, BAD, "blue-green", backup=False)
    calls = sim.changes()
    assert calls == [
        ("stop", f"atlas-api@{live}.service", "v2", idle),
        ("start", f"atlas-api@{live}.service", BAD, idle),
        ("stop", f"atlas-api@{live}.service", BAD, idle),
    ]
    assert sim.current() == "v2" and Nginx(sim.upstream).current_port() == idle
    assert (t.prefix.parent / "reloads").read_text() == "reload\n"
    last = dm.history(t.prefix, "prod")[-1]
    assert (last["version"], last["result"], last["backend"]) == (BAD, "failed", "systemd")


def test_blue_green_failing_at_or_after_the_switch_puts_current_and_the_others_back(
    host: Host,
) -> None:
    t, sim = host.target, host.sim
    live, idle = host.blue, host.green
    others = [n for n in ROLLING_ORDER if n != "api"]
    undo = [("restart", _unit(n, live), "v1", live) for n in reversed(others)]

    # nginx's reload fails: the include is put back, the new color stops, the others return to v1.
    refused = replace(t, nginx=Nginx(sim.upstream, reload_command="false"))
    with pytest.raises(dm.DeployError, match="nginx switch failed, traffic stays"):
        dm.deploy(refused, "v2", "blue-green", backup=False)
    calls = sim.changes()
    assert calls[-len(undo) - 1 :] == [("stop", f"atlas-api@{idle}.service", "v2", live), *undo]
    assert sim.current() == "v1" and Nginx(sim.upstream).current_port() == live

    # nginx's old workers do not exit (a child of this process stands in as one): switched back.
    worker = subprocess.Popen(["sleep", "60"])
    try:
        master = t.prefix.parent / "nginx.pid"
        master.write_text(str(os.getpid()))
        stuck = replace(t, nginx=replace(t.nginx, pid_file=master))  # type: ignore[type-var]
        with pytest.raises(dm.DeployError, match="traffic switched back"):
            dm.deploy(stuck, "v2", "blue-green", backup=False)
    finally:
        worker.kill()
        worker.wait()
    calls = sim.changes()
    assert calls[-len(undo) - 1 :] == [("stop", f"atlas-api@{idle}.service", "v2", live), *undo]
    assert sim.current() == "v1" and Nginx(sim.upstream).current_port() == live
    assert sim.running[f"atlas-api@{live}.service"] == "v1"

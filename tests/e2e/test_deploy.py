"""The deployment manager for real: Debian's nginx on 127.0.0.1 in front of two API processes (the
blue and green ports) and an engine, all under the local supervisor, releases prepared with
`deploy prepare --link-current-env` (each its own interpreter and copy of the source tree).

One stack serves every case, in order (each leaves the state the next starts from):
1. blue-green to v1 under a steady stream of ingest through nginx: zero failed requests, every
   acknowledged item stored, /health's release changes, the old color's process and pid file gone;
2. blue-green to a release whose API exits at start: refused at the gate, nginx untouched,
   the old color keeps serving (requests keep succeeding through the attempt);
3. rolling to a release whose engine exits at start: the first failed gate (the engine rolls
   first) restarts it on v1 and stops the rollout; then `rollback --target-version v1` and
   `deployment status`;
4. a release with a pending migration not marked backward compatible is refused (exit 2).

The faulty releases are copies of this source tree with a fault appended to the copy's
atlas/ops/processes.py (a real release with a real defect; the running code is not touched).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from atlas.api.keys import create_key
from atlas.config.loader import load_settings
from atlas.ops import releases
from atlas.ops.services import wait_until
from atlas.ops.services.local import LocalSupervisor
from atlas.store import open_store
from tests.conftest import ROOT, atlas_env, require_program
from tests.helpers.net import free_port

SHIM = ROOT / "tools" / "deployment_manager.py"

BAD_API = """
# Test fault: this release's API exits at start, so it never passes /health/ready.
def run_api(settings: Settings) -> int:  # noqa: F811
    raise SystemExit(3)
"""
BAD_CORE = """
# Test fault: this release's engine exits at start.
def run_core(settings: Settings, *, pipeline: str | None, process: str) -> int:  # noqa: F811
    raise SystemExit(3)
"""
UNMARKED_MIGRATION = (
    "-- Adds a column the previous release does not know about.\nALTER TABLE items ADD COLUMN x TEXT;\n"
)


@dataclass
class Stack:
    root: Path
    env: dict[str, str]
    blue: int
    green: int
    front: int  # nginx
    upstream: Path
    api_key: str = ""
    settings: Any = None
    extra: dict[str, str] = field(default_factory=dict)

    def cli(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(SHIM), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def health(self) -> dict[str, Any]:
        body: dict[str, Any] = httpx.get(f"http://127.0.0.1:{self.front}/health", timeout=10).json()
        return body

    def upstream_port(self) -> int:
        text = self.upstream.read_text(encoding="utf-8")
        return int(text.split("server 127.0.0.1:", 1)[1].split(";", 1)[0])


def _source_copy(dest: Path, fault: str = "", migration: str = "") -> Path:
    ignore = shutil.ignore_patterns("__pycache__")
    dest.mkdir(parents=True)
    shutil.copytree(ROOT / "atlas", dest / "atlas", ignore=ignore)
    shutil.copytree(ROOT / "exporters", dest / "exporters", ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")
    if fault:
        with (dest / "atlas" / "ops" / "processes.py").open("a", encoding="utf-8") as f:
            f.write(fault)
    if migration:
        (dest / "atlas" / "store" / "migrations" / "0999_deploy_test.sql").write_text(
            migration, encoding="utf-8"
        )
    return dest


def _nginx_conf(root: Path, port: int, upstream: Path) -> Path:
    for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (root / "tmp" / d).mkdir(parents=True, exist_ok=True)
    conf = root / "nginx.conf"
    conf.write_text(
        f"""
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {root}/tmp/body;
    proxy_temp_path {root}/tmp/proxy;
    fastcgi_temp_path {root}/tmp/fastcgi;
    uwsgi_temp_path {root}/tmp/uwsgi;
    scgi_temp_path {root}/tmp/scgi;
    include {upstream};
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://atlas_api;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
""",
        encoding="utf-8",
    )
    return conf


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    nginx = require_program("nginx", "nginx")
    root = tmp_path_factory.mktemp("deploy")
    (root / "config").mkdir()
    blue, green, front = free_port(), free_port(), free_port()
    web = root / "nginx"
    upstream = web / "atlas-upstream.conf"
    web.mkdir()
    upstream.write_text(f"upstream atlas_api {{ server 127.0.0.1:{blue}; }}\n", encoding="utf-8")
    conf = _nginx_conf(web, front, upstream)
    nginx_argv = [nginx, "-p", str(web), "-c", str(conf), "-e", str(web / "error.log")]
    env = atlas_env(
        root / "data",
        ATLAS_CONFIG_DIR=str(root / "config"),
        ATLAS_ENVIRONMENT="staging",
        ATLAS_API_HOST="127.0.0.1",
        ATLAS_API_PORT=str(blue),
        ATLAS_WORKERS="1",
        ATLAS_SERVICE_BACKEND="local",
        ATLAS_INSTALL_PREFIX=str(root / "opt"),
        ATLAS_DEPLOY_BLUE_PORT=str(blue),
        ATLAS_DEPLOY_GREEN_PORT=str(green),
        ATLAS_NGINX_UPSTREAM_FILE=str(upstream),
        ATLAS_NGINX_RELOAD_COMMAND=" ".join([*nginx_argv, "-s", "reload"]),
        ATLAS_NGINX_PID_FILE=str(web / "nginx.pid"),
        ATLAS_DEPLOY_DRAIN_TIMEOUT_SECONDS="20",
    )
    s = Stack(root, env, blue, green, front, upstream)
    s.settings = load_settings(env, secrets=False)
    supervisor = LocalSupervisor(s.settings, env=env)
    started_nginx = False
    try:
        supervisor.start("core")
        supervisor.start("api")
        subprocess.run(nginx_argv, check=True, capture_output=True, timeout=30)
        started_nginx = True
        store = open_store(s.settings, migrate=False)
        try:
            s.api_key = str(create_key(store, s.settings.api_key_pepper, "test", ["ingest", "read"])["key"])
        finally:
            store.close()
        src = root / "src"
        # v1 through the CLI; the faulty ones in-process (each CLI start costs seconds on a busy machine).
        done = s.cli(
            "deploy", "prepare", str(_source_copy(src / "v1")), "--version", "v1", "--link-current-env"
        )
        assert done.returncode == 0, done.stderr
        prefix = root / "opt"
        releases.prepare(prefix, _source_copy(src / "bad-api", BAD_API), "v-bad-api", link_env=True)
        releases.prepare(prefix, _source_copy(src / "bad-core", BAD_CORE), "v-bad-core", link_env=True)
        migration = _source_copy(src / "migration", migration=UNMARKED_MIGRATION)
        releases.prepare(prefix, migration, "v-migration", link_env=True)
        yield s
    finally:
        if started_nginx:
            subprocess.run([*nginx_argv, "-s", "stop"], capture_output=True, timeout=30, check=False)
        for port in (blue, green):
            sup = LocalSupervisor(load_settings(env | {"ATLAS_API_PORT": str(port)}, secrets=False), env=env)
            sup.stop("api")
        supervisor.stop("core")


class Load:
    """Posts one item at a time through nginx until stopped, a new connection per request (a
    client's keep-alive connection to an nginx worker that is being replaced may be closed under
    it by any nginx reload; that is nginx's behaviour, not the switch's)."""

    def __init__(self, s: Stack) -> None:
        self.s = s
        self.acked: list[str] = []
        self.failures: list[str] = []
        self.releases: set[str | None] = set()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        url = f"http://127.0.0.1:{self.s.front}"
        headers = {"Authorization": f"Bearer {self.s.api_key}"}
        limits = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(timeout=30, headers=headers, limits=limits) as client:
            n = 0
            while not self.stop.is_set():
                n += 1
                try:
                    r = client.post(
                        f"{url}/v1/items", json={"content": f"doc {n}", "content_type": "text/plain"}
                    )
                    if r.status_code == 202:
                        self.acked.append(r.json()["id"])
                    else:
                        self.failures.append(f"{r.status_code} {r.text[:200]}")
                    if n % 10 == 0:
                        self.releases.add(client.get(f"{url}/health").json().get("release"))
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))

    def __enter__(self) -> Load:
        self.thread.start()
        assert wait_until(lambda: len(self.acked) >= 5 or bool(self.failures), 60), "no load got through"
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=60)

    def more(self, count: int) -> None:
        target = len(self.acked) + count
        assert wait_until(lambda: len(self.acked) >= target or bool(self.failures), 60)


def test_blue_green_under_load_switches_with_zero_failed_requests(stack: Stack) -> None:
    assert stack.health()["release"] is None  # started from the test's own environment
    with Load(stack) as load:
        done = stack.cli(
            "deploy", "--version", "v1", "--environment", "staging",
            "--strategy", "blue-green", "--format", "json",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        load.more(10)
    assert load.failures == []
    assert stack.health()["release"] == "v1"
    assert load.releases >= {None, "v1"}
    assert stack.upstream_port() == stack.green
    store = open_store(stack.settings, migrate=False)
    try:
        missing = [i for i in load.acked if store.get_item(i) is None]
    finally:
        store.close()
    assert len(load.acked) > 20 and missing == []
    entry = json.loads(done.stdout)
    assert entry["result"] == "ok" and entry["color"] == "green" and Path(entry["backup"]).is_file()
    run = stack.root / "data" / "run"
    assert (run / f"atlas-api-{stack.green}.pid").is_file()
    assert not (run / f"atlas-api-{stack.blue}.pid").exists()  # the old color was stopped
    # The engine was rolled onto the release too: it runs the release's interpreter.
    core_pid = int((run / "atlas-core.pid").read_text(encoding="ascii"))
    assert "releases/v1/bin/python" in " ".join(psutil.Process(core_pid).cmdline())


def test_blue_green_with_a_failing_gate_never_moves_traffic(stack: Stack) -> None:
    # What serves before (after the test above: v1 on green), so that this test also holds alone.
    live, release = stack.upstream_port(), stack.health()["release"]
    idle = stack.blue if live == stack.green else stack.green
    with Load(stack) as load:
        done = stack.cli(
            "deploy", "--version", "v-bad-api", "--environment", "staging",
            "--strategy", "blue-green", "--no-backup",
        )  # fmt: skip
        load.more(5)
    assert done.returncode == 1, done.stderr
    assert "before the switch" in done.stderr and "api exited with code 3" in done.stderr
    assert load.failures == []
    assert stack.upstream_port() == live
    assert stack.health()["release"] == release
    assert not (stack.root / "data" / "run" / f"atlas-api-{idle}.pid").exists()  # the new color stopped


def test_rolling_rolls_back_a_release_whose_engine_fails_its_gate(stack: Stack) -> None:
    run = stack.root / "data" / "run"
    if stack.health()["release"] != "v1":  # run alone: v1 first, as the first test leaves it
        done = stack.cli("deploy", "--version", "v1", "--environment", "staging", "--strategy", "blue-green")
        assert done.returncode == 0, done.stderr
    done = stack.cli(
        "deploy", "--version", "v-bad-core", "--environment", "staging", "--strategy", "rolling",
        "--no-backup", "--gate-timeout", "20",
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "core failed its gate" in done.stderr and "core exited with code 3" in done.stderr
    assert "rolled back to v1" in done.stderr
    core_pid = int((run / "atlas-core.pid").read_text(encoding="ascii"))
    assert "releases/v1/bin/python" in " ".join(psutil.Process(core_pid).cmdline())
    assert stack.health()["release"] == "v1"  # the API (rolled last) was never touched

    done = stack.cli("rollback", "--environment", "staging", "--target-version", "v1", "--no-backup")
    assert done.returncode == 0, done.stderr
    assert stack.upstream_port() == stack.blue and stack.health()["release"] == "v1"

    done = stack.cli("deployment", "status", "--environment", "staging", "--format", "json")
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert (status["version"], status["color"]) == ("v1", "blue")
    assert status["services"]["api"]["state"] == status["services"]["core"]["state"] == "running"
    results = [(h["action"], h["version"], h["result"]) for h in status["history"]]
    # Oldest first; the blue-green test's failed v-bad-api sits between when the module runs whole.
    assert results[0] == ("deploy", "v1", "ok")
    assert results[-2:] == [("deploy", "v-bad-core", "failed"), ("rollback", "v1", "ok")]
    assert set(results[1:-2]) <= {("deploy", "v-bad-api", "failed")}
    assert all(h["by"] for h in status["history"])

    listed = stack.cli("version", "list", "--format", "json")
    rows = {r["version"]: r for r in json.loads(listed.stdout)}
    assert rows["v1"]["current_in"] == ["staging"] and rows["v1"]["last_deployed_at"]
    assert rows["v-bad-core"]["current_in"] == [] and rows["v-bad-core"]["last_deployed_at"] is None


def test_a_release_with_an_unmarked_migration_is_refused(stack: Stack) -> None:
    done = stack.cli("deploy", "--version", "v-migration", "--environment", "staging", "--no-backup")
    assert done.returncode == 2, done.stderr
    assert "0999_deploy_test.sql" in done.stderr and "backward" in done.stderr
    assert stack.health()["release"] == "v1"

"""Drills: every failure mode an Atlas operator must hear about, caused for real against a live
Atlas, must raise its alert in a real Prometheus within `for` + 2 evaluation intervals (plus a
bounded slack for scrapes), and the alert must resolve once the fault is removed.

One stack for every drill: `atlas core`, `api`, `exporter`, `services` and `alert-router` as
separate processes under the local supervisor, an HTTP origin on 127.0.0.1 whose `localhost`
host can be made to fail, and Debian's Prometheus (1 s scrapes and evaluations) with the rules
compiled from a test copy of alerting.yaml (tests/helpers/drills.py). Faults that do not touch
each other run at the same time, in phases; each phase removes its faults and waits for every
alert it raised to resolve before the next begins. The table of seconds to firing and to
resolution is printed at the end (README: Alerting, Drills).
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from atlas.alerting.signals import alert_name
from atlas.api.keys import create_key
from atlas.config.loader import load_settings
from atlas.ops.backup import create_backup
from atlas.ops.services.local import LocalSupervisor
from atlas.settings import Settings
from atlas.store import open_store
from tests.conftest import atlas_env, require_program
from tests.helpers.drills import (
    DRILL_ALERTS,
    Alerts,
    Drill,
    caused,
    compile_drill_rules,
    process,
    prometheus_config,
    removed,
)
from tests.helpers.engine import wait_for
from tests.helpers.net import free_port
from tests.helpers.origin import Origin, running_origin
from tests.helpers.router import config_dir

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(420)]

SERVICES = ("core", "api", "exporter", "services", "alert-router")  # start order: core makes the schema
CRASHING_PIPELINE = "tests.helpers.pipelines:crash_after_start"

TABLE: list[Drill] = []


@pytest.fixture(autouse=True)
def _table_rows(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test's rows of the drills' table, once measured; tests/conftest.py prints them at the end
    of the run, also when this file ran in an xdist worker (user properties travel with reports)."""
    start = len(TABLE)
    yield
    request.node.user_properties.extend(("drill", d.row()) for d in TABLE[start:])


@dataclass
class Live:
    env: dict[str, str]
    settings: Settings
    supervisor: LocalSupervisor
    alerts: Alerts
    origin: Origin
    api: httpx.Client
    root: Path
    backed_up: float  # time.monotonic() of the last backup

    def post_items(self, items: list[dict[str, Any]]) -> list[int]:
        return [self.api.post("/v1/items", json=item).status_code for item in items]

    def backup(self) -> None:
        # What `atlas-ops backup create` runs, in this process (a CLI start costs seconds here).
        create_backup(self.settings, self.root / "backups")

    def core_argv(self, *extra: str) -> list[str]:
        return [sys.executable, "-m", "atlas", "core", *extra]


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    prometheus = require_program("prometheus", "prometheus")
    root = tmp_path_factory.mktemp("drills")
    ports = {job: free_port() for job in ("node", "atlas-api", "atlas-core", "atlas-router")}
    prom_port = free_port()
    cfg = config_dir(root, webhook_url="http://127.0.0.1:9/unused")
    env = atlas_env(
        root / "data",
        ATLAS_CONFIG_DIR=str(cfg),
        ATLAS_ENVIRONMENT="development",
        ATLAS_SERVICE_BACKEND="local",
        ATLAS_API_HOST="127.0.0.1",
        ATLAS_API_PORT=str(ports["atlas-api"]),
        ATLAS_CORE_METRICS_HOST="127.0.0.1",
        ATLAS_CORE_METRICS_PORT=str(ports["atlas-core"]),
        ATLAS_EXPORTER_PORT=str(ports["node"]),
        ATLAS_ROUTER_PORT=str(ports["atlas-router"]),
        ATLAS_WORKERS="1",
        ATLAS_LEASE_SECONDS="6",  # heartbeats every 2 s: a dead engine shows within seconds
        ATLAS_FETCH_ALLOW_HOSTS="127.0.0.1,localhost",
        ATLAS_HOST_RATE_OVERRIDES="127.0.0.1=1000,localhost=1000",
        ATLAS_MAX_ATTEMPTS="3",
        ATLAS_BACKOFF_BASE_SECONDS="0.2",
        ATLAS_BACKOFF_CAP_SECONDS="1",
        ATLAS_BREAKER_MIN_CALLS="2",
        ATLAS_BREAKER_COOLDOWN_SECONDS="3",
        ATLAS_BREAKER_MAX_COOLDOWN_SECONDS="3",
        ATLAS_DB_BUSY_TIMEOUT_MS="300",  # a held lock fails a write in 0.3 s, not 10 s
    )
    settings = load_settings(env, secrets=False)
    supervisor = LocalSupervisor(settings, env=env)
    rules = compile_drill_rules(root)
    prom_cfg = prometheus_config(root, rules, ports)
    prom_url = f"http://127.0.0.1:{prom_port}"
    prom_argv = [
        prometheus,
        f"--config.file={prom_cfg}",
        f"--storage.tsdb.path={root / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{prom_port}",
    ]
    with running_origin() as origin, process(prom_argv, {}, root / "prometheus.log") as prom:
        try:
            # The engine first (it makes the schema), then the others side by side: each start
            # waits for its process's readiness, and waiting in turn would add the waits up.
            supervisor.start(SERVICES[0])
            with ThreadPoolExecutor(len(SERVICES) - 1) as pool:
                list(pool.map(supervisor.start, SERVICES[1:]))
            store = open_store(settings, migrate=False)
            try:
                key = str(
                    create_key(store, settings.api_key_pepper, "drills", ["ingest", "read", "admin"])["key"]
                )
            finally:
                store.close()
            wait_for(lambda: prom.poll() is None and _ok(f"{prom_url}/-/ready"), 30, "Prometheus")
            alerts = Alerts(prom_url)

            def all_up() -> bool:
                body = httpx.get(f"{prom_url}/api/v1/query", params={"query": "up == 1"}, timeout=5).json()
                return {r["metric"]["job"] for r in body["data"]["result"]} == set(ports)

            wait_for(all_up, 60, "Prometheus to scrape every Atlas target")
            # Never backed up counts as stale: the drills start from a fresh backup and quiet alerts.
            create_backup(settings, root / "backups")
            backed_up = time.monotonic()
            stale = Drill("never backed up", "AtlasBackupAge", removed=backed_up)
            alerts.wait(resolved=[stale])
            # The backup drill's alert fires again 6 s after that backup, by design: not waited for.
            drilled = {alert_name(name) for name in DRILL_ALERTS} - {stale.alert}
            wait_for(
                lambda: not any(a["labels"]["alertname"] in drilled for a in alerts.current()),
                60,
                "no drilled alert pending or firing before the drills",
                poll=0.5,
            )
            with httpx.Client(
                base_url=f"http://127.0.0.1:{ports['atlas-api']}",
                headers={"Authorization": f"Bearer {key}"},
                timeout=30,
                # No idle connection kept open: it would hold up the API's graceful stop each
                # time a drill stops it.
                limits=httpx.Limits(max_keepalive_connections=0),
            ) as api:
                yield Live(env, settings, supervisor, alerts, origin, api, root, backed_up)
        finally:
            for name in reversed(SERVICES):
                supervisor.stop(name)


def _purge_dlq(live: Live) -> None:
    for item in live.api.get("/v1/dlq", params={"limit": 1000}).json()["items"]:
        live.api.delete(f"/v1/dlq/{item['id']}")


def test_dlq_breaker_feed_and_backup_drills(live: Live) -> None:
    port = live.origin.port
    live.origin.failing.add("localhost")
    drills = caused(
        Drill("DLQ growing (404s from a local host)", "AtlasDeadLetters"),
        Drill("host breaker open (local host answers 500)", "AtlasCircuitOpenHosts"),
        Drill("feed failing (its host answers 500)", "AtlasFeedsFailing"),
        Drill("backup stale (none for 6 s)", "AtlasBackupAge", lag=6),
    )
    drills[-1].caused = live.backed_up  # the fault: no backup since the fixture's
    TABLE.extend(drills)
    feed = live.api.post("/v1/feeds", json={"url": f"http://localhost:{port}/feed.rss"})
    assert feed.status_code == 201, feed.text
    items = [{"url": f"http://127.0.0.1:{port}/status?code=404&n={i}"} for i in range(4)]
    items += [{"url": f"http://localhost:{port}/article/{i}"} for i in range(6)]
    assert set(live.post_items(items)) == {202}
    live.alerts.wait(firing=drills)

    live.origin.failing.clear()
    assert live.api.post(f"/v1/feeds/{feed.json()['id']}/poll").status_code == 202
    # A probe through the half-open breaker closes it; items that died meanwhile are purged too.
    assert set(live.post_items([{"url": f"http://localhost:{port}/article/{i}"} for i in range(10, 12)])) == {
        202
    }
    live.backup()
    removed(drills)
    live.alerts.wait(resolved=drills, tick=lambda: _purge_dlq(live))


def test_engine_killed_backlog_maintenance_and_locked_database_drills(live: Live) -> None:
    pid = live.supervisor.status("core").pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    engine = caused(
        Drill("engine killed (SIGKILL atlas core)", "AtlasEngineHeartbeatAge", lag=5 + 2),
        Drill("engine killed (SIGKILL atlas core)", "AtlasTargetDown", {"job": "atlas-core"}),
        Drill("backlog growing (engine stopped, ingest continues)", "AtlasQueueBacklog"),
    )
    assert set(live.post_items([{"content": f"backlog {i}", "source": "drill"} for i in range(8)])) == {202}
    # With no engine writing, the only other writer is a connection holding the lock: the API's
    # writes give up after ATLAS_DB_BUSY_TIMEOUT_MS and are answered 503.
    other = sqlite3.connect(live.settings.sqlite_path, isolation_level=None, timeout=5)
    try:
        other.execute("BEGIN IMMEDIATE")
        locked = caused(
            Drill("API 5xx rate (database locked by another writer)", "AtlasApiErrorRate", window=10),
            Drill("database locked", "AtlasDbLockedErrors", {"job": "atlas-api"}, window=10),
        )
        codes = live.post_items([{"content": f"locked {i}"} for i in range(6)])
        assert set(codes) == {503}, codes
        other.execute("ROLLBACK")
    finally:
        other.close()
    on = live.api.post("/v1/admin/maintenance", json={"enabled": True, "reason": "drill"})
    assert on.status_code == 200, on.text
    maintenance = caused(Drill("maintenance left on", "AtlasMaintenanceAge", lag=1))
    drills = engine + locked + maintenance
    TABLE.extend(drills)
    live.alerts.wait(firing=drills)

    assert live.api.post("/v1/admin/maintenance", json={"enabled": False}).status_code == 200
    live.supervisor.start("core")
    removed(drills)
    live.alerts.wait(resolved=drills)


def test_crash_looping_workers_api_down_exporter_down_and_disk_low_drills(live: Live) -> None:
    live.supervisor.stop("core")
    with ExitStack() as crashing, ExitStack() as low_water:
        crashing.enter_context(
            process(
                live.core_argv("--pipeline", CRASHING_PIPELINE), live.env, live.root / "crashing-core.log"
            )
        )
        # Worker starts on a loaded box (30 s seen at load 18 on 2 cores) before a restart shows.
        crash = caused(
            Drill("workers crash-looping (a pipeline that cannot start)", "AtlasEngineWorkerRestarts", lag=25)
        )
        live.supervisor.stop("api")
        api_down = caused(Drill("API down", "AtlasTargetDown", {"job": "atlas-api"}))
        live.supervisor.stop("exporter")
        exporter_down = caused(Drill("exporter down", "AtlasTargetDown", {"job": "node"}))
        TABLE.extend(crash + api_down + exporter_down)
        live.alerts.wait(firing=crash + api_down + exporter_down)
        crashing.close()
        # The API comes back with its low-water mark above the free space: writes are refused
        # (503). It starts while the engine and the exporter do.
        free = shutil.disk_usage(live.settings.sqlite_path.parent).free
        low = live.env | {"ATLAS_DISK_LOW_WATER_BYTES": str(free + (1 << 40))}
        api = low_water.enter_context(
            process([sys.executable, "-m", "atlas", "api"], low, live.root / "api-low-water.log")
        )
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(live.supervisor.start, ("core", "exporter")))
        removed(crash + exporter_down)
        # Readiness fails under the low-water mark by design: wait for liveness instead.
        live_url = str(live.api.base_url).rstrip("/") + "/health/live"
        wait_for(lambda: api.poll() is None and _ok(live_url), 60, "the low-water API")
        removed(api_down)
        disk = caused(Drill("disk low (low-water mark above free space)", "AtlasApiErrorRate", window=10))
        TABLE.extend(disk)
        n = iter(range(1_000_000))

        def ingest() -> None:
            # Ingest goes on, refused: spread over scrapes, so the new process's 5xx series rises
            # between two of them (a series born at its final value has no rate).
            codes = live.post_items([{"content": f"disk {next(n)}"}])
            assert codes == [503], codes

        live.alerts.wait(firing=disk, resolved=crash + api_down + exporter_down, tick=ingest)
    live.supervisor.start("api")
    removed(disk)
    live.alerts.wait(resolved=disk)

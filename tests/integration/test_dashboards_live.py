"""Every dashboard query against a real Prometheus scraping a live `atlas up` (API, engine metrics,
exporter, alert router) while a small load runs, items fail, a host breaks, a key is rate limited,
maintenance is switched on, a notification fails on one channel and is sent on another, and a second
engine whose workers keep dying restarts them and is then stopped (a scrape target down); then
`atlas-ops dashboards render` draws the overview from that Prometheus.

Each panel's every query (variables as Grafana's "All") goes to query_range and must parse and
return at least one series. Panels that can legitimately be empty are listed in
atlas.dashboards.boards.MAY_BE_EMPTY; this test causes each of those conditions.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from click.testing import CliRunner

from atlas.api.keys import create_key
from atlas.cli.ops import ops
from atlas.dashboards.boards import MAY_BE_EMPTY, all_dashboards
from atlas.dashboards.promql import substitute
from atlas.dashboards.render import HEADER_PX, ROW_PX, WIDTH_PX
from atlas.store.sqlite import SQLiteStore
from tests.conftest import ROOT, atlas_env, require_program
from tests.helpers.engine import wait_for
from tests.helpers.net import free_port
from tests.helpers.origin import running_origin
from tests.helpers.receivers import HttpReceiver
from tests.helpers.router import AUTH as ROUTER_AUTH
from tests.helpers.router import alert, config_dir, payload

COMPILED_RULES = Path(__file__).resolve().parents[2] / "alertrules" / "atlas.rules.yml"

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

SCRAPE_SECONDS = 1
RATE_INTERVAL = (
    "10s"  # Grafana's $__rate_interval for a 1 s scrape and a 2 s step is 4 s; 10 s rides out slow scrapes
)
STEP_SECONDS = 2
# Beside the compiled rules, whose conditions (hours of maintenance, minutes of `for:`) a short test
# does not reach: one real alert on a real condition the test causes, so the ALERTS panel has a series.
STAND_IN_RULES = {
    "groups": [
        {
            "name": "dashboards-live-test",
            "rules": [
                {
                    "alert": "AtlasMaintenanceModeOn",
                    "expr": "atlas_maintenance_mode == 1",
                    "labels": {"severity": "warning"},
                }
            ],
        }
    ]
}


@dataclass
class Live:
    prometheus: str
    start: float


def _get(url: str, **params: Any) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(url, params=params, timeout=10).json()
    return body


def _process(cmd: list[str], env: dict[str, str] | None, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=out)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    prometheus_bin = require_program("prometheus", "prometheus")
    tmp = tmp_path_factory.mktemp("live")
    store = SQLiteStore(tmp / "atlas.db", synchronous="NORMAL")
    key = str(create_key(store, "", "dashboards", ["ingest", "read", "admin"])["key"])
    store.close()
    auth = {"Authorization": f"Bearer {key}"}
    api_port, core_port, exporter_port, prom_port = (free_port() for _ in range(4))
    router_port, dying_port, closed_port = (free_port() for _ in range(3))
    # The router's channels: the webhook answers 200 (sent), the mail server's port is closed
    # (failed, retried: the outbox keeps it pending). The shipped development.env comes along for
    # its memory budget (the AtlasAtlasMemory panel needs one).
    hook = HttpReceiver()
    cfg = config_dir(tmp, webhook_url=hook.url, smtp_port=closed_port)
    shutil.copy(ROOT / "config" / "development.env", cfg / "development.env")
    env = atlas_env(
        tmp,
        ATLAS_CONFIG_DIR=str(cfg),
        ATLAS_ROUTER_PORT=str(router_port),
        ATLAS_API_PORT=str(api_port),
        ATLAS_CORE_METRICS_PORT=str(core_port),
        ATLAS_EXPORTER_PORT=str(exporter_port),
        ATLAS_FETCH_ALLOW_HOSTS="127.0.0.1,localhost",
        ATLAS_WORKERS="1",
        ATLAS_MAX_ATTEMPTS="2",
        ATLAS_API_RATE_LIMIT_PER_KEY="2",  # the burst below goes past it: 429s
        ATLAS_API_RATE_BURST="10",
        ATLAS_BREAKER_MIN_CALLS="3",
        ATLAS_BREAKER_COOLDOWN_SECONDS="60",  # stays open while the test looks
    )
    # A second engine (own data dir, own metrics port, job atlas-core) whose workers exit right
    # after starting: the supervisor restarts them (worker restarts); stopped later, it is the
    # scrape target that is down.
    dying_env = atlas_env(tmp / "dying", ATLAS_CORE_METRICS_PORT=str(dying_port), ATLAS_WORKERS="1")
    dying_target = f"127.0.0.1:{dying_port}"
    jobs = {
        "node": [exporter_port],
        "atlas-api": [api_port],
        "atlas-core": [core_port, dying_port],
        "atlas-router": [router_port],
    }
    (tmp / "rules.yml").write_text(yaml.safe_dump(STAND_IN_RULES))
    (tmp / "prometheus.yml").write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": f"{SCRAPE_SECONDS}s", "evaluation_interval": "1s"},
                # The compiled alert rules too: the per-alert panels show their recorded series.
                "rule_files": [str(tmp / "rules.yml"), str(COMPILED_RULES)],
                "scrape_configs": [
                    {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{p}" for p in ports]}]}
                    for job, ports in jobs.items()
                ],
            }
        )
    )
    api = f"http://127.0.0.1:{api_port}"
    prometheus = f"http://127.0.0.1:{prom_port}"
    with running_origin() as origin:
        origin.failing.add("localhost")  # one upstream host answers 500: retries, breaker, DLQ
        up = _process([sys.executable, "-m", "atlas", "up"], env, tmp / "up.log")
        dying = _process(
            [
                sys.executable,
                "-m",
                "atlas",
                "core",
                "--pipeline",
                "tests.helpers.pipelines:crash_after_start",
            ],
            dying_env,
            tmp / "dying.log",
        )
        prom = _process(
            [
                prometheus_bin,
                f"--config.file={tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            None,
            tmp / "prometheus.log",
        )
        try:
            wait_for(lambda: up.poll() is None and _ok(f"{api}/health/ready"), 60, "atlas up to be ready")
            wait_for(lambda: prom.poll() is None and _ok(f"{prometheus}/-/ready"), 30, "Prometheus")

            def query(expr: str) -> list[dict[str, Any]]:
                result: list[dict[str, Any]] = _get(f"{prometheus}/api/v1/query", query=expr)["data"][
                    "result"
                ]
                return result

            def targets_up() -> bool:
                return len(query("up == 1")) == sum(len(ports) for ports in jobs.values())

            wait_for(targets_up, 30, "Prometheus to scrape every Atlas target")
            start = time.time()
            with httpx.Client(base_url=api, headers=auth, timeout=10) as client:

                def post(path: str, body: dict[str, Any]) -> int:
                    """POST, waiting out this key's rate limit (a 429 here is not what is tested)."""
                    codes: list[int] = []
                    wait_for(
                        lambda: codes.append(client.post(path, json=body).status_code) or codes[-1] != 429,
                        30,
                        f"POST {path} past the rate limit",
                        poll=0.25,
                    )
                    return codes[-1]

                docs = [{"content": f"document {i} about dashboards", "source": "live"} for i in range(30)]
                o = f"127.0.0.1:{origin.port}"
                urls = [f"http://{o}/article/{i}" for i in range(8)]
                urls += [f"http://{o}/status?code=404&n={i}" for i in range(3)]  # permanent: the DLQ
                urls += [f"http://localhost:{origin.port}/article/{i}" for i in range(6)]  # 500s: breaker
                items = docs + [{"url": u} for u in urls]
                assert post("/v1/items/batch", {"items": items}) == 202
                # A burst past the key's rate limit (2/s, burst 10): 429s, i.e. load shedding.
                codes = [
                    client.post("/v1/items", json={"content": f"burst {i}"}).status_code for i in range(20)
                ]
                assert 429 in codes, codes

                wait_for(
                    lambda: bool(query("sum(atlas_dlq_items) >= 3")),
                    60,
                    "the 404 items to be dead-lettered",
                    0.5,
                )
                # Maintenance on: writes get 503; the maintenance annotation and the stand-in alert fire.
                assert post("/v1/admin/maintenance", {"enabled": True, "reason": "test"}) == 200
                assert post("/v1/items", {"content": "refused"}) == 503
            # One notification through the router: sent by the webhook, failing on email.
            router = f"http://127.0.0.1:{router_port}/v1/alertmanager"
            sent = httpx.post(router, json=payload("Live", [alert("live1")]), headers=ROUTER_AUTH, timeout=10)
            assert sent.status_code == 200, sent.text
            deliveries = "sum by (outcome) (atlas_router_deliveries_total)"
            wait_for(
                lambda: {r["metric"]["outcome"] for r in query(deliveries)} >= {"sent", "failed"},
                60,
                "a sent webhook and a failed email delivery in Prometheus",
                0.5,
            )
            # The dying engine's restarts recorded by the compiled rule, then that target down.
            wait_for(
                lambda: bool(query("job:atlas_engine_worker_restarts:increase15m > 0")),
                60,
                "worker restarts recorded",
                0.5,
            )
            _stop(dying)
            assert dying.returncode == 0, (tmp / "dying.log").read_text()[-3000:]
            wait_for(
                lambda: bool(query(f'up{{instance="{dying_target}"}} == 0')),
                30,
                "the stopped engine down",
                0.5,
            )
            wait_for(lambda: bool(query("job:up_down:count")), 30, "the down target recorded", 0.5)
            yield Live(prometheus, start)
        finally:
            for proc in (dying, up, prom):
                if proc.poll() is None:
                    _stop(proc)
            hook.close()
            if up.returncode not in (0, -signal.SIGTERM):
                print((tmp / "up.log").read_text()[-3000:], file=sys.stderr)


def _series(live: Live, expr: str) -> tuple[str, list[dict[str, Any]]]:
    body = _get(
        f"{live.prometheus}/api/v1/query_range",
        query=substitute(expr, rate_interval=RATE_INTERVAL),
        start=live.start - 5,
        end=time.time(),
        step=STEP_SECONDS,
    )
    if body["status"] != "success":
        return f"error: {body.get('error')}", []
    return "ok", body["data"]["result"]


def test_every_panel_query_parses_and_returns_series(live: Live) -> None:
    queries = [
        (b.uid, p.title, q.expr) for b in all_dashboards(ROOT / "config") for p in b.panels for q in p.queries
    ]
    assert len(queries) > 40

    def empty() -> list[str]:
        bad = []
        for uid, title, expr in queries:
            status, result = _series(live, expr)
            if status != "ok" or not result:
                note = (
                    f" [may be empty: {MAY_BE_EMPTY[(uid, title)]}]" if (uid, title) in MAY_BE_EMPTY else ""
                )
                bad.append(f"{uid} / {title}: {status}, {len(result)} series: {expr}{note}")
        return bad

    # Conditions arrive with the next scrapes and rule evaluations: poll, then name what is missing.
    deadline = time.monotonic() + 45
    while (missing := empty()) and time.monotonic() < deadline:
        time.sleep(1)
    assert missing == [], "\n".join(missing)


def test_annotation_queries_parse_and_maintenance_shows(live: Live) -> None:
    board = all_dashboards(ROOT / "config")[0]
    by_name = {a.name: a.expr for a in board.annotations}
    for expr in by_name.values():
        assert _series(live, expr)[0] == "ok", expr
    # The deployments annotation (changes in atlas_process_start_time_seconds) needs a restart
    # within the window, which this test does not do; its query is checked to parse above.
    wait_for(lambda: bool(_series(live, by_name["Maintenance"])[1]), 30, "the maintenance annotation")


def test_render_draws_the_overview_from_prometheus(live: Live, tmp_path: Path) -> None:
    import matplotlib.image

    minutes = max(1, round((time.time() - live.start) / 60) + 1)
    result = CliRunner().invoke(
        ops,
        [
            "dashboards",
            "render",
            "--dashboard",
            "overview",
            "--from",
            f"-{minutes}m",
            "--out",
            str(tmp_path),
            "--prometheus",
            live.prometheus,
            "--scrape-interval",
            "1s",
        ],
    )
    assert result.exit_code == 0, result.output
    png = tmp_path / "atlas-overview.png"
    assert result.output.strip() == str(png)
    board = all_dashboards(ROOT / "config")[0]
    rows = max(pos["y"] + pos["h"] for _, pos in board.layout())
    pixels = matplotlib.image.imread(png)
    assert pixels.shape[:2] == (rows * ROW_PX + HEADER_PX, WIDTH_PX)
    # Not blank: a good share of pixels is not the white background, in many colours.
    rgb = pixels[:, :, :3].reshape(-1, 3)
    drawn = (rgb < 0.95).any(axis=1).mean()
    colours = {tuple(p) for p in (rgb[::97] * 255).astype(int).tolist()}
    assert drawn > 0.05 and len(colours) > 20, (drawn, len(colours))
    keep = ROOT / "tests" / ".render-out"
    if keep.is_dir():  # a developer's way to refresh the README picture: mkdir tests/.render-out
        shutil.copy(png, keep / png.name)

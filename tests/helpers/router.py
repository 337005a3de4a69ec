"""Run `atlas alert-router` for real: a config dir with channels pointing at local receivers,
an Alertmanager-shaped payload builder, and a handle to start, kill and query the process."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import yaml

from atlas import secrets as sec
from atlas.alerting.compiler import ALERTMANAGER_FILE, RULES_FILE, compile_files
from atlas.alerting.config import load_alerting
from tests.conftest import ROOT, atlas_env
from tests.helpers.engine import wait_for
from tests.helpers.net import free_port

TOKEN = "router-token-4f1d2c"
HMAC_KEY = "hmac-key-9a8b7c"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DASHBOARD_URL = "http://grafana.example:3000/d/atlas-alerts/atlas-alerts?viewPanel=118"


def alert(
    fp: str,
    *,
    name: str = "AtlasDiskUsage",
    status: str = "firing",
    severity: str = "critical",
    starts_at: str = "2026-01-01T00:00:00Z",
    **labels: str,
) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": name, "severity": severity, **labels},
        "annotations": {
            "summary": f"{name} {fp}",
            "runbook_url": "https://runbooks.example/disk",
            "dashboard_url": DASHBOARD_URL,
        },
        "startsAt": starts_at,
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-01-01T01:00:00Z",
        "generatorURL": "http://prometheus.example:9090/graph?g0.expr=x",
        "fingerprint": fp,
    }


def payload(group: str, alerts: list[dict[str, Any]], status: str | None = None) -> dict[str, Any]:
    firing = any(a["status"] == "firing" for a in alerts)
    common = {"alertname": alerts[0]["labels"]["alertname"]}
    if len({a["labels"]["severity"] for a in alerts}) == 1:
        common["severity"] = alerts[0]["labels"]["severity"]
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{group}"}}',
        "truncatedAlerts": 0,
        "status": status or ("firing" if firing else "resolved"),
        "receiver": "atlas-router",
        "groupLabels": {"alertname": alerts[0]["labels"]["alertname"]},
        "commonLabels": common,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example:9093",
        "alerts": alerts,
    }


def config_dir(
    tmp_path: Path,
    *,
    webhook_url: str | None = None,
    slack_url: str | None = None,
    smtp_port: int | None = None,
    email_extra: str = "",
    webhook_extra: str = "",
    slack_extra: str = "",
) -> Path:
    """CONFIG_DIR with the shipped alerting.yaml, a monitoring.yaml naming the given receivers and
    a development.secrets holding the router token, the HMAC key and the Slack URL."""
    cfg = tmp_path / "config"
    cfg.mkdir(exist_ok=True)
    shutil.copy(ROOT / "config" / "alerting.yaml", cfg / "alerting.yaml")
    parts = ["version: 1", "notifications:"]
    if smtp_port is not None:
        parts.append(
            f"  email:\n    smtp_server: 127.0.0.1\n    smtp_port: {smtp_port}\n    starttls: false\n"
            f"    from: atlas@example.org\n    to: [ops@example.org]\n    min_severity: warning\n"
            f"{email_extra}"
        )
    if webhook_url is not None:
        parts.append(
            f"  webhook:\n    url: {webhook_url}\n    headers:\n      X-Team: storage\n"
            f"    bearer_token_secret: webhook_token\n    hmac_secret: webhook_hmac\n{webhook_extra}"
        )
    if slack_url is not None:
        parts.append(
            f"  slack:\n    webhook_url_secret: slack_webhook_url\n    channel: '#alerts'\n{slack_extra}"
        )
    (cfg / "monitoring.yaml").write_text("\n".join(parts) + "\n", encoding="utf-8")
    ring = sec.KeyRing((sec.DEVELOPMENT_KEY,), "dev")
    values = {
        "alert_router_token": TOKEN,
        "webhook_token": "wh-bearer-123",
        "webhook_hmac": HMAC_KEY,
        "slack_webhook_url": slack_url or "http://127.0.0.1:9/unused",
    }
    for name, value in values.items():
        sec.set_secret(cfg / "development.secrets", ring, name, value)
    return cfg


# Alertmanager's timings in tests (the compiled ones are 30s / 5m): a notification at most a
# couple of seconds after Alertmanager gets the alert or its resolution.
GROUP_WAIT = "1s"
GROUP_INTERVAL = "2s"


def alerting_yaml(path: Path, router_url: str, token_file: Path, **alerts: dict[str, Any]) -> Path:
    """Write the shipped alerting.yaml to `path` with `router:` aimed at a test's router (its base
    URL, a file holding TOKEN) and the given alert entries replaced (`maintenance_age={...}`)."""
    data: dict[str, Any] = yaml.safe_load((ROOT / "config" / "alerting.yaml").read_text(encoding="utf-8"))
    data["alerts"].update(alerts)
    data["router"] = {"url": f"{router_url}/v1/alertmanager", "credentials_file": str(token_file)}
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def compile_into(source: Path, out: Path) -> tuple[Path, Path]:
    """Compile `source` with the compiler's own functions (what `atlas-ops alerts compile`
    writes) into `out`; returns (rules file, alertmanager.yml). Only Alertmanager's group timings
    are changed, on every route (each alert has its own), so a test waits seconds, not minutes."""
    config, findings = load_alerting(source)
    assert config is not None and not [f for f in findings if f.severity == "error"], findings
    files = compile_files(config, source=str(source))
    rules = out / RULES_FILE
    rules.write_text(files[RULES_FILE], encoding="utf-8")
    am: dict[str, Any] = yaml.safe_load(files[ALERTMANAGER_FILE])
    for route in [am["route"], *am["route"]["routes"]]:
        route["group_interval"] = GROUP_INTERVAL
    am["route"]["group_wait"] = GROUP_WAIT
    am_file = out / ALERTMANAGER_FILE
    am_file.write_text(yaml.safe_dump(am, sort_keys=False), encoding="utf-8")
    return rules, am_file


class RouterProcess:
    def __init__(self, tmp_path: Path, cfg: Path, **env: str) -> None:
        self.port = free_port()
        self.data = tmp_path / "data"
        self.log_path = tmp_path / "router.log"
        self.env = atlas_env(
            self.data,
            ATLAS_CONFIG_DIR=str(cfg),
            ATLAS_ENVIRONMENT="development",
            ATLAS_ROUTER_PORT=str(self.port),
            ATLAS_ROUTER_RETRY_BASE_SECONDS="0.05",
            ATLAS_ROUTER_RETRY_CAP_SECONDS="0.5",
            ATLAS_ROUTER_SEND_TIMEOUT_SECONDS="2",
            **env,
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> RouterProcess:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "atlas", "alert-router"], env=self.env, stdout=log, stderr=log
            )
        wait_for(self.is_ready, 60, "the alert router to be ready")
        return self

    def is_ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"router exited {self.proc.returncode}: {self.log_path.read_text()}")
        try:
            return httpx.get(f"{self.base}/health/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def post(self, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
        return httpx.post(
            f"{self.base}/v1/alertmanager", json=body, headers=AUTH if headers is None else headers
        )

    def notifications(self, **params: str) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.base}/v1/notifications", params={"limit": "1000", **params}, headers=AUTH)
        r.raise_for_status()
        rows: list[dict[str, Any]] = r.json()["notifications"]
        return rows

    def metric(self, name: str, **labels: str) -> float:
        """The value of one sample on /metrics (0 when absent)."""
        from prometheus_client.parser import text_string_to_metric_families

        text = httpx.get(f"{self.base}/metrics").text
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return float(s.value)
        return 0.0

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)


def postgres_env(url: str) -> dict[str, str]:
    """RouterProcess settings putting its outbox in the PostgreSQL database at `url`, migrated (the
    store's migrations hold the outbox's tables: `atlas-ops database migrate` in production) and
    emptied first."""
    from tests.helpers.postgres import migrated_and_empty

    return {"ATLAS_DATABASE_URL": migrated_and_empty(url), "ATLAS_DB_POOL_SIZE": "2"}

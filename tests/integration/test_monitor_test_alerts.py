"""`python tools/monitoring_agent.py --test-alerts` through the router's channel code to a real
webhook receiver and a real SMTP server (aiosmtpd) on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, atlas_env
from tests.helpers.net import free_port
from tests.helpers.receivers import HttpReceiver, SmtpSink
from tests.helpers.router import config_dir

SHIM = ROOT / "tools" / "monitoring_agent.py"


def send_tests(env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SHIM), "--test-alerts", *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_every_enabled_channel_gets_a_marked_test_and_failures_are_reported(tmp_path: Path) -> None:
    hook, smtp = HttpReceiver(), SmtpSink(free_port())
    smtp.start()
    try:
        cfg = config_dir(
            tmp_path,
            webhook_url=hook.url,
            smtp_port=smtp.port,
            slack_url="http://127.0.0.1:9/slack",  # nothing listens on the discard port: fails
            slack_extra="    enabled: false\n",
        )
        env = atlas_env(tmp_path / "data", ATLAS_CONFIG_DIR=str(cfg), ATLAS_ENVIRONMENT="development")
        done = send_tests(env, "--format", "json")
        assert done.returncode == 0, done.stdout + done.stderr
        results = {r["channel"]: r for r in json.loads(done.stdout)}
        assert {c: r["outcome"] for c, r in results.items()} == {
            "email": "sent",
            "webhook": "sent",
            "slack": "disabled",
        }
        body = json.loads(hook.ok()[0].body)
        alert = body["alerts"][0]
        assert alert["labels"]["alertname"] == "AtlasTestNotification" and alert["labels"]["test"] == "true"
        assert alert["annotations"]["summary"].startswith("TEST notification")
        assert hook.ok()[0].headers["authorization"] == "Bearer wh-bearer-123"
        assert len(smtp.messages) == 1 and "AtlasTestNotification" in smtp.subjects()[0]

        # The SMTP server goes away and the webhook answers 500: both fail with their reason, exit 1;
        # the table names each channel.
        smtp.stop()
        hook.default = 500
        done = send_tests(env)
        assert done.returncode == 1, done.stdout + done.stderr
        lines = {line.split()[0]: line for line in done.stdout.splitlines()[1:]}
        assert "failed" in lines["email"] and "SMTP connection" in lines["email"]
        assert "failed" in lines["webhook"] and "HTTP 500" in lines["webhook"]
        assert "disabled" in lines["slack"]
    finally:
        smtp.stop()
        hook.close()


def test_no_enabled_channel_is_an_error(tmp_path: Path) -> None:
    cfg = config_dir(tmp_path, webhook_url="http://127.0.0.1:9/x", webhook_extra="    enabled: false\n")
    env = atlas_env(tmp_path / "data", ATLAS_CONFIG_DIR=str(cfg), ATLAS_ENVIRONMENT="development")
    done = send_tests(env)
    assert done.returncode == 1 and "no enabled channel" in done.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nnotifications:\n  webhook:\n    url: nope\n", encoding="utf-8")
    done = send_tests(env, "--config", str(bad))
    assert done.returncode == 2 and "bad.yaml:4" in done.stderr and "notifications.webhook.url" in done.stderr

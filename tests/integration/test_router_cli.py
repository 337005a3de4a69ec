"""`atlas-ops config validate` on router templates and `atlas-ops alerts outbox list|retry|purge`
against a running router."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, atlas_env
from tests.helpers.engine import wait_for
from tests.helpers.receivers import HttpReceiver
from tests.helpers.router import RouterProcess, alert, config_dir, payload

OPS = [sys.executable, "-c", "from atlas.cli.ops import ops; ops()"]


def ops(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*OPS, *args], env=env, capture_output=True, text=True, timeout=60)


def test_a_broken_template_fails_config_validate_with_file_and_line(tmp_path: Path) -> None:
    cfg = tmp_path / "config"
    shutil.copytree(ROOT / "config", cfg)
    env = atlas_env(tmp_path / "data", ATLAS_CONFIG_DIR=str(cfg), ATLAS_ENVIRONMENT="development")
    ok = ops(env, "config", "validate", "--format", "json")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    overrides = cfg / "templates" / "router"
    overrides.mkdir(parents=True)
    (overrides / "email_subject.txt.j2").write_text("[{{ status | upper }]\n", encoding="utf-8")
    (overrides / "email_body.txt.j2").write_text("line one\n{{ no_such_variable }}\n", encoding="utf-8")
    bad = ops(env, "config", "validate", "--format", "json")
    assert bad.returncode == 2
    findings = {f["key"]: f for f in json.loads(bad.stdout)["findings"]}
    subject = findings["email_subject.txt.j2"]
    assert subject["file"].endswith("templates/router/email_subject.txt.j2") and subject["line"] == 1
    assert "template syntax" in subject["message"]
    assert "no_such_variable" in findings["email_body.txt.j2"]["message"]
    # The router refuses to start on it too, rather than failing deliveries later.
    start = subprocess.run(
        [sys.executable, "-m", "atlas", "alert-router"],
        env={**env, "ATLAS_ROUTER_PORT": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert start.returncode == 2 and "email_subject.txt.j2" in start.stderr


def test_outbox_list_retry_and_purge(tmp_path: Path) -> None:
    hook = HttpReceiver(default=404)
    router = RouterProcess(tmp_path, config_dir(tmp_path, webhook_url=hook.url))
    router.start()
    try:
        assert router.post(payload("G", [alert("f1")])).status_code == 200
        wait_for(lambda: len(hook.requests) == 1, 30, "the failed delivery")
        env = router.env
        wait_for(
            lambda: json.loads(
                ops(env, "alerts", "outbox", "list", "--state", "dead", "--format", "json").stdout
            ),
            30,
            "the dead delivery to be recorded",
        )
        dead = json.loads(ops(env, "alerts", "outbox", "list", "--state", "dead", "--format", "json").stdout)
        assert dead[0]["channel"] == "webhook" and dead[0]["last_error"].startswith("HTTP 404")
        hook.default = 200
        retried = ops(env, "alerts", "outbox", "retry", "--format", "json")
        assert json.loads(retried.stdout) == {"retried": 1}
        wait_for(lambda: len(hook.requests) == 2, 30, "the retried delivery")
        wait_for(
            lambda: json.loads(
                ops(env, "alerts", "outbox", "list", "--state", "sent", "--format", "json").stdout
            ),
            30,
            "the delivery to be recorded as sent",
        )
        table = ops(env, "alerts", "outbox", "list")
        assert "webhook" in table.stdout and "sent" in table.stdout
        purged = ops(env, "alerts", "outbox", "purge", "--older-than-days", "0", "--format", "json")
        assert json.loads(purged.stdout)["purged"] == 1
        assert json.loads(ops(env, "alerts", "outbox", "list", "--format", "json").stdout) == []
    finally:
        router.stop()
        hook.close()

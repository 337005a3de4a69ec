"""The committed alertrules/ proven with Prometheus's and Alertmanager's own tools (Debian's
prometheus and prometheus-alertmanager): promtool lints the rules and runs the generated unit
tests, amtool checks the Alertmanager config and routes every alert and severity."""

from __future__ import annotations

import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from atlas.alerting.config import read_alerting
from atlas.alerting.routes import receiver_name
from atlas.alerting.signals import alert_name
from atlas.alerting.slo import alert_name as slo_alert_name
from tests.conftest import ROOT, require_program

pytestmark = pytest.mark.integration
OUT = ROOT / "alertrules"


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=cwd)


def test_promtool_check_rules_with_every_lint_is_clean() -> None:
    promtool = require_program("promtool", "prometheus")
    done = run(promtool, "check", "rules", "--lint=all", "--lint-fatal", str(OUT / "atlas.rules.yml"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_promtool_runs_every_generated_unit_test() -> None:
    promtool = require_program("promtool", "prometheus")
    tests = sorted(p.name for p in (OUT / "tests").glob("*.yml"))
    assert len(tests) >= 25
    # One promtool per file, two at a time: promtool evaluates every rule at every step of every
    # file on one core (one invocation for all files took 35 s quiet and over 120 s on a loaded
    # machine); each file alone is bounded by the per-run timeout.
    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(lambda name: run(promtool, "test", "rules", name, cwd=OUT / "tests"), tests))
    for name, done in zip(tests, runs, strict=True):
        assert done.returncode == 0, f"{name}: {done.stdout}{done.stderr}"
        assert "SUCCESS" in done.stdout + done.stderr, f"{name}: {done.stdout}{done.stderr}"


def test_the_generated_tests_catch_a_changed_threshold_and_a_shortened_for(tmp_path: Path) -> None:
    """The generated tests are not vacuous: a rules file drifting from alerting.yaml fails them."""
    promtool = require_program("promtool", "prometheus")
    shutil.copytree(OUT, tmp_path / "out")
    rules_path = tmp_path / "out" / "atlas.rules.yml"
    rules = rules_path.read_text()
    for old, new, test in [
        (
            "instance:node_cpu_busy:ratio_rate5m > 70\n",
            "instance:node_cpu_busy:ratio_rate5m > 78\n",
            "cpu_usage.yml",
        ),
        (
            "instance:node_cpu_busy:ratio_rate5m > 70\n    for: 15m",
            "instance:node_cpu_busy:ratio_rate5m > 70\n    for: 10m",
            "cpu_usage.yml",
        ),
        (
            "instance:atlas_data_dir_avail_bytes:max < 1073741824",
            "instance:atlas_data_dir_avail_bytes:max < 973741824",
            "disk_free.yml",
        ),
    ]:
        assert old in rules, old
        rules_path.write_text(rules.replace(old, new, 1))
        done = run(promtool, "test", "rules", test, cwd=tmp_path / "out" / "tests")
        assert done.returncode != 0 and "FAILED" in done.stdout + done.stderr, (new, done.stdout)
    rules_path.write_text(rules)


def test_amtool_check_config_is_clean() -> None:
    amtool = require_program("amtool", "prometheus-alertmanager")
    done = run(amtool, "check-config", str(OUT / "alertmanager.yml"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_amtool_routes_every_alert_and_severity_to_its_receiver() -> None:
    amtool = require_program("amtool", "prometheus-alertmanager")
    config = read_alerting(ROOT / "config" / "alerting.yaml")
    cases = [
        (alert_name(r.name), severity, receiver_name(r.channels))
        for r in config.rules
        if r.enabled
        for severity in r.thresholds
    ]
    cases += [
        (slo_alert_name(s), sev, receiver_name(s.channels))
        for s in config.slos
        for sev in ("warning", "critical")
    ]
    assert any(
        expected != "atlas-router" for _, _, expected in cases
    )  # the shipped file limits one alert's channels
    for name, severity, expected in [*cases, ("SomethingElse", "critical", "atlas-router")]:
        done = run(
            amtool,
            "config",
            "routes",
            "test",
            "--config.file",
            str(OUT / "alertmanager.yml"),
            f"--verify.receivers={expected}",
            f"alertname={name}",
            f"severity={severity}",
        )
        assert done.returncode == 0, (name, severity, expected, done.stdout + done.stderr)
        assert done.stdout.strip() == expected, (name, severity, done.stdout)


def test_alertmanager_receivers_use_the_router_with_a_bearer_token_file() -> None:
    am = yaml.safe_load((OUT / "alertmanager.yml").read_text())
    for receiver in am["receivers"]:
        hook = receiver["webhook_configs"][0]
        assert hook["url"].startswith("http://127.0.0.1:9111/v1/alertmanager")
        assert hook["http_config"]["authorization"] == {
            "type": "Bearer",
            "credentials_file": "/etc/alertmanager/atlas-alert-router-token",
        }
    inhibit = am["inhibit_rules"][0]
    assert inhibit["source_matchers"] == ["severity=critical"] and inhibit["target_matchers"] == [
        "severity=warning"
    ]
    assert "alertname" in inhibit["equal"]

"""alerting.yaml and monitoring.yaml: the shipped files load, and every schema error names the
file, the line and the key at fault."""

from __future__ import annotations

from pathlib import Path

import pytest

from atlas.alerting.config import load_alerting, load_monitoring, read_alerting, read_monitoring
from atlas.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]

ALERTING = """\
version: 1
defaults:
  for: 5m
alerts:
  cpu_usage:
    warning: 70
    critical: 85
  disk_free:
    warning: 5GiB
    critical: 1GiB
    for: 1m
"""

MONITORING = """\
version: 1
intervals:
  scrape: 15s
notifications:
  slack:
    webhook_url_secret: slack_webhook_url
    channel: "#alerts"
"""


def messages(loader: object, path: Path, text: str, *args: object) -> list[str]:
    path.write_text(text, encoding="utf-8")
    _, findings = loader(path, *args)  # type: ignore[operator]
    return [str(f) for f in findings]


def test_the_shipped_files_load() -> None:
    alerting = read_alerting(ROOT / "config" / "alerting.yaml")
    names = {r.name for r in alerting.rules}
    assert {"queue_backlog", "oldest_queued_age", "api_error_rate", "disk_free", "memory_usage"} <= names
    assert {"engine_heartbeat_age"} <= names
    heartbeat = next(r for r in alerting.rules if r.name == "engine_heartbeat_age")
    assert (heartbeat.thresholds, heartbeat.for_seconds, heartbeat.cooldown_seconds) == (
        {"critical": 120},
        60,
        900,
    )
    monitoring = read_monitoring(ROOT / "config" / "monitoring.yaml", secret_names=set())
    assert monitoring.intervals == {"scrape": 15, "health_check": 30, "evaluation": 15}
    assert {c.kind: c.secrets for c in monitoring.channels}["email"] == {"password_secret": "smtp_password"}


def test_a_valid_file_becomes_the_model(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(ALERTING)
    rules = {r.name: r for r in read_alerting(tmp_path / "a.yaml").rules}
    assert rules["cpu_usage"].thresholds == {"warning": 70, "critical": 85}
    assert (rules["cpu_usage"].for_seconds, rules["cpu_usage"].line) == (300, 5)
    assert rules["disk_free"].thresholds == {"warning": 5 << 30, "critical": 1 << 30}
    assert rules["disk_free"].signal.direction == "below"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "    critical: 85",
            "    critical: 60",
            "a.yaml:7: alerts.cpu_usage.critical: must be > warning (got 60 <= 70)",
        ),
        (
            "    critical: 1GiB",
            "    critical: 9GiB",
            "a.yaml:10: alerts.disk_free.critical: must be < warning",
        ),
        ("  cpu_usage:", "  cpu_usag:", "a.yaml:5: alerts.cpu_usag: unknown key (did you mean 'cpu_usage'?)"),
        (
            "    warning: 70",
            "    warning: lots",
            "a.yaml:6: alerts.cpu_usage.warning: expected a number 0-100, got 'lots'",
        ),
        (
            "    warning: 70",
            "    warning: 170",
            "a.yaml:6: alerts.cpu_usage.warning: expected a number 0-100, got '170'",
        ),
        (
            "    for: 1m",
            "    for: soon",
            "a.yaml:11: alerts.disk_free.for: expected a duration like 30s, 5m, 1h",
        ),
        ("    for: 1m", "    fro: 1m", "a.yaml:11: alerts.disk_free.fro: unknown key (did you mean 'for'?)"),
        (
            "    warning: 5GiB",
            "    warning: 5 apples",
            "a.yaml:9: alerts.disk_free.warning: expected a size in bytes",
        ),
        ("version: 1", "version: 2", "a.yaml:1: version: expected 1, got '2'"),
        ("  for: 5m", "  for: [5m]", "a.yaml:3: defaults.for: expected a duration"),
        (
            "    warning: 70\n    critical: 85",
            "    enabled: true",
            "a.yaml:5: alerts.cpu_usage: expected a warning",
        ),
        (
            "    critical: 85",
            "    critical: 85\n    critical: 90",
            "a.yaml:8: alerts.cpu_usage.critical: set twice",
        ),
        ("alerts:", "alerts: [", "a.yaml:6: not valid YAML"),
    ],
)
def test_alerting_errors_name_file_line_and_key(tmp_path: Path, old: str, new: str, expected: str) -> None:
    assert old in ALERTING
    found = messages(load_alerting, tmp_path / "a.yaml", ALERTING.replace(old, new, 1))
    assert any(m.startswith(f"{tmp_path}/{expected}") for m in found), found
    with pytest.raises(ConfigError, match=r"a\.yaml:"):
        read_alerting(tmp_path / "a.yaml")


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("  scrape: 15s", "  scrape: 0s", "m.yaml:3: intervals.scrape: must be more than 0s"),
        ("  scrape: 15s", "  scrap: 15s", "m.yaml:3: intervals.scrap: unknown key (did you mean 'scrape'?)"),
        (
            "    webhook_url_secret: slack_webhook_url",
            "    webhook_url: https://hooks.slack.com/services/T/B/x",
            "m.yaml:6: notifications.slack.webhook_url: secrets do not belong in monitoring.yaml",
        ),
        (
            "    webhook_url_secret: slack_webhook_url",
            "    webhook_url_secret: Not A Name",
            "m.yaml:6: notifications.slack.webhook_url_secret: expected a secret name like smtp_password",
        ),
        (
            "    webhook_url_secret: slack_webhook_url",
            "    webhook_url_secret: other_secret",
            "m.yaml:6: notifications.slack.webhook_url_secret: no secret 'other_secret' in the secrets file",
        ),
        ("  slack:", "  slak:", "m.yaml:5: notifications.slak: unknown key (did you mean 'slack'?)"),
        (
            '    channel: "#alerts"',
            "    channel: '#alerts'\n    enabled: maybe",
            "m.yaml:8: notifications.slack.enabled",
        ),
        (
            '    channel: "#alerts"',
            "  email:\n    smtp_server: mail\n    from: a@b\n    to: [nobody]",
            "m.yaml:10: notifications.email.to[0]: expected email addresses, got 'nobody'",
        ),
        (
            '    channel: "#alerts"',
            "  webhook:\n    url: ftp://x",
            "m.yaml:8: notifications.webhook.url: expected an http",
        ),
        (
            '    channel: "#alerts"',
            "  webhook:\n    headers: {}",
            "m.yaml:7: notifications.webhook.url: missing",
        ),
    ],
)
def test_monitoring_errors_name_file_line_and_key(tmp_path: Path, old: str, new: str, expected: str) -> None:
    assert old in MONITORING
    found = messages(
        load_monitoring, tmp_path / "m.yaml", MONITORING.replace(old, new, 1), {"slack_webhook_url"}
    )
    assert any(m.startswith(f"{tmp_path}/{expected}") for m in found), found


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- a list\n", "a.yaml:1: expected a mapping at the top of the file"),
        ("version: 1\n", "a.yaml:1: alerts: missing: the thresholds go under alerts:"),
        (
            "version: 1\nalerts:\n  cpu_usage: 70\n",
            "a.yaml:3: alerts.cpu_usage: expected a mapping, got '70'",
        ),
        ("version: 1\nalert: {}\n", "a.yaml:2: alert: unknown key (did you mean 'alerts'?)"),
    ],
)
def test_alerting_structure_errors_name_file_line_and_key(tmp_path: Path, text: str, expected: str) -> None:
    found = messages(load_alerting, tmp_path / "a.yaml", text)
    assert any(m.startswith(f"{tmp_path}/{expected}") for m in found), found


def test_a_disabled_channel_may_name_a_secret_not_set_yet(tmp_path: Path) -> None:
    text = MONITORING.replace('    channel: "#alerts"', '    channel: "#alerts"\n    enabled: false')
    assert messages(load_monitoring, tmp_path / "m.yaml", text, set()) == []
    assert messages(load_monitoring, tmp_path / "m.yaml", MONITORING, set())[0].endswith(
        "no secret 'slack_webhook_url' in the secrets file (atlas-ops config secrets set slack_webhook_url)"
    )


CHANNEL_CONCURRENCY = """\
version: 1
notifications:
  email:
    smtp_server: 127.0.0.1
    from: atlas@example.org
    to: [ops@example.org]
    concurrency: 16
  webhook:
    url: http://127.0.0.1:9/hook
"""


def test_a_channel_concurrency_overrides_the_setting(tmp_path: Path) -> None:
    from atlas.alerting.router.process import build_channels
    from atlas.alerting.router.render import Renderer
    from atlas.config.loader import load_settings

    (tmp_path / "m.yaml").write_text(CHANNEL_CONCURRENCY, encoding="utf-8")
    settings = load_settings({"ATLAS_ROUTER_CONCURRENCY": "3"}, files=False)
    built = build_channels(settings, Renderer(tmp_path), None, tmp_path / "m.yaml")
    assert {c.name: c.concurrency for c, _ in built} == {"email": 16, "webhook": 3}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", "m.yaml:7: notifications.email.concurrency: expected a number 1-256, got '0'"),
        ("2.5", "m.yaml:7: notifications.email.concurrency: expected a whole number 1-256, got 2.5"),
        ("many", "m.yaml:7: notifications.email.concurrency: expected a number 1-256, got 'many'"),
    ],
)
def test_a_bad_channel_concurrency_names_the_line(tmp_path: Path, value: str, expected: str) -> None:
    text = CHANNEL_CONCURRENCY.replace("concurrency: 16", f"concurrency: {value}")
    assert messages(load_monitoring, tmp_path / "m.yaml", text, set()) == [f"{tmp_path}/{expected}"]

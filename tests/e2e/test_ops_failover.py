"""`atlas-ops test failover` for real: api and core as separate processes, each SIGKILLed and
restarted under load, one origin host failing until its breaker opens; every check must pass."""

from __future__ import annotations

import json

from tests.conftest import atlas_env
from tests.helpers.opscli import atlas_ops


def test_failover_under_load_passes_every_check(tmp_path) -> None:  # type: ignore[no-untyped-def]
    done = atlas_ops(
        atlas_env(tmp_path / "unused"),
        "test", "failover", "--concurrent", "2", "--phase-timeout", "40", "--drain-timeout", "60",
        "--stack-env", "ATLAS_WORKERS=1", "--stack-env", "ATLAS_DB_SYNCHRONOUS=NORMAL", "--format", "json",
    )  # fmt: skip
    report = json.loads(done.stdout)
    results = {c["check"]: c["result"] for c in report["checks"]}
    assert results == {
        "core killed and restarted": "PASS",
        "api killed and restarted": "PASS",
        "breaker opened": "PASS",
        "breaker recovered": "PASS",
        "acknowledged items stored and final": "PASS",
        "nothing processed twice": "PASS",
    }, report["checks"]
    assert done.returncode == 0 and report["passed"]
    assert report["load"]["accepted"] > 0
    assert "SIGKILL core" in done.stderr and "SIGKILL api" in done.stderr

"""Schemathesis against the served OpenAPI, every phase: examples, coverage (boundary and invalid
values, unexpected methods, bodies that do not parse), fuzzing and stateful sequences (links
between operations). No 5xx, every response matches its documented schema, status and headers.

Schemathesis's own runner is used (`st run`, installed with the dev extra; see
tests/helpers/schemathesis_cli.py) against the real app
on uvicorn: its pytest plugin does not load under this pytest, and the runner is what runs the
coverage and stateful phases. Bounded by a fixed number of examples per operation and a fixed
seed, so a run takes tens of seconds and a failure reproduces.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from atlas.settings import Settings
from tests.conftest import ROOT
from tests.helpers.api import running_api

# Both backends: the stateful phase links operations (ingest, read, list, DLQ, feeds) through the
# store, and a 5xx from PostgreSQL's stricter types would show here first.
pytestmark = pytest.mark.both_backends

EXAMPLES_PER_OPERATION = 10
STATEFUL_MAX_STEPS = 6
SEED = 10
# Where a check does not apply, and why; every other operation runs schemathesis's default checks
# (all but the response-time limit, which would measure the machine's load).
CONFIG = f"""
[phases.stateful]
max-steps = {STATEFUL_MAX_STEPS}

# A batch validates each item on its own: invalid items are reported per index inside a 202 (and a
# batch over the maximum is 413), which is the documented contract, not an accepted bad request.
[[operations]]
include-path = "/v1/items/batch"
checks.negative_data_rejection.enabled = false

# Readiness and health answer a documented 503 when unready.
[[operations]]
include-path-regex = "^/health"
checks.not_a_server_error.enabled = false

# Turning maintenance on makes every later write a documented 503, which the server-error check
# counts against whatever operation comes next. Its bodies are checked in test_api_contract.py.
[[operations]]
include-name = "POST /v1/admin/maintenance"
enabled = false
"""


def test_every_operation_answers_within_its_schema_in_every_phase(settings: Settings, tmp_path: Path) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    with running_api(settings.replace(api_batch_max_items=20)) as api:
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "tests.helpers.schemathesis_cli",
                "--config-file",
                str(config),
                "--no-color",
                "run",
                f"{api.url}/openapi.json",
                "--header",
                f"Authorization: Bearer {api.keys['admin']}",
                "--phases=examples,coverage,fuzzing,stateful",
                f"--max-examples={EXAMPLES_PER_OPERATION}",
                f"--seed={SEED}",
                "--generation-database=none",
                "--workers=2",
                "--request-timeout=30",
                "--output-sanitize=false",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=ROOT,
        )
    report = run.stdout + run.stderr
    assert run.returncode == 0, report[-12000:]
    # Every phase ran (a phase that is skipped or errors out would hide what it finds).
    for phase in ("Examples", "Coverage", "Fuzzing", "Stateful"):
        assert f"{phase} (disabled)" not in report, report[-4000:]
    assert "✅ Stateful" in report and "✅ Coverage" in report and "✅ Fuzzing" in report, report[-4000:]

"""Schemathesis against the served OpenAPI: no 5xx, and every response matches the schema.

Each operation's cases come from schemathesis's hypothesis strategies and are run here directly
(its pytest plugin does not load under this pytest), a bounded number per operation.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings

from atlas.settings import Settings
from tests.helpers.api import running_api

EXAMPLES_PER_OPERATION = 50


def test_every_operation_answers_within_its_schema(settings: Settings) -> None:
    with running_api(settings.replace(api_batch_max_items=20)) as api:
        schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 10
        for operation in operations:

            @given(case=operation.as_strategy())
            @hypothesis_settings(
                max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck)
            )
            def run(case: Any) -> None:
                # Readiness and health answer a documented 503 when unready (e.g. maintenance).
                probe = case.operation.path in ("/health/ready", "/health")
                excluded = [schemathesis.checks.not_a_server_error] if probe else None
                case.call_and_validate(headers=api.auth("admin"), excluded_checks=excluded)

            run()

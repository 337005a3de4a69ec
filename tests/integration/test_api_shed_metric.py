"""A request refused by the per-key rate limit counts in atlas_api_shed_total{status="429"}, as the
catalog's help says (the dashboards' "Rate-limit rejections" panel reads it)."""

from __future__ import annotations

from pathlib import Path

import httpx

from atlas.settings import Settings
from tests.helpers.api import running_api


def test_a_rate_limited_request_is_counted_as_shed(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        core_metrics_port=0,
        db_synchronous="NORMAL",
        api_rate_limit_per_key=0.01,
        api_rate_burst=1,
    )
    with running_api(settings) as api:
        codes = [
            httpx.post(
                f"{api.url}/v1/items", json={"content": f"c{i}"}, headers=api.auth("ingest")
            ).status_code
            for i in range(3)
        ]
        assert codes.count(429) == 2, codes
        metrics = httpx.get(f"{api.url}/metrics").text
    assert 'atlas_api_shed_total{status="429"} 2.0' in metrics, [
        line for line in metrics.splitlines() if "shed" in line
    ]

"""Ranking the slowest named queries from scraped atlas_db_query_duration_seconds histograms, as
`system check --database` does: p99 as Prometheus's histogram_quantile computes it, mean = sum/count,
one name's histograms from the API and the engine added up."""

from __future__ import annotations

import pytest

from atlas.ops.dbcheck import quantile, rank_queries
from atlas.ops.monitoring import Scrape

INF = float("inf")


def _histogram(query: str, buckets: dict[str, int], total: float) -> str:
    lines = [
        f'atlas_db_query_duration_seconds_bucket{{le="{le}",query="{query}"}} {n}'
        for le, n in buckets.items()
    ]
    count = list(buckets.values())[-1]
    lines += [
        f'atlas_db_query_duration_seconds_count{{query="{query}"}} {count}',
        f'atlas_db_query_duration_seconds_sum{{query="{query}"}} {total}',
    ]
    return "\n".join(lines)


def _exposition(*histograms: str) -> str:
    return "\n".join(
        [
            "# HELP atlas_db_query_duration_seconds Time ...",
            "# TYPE atlas_db_query_duration_seconds histogram",
            *histograms,
            "# HELP other_total x",
            "# TYPE other_total counter",
            "other_total 3",
            "",
        ]
    )


def test_quantile_interpolates_within_the_bucket_like_prometheus() -> None:
    buckets = [(0.001, 50.0), (0.01, 150.0), (INF, 150.0)]
    assert quantile(0.5, buckets) == pytest.approx(0.001 + 0.009 * 25 / 100)
    assert quantile(0.99, [(0.001, 0.0), (0.01, 100.0), (INF, 100.0)]) == pytest.approx(0.00991)
    # Past the last finite bound all a histogram knows is that bound.
    assert quantile(0.99, [(0.001, 1.0), (5.0, 1.0), (INF, 10.0)]) == 5.0
    assert quantile(0.99, [(0.001, 0.0), (INF, 0.0)]) == 0.0


def test_rank_adds_up_processes_orders_by_p99_and_skips_unused_queries() -> None:
    api = _exposition(
        _histogram("insert_item", {"0.0001": 90, "0.001": 100, "+Inf": 100}, 0.01),
        _histogram("kv_get", {"0.0001": 0, "0.001": 0, "+Inf": 0}, 0.0),
    )
    core = _exposition(
        _histogram("claim", {"0.0001": 0, "0.001": 0, "0.01": 10, "+Inf": 10}, 0.05),
        _histogram("insert_item", {"0.0001": 0, "0.001": 100, "+Inf": 100}, 0.05),
    )
    scrapes = [
        Scrape("atlas-api", "http://127.0.0.1:1/metrics", api),
        Scrape("atlas-core", "http://127.0.0.1:2/metrics", core),
        Scrape("atlas-x", "http://127.0.0.1:3/metrics", None, "ConnectError"),
    ]
    rows = rank_queries(scrapes)
    assert [r["query"] for r in rows] == ["claim", "insert_item"]  # kv_get never ran
    claim, insert = rows
    assert claim == {
        "query": "claim",
        "count": 10,
        "p99_seconds": pytest.approx(0.001 + 0.009 * 9.9 / 10),
        "mean_seconds": 0.005,
        "jobs": ["atlas-core"],
    }
    assert insert["count"] == 200 and insert["jobs"] == ["atlas-api", "atlas-core"]
    assert insert["mean_seconds"] == pytest.approx(0.06 / 200)
    assert insert["p99_seconds"] == pytest.approx(0.0001 + 0.0009 * (198 - 90) / 110, abs=1e-6)
    assert rank_queries(scrapes, top=1) == [claim]

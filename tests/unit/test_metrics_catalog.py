import pytest
from prometheus_client import CollectorRegistry

from atlas.engine.pool import RESTART_REASONS
from atlas.engine.supervisor import Engine
from atlas.observability.metrics import CATALOG, EngineMetrics, build
from atlas.settings import Settings
from atlas.store.sqlite import SQLiteStore


def test_names_follow_prometheus_conventions() -> None:
    for spec in CATALOG.values():
        assert spec.name.startswith(("atlas_", "http_")), spec.name
        assert spec.name.endswith("_total") == (spec.kind == "counter"), spec.name
        if spec.kind == "histogram":
            assert spec.buckets and list(spec.buckets) == sorted(spec.buckets), spec.name


def test_every_catalog_metric_builds_and_the_engine_uses_only_catalog_names() -> None:
    registry = CollectorRegistry()
    for name in CATALOG:
        build(registry, name)
    engine_registry = CollectorRegistry()
    EngineMetrics(engine_registry)
    exported = {m.name for m in engine_registry.collect()}
    assert exported <= {n.removesuffix("_total") for n in CATALOG}


def test_the_engine_exports_every_restart_reason_at_zero_before_any_restart(
    settings: Settings, store: SQLiteStore
) -> None:
    # increase() cannot see a counter series that first appears at 1: without the zeros the first
    # restart of each reason would never count towards AtlasEngineWorkerRestarts.
    registry = CollectorRegistry()
    Engine(settings, store, registry=registry)
    for reason in RESTART_REASONS:
        assert registry.get_sample_value("atlas_engine_worker_restarts_total", {"reason": reason}) == 0, (
            reason
        )


def test_observe_many_records_what_observe_records_value_by_value() -> None:
    from prometheus_client import CollectorRegistry, Histogram

    from atlas.observability.metrics import LATENCY_BUCKETS, observe_many

    values = [0.0, 0.0005, 0.001, 0.0011, 0.0025, 0.3, 1.0, 1.0, 9.99, 600.0, 601.0, 5e9, 0.04]
    one, many = CollectorRegistry(), CollectorRegistry()
    h1 = Histogram("h", "h", ["stage"], buckets=LATENCY_BUCKETS, registry=one).labels("x")
    h2 = Histogram("h", "h", ["stage"], buckets=LATENCY_BUCKETS, registry=many).labels("x")
    for value in values:
        h1.observe(value)
    observe_many(h2, values[:5])
    observe_many(h2, [])
    observe_many(h2, values[5:])
    h1.observe(float("nan"))  # NaN: the sum becomes NaN, no bucket counts it
    observe_many(h2, [0.002, float("nan")])
    h1.observe(0.002)

    def samples(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
        return {
            (s.name, s.labels.get("le", "")): s.value
            for metric in registry.collect()
            for s in metric.samples
            if not s.name.endswith("_created")
        }

    expected, got = samples(one), samples(many)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, nan_ok=True), key
    assert expected[("h_bucket", "0.001")] == 3  # the bound itself counts in its bucket

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

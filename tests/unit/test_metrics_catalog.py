from prometheus_client import CollectorRegistry

from atlas.observability.metrics import CATALOG, EngineMetrics, build


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

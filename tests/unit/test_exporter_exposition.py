"""The exporter's own text renderer writes exactly what prometheus_client's generate_latest writes,
for the whole real registry and for the corner cases (escaping, OpenMetrics-only samples, big and
special values, timestamps, info and unknown types)."""

from __future__ import annotations

import gzip
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
    StateSetMetricFamily,
    SummaryMetricFamily,
    UnknownMetricFamily,
)
from prometheus_client.registry import Collector

from atlas.settings import Settings
from exporters import build_registry
from exporters.exposition import CONTENT_TYPE, TextRenderer, make_app


class Fixed(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def corner_cases() -> list[Metric]:
    g = GaugeMetricFamily("odd_gauge", 'help with \\ backslash\nand newline "quoted"', labels=("a", "b"))
    g.add_metric(('x\\y"z\nw', "plain"), 1.5)
    g.add_metric(("", "é ünïcode"), math.inf)
    g.add_metric(("n", "m"), -math.inf)
    g.add_metric(("nan", "m"), math.nan)
    g.add_metric(("big", "m"), 12345678901234.0)
    g.add_metric(("small", "m"), 1e-9)
    g.add_metric(("neg", "m"), -12345678.0)
    g.add_metric(("ts", "m"), 3, timestamp=1700000000.123)
    g.add_metric(("zero", "m"), 0.0)
    g.add_metric(("negzero", "m"), -0.0)  # == 0.0, formatted apart
    g.add_metric(("int", "m"), 1)
    g.add_metric(("float", "m"), 1.0)
    g.add_metric(("true", "m"), True)
    c = CounterMetricFamily("c_total", "a counter", labels=("x",), created=1700000000.0)
    c.add_metric(("1",), 2**53, created=1700000001.0)
    h = HistogramMetricFamily("h_seconds", "a histogram", labels=("le_not",))
    h.add_metric(("v",), [("0.1", 1), ("+Inf", 3)], 2.5)
    gh = GaugeHistogramMetricFamily("gh", "gauge histogram", buckets=[("+Inf", 4)], gsum_value=7)
    s = SummaryMetricFamily("s", "a summary", count_value=3, sum_value=1.0)
    i = InfoMetricFamily("build", "info", value={"version": "1"})
    st = StateSetMetricFamily("state", "stateset", value={"a": True, "b": False})
    u = UnknownMetricFamily("node_vmstat_pgfault", "untyped", value=123456789)
    return [g, c, h, gh, s, i, st, u, GaugeMetricFamily("empty", "no samples", labels=("l",))]


def test_the_renderer_writes_generate_latests_bytes(tmp_path: Path) -> None:
    families = corner_cases()
    renderer = TextRenderer()
    assert renderer.render(families) == generate_latest(Fixed(families))
    assert renderer.render(families) == generate_latest(Fixed(families))  # from its caches too
    # The whole registry on this host: one collection rendered both ways.
    real = list(build_registry(Settings(data_dir=tmp_path), commit="abc").collect())
    assert len(real) > 100
    assert TextRenderer().render(real) == generate_latest(Fixed(real))


def test_the_app_serves_text_format_gzipped_when_asked_whatever_the_accept(tmp_path: Path) -> None:
    app = make_app(Fixed(corner_cases()))
    got: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        got["status"], got["headers"] = status, dict(headers)

    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/metrics",
        "HTTP_ACCEPT": "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        "HTTP_ACCEPT_ENCODING": "deflate, gzip;q=1.0",
    }
    body = b"".join(app(environ, start_response))
    assert got["status"] == "200 OK"
    assert got["headers"] == {"Content-Type": CONTENT_TYPE, "Content-Encoding": "gzip"}
    assert gzip.decompress(body) == generate_latest(Fixed(corner_cases()))
    plain = b"".join(app({**environ, "HTTP_ACCEPT_ENCODING": "identity"}, start_response))
    assert "Content-Encoding" not in got["headers"] and plain == generate_latest(Fixed(corner_cases()))
    assert b"".join(app({**environ, "REQUEST_METHOD": "POST"}, start_response)).startswith(b"# HTTP 405")
    assert got["status"] == "405 Method Not Allowed"

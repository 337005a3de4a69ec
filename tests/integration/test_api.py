"""The HTTP API on a real uvicorn server, with auth on."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from atlas.api.app import create_app
from atlas.api.keys import create_key
from atlas.errors import ConfigError
from atlas.settings import Settings
from atlas.store.models import NewItem
from tests.helpers.api import Api, running_api
from tests.helpers.engine import engine_thread, wait_for

pytestmark = pytest.mark.both_backends


@pytest.fixture
def api(settings: Settings) -> Iterator[Api]:
    with running_api(settings.replace(api_batch_max_items=50)) as running:
        yield running


def post(api: Api, body: object, scope: str = "ingest", **headers: str) -> httpx.Response:
    return httpx.post(f"{api.url}/v1/items", json=body, headers={**api.auth(scope), **headers}, timeout=10)


def test_keys_and_scopes_guard_every_route(api: Api) -> None:
    assert httpx.post(f"{api.url}/v1/items", json={"content": "x"}).status_code == 401
    bad = httpx.post(
        f"{api.url}/v1/items", json={"content": "x"}, headers={"Authorization": "Bearer atlas_00_x"}
    )
    assert bad.status_code == 401 and bad.headers["www-authenticate"] == "Bearer"
    assert post(api, {"content": "x"}, scope="read").status_code == 403
    assert post(api, {"content": "x"}, scope="ingest").status_code == 202
    assert httpx.get(f"{api.url}/v1/dlq", headers=api.auth("read")).status_code == 403
    assert httpx.get(f"{api.url}/v1/dlq", headers=api.auth("admin")).status_code == 200
    fresh = create_key(api.store, "", "soon revoked", ["read"])
    api.store.api_key_revoke(str(fresh["id"]))
    # (never used before, so no API process has it cached)
    assert (
        httpx.get(f"{api.url}/v1/items", headers={"Authorization": f"Bearer {fresh['key']}"}).status_code
        == 401
    )


def test_a_202_means_committed_and_carries_the_durability_level(api: Api) -> None:
    r = post(api, {"content": "hello", "source": "test"})
    assert r.status_code == 202
    body = r.json()
    assert body["durability"] == "wal" and body["state"] == "queued"  # the settings fixture uses NORMAL
    stored = api.store.get_item(body["id"])
    assert stored is not None and stored.source == "test"
    assert httpx.get(api.url + body["status_url"], headers=api.auth("read")).json()["state"] == "queued"


def test_idempotency_key_replays_the_first_answer_and_refuses_a_different_body(api: Api) -> None:
    first = post(api, {"content": "once"}, **{"Idempotency-Key": "k-1"})
    again = post(api, {"content": "once"}, **{"Idempotency-Key": "k-1"})
    other = post(api, {"content": "twice"}, **{"Idempotency-Key": "k-1"})
    assert (first.status_code, again.status_code, other.status_code) == (202, 200, 409)
    assert again.json()["id"] == first.json()["id"]
    assert "k-1" in other.json()["error"]
    assert sum(api.store.counts().values()) == 1


def test_a_batch_reports_each_item_and_one_bad_item_does_not_sink_the_rest(api: Api) -> None:
    items = [
        {"content": "a"},
        {"content": 7},
        {"content": "b", "colour": "red"},
        {"content": "c", "idempotency_key": "b1"},
    ]
    r = httpx.post(f"{api.url}/v1/items/batch", json={"items": items}, headers=api.auth("ingest"))
    assert r.status_code == 202
    results = r.json()["results"]
    assert [sorted(e) for e in results] == [
        ["id", "index"],
        ["error", "index"],
        ["error", "index"],
        ["id", "index"],
    ]
    assert results[1]["error"].startswith("items[1].content:")
    assert results[2]["error"].startswith("items[2].colour: unknown field")
    assert sum(api.store.counts().values()) == 2


def test_atomic_and_oversized_batches_write_nothing(api: Api) -> None:
    atomic = httpx.post(
        f"{api.url}/v1/items/batch",
        headers=api.auth("ingest"),
        json={"items": [{"content": "a"}, {"content": ""}], "atomic": True},
    )
    assert atomic.status_code == 422 and "items[1].content" in atomic.json()["error"]
    big = httpx.post(
        f"{api.url}/v1/items/batch", headers=api.auth("ingest"), json={"items": [{"content": "a"}] * 51}
    )
    assert big.status_code == 413 and "maximum of 50" in big.json()["error"]
    assert api.store.counts() == {}


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b'{"content": "x",', 400, "malformed JSON at line 1 column 17"),
        (b'{"content": "\xff\xfe"}', 400, "not valid UTF-8"),
        (b'{"content": "x", "extra": 1}', 422, "extra: unknown field"),
        (b'{"content": ["x"]}', 422, "content: expected a string"),
        # PostgreSQL text cannot hold NUL: refused on both backends, not a 503 for the whole group commit
        (
            b'{"content": "x", "source": "a\\u0000b"}',
            422,
            "source: contains a NUL character (at character 1)",
        ),
        (b"[" * 40 + b"]" * 40, 400, "nested deeper than 32"),
        (b'{"content": "' + b"x" * (2 << 20) + b'"}', 413, "larger than"),
    ],
)
def test_bad_bodies_get_a_4xx_naming_the_fault_and_write_nothing(
    settings: Settings, body: bytes, status: int, message: str
) -> None:
    with running_api(settings.replace(api_max_body_bytes=1 << 20)) as api:
        r = httpx.post(
            f"{api.url}/v1/items",
            content=body,
            headers={**api.auth("ingest"), "content-type": "application/json"},
        )
        assert r.status_code == status
        assert message in r.json()["error"]
        assert api.store.counts() == {}


def test_maintenance_refuses_writes_pauses_the_engine_and_reports_unready(settings: Settings) -> None:
    fast = settings.replace(workers=1, poll_interval_ms=10)
    with running_api(fast) as api:
        on = httpx.post(
            f"{api.url}/v1/admin/maintenance",
            json={"enabled": True, "reason": "upgrade"},
            headers=api.auth("admin"),
        )
        assert on.json()["enabled"] is True
        assert str(on.json()["by"]).startswith("api key test-admin (")  # who did it, as atlas-ops records
        refused = post(api, {"content": "x"})
        assert refused.status_code == 503 and refused.headers["retry-after"] == "60"
        assert "upgrade" in refused.json()["error"]
        ready = httpx.get(f"{api.url}/health/ready")
        assert ready.status_code == 503 and ready.json()["reasons"] == ["maintenance"]
        api.store.enqueue(
            [
                __import__("atlas.store.models", fromlist=["NewItem"]).NewItem(
                    "document", {"content": "waiting"}
                )
            ]
        )
        with engine_thread(fast, api.store, "atlas.pipeline:default_pipeline") as engine:
            wait_for(lambda: engine.paused, 10, "the engine to see maintenance mode")
            assert api.store.counts() == {("queued", "document"): 1}
            httpx.post(f"{api.url}/v1/admin/maintenance", json={"enabled": False}, headers=api.auth("admin"))
            wait_for(lambda: api.store.counts() == {("done", "document"): 1}, 30, "the engine to resume")
        assert post(api, {"content": "y"}).status_code == 202


def test_backpressure_sheds_with_a_retry_after_from_the_drain_rate_and_recovers(settings: Settings) -> None:
    tuned = settings.replace(api_backlog_high_water=100, workers=1, poll_interval_ms=10)
    with running_api(tuned) as api:
        api.store.enqueue([NewItem("document", {"content": f"backlog {i}"}) for i in range(400)])
        wait_for(lambda: post(api, {"content": "probe"}).status_code == 429, 10, "backpressure to engage")
        shed = post(api, {"content": "probe"})
        assert "backlog" in shed.json()["error"]
        assert shed.headers["retry-after"] == "60"  # nothing drains yet: come back in a minute
        with engine_thread(tuned, api.store, "tests.helpers.pipelines:slow"):
            wait_for(lambda: api.store.counts().get(("done", "document"), 0) > 0, 30, "draining to start")
            probe = post(api, {"content": "probe 2"})
            if probe.status_code == 429:  # still over the mark: shed, naming the backlog
                assert "backlog" in probe.json()["error"] and int(probe.headers["retry-after"]) >= 1
            else:  # already under it: accepted
                assert probe.status_code == 202, probe.text
            wait_for(lambda: post(api, {"content": "after"}).status_code == 202, 60, "the API to recover")
        health = httpx.get(f"{api.url}/health").json()
        assert {c["name"] for c in health["components"]} >= {
            "database",
            "disk",
            "memory",
            "engine",
            "backlog",
        }


@pytest.mark.parametrize("recording", [False, True], ids=["lean", "recording"])
def test_health_metrics_and_security_headers(settings: Settings, recording: bool) -> None:
    # Both middleware paths of create_app: spans recorded by an SDK provider handed to the app
    # (never the process-wide one, which would switch every later test's app), or the lean one.
    spans = InMemorySpanExporter()
    provider = None
    if recording:
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(spans))
    with running_api(settings, tracer_provider=provider) as api:
        check_health_metrics_and_security_headers(api)
    assert not isinstance(trace.get_tracer_provider(), TracerProvider), "the global provider was set"
    server_spans = [s for s in spans.get_finished_spans() if s.kind == trace.SpanKind.SERVER]
    if recording:
        assert {s.context.trace_id for s in server_spans} >= {0x4BF92F3577B34DA6A3CE929D0E0E4736}
    else:
        assert server_spans == []


def check_health_metrics_and_security_headers(api: Api) -> None:
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    r = post(api, {"content": "traced"}, traceparent=parent)
    stored = api.store.get_item(r.json()["id"])
    assert stored is not None and (stored.trace_context or "").startswith(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-"
    )
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["content-security-policy"].startswith("default-src 'none'")
    assert "strict-transport-security" not in r.headers
    assert httpx.get(f"{api.url}/health/live").json() == {"status": "ok", "reasons": []}
    read = api.auth("read")
    assert httpx.get(f"{api.url}/v1/items/{r.json()['id']}", headers=read).status_code == 200
    assert httpx.get(f"{api.url}/v1/items/nope", headers=read).status_code == 404
    assert httpx.get(f"{api.url}/no/such/path").status_code == 404
    assert httpx.delete(f"{api.url}/v1/items/batch", headers=read).status_code == 405
    text = httpx.get(f"{api.url}/metrics").text
    # Handlers are route templates (bounded label sets), including routes of included routers.
    for series in (
        'http_requests_total{handler="/v1/items",method="POST",status="2xx"} 1.0',
        'http_requests_total{handler="/v1/items/{item_id}",method="GET",status="2xx"} 1.0',
        'http_requests_total{handler="/v1/items/{item_id}",method="GET",status="4xx"} 1.0',
        'http_requests_total{handler="none",method="GET",status="4xx"} 1.0',
        'http_requests_total{handler="/v1/items/batch",method="DELETE",status="4xx"} 1.0',
    ):
        assert series in text, series
    assert 'atlas_api_items_accepted_total{kind="document"}' in text
    # One item in one group commit: the histogram of rows per commit saw exactly that.
    assert "atlas_api_commit_batch_rows_count 1.0" in text and "atlas_api_commit_batch_rows_sum 1.0" in text
    om = httpx.get(f"{api.url}/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert om.headers["content-type"].startswith("application/openmetrics-text")
    assert '# {trace_id="4bf92f3577b34da6a3ce929d0e0e4736"}' in om.text


def test_settings_that_would_open_the_api_are_refused(settings: Settings, store: object) -> None:
    with pytest.raises(ConfigError, match="production"):
        create_app(settings.replace(environment="production", api_auth_disabled=True), store)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="CORS"):
        create_app(settings.replace(api_cors_origins=("*",)), store)  # type: ignore[arg-type]


def test_cross_origin_ingest_goes_through_cors_and_same_origin_through_the_fast_path(
    settings: Settings,
) -> None:
    with running_api(settings.replace(api_cors_origins=("https://app.example",))) as api:
        headers = {**api.auth("ingest"), "Origin": "https://app.example"}
        r = httpx.post(f"{api.url}/v1/items", json={"content": "from a browser"}, headers=headers)
        assert r.status_code == 202
        assert r.headers["access-control-allow-origin"] == "https://app.example"
        assert r.headers["x-content-type-options"] == "nosniff"
        r = httpx.post(f"{api.url}/v1/items", json={"content": "from a script"}, headers=api.auth("ingest"))
        assert r.status_code == 202 and "access-control-allow-origin" not in r.headers
        assert r.headers["x-content-type-options"] == "nosniff"
        assert api.store.counts() == {("queued", "document"): 2}
        # A refused preflight answers with the API's JSON error, naming what was not allowed.
        preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "PUT"}
        r = httpx.options(f"{api.url}/v1/items", headers=preflight)
        assert r.status_code == 400 and r.headers["content-type"] == "application/json"
        assert r.json() == {
            "error": "CORS preflight refused: not allowed: origin 'https://evil.example', method 'PUT'"
        }
        preflight["Origin"], preflight["Access-Control-Request-Method"] = "https://app.example", "POST"
        r = httpx.options(f"{api.url}/v1/items", headers=preflight)
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://app.example"

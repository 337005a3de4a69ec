"""One error shape, one wording, one bound per field, on every route (real uvicorn, real store)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from atlas.settings import Settings
from tests.helpers.api import Api, running_api


@pytest.fixture
def api(settings: Settings) -> Iterator[Api]:
    # A CORS origin lets a request with an Origin header reach the FastAPI route of POST /v1/items
    # (the fast path answers the others): both must bound and word alike.
    with running_api(settings.replace(api_cors_origins=("https://app.example",))) as running:
        yield running


def test_unknown_paths_and_methods_answer_the_error_shape_with_the_whole_allow_list(api: Api) -> None:
    missing = httpx.get(f"{api.url}/no/such/path", headers=api.auth("admin"))
    assert missing.status_code == 404 and missing.json() == {"error": "no such path: /no/such/path"}
    for method, path, allowed in (
        ("DELETE", "/v1/items", "GET, POST"),
        ("PUT", "/v1/feeds", "GET, POST"),
        ("DELETE", "/v1/admin/maintenance", "GET, POST"),
    ):
        r = httpx.request(method, f"{api.url}{path}", headers=api.auth("admin"))
        assert r.status_code == 405, (method, path, r.text)
        assert r.headers["allow"] == allowed
        assert r.json() == {"error": f"{method} is not allowed on {path} (allowed: {allowed})"}


@pytest.mark.parametrize(
    ("path", "body", "field", "allowed"),
    [
        ("/v1/items", {"content": "x", "colour": 1}, "colour", "content, content_type"),
        ("/v1/feeds", {"url": "https://a.example/", "colour": 1}, "colour", "poll_interval_seconds, url"),
        ("/v1/dlq/replay", {"colour": 1}, "colour", "dry_run, error_class"),
        ("/v1/admin/maintenance", {"enabled": False, "colour": 1}, "colour", "enabled, reason"),
    ],
)
def test_an_unknown_field_is_worded_alike_everywhere(
    api: Api, path: str, body: dict[str, object], field: str, allowed: str
) -> None:
    r = httpx.post(f"{api.url}{path}", json=body, headers=api.auth("admin"))
    assert r.status_code == 422
    message = r.json()["error"]
    assert message.startswith(f"{field}: unknown field") and "Extra inputs" not in message
    assert f"(allowed: {allowed}" in message


@pytest.mark.parametrize("path", ["/v1/items", "/v1/feeds", "/v1/dlq"])
def test_a_cursor_that_no_page_handed_out_is_refused_naming_cursor(api: Api, path: str) -> None:
    r = httpx.get(f"{api.url}{path}", params={"cursor": "not-a-cursor"}, headers=api.auth("admin"))
    assert r.status_code == 422 and r.json()["error"].startswith("query.cursor:"), r.text


@pytest.mark.parametrize("priority", [b"1e300", b"101", b"-101", b"1" + b"0" * 300, b"2.5", b'"1"'])
def test_priority_has_one_bound_on_every_ingest_route(api: Api, priority: bytes) -> None:
    one = b'{"content": "x", "priority": ' + priority + b"}"
    json_type = {"content-type": "application/json"}
    ingest = {**api.auth("ingest"), **json_type}
    answers = {
        "fast path": httpx.post(f"{api.url}/v1/items", content=one, headers=ingest),
        "FastAPI route": httpx.post(
            f"{api.url}/v1/items", content=one, headers={**ingest, "Origin": "https://app.example"}
        ),
    }
    for route, r in answers.items():
        assert r.status_code == 422, (route, r.text)
        message = r.json()["error"]
        assert message.startswith("priority: expected an integer -100..100, got"), (route, message)
        assert len(message) < 120, (route, message)  # the value is quoted, not echoed whole
    batch = httpx.post(
        f"{api.url}/v1/items/batch", content=b'{"items": [' + one + b"]}", headers=ingest
    ).json()
    assert batch["results"][0]["error"].startswith("items[0].priority: expected an integer -100..100")
    assert api.store.counts() == {}
    # The bound the routes enforce is the one the OpenAPI document states.
    paths = httpx.get(f"{api.url}/openapi.json").json()["paths"]
    body = paths["/v1/items"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    bounds = {
        (v["properties"]["priority"]["minimum"], v["properties"]["priority"]["maximum"])
        for v in body["anyOf"]
    }
    assert bounds == {(-100, 100)}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/items", b'{"content": "x"}'),
        ("/v1/items/batch", b'{"items": [{"content": "x"}]}'),
        ("/v1/feeds", b'{"url": "https://a.example/"}'),
        ("/v1/dlq/replay", b'{"dry_run": true}'),
        ("/v1/admin/maintenance", b'{"enabled": true}'),
    ],
)
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_a_body_that_is_not_declared_json_gets_415_naming_the_expected_type(
    api: Api, path: str, body: bytes, content_type: str
) -> None:
    r = httpx.post(
        f"{api.url}{path}", content=body, headers={**api.auth("admin"), "content-type": content_type}
    )
    assert r.status_code == 415, r.text
    assert r.json() == {"error": f"Content-Type: expected application/json, got {content_type!r}"}
    assert api.store.counts() == {} and api.store.feed_list() == []
    assert httpx.get(f"{api.url}/v1/admin/maintenance", headers=api.auth("admin")).json()["enabled"] is False


@pytest.mark.parametrize("path", ["/v1/items", "/v1/items/batch", "/v1/feeds", "/v1/dlq/replay"])
@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b'{"url": "\xff"}', 400, "request body is not valid UTF-8 (byte 9)"),
        (b'{"url":', 400, "malformed JSON at line 1 column 8: Expecting value"),
    ],
)
def test_a_body_that_cannot_be_parsed_answers_the_same_error_on_every_route(
    api: Api, path: str, body: bytes, status: int, message: str
) -> None:
    r = httpx.post(
        f"{api.url}{path}", content=body, headers={**api.auth("admin"), "content-type": "application/json"}
    )
    assert (r.status_code, r.json()) == (status, {"error": message})


def test_request_bodies_are_not_coerced(api: Api) -> None:
    r = httpx.post(f"{api.url}/v1/dlq/replay", json={"dry_run": "true"}, headers=api.auth("admin"))
    assert r.status_code == 422 and r.json()["error"].startswith("dry_run:"), r.text
    r = httpx.post(f"{api.url}/v1/admin/maintenance", json={"enabled": 1}, headers=api.auth("admin"))
    assert r.status_code == 422 and r.json()["error"].startswith("enabled:"), r.text


@pytest.mark.parametrize(
    ("method", "path", "where", "field", "allowed"),
    [
        ("GET", "/v1/items", "query.", "state", ("queued", "leased", "done", "duplicate", "dead")),
        ("GET", "/v1/items", "query.", "kind", ("document", "url", "feed")),
        ("GET", "/v1/dlq", "query.", "kind", ("document", "url", "feed")),
        ("GET", "/v1/dlq", "query.", "reason", ("max_attempts", "permanent", "quarantined", "lease_expired")),
        ("POST", "/v1/dlq/replay", "", "kind", ("document", "url", "feed")),
        (
            "POST",
            "/v1/dlq/replay",
            "",
            "reason",
            ("max_attempts", "permanent", "quarantined", "lease_expired"),
        ),
    ],
)
def test_a_filter_outside_its_values_is_refused_naming_them(
    api: Api, method: str, path: str, where: str, field: str, allowed: tuple[str, ...]
) -> None:
    """Not an empty list: a misspelt state, kind or reason would otherwise look like 'none match'."""
    if method == "GET":
        r = httpx.get(f"{api.url}{path}", params={field: "bogus"}, headers=api.auth("admin"))
    else:
        r = httpx.post(f"{api.url}{path}", json={field: "bogus", "dry_run": True}, headers=api.auth("admin"))
    assert r.status_code == 422, r.text
    message = r.json()["error"]
    assert message.startswith(f"{where}{field}:"), message
    assert all(repr(value) in message for value in allowed), message
    good = allowed[-1]
    if method == "GET":
        assert (
            httpx.get(f"{api.url}{path}", params={field: good}, headers=api.auth("admin")).status_code == 200
        )
    else:
        ok = httpx.post(f"{api.url}{path}", json={field: good, "dry_run": True}, headers=api.auth("admin"))
        assert ok.status_code == 200, ok.text


def test_a_boolean_priority_is_quoted_as_json_on_every_ingest_route(api: Api) -> None:
    one = b'{"content": "x", "priority": true}'
    ingest = {**api.auth("ingest"), "content-type": "application/json"}
    for headers in (ingest, {**ingest, "Origin": "https://app.example"}):  # fast path, FastAPI route
        r = httpx.post(f"{api.url}/v1/items", content=one, headers=headers)
        assert (
            r.status_code == 422 and r.json()["error"] == "priority: expected an integer -100..100, got true"
        )
    batch = httpx.post(f"{api.url}/v1/items/batch", content=b'{"items": [' + one + b"]}", headers=ingest)
    assert batch.json()["results"][0]["error"] == "items[0].priority: expected an integer -100..100, got true"
    assert api.store.counts() == {}


@pytest.mark.parametrize("body", [{"items": []}, {"items": [], "atomic": True}])
def test_an_empty_batch_is_refused_naming_items(api: Api, body: dict[str, object]) -> None:
    r = httpx.post(f"{api.url}/v1/items/batch", json=body, headers=api.auth("ingest"))
    assert r.status_code == 422 and r.json() == {"error": "items: expected at least one item"}, r.text

"""Ingest and read items: POST /v1/items, POST /v1/items/batch, GET /v1/items[/{id}]."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse

from atlas.api.batchbody import fast_documents
from atlas.api.groupcommit import Overloaded
from atlas.api.guards import ApiError
from atlas.api.schemas import (
    ID_PATTERN,
    NO_NUL_PATTERN,
    Accepted,
    AnyItemIn,
    AttemptView,
    BatchIn,
    BatchResult,
    Error,
    ItemKind,
    ItemPage,
    ItemState,
    ItemView,
    ResultView,
)
from atlas.api.services import Services, current_traceparent
from atlas.engine.items import parse_item, with_request_hash
from atlas.errors import ItemError, StoreError
from atlas.store.models import EnqueueResult, Item, NewItem
from atlas.store.protocols import AtlasStore

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Error} for code in (400, 401, 403, 404, 405, 409, 413, 415, 422, 429, 503)
}


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            return _inline(defs[node["$ref"].rsplit("/", 1)[-1]], defs)
        return {k: _inline(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


def _body_schema(model: type[Any]) -> dict[str, Any]:
    """OpenAPI for a body the route parses itself: the model's schema with its refs inlined."""
    schema = model.model_json_schema()
    inlined = _inline(schema, schema.get("$defs", {}))
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": inlined}}}}


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"request body is not valid UTF-8 (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except ValueError as exc:  # e.g. an integer literal over Python's 4,300-digit limit
        raise ApiError(400, f"malformed JSON: {str(exc)[:200]}") from None


async def commit(svc: Services, items: list[NewItem]) -> list[EnqueueResult]:
    """Enqueue through the group commit; ApiError 503 when it is overloaded or the store fails."""
    try:
        results = await svc.committer.submit(items)
    except Overloaded as exc:
        svc.metrics.shed.labels("503").inc()
        raise ApiError(503, str(exc), {"Retry-After": "1"}) from None
    except StoreError as exc:
        raise ApiError(503, f"the store could not commit: {exc}", {"Retry-After": "5"}) from None
    created: dict[str, int] = {}
    for item, result in zip(items, results, strict=True):
        if result.created:
            created[item.kind] = created.get(item.kind, 0) + 1
    for kind, n in created.items():  # one increment per kind, not per item: batches are 1,000
        svc.metrics.accepted_for(kind).inc(n)
    return results


async def accept_one(svc: Services, body: bytes, idempotency_key: str | None) -> tuple[int, dict[str, Any]]:
    """Validate and durably enqueue one item: (202 or 200 for a repeat, Accepted body); ApiError else.

    Shared by the FastAPI route and the fast path (atlas.api.fastpath), so both answer alike.
    """
    if idempotency_key is not None and not 1 <= len(idempotency_key) <= 255:
        raise ApiError(422, "Idempotency-Key: expected 1 to 255 characters")
    svc.check_writable()
    data = parse_json(body)
    try:
        # The body is validated as sent (a wrongly typed idempotency_key too), then the header,
        # when sent, is the key.
        item = parse_item(data, trace_context=current_traceparent())
    except ItemError as exc:
        raise ApiError(422, str(exc)) from None
    if idempotency_key is not None:
        data = {**data, "idempotency_key": idempotency_key}
        item = replace(item, idempotency_key=idempotency_key)
    item = with_request_hash(item, data)
    (result,) = await commit(svc, [item])
    if not result.created:
        if result.request_hash != item.request_hash:
            raise ApiError(409, f"Idempotency-Key {item.idempotency_key!r} was used with a different request")
        current = svc.store.get_item(result.id)
        state, status = (current.state if current else "queued"), 200
    else:
        state, status = "queued", 202
    return status, {
        "id": result.id,
        "state": state,
        "status_url": f"/v1/items/{result.id}",
        "durability": svc.durability,
    }


def item_view(store: AtlasStore, item: Item, full: bool) -> ItemView:
    """The item as the API shows it; `full` adds its attempt history and result (more queries)."""
    history, result = None, None
    if full:
        history = [AttemptView(**vars(a)) for a in store.item_attempts(item.id)]
        content = store.get_content(item.id) if item.state == "done" else None
        if item.state in ("done", "duplicate"):
            result = ResultView(
                title=content["title"] if content else None,
                canonical_url=content["canonical_url"] if content else None,
                content_hash=item.content_hash,
                duplicate_of=item.duplicate_of,
                bytes=content["bytes"] if content else None,
            )
    return ItemView(
        id=item.id,
        kind=item.kind,
        state=item.state,
        attempts=item.attempts,
        source=item.source,
        priority=item.priority,
        created_at=item.created_at,
        updated_at=item.updated_at,
        done_at=item.done_at,
        next_attempt_at=item.next_attempt_at,
        dead_reason=item.dead_reason,
        last_error=vars(item.last_error) if item.last_error else None,
        metadata=item.metadata,
        timings=item.timings,
        history=history,
        result=result,
    )


def build(svc: Services) -> APIRouter:
    router = APIRouter(prefix="/v1/items", tags=["items"], responses=ERRORS)
    ingest = Depends(svc.auth.require("ingest"))
    read = Depends(svc.auth.require("read"))
    batch_schema = _body_schema(BatchIn)
    batch_items = batch_schema["requestBody"]["content"]["application/json"]["schema"]["properties"]["items"]
    batch_items["maxItems"] = svc.settings.api_batch_max_items
    batch_items["minItems"] = 1

    @router.post(
        "",
        status_code=202,
        response_model=Accepted,
        openapi_extra=_body_schema(AnyItemIn),
        responses={200: {"model": Accepted, "description": "An idempotent repeat"}},
    )
    async def create_item(
        request: Request,
        idempotency_key: str | None = Header(
            default=None,
            min_length=1,
            max_length=255,
            description="Repeat-safe key: a repeat returns the first answer (200); the header wins over "
            "an idempotency_key field in the body.",
        ),
        _: Any = ingest,
    ) -> Response:
        """Accept one item; the 202 is sent once it is committed."""
        status, body = await accept_one(svc, await request.body(), idempotency_key)
        return JSONResponse(body, status_code=status)

    @router.post(
        "/batch",
        status_code=202,
        response_model=BatchResult,
        response_model_exclude_none=True,
        openapi_extra=batch_schema,
    )
    async def create_batch(request: Request, _: Any = ingest) -> Response:
        """Accept up to the configured maximum of items in one transaction; errors are per index."""
        svc.check_writable()
        body = await request.body()
        limit = svc.settings.api_batch_max_items
        traceparent = current_traceparent()
        documents = fast_documents(body, limit, traceparent)
        if documents is not None:
            return await _accept_valid(svc, documents)
        data = parse_json(body)
        if not isinstance(data, dict):
            raise ApiError(422, "body: expected a JSON object with an items array")
        unknown = sorted(set(data) - {"items", "atomic"})
        if unknown:
            raise ApiError(422, f"{unknown[0]}: unknown field (allowed: atomic, items)")
        raw, atomic = data.get("items"), data.get("atomic", False)
        if not isinstance(raw, list):
            raise ApiError(422, "items: expected an array")
        if not isinstance(atomic, bool):
            raise ApiError(422, "atomic: expected true or false")
        if not raw:
            raise ApiError(422, "items: expected at least one item")
        if len(raw) > limit:
            raise ApiError(413, f"items: {len(raw)} items is over the maximum of {limit} per batch")
        # Plain dicts, not models, per entry: at 1,000 items a batch the difference is measured.
        entries: list[dict[str, Any]] = [{"index": index} for index in range(len(raw))]
        errors: list[str] = []
        valid: list[tuple[int, NewItem]] = []
        for index, entry in enumerate(raw):
            try:
                item = parse_item(entry, index=index, trace_context=traceparent)
                valid.append((index, with_request_hash(item, entry)))
            except ItemError as exc:
                entries[index]["error"] = str(exc)
                errors.append(str(exc))
        if atomic and errors:
            raise ApiError(
                422,
                f"atomic batch rejected: {len(errors)} invalid item(s); first: {errors[0]}",
                results=[e for e in entries if "error" in e],
            )
        results = await commit(svc, [item for _, item in valid]) if valid else []
        for (index, item), result in zip(valid, results, strict=True):
            if not result.created and result.request_hash != item.request_hash:
                entries[index]["error"] = (
                    f"items[{index}].idempotency_key: already used with a different item"
                )
            else:
                entries[index]["id"] = result.id
        return Response(
            orjson.dumps({"results": entries, "durability": svc.durability}),
            status_code=202,
            media_type="application/json",
        )

    # Routes that query the store are plain `def`: FastAPI runs them in its thread pool, so a slow
    # query does not hold up the event loop the ingest routes answer on (the store keeps one
    # SQLite connection per thread).
    @router.get("/{item_id}", response_model=ItemView)
    def get_item(item_id: str, _: Any = read) -> ItemView:
        """One item: state, attempts with their errors, stage timings, result."""
        item = svc.store.get_item(item_id)
        if item is None:
            raise ApiError(404, f"no item {item_id!r}")
        return item_view(svc.store, item, full=True)

    @router.get("", response_model=ItemPage)
    def list_items(
        state: ItemState | None = None,
        kind: ItemKind | None = None,
        source: str | None = Query(default=None, max_length=255, pattern=NO_NUL_PATTERN),
        cursor: str | None = Query(
            default=None, pattern=ID_PATTERN, description="next_cursor of the previous page."
        ),
        limit: int = Query(default=100, ge=1, le=1000),
        _: Any = read,
    ) -> ItemPage:
        """Items in acceptance order; pass next_cursor back as cursor for the next page."""
        items = svc.store.list_items(state=state, kind=kind, source=source, after=cursor, limit=limit)
        next_cursor = items[-1].id if len(items) == limit else None
        return ItemPage(items=[item_view(svc.store, i, full=False) for i in items], next_cursor=next_cursor)

    return router


async def _accept_valid(svc: Services, items: list[NewItem]) -> Response:
    """The batch answer when every item is valid and none has an idempotency key (batchbody)."""
    results = await commit(svc, items)
    entries = [{"index": index, "id": result.id} for index, result in enumerate(results)]
    return Response(
        orjson.dumps({"results": entries, "durability": svc.durability}),
        status_code=202,
        media_type="application/json",
    )

"""Rows of the PostgreSQL store as the records that cross the store seam (atlas.store.models)."""

from __future__ import annotations

from typing import Any

from atlas.store.models import ContentResult, DLQFilter


def dlq_where(flt: DLQFilter) -> tuple[str, dict[str, Any]]:
    """The WHERE clause selecting the dead items `flt` names, and its parameters."""
    # Filters are optional, so the clause is assembled; every value is still a parameter.
    clauses = ["state = 'dead'"]
    params: dict[str, Any] = {}
    columns = {
        "stage": "last_error_stage",
        "error_class": "last_error_class",
        "host": "last_error_host",
        "kind": "kind",
        "source": "source",
        "reason": "dead_reason",
    }
    for attr, column in columns.items():
        value = getattr(flt, attr)
        if value is not None:
            clauses.append(f"{column} = %({attr})s")
            params[attr] = value
    if flt.dead_before is not None:
        clauses.append("updated_at < %(dead_before)s")
        params["dead_before"] = flt.dead_before
    if flt.dead_after is not None:
        clauses.append("updated_at >= %(dead_after)s")
        params["dead_after"] = flt.dead_after
    if flt.ids:
        clauses.append("id = ANY(%(ids)s)")
        params["ids"] = list(flt.ids)
    return " AND ".join(clauses), params


def clean_text(text: str | None) -> str | None:
    """PostgreSQL text cannot hold NUL characters (SQLite's can): they are dropped from stored
    content rather than failing the transition that stores it."""
    return text.replace("\x00", "") if text else text


def content_row(item_id: str, r: ContentResult, now: float) -> dict[str, Any]:
    text = clean_text(r.text) or ""
    return {
        "id": item_id,
        "content_hash": r.content_hash,
        "content_type": r.content_type,
        "title": clean_text(r.title),
        "text": text,
        "canonical_url": r.canonical_url,
        "language": r.language,
        "author": clean_text(r.author),
        "published": r.published,
        "url": r.url,
        "bytes": len(r.text.encode("utf-8")),
        "now": now,
    }

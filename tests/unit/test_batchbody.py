"""The msgspec batch path (atlas.api.batchbody) accepts only what parse_item accepts, and builds
the same items from it; anything else goes to the general path (None)."""

from __future__ import annotations

import json
import pickle
from dataclasses import FrozenInstanceError, replace
from typing import Any

import pytest

from atlas.api.batchbody import fast_documents
from atlas.engine.items import MAX_DOCUMENT_BYTES, parse_item
from atlas.errors import ItemError
from atlas.store.models import NewItem

TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

# Taken by the fast path: what plain-document producers send.
FAST = [
    {"content": "hello"},
    {"content": "# Title\ntext", "content_type": "text/markdown", "title": "T"},
    {"content": "<p>x</p>", "content_type": "text/html", "title": None},
    {"content": "x", "source": "crawler-1", "priority": -100, "metadata": {"a": [1, 2.5, None]}},
    {"content": "x", "priority": 100, "not_before": 5, "source": None, "metadata": None},
    {"content": "x", "not_before": 1.7e9, "metadata": {"big": 123456789012345678901234567890}},
]

# Left to the general path: invalid, or valid but not a plain document without a key.
GENERAL = [
    {"content": ""},
    {"content": " \n\t"},
    {"content": 5},
    {"content": "x", "content_type": "application/pdf"},
    {"content": "x", "content_type": None},
    {"content": "x", "title": 3},
    {"content": "x", "priority": 3.0},  # valid (the integer 3), but parse_item's to convert
    {"content": "x", "priority": 101},
    {"content": "x", "priority": True},
    {"content": "x", "not_before": True},
    {"content": "x", "source": "s" * 256},
    {"content": "x", "source": "a\x00b"},
    {"content": "x", "metadata": []},
    {"content": "x", "idempotency_key": "k1"},
    {"content": "x", "extra": 1},
    {"url": "https://example.org/a"},
    {"feed": "https://example.org/feed.xml"},
    "not an object",
]


def general(body: bytes) -> list[NewItem] | None:
    """What the general path makes of a body all of whose items are valid; None if any is not."""
    try:
        return [parse_item(e, index=i, trace_context=TRACE) for i, e in enumerate(json.loads(body)["items"])]
    except ItemError:
        return None


def body_of(items: list[Any], **extra: Any) -> bytes:
    return json.dumps({"items": items, **extra}).encode()


@pytest.mark.parametrize("entry", FAST, ids=range(len(FAST)))
def test_plain_documents_take_the_fast_path_and_become_the_same_items(entry: dict[str, Any]) -> None:
    body = body_of([entry, {"content": "second"}], atomic=True)
    fast = fast_documents(body, 1000, TRACE)
    assert fast is not None
    assert fast == general(body)


@pytest.mark.parametrize("entry", GENERAL, ids=range(len(GENERAL)))
def test_anything_else_goes_to_the_general_path(entry: Any) -> None:
    assert fast_documents(body_of([{"content": "fine"}, entry]), 1000, TRACE) is None


@pytest.mark.parametrize(
    "body",
    [
        b'{"items": [{"content": "\\ud800"}]}',  # a lone surrogate: parse_item words its error
        b'{"items": [{"content": "x", "not_before": NaN}]}',  # json.loads takes NaN
        b'{"items": [{"content": "x"}], "atomic": "yes"}',
        b'{"items": [{"content": "x"}], "other": 1}',
        b'{"items": {}}',
        b"[]",
        b"{",
        b'{"items": [{"content": "\xff"}]}',
    ],
)
def test_bodies_the_general_path_words_differently_go_there(body: bytes) -> None:
    assert fast_documents(body, 1000, TRACE) is None


def test_over_the_item_limit_or_the_size_limit_goes_to_the_general_path() -> None:
    assert fast_documents(body_of([{"content": "x"}] * 3), 2, TRACE) is None
    big = "\u00e9" * (MAX_DOCUMENT_BYTES // 2 + 1)  # fewer characters than bytes: over in UTF-8 only
    assert fast_documents(body_of([{"content": big}]), 10, TRACE) is None
    fits = "a" * (MAX_DOCUMENT_BYTES // 4 + 1)  # over the cheap bound, under the limit once encoded
    assert fast_documents(body_of([{"content": fits}]), 10, TRACE) == general(body_of([{"content": fits}]))


def test_a_document_built_by_its_fast_constructor_is_the_dataclass_item_in_every_way() -> None:
    args = ({"content": "x", "content_type": "text/plain"}, "s", 3, {"m": 1}, 5.0, TRACE)
    fast, slow = NewItem.document(*args), NewItem("document", args[0], "s", None, *args[2:])
    assert fast == slow and repr(fast) == repr(slow) and vars(fast) == vars(slow)
    assert pickle.loads(pickle.dumps(fast)) == slow
    assert replace(fast, idempotency_key="k") == replace(slow, idempotency_key="k")
    with pytest.raises(FrozenInstanceError):
        fast.priority = 1  # type: ignore[misc]

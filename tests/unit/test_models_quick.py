"""`quick` builds a frozen record as its __init__ does, at a fraction of the cost (issue 18)."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, dataclass, replace

import pytest

from atlas.store.models import Claimed, ContentResult, Transition, quick


def test_quick_records_equal_the_constructors_and_stay_frozen() -> None:
    result = quick(ContentResult, content_hash="h", text="t", title=None, url="u")
    assert result == ContentResult(content_hash="h", text="t", url="u")
    transition = quick(Transition, item_id="i", token="k", state="done", outcome="done", result=result)
    assert transition == Transition("i", "k", state="done", outcome="done", result=result)
    assert transition.attempts_inc == 1 and transition.timings is None  # the defaults
    values = dict(
        id="i", kind="document", source=None, priority=0, payload={"content": "x"}, metadata=None,
        attempts=0, deaths=0, isolate=False, trace_context=None, created_at=1.0, token="k",
    )  # fmt: skip
    assert quick(Claimed, **values) == Claimed(**values)
    assert repr(quick(Claimed, **values)) == repr(Claimed(**values))
    assert replace(transition, state="dead").state == "dead"
    with pytest.raises(FrozenInstanceError):
        transition.state = "dead"  # type: ignore[misc]


def test_quick_refuses_what_the_constructor_refuses() -> None:
    with pytest.raises(TypeError, match="ContentResult"):
        quick(ContentResult, content_hash="h", text="t", colour="red")  # no such field
    with pytest.raises(TypeError, match="ContentResult"):
        quick(ContentResult, content_hash="h")  # text has no default


def test_quick_refuses_a_record_whose_field_names_its_maker_uses() -> None:
    @dataclass(frozen=True)
    class Named:
        item: int  # the generated function's own local

    with pytest.raises(AssertionError):
        quick(Named, item=1)

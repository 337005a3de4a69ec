import pytest

from atlas.engine.items import parse_item
from atlas.errors import ItemError


def test_a_valid_document_becomes_a_new_item() -> None:
    item = parse_item(
        {
            "content": "hi",
            "content_type": "text/markdown",
            "source": "s",
            "priority": 5,
            "idempotency_key": "k1",
        },
        trace_context="00-" + "a" * 32 + "-" + "b" * 16 + "-01",
    )
    assert (item.kind, item.payload["content_type"], item.priority, item.idempotency_key) == (
        "document",
        "text/markdown",
        5,
        "k1",
    )
    assert item.trace_context and item.trace_context.startswith("00-aaaa")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "items[3].content: required"),
        ({"content": 5}, "items[3].content: expected a string"),
        ({"content": "  "}, "items[3].content: must not be empty"),
        ({"content": "x", "content_type": "image/png"}, "items[3].content_type: expected one of"),
        ({"content": "x", "colour": "red"}, "items[3].colour: unknown field"),
        ({"content": "x", "priority": "high"}, "items[3].priority: expected an integer"),
        ({"content": "x", "priority": True}, "items[3].priority: expected an integer"),
        ({"content": "x", "idempotency_key": ""}, "items[3].idempotency_key: expected a non-empty string"),
        ({"content": "x", "metadata": []}, "items[3].metadata: expected an object"),
    ],
)
def test_bad_items_name_the_field_at_fault(data: dict[str, object], message: str) -> None:
    with pytest.raises(ItemError) as info:
        parse_item(data, index=3)
    assert str(info.value).startswith(message)

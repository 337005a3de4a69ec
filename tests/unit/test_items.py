import pytest

from atlas.engine.items import parse_item, request_fingerprint, with_request_hash
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


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"content": "x", "priority": True}, "priority: expected an integer -100..100, got true"),
        ({"content": "x", "priority": False}, "priority: expected an integer -100..100, got false"),
        ({"content": "x", "priority": "high"}, "priority: expected an integer -100..100, got 'high'"),
        ({"content": None}, "content: expected a string, got null"),
        ({"content": ["x"]}, "content: expected a string, got array"),
        ({"content": True}, "content: expected a string, got boolean"),
        ({"content": "x", "content_type": None}, "content_type: expected one of"),
        ({"url": 5}, "url: expected a string, got number"),
        (
            {"feed": "https://a.example/f", "poll_interval_seconds": True},
            "poll_interval_seconds: expected a number 60-604800, got true",
        ),
        (["x"], "item: expected a JSON object, got array"),
    ],
)
def test_values_and_types_in_messages_are_spelled_as_json(data: object, message: str) -> None:
    with pytest.raises(ItemError) as info:
        parse_item(data)
    assert str(info.value).startswith(message), str(info.value)
    assert "True" not in str(info.value) and "None" not in str(info.value)


def test_only_a_keyed_item_carries_the_fingerprint_of_its_request() -> None:
    keyed = {"content": "x", "idempotency_key": "k1"}
    assert with_request_hash(parse_item(keyed), keyed).request_hash == request_fingerprint(keyed)
    # Key order does not matter: the JSON is fingerprinted with sorted keys.
    assert request_fingerprint({"idempotency_key": "k1", "content": "x"}) == request_fingerprint(keyed)
    assert request_fingerprint({**keyed, "content": "y"}) != request_fingerprint(keyed)
    assert with_request_hash(parse_item({"content": "x"}), {"content": "x"}).request_hash is None

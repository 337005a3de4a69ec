"""Stored JSON reads back as written (atlas.store.itemrows): orjson first, the standard library
for what orjson refuses, both ways (issue 18 moved claims' payload decoding to orjson)."""

from __future__ import annotations

from typing import Any

import pytest

from atlas.store.itemrows import from_json, to_json


@pytest.mark.parametrize(
    "value",
    [
        {"content": "plain", "n": [1, 2.5, None, True]},
        {"big": 2**70, "negative": -(2**65)},  # over 64 bits: orjson refuses, json does not
        {"content": "lone \ud800 surrogate"},  # written as an escape by json.dumps
        {"content": "ünïcödé ✓ 𝄞"},
    ],
)
def test_what_to_json_writes_from_json_reads_back(value: Any) -> None:
    text = to_json(value)
    assert text is not None
    assert from_json(text) == value

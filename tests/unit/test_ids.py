"""Item ids: sortable by acceptance time, unique, one format whether made one by one or a batch."""

from __future__ import annotations

import re

from atlas.store.ids import new_id, new_ids

ID = re.compile(r"^[0-9a-f]{32}$")


def test_a_batch_of_ids_has_the_format_time_prefix_and_uniqueness_of_single_ids() -> None:
    now = 1_700_000_000.5
    batch = new_ids(1000, now)
    assert len(batch) == 1000 and len(set(batch)) == 1000
    assert all(ID.match(i) for i in batch)
    assert {i[:12] for i in batch} == {new_id(now)[:12]}  # the same millisecond prefix
    assert max(new_ids(3, now)) < min(new_ids(3, now + 0.01))  # later ms sort after
    assert new_ids(0, now) == []


def test_a_batch_of_ids_sorts_in_the_order_of_its_items() -> None:
    # The engine settles a claim in queue order; ids in that order append to the indexes keyed by
    # item id instead of landing on a random page each (issue 18).
    batch = new_ids(1000, 1_700_000_000.5)
    assert batch == sorted(batch)

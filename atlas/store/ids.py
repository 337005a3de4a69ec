"""Sortable item ids: 48-bit millisecond time + 80 random bits, as 32 lowercase hex digits.

Hex keeps the bits' order in the text's order, so ids sort by acceptance time (to the
millisecond) and cursor pagination can compare them as strings. One format call is several times
cheaper than a base32 encoding in Python, which showed on 1,000-item batches.
"""

from __future__ import annotations

import random
import time

# Uniqueness, not secrecy, is what ids need (API keys use `secrets`); a seeded generator costs a
# tenth of an os.urandom system call per id.
_random = random.Random()


def new_id(now: float | None = None) -> str:
    ms = int((time.time() if now is None else now) * 1000) & ((1 << 48) - 1)
    return f"{ms:012x}{_random.getrandbits(80):020x}"


def new_ids(count: int, now: float | None = None) -> list[str]:
    """`count` ids of one instant, as `new_id` makes them: one time prefix, and the random bits of
    all of them drawn at once (a 1,000-item batch: ~0.35 us an id against ~2 us one by one).

    In ascending order, so a batch's ids sort as its items were given (pagination lists a batch in
    its order) and every index keyed by item id (the contents' and completions' item ids) takes the
    batch's rows in key order as the engine settles them in queue order. Unsorted, each row of a
    claim went to a random page of those indexes: 0.76 of the 2.36 pages per item an engine commit
    wrote to the WAL on 20,000 documents accepted in one transaction (issue 18)."""
    ms = int((time.time() if now is None else now) * 1000) & ((1 << 48) - 1)
    prefix, bits = f"{ms:012x}", _random.randbytes(10 * count).hex()
    return sorted([prefix + bits[i : i + 20] for i in range(0, 20 * count, 20)])

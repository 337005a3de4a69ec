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

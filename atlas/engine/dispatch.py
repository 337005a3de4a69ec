"""Which worker runs which claimed item: round-robin over workers with room, suspects alone.

An item marked `isolate` (it was running when a worker died with others) goes to an idle worker
and runs there alone, so its next death is a clear verdict. When no worker is idle, the emptiest
one is reserved: it takes no new work until its items are done, then takes the suspect.
"""

from __future__ import annotations

from collections import deque

from atlas.engine.workers import Worker
from atlas.store.models import Claimed


def assign(
    backlog: deque[Claimed], ready: list[Worker], per_worker: int, now: float
) -> tuple[list[tuple[Worker, list[Claimed]]], deque[Claimed]]:
    """Hand out `backlog` to the `ready` workers, each holding at most `per_worker` items.

    Records each assignment in the worker's `outstanding` (in dispatch order, which is the order
    the worker starts them). Returns the batches to send, per worker, and the items kept back.
    """
    batches: dict[int, list[Claimed]] = {w.slot: [] for w in ready}
    free = {w.slot: per_worker - len(w.outstanding) for w in ready}
    total_free = sum(free.values())
    keep: deque[Claimed] = deque()
    turn = 0
    for item in backlog:
        target: Worker | None = None
        if item.isolate:
            target = _isolated_target(ready)
            if target is not None:
                target.isolating, target.reserved = True, False
                total_free -= free[target.slot]
                free[target.slot] = 0
        elif total_free > 0:
            for _ in range(len(ready)):  # round-robin over workers with room
                w = ready[turn % len(ready)]
                turn += 1
                if free[w.slot] > 0 and not w.isolating and not w.reserved:
                    target = w
                    free[w.slot] -= 1
                    total_free -= 1
                    break
        if target is None:
            keep.append(item)
            continue
        if not target.outstanding:
            target.last_progress = now
        target.outstanding[item.id] = item
        batches[target.slot].append(item)
    return [(w, batches[w.slot]) for w in ready if batches[w.slot]], keep


def _isolated_target(ready: list[Worker]) -> Worker | None:
    for w in ready:
        if not w.outstanding and not w.isolating:
            return w
    if not any(w.reserved for w in ready):
        candidates = [w for w in ready if not w.isolating]
        if candidates:
            min(candidates, key=lambda w: len(w.outstanding)).reserved = True
    return None

"""The engine's claim budget (atlas.engine.budget): near what the workers run, more for fast items."""

from __future__ import annotations

from atlas.engine.budget import ClaimBudget


def test_a_new_or_slow_engine_holds_its_running_slots_and_one_more_item_each() -> None:
    budget = ClaimBudget(running=4, ceiling=256, prefetch_seconds=0.1, now=0.0)
    assert budget.capacity(0.0) == 8
    # 40 items/s (I/O-bound: 4 slots, 100 ms an item): 0.1 s of work is 4 items, the floor.
    for t in range(1, 41):
        budget.finished(1, t * 0.025)
    assert budget.capacity(1.0) == 8
    assert budget.capacity(5.0) == 8


def test_fast_items_earn_a_prefetch_of_their_rate_up_to_the_ceiling_and_lose_it_when_idle() -> None:
    budget = ClaimBudget(running=16, ceiling=256, prefetch_seconds=0.1, now=0.0)
    budget.finished(2000, 0.5)
    assert budget.capacity(0.9) == 32  # the rate counts once a window is complete
    # 2,000 items in the first second; smoothed with the initial 0: 1,000/s -> 100 items prefetch.
    assert budget.capacity(1.0) == 16 + 100
    for second in range(1, 6):
        budget.finished(6000, second + 0.5)
    assert budget.capacity(6.0) == 256  # the ceiling: never more than a claim batch's worth
    # An idle minute: the next roll averages over it, and the prefetch falls back to the floor.
    assert budget.capacity(66.0) == 32


def test_no_prefetch_by_rate_and_a_ceiling_below_the_floor() -> None:
    budget = ClaimBudget(running=4, ceiling=2, prefetch_seconds=0.0, now=0.0)
    budget.finished(10_000, 0.5)
    assert budget.capacity(2.0) == 8  # the floor wins over a smaller ceiling: workers never starve

"""Where an item goes after an attempt: pure decisions, applied by the store as Transitions.

An attempt ends in one of four ways:
- success: `done` (the store turns it into `duplicate` when the content already exists);
- a stage failed: retried after capped, fully jittered backoff, or dead-lettered once
  `max_attempts` attempts failed or the failure is permanent;
- the worker died or hung on it: counted as a death; an item that dies alone in a worker
  `max_deaths` times is quarantined in the DLQ, others are retried alone to find the culprit;
- a stage deferred it (open circuit breaker, politeness): queued again for later, no attempt spent;
- the engine gave it back (drain, or it never started): released, no attempt counted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from atlas.engine.messages import Deferral, Done, Outcome
from atlas.reliability.backoff import full_jitter
from atlas.store.models import (
    DEAD_MAX_ATTEMPTS,
    DEAD_PERMANENT,
    DEAD_QUARANTINED,
    Claimed,
    ContentResult,
    ErrorInfo,
    Transition,
    maker,
)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    backoff_base_seconds: float = 2.0
    backoff_cap_seconds: float = 600.0
    max_deaths: int = 2


_TRANSITION = maker(Transition)


def succeeded(item: Claimed, result: ContentResult, timings: dict[str, float] | None = None) -> Transition:
    # The engine's every success, thousands a second when documents settle inline.
    return _TRANSITION(
        item_id=item.id,
        token=item.token,
        state="done",
        outcome="done",
        result=result,
        timings=timings,
    )


def after(
    item: Claimed, outcome: Outcome, *, policy: RetryPolicy, now: float, rand: Callable[[], float]
) -> Transition:
    """Where `item` goes after its pipeline ended in `outcome` (a worker's, or the engine's own)."""
    if isinstance(outcome, Done):
        return succeeded(item, outcome.result, outcome.timings)
    if isinstance(outcome, Deferral):
        return deferred(item, outcome.until, outcome.error)
    return failed(item, outcome.error, permanent=outcome.permanent, policy=policy, now=now, rand=rand)


def failed(
    item: Claimed,
    error: ErrorInfo,
    *,
    permanent: bool,
    policy: RetryPolicy,
    now: float,
    rand: Callable[[], float],
) -> Transition:
    attempt = item.attempts + 1
    if permanent or attempt >= policy.max_attempts:
        return Transition(
            item.id,
            item.token,
            state="dead",
            outcome="dead",
            error=error,
            dead_reason=DEAD_PERMANENT if permanent else DEAD_MAX_ATTEMPTS,
            isolate=item.isolate,
        )
    delay = full_jitter(attempt, policy.backoff_base_seconds, policy.backoff_cap_seconds, rand)
    return Transition(
        item.id,
        item.token,
        state="queued",
        outcome="retry",
        error=error,
        next_attempt_at=now + delay,
        isolate=item.isolate,
    )


def died(
    item: Claimed, error: ErrorInfo, *, alone: bool, timed_out: bool, policy: RetryPolicy, now: float
) -> Transition:
    """The worker running `item` died or hung. Only a death alone in a worker can quarantine."""
    outcome = "timeout" if timed_out else "died"
    if alone and item.deaths + 1 >= policy.max_deaths:
        return Transition(
            item.id,
            item.token,
            state="dead",
            outcome=outcome,
            deaths_inc=1,
            error=error,
            dead_reason=DEAD_QUARANTINED,
            isolate=True,
        )
    # Run it alone next time: either it is the poison and dies alone, or it was a bystander.
    return Transition(
        item.id,
        item.token,
        state="queued",
        outcome=outcome,
        deaths_inc=1,
        error=error,
        isolate=True,
        next_attempt_at=now,
    )


def released(item: Claimed, now: float) -> Transition:
    return Transition(
        item.id,
        item.token,
        state="queued",
        outcome="released",
        attempts_inc=0,
        isolate=item.isolate,
        next_attempt_at=now,
    )


def deferred(item: Claimed, until: float, reason: ErrorInfo) -> Transition:
    """Not now, through no fault of the item: run again at `until` without spending an attempt."""
    return Transition(
        item.id,
        item.token,
        state="queued",
        outcome="deferred",
        attempts_inc=0,
        isolate=item.isolate,
        next_attempt_at=until,
        error=reason,
    )

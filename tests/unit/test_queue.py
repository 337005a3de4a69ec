from atlas.engine import queue
from atlas.store.models import Claimed, ContentResult, ErrorInfo

POLICY = queue.RetryPolicy(max_attempts=3, backoff_base_seconds=2.0, backoff_cap_seconds=100.0, max_deaths=2)
ERR = ErrorInfo("fetch", "ReadTimeout", "timed out", "example.org")


def claimed(attempts: int = 0, deaths: int = 0, isolate: bool = False) -> Claimed:
    return Claimed("I1", "document", None, 0, {}, None, attempts, deaths, isolate, None, 0.0, "tok")


def test_success_is_done_and_carries_the_result() -> None:
    result = ContentResult("h", "text")
    t = queue.succeeded(claimed(), result)
    assert (t.state, t.outcome, t.attempts_inc, t.result) == ("done", "done", 1, result)


def test_failure_before_max_attempts_is_retried_after_jittered_backoff() -> None:
    t = queue.failed(claimed(attempts=1), ERR, permanent=False, policy=POLICY, now=1000.0, rand=lambda: 0.5)
    # second failure: ceiling min(100, 2 * 2**1) = 4, half of it with rand 0.5
    assert (t.state, t.outcome, t.next_attempt_at, t.error) == ("queued", "retry", 1002.0, ERR)


def test_last_allowed_failure_dead_letters_with_reason() -> None:
    t = queue.failed(claimed(attempts=2), ERR, permanent=False, policy=POLICY, now=0.0, rand=lambda: 0.5)
    assert (t.state, t.dead_reason) == ("dead", "max_attempts")


def test_permanent_failure_dead_letters_at_once() -> None:
    t = queue.failed(claimed(), ERR, permanent=True, policy=POLICY, now=0.0, rand=lambda: 0.5)
    assert (t.state, t.dead_reason) == ("dead", "permanent")


def test_death_among_others_isolates_without_quarantine_even_at_the_limit() -> None:
    t = queue.died(claimed(deaths=1), ERR, alone=False, timed_out=False, policy=POLICY, now=5.0)
    assert (t.state, t.isolate, t.deaths_inc, t.outcome) == ("queued", True, 1, "died")


def test_second_death_alone_quarantines() -> None:
    first = queue.died(claimed(deaths=0), ERR, alone=True, timed_out=False, policy=POLICY, now=5.0)
    assert first.state == "queued" and first.isolate
    second = queue.died(
        claimed(deaths=1, isolate=True), ERR, alone=True, timed_out=True, policy=POLICY, now=5.0
    )
    assert (second.state, second.dead_reason, second.outcome) == ("dead", "quarantined", "timeout")


def test_release_and_deferral_spend_no_attempt() -> None:
    assert queue.released(claimed(isolate=True), 7.0).attempts_inc == 0
    assert queue.released(claimed(isolate=True), 7.0).isolate is True
    d = queue.deferred(claimed(), 99.0, ERR)
    assert (d.state, d.attempts_inc, d.next_attempt_at) == ("queued", 0, 99.0)

import pytest

from atlas.reliability.backoff import backoff_ceiling, full_jitter


def test_ceiling_doubles_from_base_until_the_cap() -> None:
    assert [backoff_ceiling(n, 2.0, 60.0) for n in range(1, 8)] == [2, 4, 8, 16, 32, 60, 60]


def test_ceiling_stays_finite_for_huge_attempt_numbers() -> None:
    assert backoff_ceiling(10_000, 2.0, 600.0) == 600.0


def test_full_jitter_spans_zero_to_the_ceiling() -> None:
    assert full_jitter(3, 2.0, 600.0, lambda: 0.0) == 0.0
    assert full_jitter(3, 2.0, 600.0, lambda: 0.5) == 4.0
    assert full_jitter(3, 2.0, 600.0, lambda: 0.999) == pytest.approx(7.992)


def test_attempt_numbers_start_at_one() -> None:
    with pytest.raises(ValueError, match="attempt must be >= 1"):
        backoff_ceiling(0, 1.0, 2.0)

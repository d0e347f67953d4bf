"""The circuit breaker's states, on a clock the test moves."""

from __future__ import annotations

from services.breaker import BreakerState, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_repeated_failures_probes_once_then_closes() -> None:
    clock, changes = Clock(), []
    breaker = CircuitBreaker(failure_threshold=3, open_s=5.0, on_change=changes.append, clock=clock)
    for _ in range(2):
        assert breaker.allow()
        breaker.failure()
    assert breaker.state == BreakerState.CLOSED
    breaker.failure()
    assert breaker.state == BreakerState.OPEN and not breaker.allow()
    clock.now = 5.0
    assert breaker.allow() and breaker.state == BreakerState.HALF_OPEN
    assert not breaker.allow()  # only one probe at a time
    breaker.success()
    assert breaker.state == BreakerState.CLOSED and breaker.allow()
    assert changes == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED]


def test_a_failed_probe_opens_it_again() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, open_s=2.0, clock=clock)
    breaker.failure()
    clock.now = 2.5
    assert breaker.allow()
    breaker.failure()
    assert breaker.state == BreakerState.OPEN and not breaker.allow()
    clock.now = 4.0
    assert not breaker.allow()
    clock.now = 4.6
    assert breaker.allow()


def test_success_resets_the_failure_count() -> None:
    breaker = CircuitBreaker(failure_threshold=2, open_s=1.0, clock=Clock())
    breaker.failure()
    breaker.success()
    breaker.failure()
    assert breaker.state == BreakerState.CLOSED

"""A circuit breaker: after repeated failures, stop calling a dependency for a while.

The route cache guards Redis with one; the ingress guards each expert with one.

Closed: calls go through. After ``failure_threshold`` consecutive failures it opens and calls
are skipped for ``open_s``; then one probe is let through (half-open). The probe's success
closes it, its failure opens it again. Redis restarting therefore costs a few fast failures,
never a stream of slow ones. A probe that ends without an outcome (its caller was cancelled)
must be given back with ``abandon``, or no call would ever be let through again.
"""

from __future__ import annotations

import time
from enum import IntEnum
from typing import Callable


class BreakerState(IntEnum):
    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2


class CircuitBreaker:
    def __init__(
        self,
        failure_threshold: int,
        open_s: float,
        on_change: Callable[[BreakerState], None] = lambda state: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold = failure_threshold
        self._open_s = open_s
        self._on_change = on_change
        self._clock = clock
        self.state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False

    def retry_after_s(self) -> float:
        """Seconds until an open breaker lets a probe through (0 when it would now)."""
        if self.state != BreakerState.OPEN:
            return 0.0
        return max(0.0, self._open_s - (self._clock() - self._opened_at))

    def _become(self, state: BreakerState) -> None:
        if state != self.state:
            self.state = state
            self._on_change(state)

    def allow(self) -> bool:
        """Whether to make a call now."""
        if self.state == BreakerState.CLOSED:
            return True
        if self.state == BreakerState.OPEN and self._clock() - self._opened_at >= self._open_s:
            self._become(BreakerState.HALF_OPEN)
        if self.state == BreakerState.HALF_OPEN and not self._probing:
            self._probing = True
            return True
        return False

    def success(self) -> None:
        self._failures = 0
        self._probing = False
        self._become(BreakerState.CLOSED)

    def failure(self) -> None:
        self._probing = False
        self._failures += 1
        if self.state == BreakerState.HALF_OPEN or self._failures >= self._threshold:
            self.trip()

    def abandon(self) -> None:
        """The call ``allow`` let through ended without an outcome: the next call may probe."""
        self._probing = False

    def trip(self) -> None:
        """Open now (also used when the dependency is known to be down at start)."""
        self._opened_at = self._clock()
        self._become(BreakerState.OPEN)

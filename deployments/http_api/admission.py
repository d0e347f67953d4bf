"""What the ingress lets in: a bounded number of chat requests in flight, and bounded bodies.

A request that would exceed either limit is answered at once (429 with Retry-After, or 413),
before it costs the experts anything.
"""

from __future__ import annotations

from fastapi import Request

from services.errors import OverloadedError, RequestTooLargeError


class Slot:
    """One admitted request's place; released exactly once, by whichever path ends the request."""

    def __init__(self, limiter: "ConcurrencyLimiter") -> None:
        self._limiter = limiter
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._limiter.in_flight -= 1


class ConcurrencyLimiter:
    """Counts chat requests in flight; over the limit the request gets 429 at once."""

    def __init__(self, limit: int, retry_after_s: int) -> None:
        self.limit = limit
        self.retry_after_s = retry_after_s
        self.in_flight = 0

    def acquire(self) -> Slot:
        if self.in_flight >= self.limit:
            raise OverloadedError(
                f"coe-router is at its limit of {self.limit} concurrent requests; retry after a moment",
                retry_after_s=self.retry_after_s,
            )
        self.in_flight += 1
        return Slot(self)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, or 413 as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit)
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise _too_large(None, limit)
    return bytes(body)


def _too_large(size: int | None, limit: int) -> RequestTooLargeError:
    told = f"{size} bytes" if size is not None else f"more than {limit} bytes"
    return RequestTooLargeError(
        f"The request body is {told}; this service accepts at most {limit} bytes (ingress.max_body_bytes)."
    )

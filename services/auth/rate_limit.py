"""Per-key requests and tokens per minute: two token buckets in Redis, checked by one script.

The buckets live in Redis, so every ingress replica draws from the same ones. One Lua script
refills both, checks both and charges both, atomically: a request refused for tokens does not
spend a request, and two replicas cannot both take the last one. Redis's own clock (``TIME``)
is used, so replicas with skewed clocks agree.

A bucket holds a minute's worth (``rpm`` or ``tpm``) and refills continuously, like OpenAI's
limits. A chat request is charged an estimate of its prompt at admission and corrected with
the real count when it ends; the correction may leave the bucket in debt, which the next
requests wait out.

If Redis does not answer, the limiter lets the request through and counts that it did
(``coe_rate_limit_fail_open_total``): an outage of the limiter must not become an outage of the
service. Authentication is the part that fails closed.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from services.auth.keys import KeyRecord
from services.errors import RateLimitedError
from services.telemetry.metrics import RATE_LIMIT_FAIL_OPEN, RATE_LIMITED

logger = logging.getLogger(__name__)

IDLE_EXPIRY_S = 120  # a bucket untouched this long is full again; Redis forgets it

#   KEYS: requests bucket, tokens bucket
#   ARGV: rpm, tpm (0: no limit), request cost, token cost
#   returns: allowed (1/0), which refused ('' / 'requests' / 'tokens'),
#            requests left, tokens left, retry after (s), as strings (Lua numbers would be truncated)
_ADMIT_SCRIPT = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local function level(key, capacity)
  if capacity <= 0 then return nil end
  local stored = redis.call('HMGET', key, 'level', 'at')
  if not stored[1] then return capacity end
  local value = tonumber(stored[1]) + (now - tonumber(stored[2])) * capacity / 60
  if value > capacity then value = capacity end
  return value
end
local rpm, tpm = tonumber(ARGV[1]), tonumber(ARGV[2])
local request_cost, token_cost = tonumber(ARGV[3]), tonumber(ARGV[4])
local requests, tokens = level(KEYS[1], rpm), level(KEYS[2], tpm)
local refused, wait = '', 0
if requests and requests < math.min(request_cost, rpm) then
  refused, wait = 'requests', (math.min(request_cost, rpm) - requests) * 60 / rpm
elseif tokens and tokens < math.min(token_cost, tpm) then
  refused, wait = 'tokens', (math.min(token_cost, tpm) - tokens) * 60 / tpm
end
if refused == '' then
  if requests then
    requests = requests - request_cost
    redis.call('HSET', KEYS[1], 'level', tostring(requests), 'at', tostring(now))
    redis.call('EXPIRE', KEYS[1], ARGV[5])
  end
  if tokens then
    tokens = tokens - token_cost
    redis.call('HSET', KEYS[2], 'level', tostring(tokens), 'at', tostring(now))
    redis.call('EXPIRE', KEYS[2], ARGV[5])
  end
end
return {refused == '' and 1 or 0, refused, tostring(requests or -1), tostring(tokens or -1), tostring(wait)}
"""

#   KEYS: tokens bucket; ARGV: tpm, tokens to add to the charge (negative: a refund), expiry
_CORRECT_SCRIPT = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local capacity = tonumber(ARGV[1])
local stored = redis.call('HMGET', KEYS[1], 'level', 'at')
local value = capacity
if stored[1] then
  value = math.min(capacity, tonumber(stored[1]) + (now - tonumber(stored[2])) * capacity / 60)
end
value = math.max(-capacity, math.min(capacity, value - tonumber(ARGV[2])))
redis.call('HSET', KEYS[1], 'level', tostring(value), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], ARGV[3])
return tostring(value)
"""


def duration(seconds: float) -> str:
    """OpenAI's way of writing a reset time: ``20ms``, ``1.5s``, ``6m0s``."""
    if seconds < 1:
        return f"{max(0, int(seconds * 1000))}ms"
    if seconds < 60:
        return f"{seconds:.3g}s"
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes}m{rest}s"


@dataclass(frozen=True)
class LimitState:
    """What is left of a key's minute after a request: the x-ratelimit headers."""

    rpm: int | None
    tpm: int | None
    requests_left: float
    tokens_left: float

    def headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        for kind, limit, left in (("requests", self.rpm, self.requests_left), ("tokens", self.tpm, self.tokens_left)):
            if limit is None:
                continue
            headers[f"x-ratelimit-limit-{kind}"] = str(limit)
            headers[f"x-ratelimit-remaining-{kind}"] = str(max(0, math.floor(left)))
            headers[f"x-ratelimit-reset-{kind}"] = duration((limit - max(left, -limit)) * 60 / limit)
        return headers


class RateLimiter:
    """Admission and correction against a key's buckets; lives in each ingress replica."""

    def __init__(self, namespace: str, client: Any) -> None:
        self._ns = namespace
        self._admit = client.register_script(_ADMIT_SCRIPT)
        self._correct = client.register_script(_CORRECT_SCRIPT)
        self._last_warning = 0.0

    def _bucket(self, record: KeyRecord, kind: str) -> str:
        return f"{self._ns}:bucket:{record.key_id}:{kind}"

    async def admit(self, record: KeyRecord, tokens: int = 0) -> LimitState | None:
        """Charge one request and ``tokens``; raise :class:`RateLimitedError` when either is spent.

        None when the key has no limits, or when Redis could not be asked (the request goes on).
        """
        if record.rpm is None and record.tpm is None:
            return None
        try:
            allowed, refused, requests, left_tokens, wait = await self._admit(
                keys=[self._bucket(record, "requests"), self._bucket(record, "tokens")],
                args=[record.rpm or 0, record.tpm or 0, 1, tokens, IDLE_EXPIRY_S],
            )
        except Exception as exc:  # any Redis failure: let the request through, loudly
            self._failed_open(exc)
            return None
        state = LimitState(record.rpm, record.tpm, float(requests), float(left_tokens))
        if int(allowed) == 1:
            return state
        which = refused.decode() if isinstance(refused, bytes) else str(refused)
        RATE_LIMITED.inc(limit=which)
        limit = record.rpm if which == "requests" else record.tpm
        retry_after = max(1, math.ceil(float(wait)))
        raise RateLimitedError(
            f"Rate limit reached for key '{record.name}': {limit} {which} per minute. Retry after {retry_after} s.",
            retry_after_s=retry_after,
            headers=state.headers(),
        )

    async def correct(self, record: KeyRecord, extra_tokens: int) -> None:
        """Charge ``extra_tokens`` more (or refund, if negative) once a request's real count is known."""
        if record.tpm is None or extra_tokens == 0:
            return
        try:
            await self._correct(keys=[self._bucket(record, "tokens")], args=[record.tpm, extra_tokens, IDLE_EXPIRY_S])
        except Exception as exc:
            self._failed_open(exc)

    def _failed_open(self, exc: BaseException) -> None:
        RATE_LIMIT_FAIL_OPEN.inc()
        now = time.monotonic()
        if now - self._last_warning > 10:  # one line per ten seconds of outage, not one per request
            self._last_warning = now
            logger.warning("rate limiter: Redis did not answer (%s); letting requests through unchecked", exc.__class__.__name__)

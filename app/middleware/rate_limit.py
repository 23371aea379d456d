"""`RATE_LIMIT_PER_S` per tenant, across processes (a token bucket in Redis)."""

from __future__ import annotations

import logging
import math

from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.middleware.asgi import ASGIApp, Receive, Scope, Send, send_problem

log = logging.getLogger("twofold")


_BUCKET_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(bucket[1]) or burst
local at = tonumber(bucket[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 1)
return tostring(wait)
"""


class RateLimit:
    """At most `per_s` requests a second per tenant, bursts of `burst`, across processes.

    When Redis does not answer, requests pass: the limit protects capacity, and writes
    without an `Idempotency-Key` must not depend on Redis.
    """

    def __init__(self, app: ASGIApp, redis: Redis, per_s: float, burst: int) -> None:
        self.app = app
        self.per_s = per_s
        self.burst = burst or max(1, math.ceil(per_s))
        self.script = redis.register_script(_BUCKET_SCRIPT) if per_s > 0 else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        tenant = scope.get("state", {}).get("tenant") if scope["type"] == "http" else None
        if self.script is None or tenant is None:
            await self.app(scope, receive, send)
            return
        try:
            wait_s = float(
                await self.script(keys=[f"twofold:rate:{tenant}"], args=[self.per_s, self.burst])
            )
        except RedisError as exc:
            log.warning("rate limit not applied, Redis unreachable: %r", exc)
            wait_s = 0.0
        if wait_s > 0:
            await send_problem(
                send,
                "rate_limited",
                f"more than {self.per_s:g} requests a second (bursts of {self.burst})",
                {"Retry-After": str(max(1, math.ceil(wait_s)))},
            )
            return
        await self.app(scope, receive, send)

"""ASGI middleware for `/v1`: tenant authentication, then `Idempotency-Key` replay."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import math
import re
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from typing import Any, cast

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.ledger.errors import PayloadTooLarge
from app.problems import problem_body
from app.settings import Tenant

log = logging.getLogger("twofold")

# Plain ASGI shapes: this module speaks raw ASGI, below any framework type.
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

API_PREFIX = "/v1"
_KEY = re.compile(r"^[\x20-\x7e]{1,255}$")
_WRITE_METHODS = frozenset({"POST", "PUT", "DELETE"})


async def send_problem(
    send: Send, code: str, detail: str, headers: Mapping[str, str] | None = None
) -> None:
    status, body = problem_body(code, detail)
    raw = msgspec.json.encode(body)
    await send_raw(send, status, raw, "application/problem+json", headers)


async def send_raw(
    send: Send,
    status: int,
    body: bytes,
    content_type: str,
    headers: Mapping[str, str] | None = None,
) -> None:
    pairs = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    pairs += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": pairs})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def read_body(receive: Receive) -> bytes:
    """The whole request body."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def replaying(body: bytes) -> Receive:
    """A `receive` that hands an already read body on to the next application."""
    replayed = False

    async def receive() -> Message:
        nonlocal replayed
        if replayed:
            return {"type": "http.disconnect"}
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


class Authentication:
    """Resolves the tenant from HTTP Basic or `Bearer <public-key>:<secret>`."""

    def __init__(self, app: ASGIApp, tenants: tuple[Tenant, ...]) -> None:
        self.app = app
        self.tenants = {t.public_key: t for t in tenants}
        # NOTE: an unknown public key still costs one comparison, like a known one.
        self.decoy = hashlib.sha256(b"decoy").digest()

    def tenant(self, authorization: str | None) -> str | None:
        if not authorization:
            return None
        scheme, _, credentials = authorization.partition(" ")
        credentials = credentials.strip()
        if scheme.lower() == "basic":
            try:
                credentials = base64.b64decode(credentials, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return None
        elif scheme.lower() != "bearer":
            return None
        public_key, sep, secret = credentials.partition(":")
        if not sep:
            return None
        tenant = self.tenants.get(public_key)
        expected = tenant.secret_key_hash if tenant else self.decoy
        given = hashlib.sha256(secret.encode()).digest()
        if hmac.compare_digest(given, expected) and tenant is not None:
            return tenant.name
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # NOTE: CORS preflights carry no credentials; Litestar's CORS layer answers them.
        if (
            scope["type"] != "http"
            or scope["method"] == "OPTIONS"
            or not scope["path"].startswith(API_PREFIX + "/")
        ):
            await self.app(scope, receive, send)
            return
        authorization = _header(scope, b"authorization")
        tenant = self.tenant(authorization)
        if tenant is None:
            # A Bearer client is challenged as one: a Basic challenge makes a browser (the
            # console, which sends Bearer) open its own sign-in dialog.
            scheme = "Bearer" if (authorization or "").lower().startswith("bearer") else "Basic"
            await send_problem(
                send,
                "unauthenticated",
                "a valid API key is required",
                {"WWW-Authenticate": f'{scheme} realm="twofold"'},
            )
            return
        scope.setdefault("state", {})["tenant"] = tenant
        await self.app(scope, receive, send)


class Options:
    """Answers `OPTIONS` with the route's methods in `Allow`.

    NOTE: Litestar makes a route's OPTIONS handler when the route's first handler is
    registered and keeps it when more are merged in, so `OPTIONS /v1/accounts` omitted
    GET. CORS preflights never get here: the CORS layer before the router answers them.
    """

    def __init__(
        self, app: ASGIApp, documented: Sequence[tuple[re.Pattern[str], frozenset[str]]] = ()
    ) -> None:
        self.app = app
        self.documented = documented
        self.allow: dict[str, str] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "OPTIONS":
            await self.app(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 204,
                    "headers": [(b"allow", self._allow(scope).encode())]})  # fmt: skip
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    def _allow(self, scope: Scope) -> str:
        raw = bytes(scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        path = raw.partition("?")[0]
        # A fixed route may also be a valid id (`/v1/transactions/batch`): both answer.
        found = {m for pattern, methods in self.documented if pattern.fullmatch(path)
                 for m in methods}  # fmt: skip
        if found:
            return ", ".join(sorted(found))
        if self.allow is None:
            self.allow = {
                route.path_format: ", ".join(sorted(route.methods)) for route in scope["app"].routes
            }
        return self.allow.get(scope.get("path_template", ""), "OPTIONS")


BATCH_PATH = API_PREFIX + "/transactions/batch"


class BodyLimit:
    """Caps request bodies: `body_size_max`, or `batch_body_size_max` for the batch route."""

    def __init__(self, app: ASGIApp, body_size_max: int, batch_body_size_max: int) -> None:
        self.app = app
        self.body_size_max = body_size_max
        self.batch_body_size_max = batch_body_size_max

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.batch_body_size_max if scope["path"] == BATCH_PATH else self.body_size_max
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _drain(receive, int(declared))
            await send_problem(send, "payload_too_large", f"the body exceeds {limit} bytes")
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    if message.get("more_body", False):
                        await _drain(receive, received)
                    raise PayloadTooLarge(f"the body exceeds {limit} bytes")
            return message

        await self.app(scope, limited, send)


# NOTE: a client still sending a body it was refused may see a reset instead of the 413
# (the server closes a connection with unread input); a modest body is read to the end
# first, a huge one is not worth it.
DRAIN_BYTES_MAX = 64 * 1024 * 1024


async def _drain(receive: Receive, already: int) -> None:
    """Read and drop the rest of a refused body, up to `DRAIN_BYTES_MAX` in all."""
    if already > DRAIN_BYTES_MAX:
        return
    total = 0
    while total <= DRAIN_BYTES_MAX:
        message = await receive()
        if message["type"] != "http.request":
            return
        total += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


# A token bucket per tenant, refilled at `rate` a second up to `burst`, kept in Redis so
# that every server process draws on the same one; Redis' clock, so theirs never matter.
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


class _Stored(msgspec.Struct):
    fingerprint: str
    done: bool = False
    status: int = 0
    content_type: str = ""
    body: bytes = b""


class Idempotency:
    """Replays the stored answer of a write retried with the same `Idempotency-Key`."""

    def __init__(self, app: ASGIApp, redis: Redis, ttl_s: int, in_flight_ttl_s: int) -> None:
        self.app = app
        self.redis = redis
        self.ttl_s = ttl_s
        self.in_flight_ttl_s = in_flight_ttl_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = None
        if scope["type"] == "http" and scope["method"] in _WRITE_METHODS:
            key = _header(scope, b"idempotency-key")
        if key is None or not scope["path"].startswith(API_PREFIX + "/"):
            await self.app(scope, receive, send)
            return
        if not _KEY.match(key):
            await send_problem(
                send, "invalid_idempotency_key", "Idempotency-Key: 1 to 255 printable characters"
            )
            return
        body = await read_body(receive)
        tenant = scope["state"]["tenant"]
        redis_key = f"twofold:idem:{tenant}:{key}"
        digest = hashlib.sha256(f"{scope['method']} {scope['path']}\n".encode())
        digest.update(body)
        fingerprint = digest.hexdigest()
        try:
            claimed = await self.redis.set(
                redis_key,
                msgspec.msgpack.encode(_Stored(fingerprint)),
                nx=True,
                ex=self.in_flight_ttl_s,
            )
            stored = None if claimed else await self.redis.get(redis_key)
        except RedisError as exc:
            log.warning("idempotency store unreachable: %r", exc)
            await send_problem(
                send,
                "idempotency_unavailable",
                "the idempotency store is unavailable; retry later",
                {"Retry-After": "1"},
            )
            return
        if not claimed:
            if stored is None:  # expired between SET and GET: the same as in flight
                await send_problem(send, "idempotency_in_flight", "this key is being processed")
                return
            previous = msgspec.msgpack.decode(cast(bytes, stored), type=_Stored)
            if previous.fingerprint != fingerprint:
                await send_problem(
                    send, "idempotency_key_reused", "this key was used with another request"
                )
            elif not previous.done:
                await send_problem(send, "idempotency_in_flight", "this key is being processed")
            else:
                await send_raw(
                    send,
                    previous.status,
                    previous.body,
                    previous.content_type,
                    {"Idempotent-Replayed": "true"},
                )
            return
        await self._process(scope, body, send, redis_key, fingerprint)

    async def _process(
        self, scope: Scope, body: bytes, send: Send, redis_key: str, fingerprint: str
    ) -> None:
        answer: dict[str, Any] = {"status": 500, "content_type": "", "chunks": []}

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
                for name, value in message.get("headers", []):
                    if name.lower() == b"content-type":
                        answer["content_type"] = bytes(value).decode("latin-1")
            elif message["type"] == "http.response.body":
                answer["chunks"].append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, replaying(body), capture)
        finally:
            await self._finish(redis_key, fingerprint, answer)

    async def _finish(self, redis_key: str, fingerprint: str, answer: dict[str, Any]) -> None:
        try:
            if answer["status"] >= 500:
                # A 5xx is not stored: a retry runs again.
                await self.redis.delete(redis_key)
                return
            stored = _Stored(
                fingerprint,
                done=True,
                status=answer["status"],
                content_type=answer["content_type"],
                body=b"".join(answer["chunks"]),
            )
            await self.redis.set(redis_key, msgspec.msgpack.encode(stored), ex=self.ttl_s)
        except RedisError as exc:
            log.warning("could not store an idempotent answer: %r", exc)

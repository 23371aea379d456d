"""`Idempotency-Key` replay, kept in Redis per tenant (API.md, Idempotency-Key)."""

from __future__ import annotations

import hashlib
import logging
import re
from typing import Any, cast

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.middleware.asgi import (
    API_PREFIX,
    ASGIApp,
    Message,
    Receive,
    Scope,
    Send,
    header,
    read_body,
    replaying,
    send_problem,
    send_raw,
)

log = logging.getLogger("twofold")


_KEY = re.compile(r"^[\x20-\x7e]{1,255}$")
_WRITE_METHODS = frozenset({"POST", "PUT", "DELETE"})


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
            key = header(scope, b"idempotency-key")
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

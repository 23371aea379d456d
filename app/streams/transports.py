"""How one event reaches each kind of sink (API.md, Sinks), through the well-kept clients:
httpx and standardwebhooks, redis-py, nats-py (JetStream), aio-pika (publisher confirms).

`send` returns once the other side has acknowledged the event, and raises otherwise.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx
from redis.asyncio import Redis
from standardwebhooks import Webhook

from app.models.log import StoredEvent
from app.streams.sinks import target

SEND_TIMEOUT_S = 10.0


class DeliveryError(Exception):
    """The sink did not take the event; the message says why."""


Message = tuple[str, StoredEvent]  # (message id, event)


class Transport(Protocol):
    # How many events one `send_all` may take: all are acknowledged, or none.
    chunk: int

    async def send_all(self, messages: Sequence[Message]) -> None: ...

    async def close(self) -> None: ...


class OneByOne:
    """A transport that sends one event at a time."""

    chunk = 1

    async def send(self, message_id: str, event: StoredEvent) -> None:
        raise NotImplementedError

    async def send_all(self, messages: Sequence[Message]) -> None:
        for message_id, event in messages:
            await self.send(message_id, event)


class WebhookTransport(OneByOne):
    def __init__(self, url: str, secret: str) -> None:
        self.url = url
        self.signer = Webhook(secret)
        self.client = httpx.AsyncClient(timeout=SEND_TIMEOUT_S, follow_redirects=False)

    async def send(self, message_id: str, event: StoredEvent) -> None:
        now = datetime.now(UTC)
        headers = {
            "content-type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": self.signer.sign(message_id, now, event.text),
        }
        try:
            response = await self.client.post(
                self.url, content=event.text.encode(), headers=headers
            )
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc
        if not 200 <= response.status_code < 300:
            raise DeliveryError(f"the receiver answered {response.status_code}")

    async def close(self) -> None:
        await self.client.aclose()


class RedisTransport:
    """A page of events in one round trip, as one MULTI/EXEC: all added, in order, or
    none (so a retry after a failure adds nothing twice)."""

    chunk = 100

    def __init__(self, url: str) -> None:
        server, self.stream = target(url, "redis")
        self.redis = Redis.from_url(
            server, socket_timeout=SEND_TIMEOUT_S, socket_connect_timeout=SEND_TIMEOUT_S
        )

    async def send_all(self, messages: Sequence[Message]) -> None:
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                for _, event in messages:
                    fields = {"sequence": str(event.sequence), "type": event.type,
                              "event": event.text}  # fmt: skip
                    pipe.xadd(self.stream, fields)  # type: ignore[arg-type]
                await pipe.execute()
        except Exception as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        await self.redis.aclose()


class NatsTransport(OneByOne):
    """JetStream: the stream that holds `<subject>.>` acknowledges each publish, and
    drops a second copy of a `Nats-Msg-Id` it has seen (within its duplicate window)."""

    def __init__(self, url: str) -> None:
        self.server, self.subject = target(url, "nats")
        self.connection: Any = None

    async def send(self, message_id: str, event: StoredEvent) -> None:
        import nats
        from nats.errors import Error as NatsError

        try:
            if self.connection is None or self.connection.is_closed:
                self.connection = await nats.connect(
                    self.server, connect_timeout=SEND_TIMEOUT_S, max_reconnect_attempts=1,
                    allow_reconnect=False,
                )  # fmt: skip
            stream = self.connection.jetstream(timeout=SEND_TIMEOUT_S)
            await stream.publish(
                f"{self.subject}.{event.type}", event.text.encode(),
                headers={"Nats-Msg-Id": message_id},
            )  # fmt: skip
        except (NatsError, OSError, TimeoutError) as exc:
            await self.close()
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        await _give_up(self.connection)
        self.connection = None


class AmqpTransport(OneByOne):
    """A durable topic exchange, declared when missing; persistent messages, each one
    confirmed by the broker before the next."""

    def __init__(self, url: str) -> None:
        self.server, self.exchange_name = target(url, "amqp")
        self.connection: Any = None
        self.exchange: Any = None

    async def send(self, message_id: str, event: StoredEvent) -> None:
        import aio_pika
        from aio_pika.exceptions import AMQPException

        try:
            if self.exchange is None:
                self.connection = await aio_pika.connect(self.server, timeout=SEND_TIMEOUT_S)
                channel = await self.connection.channel(publisher_confirms=True)
                self.exchange = await channel.declare_exchange(
                    self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
                )
            message = aio_pika.Message(
                event.text.encode(), content_type="application/json", message_id=message_id,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            )  # fmt: skip
            await self.exchange.publish(message, routing_key=event.type, timeout=SEND_TIMEOUT_S)
        except (AMQPException, OSError, TimeoutError, ConnectionError) as exc:
            await self.close()
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        await _give_up(self.connection)
        self.connection = self.exchange = None


async def _give_up(connection: Any) -> None:
    """Close a broker connection being given up, whatever state it is in."""
    if connection is not None:
        with contextlib.suppress(Exception):
            await connection.close()


def transport(kind: str, url: str, secret: str | None) -> Transport:
    if kind == "webhook":
        assert secret is not None
        return WebhookTransport(url, secret)
    if kind == "redis":
        return RedisTransport(url)
    if kind == "nats":
        return NatsTransport(url)
    return AmqpTransport(url)

"""How events reach each kind of sink (API.md, Sinks), through the well-kept clients:
httpx and standardwebhooks, redis-py, nats-py (JetStream), aio-pika (publisher confirms).

`send_all` returns once the other side has acknowledged every event given, in order,
and otherwise raises `DeliveryError` saying how many of the first ones it did
acknowledge. Each transport bounds its own send (SEND_TIMEOUT_S for the answer, or for
the acknowledgements of a window), so that a timeout too says how far it got and leaves
no half-used connection behind. The brokers take a window of events at once
(pipelined, each acknowledged on its own), which is what lets a sink keep up with the
service's writes: one round trip per event capped a sink at a few hundred a second.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx
from redis.asyncio import Redis
from standardwebhooks import Webhook

from app.models.log import StoredEvent
from app.streams.sink_spec import target

SEND_TIMEOUT_S = 10.0
# Events a broker is given before the first of them must be acknowledged.
BROKER_WINDOW = 1000


class DeliveryError(Exception):
    """The sink did not take the events; the message says why, `sent` how many of the
    first ones it did take (acknowledged, in order)."""

    def __init__(self, message: str, sent: int = 0) -> None:
        super().__init__(message)
        self.sent = sent


class Transport(Protocol):
    # How many events one `send_all` may take.
    chunk: int

    async def send_all(self, tenant: str, events: Sequence[StoredEvent]) -> None: ...

    async def close(self) -> None: ...


def message_id(tenant: str, event: StoredEvent) -> str:
    return f"{tenant}:{event.sequence}"


class WebhookTransport:
    """One signed POST: the event itself (`batch_max` 1), or `{"events": [...]}` for up to
    `batch_max` of them, acknowledged together by one 2xx."""

    def __init__(self, url: str, secret: str, batch_max: int) -> None:
        self.url = url
        self.chunk = batch_max
        self.signer = Webhook(secret)
        self.client = httpx.AsyncClient(timeout=SEND_TIMEOUT_S, follow_redirects=False)

    def _message(self, tenant: str, events: Sequence[StoredEvent]) -> tuple[str, str]:
        """(`webhook-id`, body)."""
        if self.chunk == 1:
            [event] = events
            return message_id(tenant, event), event.text
        body = '{"events":[' + ",".join(e.text for e in events) + "]}"
        return f"{tenant}:{events[0].sequence}-{events[-1].sequence}", body

    async def send_all(self, tenant: str, events: Sequence[StoredEvent]) -> None:
        webhook_id, body = self._message(tenant, events)
        now = datetime.now(UTC)
        headers = {
            "content-type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": self.signer.sign(webhook_id, now, body),
        }
        try:
            # httpx's timeout bounds each phase of the request; this, the whole of it.
            async with asyncio.timeout(SEND_TIMEOUT_S):
                response = await self.client.post(self.url, content=body.encode(), headers=headers)
        except (httpx.HTTPError, TimeoutError) as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc
        if not 200 <= response.status_code < 300:
            raise DeliveryError(f"the receiver answered {response.status_code}")

    async def close(self) -> None:
        await self.client.aclose()


class RedisTransport:
    """The events in one round trip, as one MULTI/EXEC: all added, in order, or none (so
    a retry after a failure adds nothing twice)."""

    chunk = BROKER_WINDOW

    def __init__(self, url: str) -> None:
        server, self.stream = target(url, "redis")
        self.redis = Redis.from_url(
            server, socket_timeout=SEND_TIMEOUT_S, socket_connect_timeout=SEND_TIMEOUT_S
        )

    async def send_all(self, tenant: str, events: Sequence[StoredEvent]) -> None:
        try:
            async with (
                asyncio.timeout(SEND_TIMEOUT_S),
                self.redis.pipeline(transaction=True) as pipe,
            ):
                for event in events:
                    fields = {"sequence": str(event.sequence), "type": event.type,
                              "event": event.text}  # fmt: skip
                    pipe.xadd(self.stream, fields)  # type: ignore[arg-type]
                await pipe.execute()
        except Exception as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        await self.redis.aclose()


def _leading_acks(acks: Sequence[asyncio.Future[Any]]) -> int:
    """How many of the first acknowledgements arrived, each a success."""
    for i, ack in enumerate(acks):
        if not ack.done() or ack.cancelled() or ack.exception() is not None:
            return i
    return len(acks)


async def _acknowledged(acks: Sequence[asyncio.Future[Any]], timeout_s: float) -> None:
    """Wait for each acknowledgement in order; a failure says how many came before it.

    NOTE: a broker takes one connection's (or channel's) publishes in the order sent, so
    acknowledgements are awaited in that order and the position recorded is the last
    event whose acknowledgement and every earlier one's arrived.
    """
    try:
        async with asyncio.timeout(timeout_s):
            for sent, ack in enumerate(acks):
                try:
                    await ack
                except Exception as exc:
                    raise DeliveryError(f"{type(exc).__name__}: {exc}", sent) from exc
    except TimeoutError as exc:
        raise DeliveryError("no acknowledgement in time", _leading_acks(acks)) from exc
    finally:
        for ack in acks:
            if not ack.done():
                ack.cancel()
            elif not ack.cancelled():
                ack.exception()  # retrieved: asyncio would log an unread one


class NatsTransport:
    """JetStream: the stream that holds `<subject>.>` acknowledges each publish, and
    drops a second copy of a `Nats-Msg-Id` it has seen (within its duplicate window).
    Up to a window of publishes are in flight before the first acknowledgement."""

    chunk = BROKER_WINDOW

    def __init__(self, url: str) -> None:
        self.server, self.subject = target(url, "nats")
        self.connection: Any = None
        self.stream: Any = None

    async def send_all(self, tenant: str, events: Sequence[StoredEvent]) -> None:
        import nats
        from nats.errors import Error as NatsError

        acks: list[asyncio.Future[Any]] = []
        try:
            if self.connection is None or self.connection.is_closed:
                self.connection = await nats.connect(
                    self.server, connect_timeout=SEND_TIMEOUT_S, max_reconnect_attempts=1,
                    allow_reconnect=False,
                )  # fmt: skip
                self.stream = self.connection.jetstream(
                    timeout=SEND_TIMEOUT_S, publish_async_max_pending=BROKER_WINDOW
                )
            for event in events:
                acks.append(
                    await self.stream.publish_async(
                        f"{self.subject}.{event.type}", event.text.encode(),
                        headers={"Nats-Msg-Id": message_id(tenant, event)},
                    )
                )  # fmt: skip
            await _acknowledged(acks, SEND_TIMEOUT_S)
        except DeliveryError:
            await self.close()
            raise
        except (NatsError, OSError, TimeoutError) as exc:
            await self.close()
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        await _give_up(self.connection)
        self.connection = self.stream = None


class AmqpTransport:
    """A durable topic exchange, declared when missing; persistent messages, each
    confirmed by the broker, a window of them in flight on one channel."""

    chunk = BROKER_WINDOW

    def __init__(self, url: str) -> None:
        self.server, self.exchange_name = target(url, "amqp")
        self.connection: Any = None
        self.exchange: Any = None

    async def send_all(self, tenant: str, events: Sequence[StoredEvent]) -> None:
        import aio_pika
        from aio_pika.exceptions import AMQPException

        try:
            if self.exchange is None:
                self.connection = await aio_pika.connect(self.server, timeout=SEND_TIMEOUT_S)
                channel = await self.connection.channel(publisher_confirms=True)
                self.exchange = await channel.declare_exchange(
                    self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
                )
            # NOTE: tasks start in the order made, and the channel writes each publish
            # under a first-come lock, so the broker gets them in `sequence` order.
            acks = [
                asyncio.ensure_future(
                    self.exchange.publish(
                        aio_pika.Message(
                            event.text.encode(), content_type="application/json",
                            message_id=message_id(tenant, event),
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        ),
                        routing_key=event.type, timeout=SEND_TIMEOUT_S,
                    )
                )
                for event in events
            ]  # fmt: skip
            await _acknowledged(acks, SEND_TIMEOUT_S)
        except DeliveryError:
            await self.close()
            raise
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


def transport(kind: str, url: str, secret: str | None, batch_max: int = 1) -> Transport:
    if kind == "webhook":
        assert secret is not None
        return WebhookTransport(url, secret, batch_max)
    if kind == "redis":
        return RedisTransport(url)
    if kind == "nats":
        return NatsTransport(url)
    return AmqpTransport(url)

"""Sinks: what a tenant asks for (API.md, Sinks), checked before it is stored."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit, urlunsplit

from app.ledger.errors import InvalidRequest
from app.ledger.records import EVENT_TYPES

SCHEMES = {
    "webhook": ("http", "https"),
    "redis": ("redis", "rediss"),
    "nats": ("nats", "tls"),
    "amqp": ("amqp", "amqps"),
}
# Where in the broker events go: the URL's query parameter, and its default.
TARGETS = {"redis": "stream", "nats": "subject", "amqp": "exchange"}
DEFAULT_TARGET = "twofold"
# Events in one webhook request (`batch_max`), at most.
BATCH_MAX_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class SinkSpec:
    id: str
    type: str
    url: str
    types: tuple[str, ...] | None
    after: int | None
    batch_max: int | None = None

    @property
    def fingerprint(self) -> str:
        """The body as given: the same id with the same body again is the same sink.
        (`batch_max` joins it only when given, so a sink made before it existed is still
        the same sink.)"""
        given: list[object] = [self.type, self.url, self.types, self.after]
        if self.batch_max is not None:
            given.append(self.batch_max)
        return hashlib.sha256(json.dumps(given).encode()).hexdigest()


def check_spec(spec: SinkSpec, hosts: Sequence[str]) -> SinkSpec:
    schemes = SCHEMES.get(spec.type)
    if schemes is None:
        raise InvalidRequest.at("type", f"one of {', '.join(SCHEMES)}")
    try:
        parts = urlsplit(spec.url)
        host = (parts.hostname or "").lower()
        _ = parts.port  # raises on a port that is not a number
    except ValueError as exc:
        raise InvalidRequest.at("url", f"not a URL: {exc}") from exc
    if parts.scheme not in schemes or not host:
        raise InvalidRequest.at("url", f"a {spec.type} sink takes {' or '.join(schemes)}://host")
    if hosts and host not in hosts:
        raise InvalidRequest.at("url", f"host {host} is not one of SINK_HOSTS")
    if spec.types is not None:
        if not spec.types:
            raise InvalidRequest.at("types", "at least one event type, or leave it out")
        unknown = sorted(set(spec.types) - set(EVENT_TYPES))
        if unknown:
            raise InvalidRequest.at("types", f"unknown event type {unknown[0]!r}")
    if spec.after is not None and spec.after < 0:
        raise InvalidRequest.at("after", "a sequence number, 0 or more")
    if spec.batch_max is not None:
        if spec.type != "webhook":
            raise InvalidRequest.at("batch_max", "only a webhook sink takes it")
        if not 1 <= spec.batch_max <= BATCH_MAX_LIMIT:
            raise InvalidRequest.at("batch_max", f"events in one request: 1 to {BATCH_MAX_LIMIT}")
    return spec


def target(url: str, kind: str) -> tuple[str, str]:
    """(the URL without our query parameter, the stream, subject or exchange named)."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    name = query.pop(TARGETS[kind], [DEFAULT_TARGET])[0]
    rest = "&".join(f"{k}={v}" for k, values in query.items() for v in values)
    return urlunsplit(parts._replace(query=rest)), name


def masked(url: str) -> str:
    """The URL with its password hidden."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def new_secret() -> str:
    """A Standard Webhooks signing secret: `whsec_` and 24 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def backoff_s(failures: int, maximum_s: float) -> float:
    """1 s after the first failure, doubling, at most `maximum_s`."""
    return float(min(2.0 ** min(max(failures - 1, 0), 30), maximum_s))

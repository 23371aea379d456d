"""Live streams (SSE) of the log for `make bench`, each event's delivery lag measured
from its `at` (when the group commit applied it, just before its commit) to its receipt,
on this machine's one clock. The sinks' consumers are in `bench/sinks.py`."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


AT = b'"at":"'


def _lag_s(event: bytes, received: float) -> float:
    """Seconds from the event's `at` to `received` (time.time())."""
    start = event.index(AT) + len(AT)
    at = datetime.fromisoformat(event[start : event.index(b'"', start)].decode())
    return received - at.timestamp()


class Streams:
    """`count` open streams on one tenant; with `measure`, every event's lag."""

    def __init__(self, base_url: str, count: int, after: int, measure: bool) -> None:
        self.base_url, self.count, self.after, self.measure = base_url, count, after, measure
        self.lags: list[float] = []
        self.events = 0
        self.bytes = 0
        self.tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Streams:
        self.client = httpx.AsyncClient(
            base_url=self.base_url, auth=("abc", "123"), timeout=None,
            limits=httpx.Limits(max_connections=self.count + 8),
        )  # fmt: skip
        self.tasks = [asyncio.create_task(self._read()) for _ in range(self.count)]
        await asyncio.sleep(1)  # every stream connected and caught up
        return self

    async def __aexit__(self, *_: object) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                await task
        await self.client.aclose()

    async def _read(self) -> None:
        if not self.measure:
            return await self._count()
        params = {"after": str(self.after)}
        rest = b""
        async with self.client.stream("GET", "/v1/events/stream", params=params) as response:
            async for chunk in response.aiter_raw():
                self.bytes += len(chunk)
                now = time.time()
                lines = (rest + chunk).split(b"\n")
                rest = lines.pop()  # a line the next chunk ends
                for line in lines:
                    if line.startswith(b"data: "):
                        self.events += 1
                        self.lags.append(_lag_s(line, now))

    async def _count(self) -> None:
        """Follow a stream over a bare socket, only counting what arrives: the cheapest
        consumer, so that what the benchmark sees is the service's cost, not an HTTP
        client's parsing on the same cores. Counts are approximate (an `id:` split
        between two reads is missed)."""
        url = httpx.URL(self.base_url)
        reader, writer = await asyncio.open_connection(url.host, url.port)
        auth = base64.b64encode(b"abc:123").decode()
        request = (f"GET /v1/events/stream?after={self.after} HTTP/1.1\r\n"
                   f"Host: {url.host}\r\nAuthorization: Basic {auth}\r\n\r\n")  # fmt: skip
        writer.write(request.encode())
        try:
            while chunk := await reader.read(1 << 18):
                self.bytes += len(chunk)
                self.events += chunk.count(b"\nid: ")
        finally:
            writer.close()


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {"p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50_ms": round(pick(0.50) * 1000, 1), "p99_ms": round(pick(0.99) * 1000, 1),
            "max_ms": round(ordered[-1] * 1000, 1)}  # fmt: skip

"""A webhook receiver for the tests: a small HTTP/1.1 server in the test's event loop
that keeps every request it gets and answers as the test says."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from standardwebhooks import Webhook


@dataclass
class Received:
    at: float  # time.monotonic() when the request had arrived, before any delay
    headers: dict[str, str]
    body: bytes
    status: int
    wall: float = 0.0  # time.time()

    @property
    def event(self) -> Any:
        return json.loads(self.body)


def _events(body: Any) -> list[Any]:
    return body.get("events", [body])


@dataclass
class Receiver:
    """`answer(n)` gives the status of the n-th request (from 0); `delay_s` slows each."""

    answer: Callable[[int], int] = lambda _: 200
    delay_s: float = 0.0
    got: list[Received] = field(default_factory=list)
    server: asyncio.AbstractServer | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self, port: int = 0) -> Receiver:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)
            self.server = None

    def delivered(self) -> list[Received]:
        return [r for r in self.got if 200 <= r.status < 300]

    def sequences(self) -> list[int]:
        """The sequences of the events delivered, in the order received (the events of a
        batch, `{"events": [...]}`, one by one)."""
        return [e["sequence"] for r in self.delivered() for e in _events(r.event)]

    def verified(self, secret: str) -> list[Any]:
        """Every delivered event, its Standard Webhooks signature checked."""
        checker = Webhook(secret)
        return [checker.verify(r.body, r.headers) for r in self.delivered()]

    async def wait_for(self, done: Callable[[Receiver], bool], timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while not done(self):
            assert time.monotonic() < deadline, f"waited {timeout_s} s; got {self.sequences()}"
            await asyncio.sleep(0.05)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                arrived, wall = time.monotonic(), time.time()
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                status = self.answer(len(self.got))
                self.got.append(Received(arrived, headers, body, status, wall))
                writer.write(f"HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n".encode())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            # The receiver is stopping. NOTE: asyncio logs a cancelled handler of
            # start_server as an error, so this one ends quietly.
            pass
        finally:
            writer.close()

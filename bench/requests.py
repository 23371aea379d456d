"""`make bench-requests`: the request path alone, without HTTP or the database's work.

Calls the real ASGI application in-process from 64 concurrent callers, each posting
immediate transfers between 10,000 accounts, and prints the CPU a request costs this
process. The group commit's database work is replaced by what it does in Python: the
pure apply against zero heads of rule `any` and the JSON of the rows it would write. So
the figure is Litestar, the middleware, `FastPath`, validation, the batcher and the apply;
with `make bench-flush` (the group commit alone) it splits the service's CPU per
transfer. To see where it goes:
`.venv/bin/py-spy record -o profile.svg -- .venv/bin/python bench/requests.py`.
Embedded PostgreSQL and Valkey (the app opens its pools at startup) unless
REQUESTS_DATABASE_URL / REQUESTS_REDIS_URL are set.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app import main as app_main  # noqa: E402
from app.ledger.commit.apply import apply_groups  # noqa: E402
from app.ledger.commit.claim import head_keys  # noqa: E402
from app.ledger.records import Group, Result  # noqa: E402
from app.ledger.rules import Head, Rule  # noqa: E402
from app.main import create_app  # noqa: E402
from app.models.log import append_params  # noqa: E402
from app.models.rows import plan_params  # noqa: E402
from app.settings import Settings, environment  # noqa: E402
from integration_tests.server import Backends  # noqa: E402

CALLERS = 64
ACCOUNTS = 10_000
REQUESTS = 60_000
WARM_UP = 3_200
AUTH = b"Basic YWJjOjEyMw=="  # the development key in .env
# REQUESTS_BATCH=1000: post batches of that many transfers instead (CPU per transfer).
BATCH = int(os.environ.get("REQUESTS_BATCH", "0"))


async def apply_only(_: object, groups: Sequence[Group]) -> list[list[Result]]:
    """A group commit's Python work, without its round trips."""
    heads = {key: Head(key[1], key[2], Rule.ANY) for key in head_keys(groups, {})}
    plan, results = apply_groups(groups, {}, heads, datetime.now(UTC))
    plan_params(plan)
    append_params(plan.changes)
    return results


async def post(app: Any, path: str, body: bytes) -> int:
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    answer: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop() if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        answer.append(message)

    headers = [
        (b"content-type", b"application/json"),
        (b"authorization", AUTH),
        (b"content-length", str(len(body)).encode()),
    ]
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": headers, "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80), "state": {},
    }  # fmt: skip
    await app(scope, receive, send)
    return int(answer[0]["status"])


def transfer() -> str:
    a, b = random.sample(range(ACCOUNTS), 2)
    return (
        f'{{"lines":[{{"account":"a{a}","currency":"USD","amount":"-1"}},'
        f'{{"account":"a{b}","currency":"USD","amount":"1"}}]}}'
    )


async def caller(app: Any, count: int) -> None:
    for _ in range(count):
        if BATCH:
            items = ",".join(transfer() for _ in range(BATCH))
            body = f'{{"mode":"immediate","transactions":[{items}]}}'.encode()
            status = await post(app, "/v1/transactions/batch", body)
            assert status == 200, status
        else:
            status = await post(app, "/v1/transactions/immediate", transfer().encode())
            assert status == 201, status


async def main(backends: Backends) -> None:
    env = environment()
    env.update(DATABASE_URL=backends.database_url, REDIS_URL=backends.redis_url)
    app = create_app(Settings.from_env(env))
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    lifespan = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    running = asyncio.create_task(app(lifespan, inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    assert (await outbox.get())["type"] == "lifespan.startup.complete"
    try:
        per = max(BATCH, 1)
        callers = min(CALLERS, REQUESTS // per // 4)
        await asyncio.gather(*(caller(app, WARM_UP // per // callers or 1) for _ in range(callers)))
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(caller(app, REQUESTS // per // callers) for _ in range(callers)))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        what = f"batches of {BATCH}" if BATCH else "transfer requests"
        print(
            f"{REQUESTS} transfers in {what} from {callers} callers:"
            f" {cpu / REQUESTS * 1e6:.0f} us of CPU a transfer, {REQUESTS / wall:.0f}/s"
        )
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await running


if __name__ == "__main__":
    app_main.commit_groups = apply_only  # type: ignore[assignment]
    started = Backends.start("requests")
    try:
        uvloop.run(main(started))
    finally:
        started.stop()

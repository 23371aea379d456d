"""`make bench-flush`: the group commit alone, without HTTP.

Calls the group commit (`commit_groups`) directly with batches of uniform immediate transfers
between 10,000 funded accounts, one batch at a time, and prints the CPU each transfer
costs this process (validation excluded: drafts are made before the clock starts) and
PostgreSQL (every backend of the store, read from /proc), the WAL it wrote, and the wall
time per batch (mean, median, 99th percentile and the slowest).
Embedded PostgreSQL unless FLUSH_DATABASE_URL is set. FLUSH_SQL, if set, runs once after
the migrations (say, `DROP INDEX transactions_lines`), to weigh what a table or an index
costs the write.
"""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path

import msgspec
import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.controllers.schemas import TransactionIn, utc_now  # noqa: E402
from app.ledger.commit import commit_groups  # noqa: E402
from app.ledger.documents import WORLD, Mode  # noqa: E402
from app.ledger.records import Group, Job, JobKind  # noqa: E402
from app.main import tune_gc  # noqa: E402
from app.models.store import PostgresStore  # noqa: E402
from app.settings import Settings  # noqa: E402
from bench.harness import cpu_seconds  # noqa: E402
from integration_tests.server import Backends  # noqa: E402

ACCOUNTS = 10_000
TENANT = "test"
# Transfers per batch and batches; FLUSH_SIZES="1000:20,256:30" to choose.
SIZES = tuple(
    tuple(int(n) for n in size.split(":"))
    for size in os.environ.get("FLUSH_SIZES", "16:300,64:100,256:30").split(",")
)


def transfer(lines: list[dict[str, str]]) -> Group:
    body = msgspec.json.decode(msgspec.json.encode({"lines": lines}), type=TransactionIn)
    draft = body.draft(Mode.IMMEDIATE, utc_now(), Settings().limits)
    return Group((Job(JobKind.CREATE, TENANT, draft.id, draft),))


def random_transfer() -> Group:
    a, b = random.sample(range(ACCOUNTS), 2)
    return transfer(
        [
            {"account": f"a{a}", "currency": "USD", "amount": "-1"},
            {"account": f"a{b}", "currency": "USD", "amount": "1"},
        ]
    )


async def measure(store: PostgresStore) -> None:
    if setup := os.environ.get("FLUSH_SQL"):
        async with store.connection() as connection:
            await connection.raw.execute(setup)
    await store.ensure_accounts([TENANT])
    for low in range(0, ACCOUNTS, 256):
        await commit_groups(
            store.begin_commit,
            [
                transfer(
                    [
                        {"account": WORLD, "currency": "USD", "amount": "-1000000"},
                        {"account": f"a{i}", "currency": "USD", "amount": "1000000"},
                    ]
                )
                for i in range(low, min(low + 256, ACCOUNTS))
            ],
        )
    async with store.connection() as connection:
        await connection.execute("ANALYZE")
    for size, count in SIZES:
        for _ in range(10):  # warm up: plans and connections
            await commit_groups(store.begin_commit, [random_transfer() for _ in range(size)])
        async with store.connection() as connection:
            rows = await connection.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'twofold'"
            )
            backends = [Path(f"/proc/{row.pid}") for row in rows]
        batches = [[random_transfer() for _ in range(size)] for _ in range(count)]
        wal_before = await wal_position(store)
        pg = sum(map(cpu_seconds, backends))
        client, times = time.process_time(), []
        for batch in batches:
            started = time.perf_counter()
            await commit_groups(store.begin_commit, batch)
            times.append(time.perf_counter() - started)
        pg = sum(map(cpu_seconds, backends)) - pg
        client = time.process_time() - client
        wal = await wal_position(store) - wal_before
        done = size * count
        times.sort()
        print(
            f"{size:>4} a batch: this process {client / done * 1e6:6.0f} us,"
            f" PostgreSQL {pg / done * 1e6:6.0f} us per transfer;"
            f" WAL {wal / done:5.0f} bytes a transfer;"
            f" a batch {sum(times) / count * 1e3:6.2f} ms, median"
            f" {times[count // 2] * 1e3:6.2f}, p99 {times[count * 99 // 100] * 1e3:6.2f},"
            f" slowest {times[-1] * 1e3:6.2f}"
        )


async def wal_position(store: PostgresStore) -> int:
    """PostgreSQL's WAL insert position in bytes: what the batches wrote, exactly,
    where CPU time moves with the machine's pace."""
    async with store.connection() as connection:
        position: int = (
            await connection.execute("SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn")
        ).scalar()
    return int(position)


async def main(database_url: str) -> None:
    tune_gc()  # as each worker of the service does: the default thresholds cost ~25 us here
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")  # not used here
    store = PostgresStore(Settings.from_env())
    await store.open()
    try:
        await measure(store)
    finally:
        await store.close()


if __name__ == "__main__":
    backends = Backends.start("flush")
    try:
        uvloop.run(main(backends.database_url))
    finally:
        backends.stop()

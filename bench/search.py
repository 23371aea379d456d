"""Search latency as the ledger grows: 10k, 100k and 1M transactions over 10,000 accounts.

Starts the real service (2 workers) on embedded PostgreSQL and Valkey (or
BENCH_DATABASE_URL / BENCH_REDIS_URL), loads rows in stages with set-based SQL (the
search path reads what the write path stores, in the same shape), and prints the p50/p99
latency over HTTP of six queries at each size. Usage: `make bench-search`.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.models.rows import encode_cursor
from integration_tests.server import Backends, Service

ACCOUNTS = 10_000
SIZES = [int(s) for s in os.environ.get("BENCH_SIZES", "10000,100000,1000000").split(",")]
SAMPLES = int(os.environ.get("BENCH_SAMPLES", "200"))
LOAD_BATCH = 100_000
KINDS = 20

LOAD_ACCOUNTS = """
INSERT INTO accounts (tenant, id, balance_rule, data)
SELECT 'test', 'acct-' || lpad(i::text, 5, '0'), 'any',
       jsonb_build_object('tier', 'tier-' || (i % 5), 'n', i)
FROM generate_series(0, $1 - 1) AS i
"""

LOAD_BALANCES = """
INSERT INTO balances (tenant, account, currency, posted, version, last_ts)
SELECT 'test', 'acct-' || lpad(i::text, 5, '0'), 'USD',
       CASE WHEN i % 10 = 0 THEN 0 ELSE (i % 997) + 1 END, 1, now()
FROM generate_series(0, $1 - 1) AS i
"""

# Transactions n in [$1, $2): a transfer of (n % 500) + 1 between two pseudo-random
# accounts, with a `kind` among 20 values and a `charge` from 0 to 9999 in data.
LOAD_TRANSACTIONS = """
INSERT INTO transactions (tenant, id, status, mode, lines, data, timestamp, timestamp_given,
                          created_at, fingerprint)
SELECT 'test', 'tx-' || lpad(n::text, 8, '0'), 'COMPLETED', 'immediate',
       jsonb_build_array(
         jsonb_build_object('account', 'acct-' || lpad(((n * 7919) % $3)::text, 5, '0'),
                            'currency', 'USD', 'amount', '-' || ((n % 500) + 1)),
         jsonb_build_object('account', 'acct-' || lpad(((n * 104729 + 1) % $3)::text, 5, '0'),
                            'currency', 'USD', 'amount', ((n % 500) + 1)::text)),
       jsonb_build_object('kind', 'kind-' || (n % 20), 'charge', (n * 37) % 10000,
                          'tags', jsonb_build_array('t' || (n % 7), 't' || (n % 11))),
       timestamp '2026-01-01' + n * interval '1 millisecond', true,
       timestamp '2026-01-01' + n * interval '1 millisecond', ''
FROM generate_series(CAST($1 AS bigint), CAST($2 AS bigint) - 1) AS n
"""


LOAD_POSTINGS = """
INSERT INTO transaction_accounts (tenant, account, timestamp, transaction_id)
SELECT DISTINCT t.tenant, l.value ->> 'account', t.timestamp, t.id
FROM transactions t, jsonb_array_elements(t.lines) l
WHERE t.tenant = 'test' AND t.id >= $1 AND t.id < $2
"""

# Each transaction's two entries, as the journal keeps them (the balances after an entry
# are not the running sums here: the pages read the same rows whatever they hold).
LOAD_ENTRIES = """
INSERT INTO entries (tenant, account, currency, seq, transaction_id, kind, amount, posted,
                     pending_in, pending_out, timestamp)
SELECT t.tenant, l.value ->> 'account', 'USD', 2 * substr(t.id, 4)::bigint + l.ordinality,
       t.id, 'post', (l.value ->> 'amount')::numeric, (l.value ->> 'amount')::numeric, 0, 0,
       t.timestamp
FROM transactions t, jsonb_array_elements(t.lines) WITH ORDINALITY AS l
WHERE t.tenant = 'test' AND t.id >= $1 AND t.id < $2
"""


async def load(database_url: str, start: int, stop: int) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        if start == 0:
            await connection.execute(LOAD_ACCOUNTS, ACCOUNTS)
            await connection.execute(LOAD_BALANCES, ACCOUNTS)
        for low in range(start, stop, LOAD_BATCH):
            high = min(stop, low + LOAD_BATCH)
            await connection.execute(LOAD_TRANSACTIONS, low, high, ACCOUNTS)
            await connection.execute(LOAD_POSTINGS, f"tx-{low:08d}", f"tx-{high:08d}")
            await connection.execute(LOAD_ENTRIES, f"tx-{low:08d}", f"tx-{high:08d}")
        await connection.execute("VACUUM ANALYZE transactions")
        await connection.execute("VACUUM ANALYZE accounts")
        await connection.execute("VACUUM ANALYZE balances")
        await connection.execute("VACUUM ANALYZE entries")
        # NOTE: flush the load now, so that its checkpoint does not land in a measurement.
        await connection.execute("CHECKPOINT")
    finally:
        await connection.close()


# A request for a ledger of `size` transactions.
Request = Callable[[random.Random, int], tuple[str, str, dict[str, Any] | None]]

QUERIES: dict[str, Request] = {
    "account page": lambda r, size: (
        "GET",
        "/v1/transactions",
        {"params": {"account": f"acct-{r.randrange(ACCOUNTS):05d}", "limit": "100"}},
    ),
    "journal page": lambda r, size: (
        "GET",
        f"/v1/accounts/acct-{r.randrange(ACCOUNTS):05d}/entries",
        {"params": {"limit": "100"}},
    ),
    # From a cursor at a random instant of the loaded history: a page from the middle.
    "journal page, after": lambda r, size: (
        "GET",
        f"/v1/accounts/acct-{r.randrange(ACCOUNTS):05d}/entries",
        {"params": {"limit": "100", "after": journal_cursor(r.randrange(size))}},
    ),
    "terms": lambda r, size: (
        "POST",
        "/v1/transactions/_search",
        {"json": {"query": {"must": {"terms": [{"kind": f"kind-{r.randrange(KINDS)}"}]}}}},
    ),
    "ranges": lambda r, size: (
        "POST",
        "/v1/transactions/_search",
        {
            "json": {
                "query": {
                    "must": {
                        "ranges": [{"charge": {"gte": (c := r.randrange(9900)), "lt": c + 100}}]
                    }
                }
            }
        },
    ),
    "balance.USD > 0": lambda r, size: (
        "POST",
        "/v1/accounts/_search",
        {"json": {"query": {"must": {"fields": [{"balance.USD": {"gt": r.randrange(500)}}]}}}},
    ),
}


def journal_cursor(n: int) -> str:
    """The cursor of transaction n's first entry, as the journal page makes it."""
    at = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(milliseconds=n)
    return encode_cursor([at.isoformat(), "USD", 2 * n + 1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(client: httpx.AsyncClient, request: Request, size: int) -> tuple[float, float]:
    rng = random.Random(42)
    latencies = []
    for i in range(SAMPLES + 10):
        method, path, kwargs = request(rng, size)
        started = time.perf_counter()
        response = await client.request(method, path, **(kwargs or {}))
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise RuntimeError(f"{path}: {response.status_code} {response.text[:300]}")
        if i >= 10:  # the first requests warm caches and connections
            latencies.append(elapsed)
    return statistics.median(latencies), percentile(latencies, 0.99)


async def run(backends: Backends, service: Service) -> dict[str, Any]:
    results: dict[str, Any] = {}
    loaded = 0
    async with httpx.AsyncClient(base_url=service.base_url, auth=("abc", "123"), timeout=60) as c:
        for size in SIZES:
            started = time.perf_counter()
            await load(backends.database_url, loaded, size)
            loaded = size
            print(f"loaded {size:>9,} transactions in {time.perf_counter() - started:6.1f} s")
            for name, request in QUERIES.items():
                p50, p99 = await measure(c, request, size)
                results.setdefault(name, {})[size] = (p50, p99)
                print(f"  {name:<16} p50 {p50:7.2f} ms   p99 {p99:7.2f} ms")
    return results


def table(results: dict[str, Any]) -> str:
    header = "| query | " + " | ".join(f"{s:,} p50 / p99 (ms)" for s in SIZES) + " |"
    lines = [header, "|---" * (len(SIZES) + 1) + "|"]
    for name, by_size in results.items():
        cells = [f"{by_size[s][0]:.1f} / {by_size[s][1]:.1f}" for s in SIZES]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    backends = Backends.start("bench")
    try:
        service = Service.start(backends, "bench-service", EXPIRY_SWEEP_INTERVAL_S="5")
        try:
            results = asyncio.run(run(backends, service))
        finally:
            service.stop()
    finally:
        backends.stop()
    print()
    print(table(results))
    out = Path(__file__).parent / "results" / f"search-{time.strftime('%Y-%m-%d')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"samples": SAMPLES, "results": results}, indent=2) + "\n")
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()

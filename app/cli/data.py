"""`twofold export` and `twofold import`: a tenant's transactions and journal out of the
database, and transactions into a tenant through the batch API."""

from __future__ import annotations

import asyncio
import csv
import json
import sys
from array import array
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Annotated, Any, TypeVar, cast

import httpx
import msgspec
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from app.cli.api import DEFAULT_KEY, ApiKey, ServiceUrl, api_client
from app.embedded import database_for_tools, stop_all
from app.settings import environment

console = Console(stderr=True)
ENTRY_FIELDS = ("account", "currency", "seq", "transaction_id", "kind", "amount", "posted",
                "pending_in", "pending_out", "available", "timestamp")  # fmt: skip
BATCH_MAX = 8190
# A batch request's share of the file, at most (unless one transaction is larger): half
# the service's default cap on a batch body (`BATCH_BODY_SIZE_MAX`, 16 MiB). The largest
# batches that fit go fastest (measured in docs/performance.md).
BATCH_BYTES = 8 * 1024 * 1024
# What an exported transaction in each final status is imported as (see `docs/behaviour.md`):
# only what moved money or still holds it; FAILED and VOIDED ones left none.
IMPORT_MODES = {"COMPLETED": "immediate", "REVERSED": "immediate", "PENDING": "pending"}
_encode = msgspec.json.Encoder().encode
T = TypeVar("T")


def _progress() -> Progress:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())  # fmt: skip
    return Progress(*columns, console=console, transient=True)


def _instant(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        instant = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise typer.BadParameter(f"{name}: an RFC 3339 instant") from exc
    return instant if instant.tzinfo else instant.replace(tzinfo=UTC)


def export(
    tenant: Annotated[str, typer.Option("--tenant", "-t", help="the tenant's name")],
    format_: Annotated[str, typer.Option("--format", help="jsonl or csv")] = "jsonl",
    start: Annotated[
        str | None, typer.Option("--from", help="from this instant (RFC 3339)")
    ] = None,
    end: Annotated[str | None, typer.Option("--to", help="before this instant")] = None,
    out: Annotated[Path | None, typer.Option(help="a file (default: standard output)")] = None,
) -> None:
    """Write a tenant's transactions and journal, straight from the database.

    Streamed from one snapshot. jsonl: each account ({"account": ...}: id, rule, data,
    keys), each transaction as the API answers it ({"transaction": ...}) oldest first,
    then each entry ({"entry": ...}) by account, currency and seq (`twofold import` reads
    the accounts and transactions); csv: the journal, one entry a row."""
    if format_ not in ("jsonl", "csv"):
        raise typer.BadParameter("--format: jsonl or csv")
    window = (_instant(start, "--from"), _instant(end, "--to"))
    url, stops = database_for_tools(environment())
    try:
        with out.open("w", newline="") if out else _stdout() as file:
            asyncio.run(_export(url, tenant, format_, window, file))
    finally:
        stop_all(stops)


def _stdout() -> IO[str]:
    return open(sys.stdout.fileno(), "w", newline="", closefd=False)


async def _export(
    url: str, tenant: str, format_: str, window: tuple[datetime | None, datetime | None],
    file: IO[str],
) -> None:  # fmt: skip
    import asyncpg

    from app.controllers.schemas import account_out, transaction_out
    from app.ledger.money import EXACT, format_amount
    from app.models import export as rows

    encode = msgspec.json.Encoder().encode
    connection = await asyncpg.connect(url)
    try:
        async with connection.transaction(isolation="repeatable_read", readonly=True):
            counts = await rows.count(connection, tenant, *window)
            writer = csv.writer(file) if format_ == "csv" else None
            with _progress() as progress:
                if writer is None:
                    async for a in rows.accounts(connection, tenant):
                        out = account_out(a)
                        view = {"id": out.id, "balance_rule": out.balance_rule, "data": out.data,
                                "created_at": out.created_at, "keys": out.keys}  # fmt: skip
                        file.write('{"account":' + encode(view).decode() + "}\n")
                    task = progress.add_task("transactions", total=counts[0])
                    async for t in rows.transactions(connection, tenant, *window):
                        file.write('{"transaction":' + encode(transaction_out(t)).decode() + "}\n")
                        progress.advance(task)
                else:
                    writer.writerow(ENTRY_FIELDS)
                task = progress.add_task("entries", total=counts[1])
                async for e in rows.entries(connection, tenant, *window):
                    amounts = [format_amount(e[k]) for k in ("amount", "posted", "pending_in",
                                                             "pending_out")]  # fmt: skip
                    available = format_amount(EXACT.subtract(e["posted"], e["pending_out"]))
                    values = [e["account"], e["currency"], e["seq"], e["transaction_id"],
                              e["kind"], *amounts, available,
                              e["timestamp"].isoformat().replace("+00:00", "Z")]  # fmt: skip
                    if writer is not None:
                        writer.writerow(values)
                    else:
                        entry = dict(zip(ENTRY_FIELDS, values, strict=True))
                        file.write(json.dumps({"entry": entry}, separators=(",", ":")) + "\n")
                    progress.advance(task)
    finally:
        await connection.close()


def import_(
    file: Annotated[Path, typer.Argument(help="a `twofold export --format jsonl` file")],
    url: ServiceUrl = None,
    api_key: ApiKey = DEFAULT_KEY,
    batch: Annotated[int, typer.Option(help="transactions per batch request, at most")] = BATCH_MAX,
) -> None:
    """Record an export's transactions in a tenant through the batch API.

    Accounts first (rule and data; their keys last, once nothing more is debited by the
    import), then transactions oldest first, each as its final effect: COMPLETED and
    REVERSED ones (and reversals) as immediate, open holds as pending; FAILED and VOIDED
    ones moved nothing and are skipped. Run it again after an interruption, or after it
    finished: what is recorded is found by id and counted as already there."""
    if not 1 <= batch <= BATCH_MAX:
        raise typer.BadParameter(f"--batch: 1 to {BATCH_MAX}")
    counts: Counter[str] = Counter()
    with file.open("rb") as source, api_client(url, api_key, timeout=300) as client:
        index = _importable(source)
        counts["skipped"] = index.skipped
        _accounts(client, source, index.accounts, counts, keys=False)
        done = _recorded_prefix(client, source, index)
        counts["already there"] = done
        with _progress() as progress:
            task = progress.add_task("importing", total=index.count, completed=done)
            for size, body in _ahead(_bodies(_transactions(source, index, done), batch)):
                answer = client.post("/v1/transactions/batch", content=body,
                                     headers={"content-type": "application/json"})  # fmt: skip
                if answer.status_code != 200:
                    console.print(f"batch refused: {answer.status_code} {answer.text}")
                    raise typer.Exit(1)
                for result in answer.json()["results"]:
                    code = result.get("code")
                    counts[f"failed ({code})" if code else "recorded"] += 1
                progress.advance(task, size)
        _accounts(client, source, index.accounts, counts, keys=True)
    for name in ("accounts", "recorded", "already there"):
        typer.echo(f"{name}: {counts.pop(name, 0)}")
    typer.echo(f"skipped (FAILED or VOIDED, they moved nothing): {counts.pop('skipped', 0)}")
    for name, n in sorted(counts.items()):
        typer.echo(f"{name}: {n}")
    raise typer.Exit(1 if counts else 0)


# The file offset of every this many importable transactions is kept (8 bytes per
# 1,024): where a run starts reading and what a rerun's bisection seeks to, so that the
# command's memory does not grow with the file's transactions.
STRIDE = 1024


@dataclass(frozen=True, slots=True)
class _Index:
    """What one pass over the file finds: how many transactions are importable, the
    offset of every `STRIDE`-th of them, the accounts' offsets, and how many
    transactions are skipped."""

    count: int
    marks: array[int]
    accounts: array[int]
    skipped: int


def _importable(source: IO[bytes]) -> _Index:
    count, marks, accounts, skipped, offset = 0, array("q"), array("q"), 0, 0
    source.seek(0)
    for line in iter(source.readline, b""):
        if line.startswith(b'{"account":'):
            accounts.append(offset)
        elif line.startswith(b'{"transaction":'):
            if json.loads(line)["transaction"]["status"] in IMPORT_MODES:
                if count % STRIDE == 0:
                    marks.append(offset)
                count += 1
            else:
                skipped += 1
        offset += len(line)
    return _Index(count, marks, accounts, skipped)


def _transactions(
    source: IO[bytes], index: _Index, start: int
) -> Iterator[tuple[dict[str, Any], int]]:
    """The importable transactions from number `start` on, in file order, each with its
    line's length: read on from the mark before it."""
    if start >= index.count:
        return
    source.seek(index.marks[start // STRIDE])
    ahead = start % STRIDE  # importable transactions between the mark and `start`
    for line in iter(source.readline, b""):
        if not line.startswith(b'{"transaction":'):
            continue
        transaction: dict[str, Any] = json.loads(line)["transaction"]
        if transaction["status"] not in IMPORT_MODES:
            continue
        if ahead:
            ahead -= 1
            continue
        yield transaction, len(line)


def _accounts(
    client: httpx.Client, source: IO[bytes], offsets: array[int], counts: Counter[str],
    keys: bool,
) -> None:  # fmt: skip
    """Create the accounts (the same id and body again is answered 200: a rerun is
    harmless), or, with `keys`, give the owned ones their keys if they have none yet."""
    for offset in offsets:
        source.seek(offset)
        account = json.loads(source.readline())["account"]
        path = f"/v1/accounts/{_path(account['id'])}"
        if keys:
            if account["keys"] and not client.get(path).json()["keys"]:
                answer = client.put(f"{path}/keys", json={"keys": account["keys"]})
                if answer.status_code != 200:
                    counts[f"failed ({answer.json().get('code')})"] += 1
            continue
        if account["id"] == "@world":
            continue
        answer = client.post("/v1/accounts", json={
            "id": account["id"], "balance_rule": account["balance_rule"],
            "data": account["data"]})  # fmt: skip
        if answer.status_code in (200, 201) or _keyed_already(client, path, account, answer):
            counts["accounts"] += 1
        else:
            counts[f"failed ({answer.json().get('code')})"] += 1


def _key_set(keys: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {(k["id"], k["alg"], k["public_key"]) for k in keys}


def _keyed_already(
    client: httpx.Client, path: str, account: dict[str, Any], answer: httpx.Response
) -> bool:
    """Whether a create refused as `account_exists` met the account an earlier run made
    and then keyed: the same rule and data, and the file's keys."""
    if answer.status_code != 409 or not account["keys"]:
        return False
    found = client.get(path)
    if found.status_code != 200:
        return False
    there = found.json()
    return (
        there["balance_rule"] == account["balance_rule"]
        and there["data"] == account["data"]
        and _key_set(there["keys"]) == _key_set(account["keys"])
    )


def _recorded_prefix(client: httpx.Client, source: IO[bytes], index: _Index) -> int:
    """How many of the importable transactions are recorded already. Each batch is one
    database commit and they go oldest first, so what a run recorded before it stopped
    is a prefix: found by bisection, a GET per step."""
    low, high = 0, index.count
    while low < high:
        middle = (low + high) // 2
        transaction, _ = next(_transactions(source, index, middle))
        found = client.get(f"/v1/transactions/{_path(transaction['id'])}")
        if found.status_code == 200:
            low = middle + 1
        elif found.status_code == 404:
            high = middle
        else:
            console.print(f"cannot tell what is recorded: {found.status_code} {found.text}")
            raise typer.Exit(1)
    return low


def _path(transaction_id: str) -> str:
    return transaction_id.replace("%", "%25").replace("/", "%2F").replace("?", "%3F")


def _bodies(
    transactions: Iterator[tuple[dict[str, Any], int]], size: int
) -> Iterator[tuple[int, bytes]]:
    """Each batch request's body, with how many transactions it holds."""
    for mode, items in _batches(transactions, size):
        yield len(items), _encode({"mode": mode, "transactions": items})


_END = object()


def _ahead(items: Iterator[T]) -> Iterator[T]:
    """`items` in order, each made in a thread while the caller uses the one before: the
    next batch is read and encoded while the service records this one (an import sends
    one batch at a time, so the command's own time adds to every batch's)."""
    with ThreadPoolExecutor(1) as pool:
        coming = pool.submit(next, items, _END)
        while (item := coming.result()) is not _END:
            coming = pool.submit(next, items, _END)
            yield cast(T, item)


def _batches(
    transactions: Iterator[tuple[dict[str, Any], int]], size: int
) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """Consecutive transactions of one mode, at most `size` a batch and about
    `BATCH_BYTES` of the file's text, as the API takes them."""
    mode, items, length = "", list[dict[str, Any]](), 0
    for t, line in transactions:
        item_mode = IMPORT_MODES[t["status"]]
        if items and (item_mode != mode or len(items) == size or length + line > BATCH_BYTES):
            yield mode, items
            items, length = [], 0
        mode = item_mode
        length += line
        item = {"id": t["id"], "lines": t["lines"], "data": t["data"],
                "timestamp": t["timestamp"]}  # fmt: skip
        if item_mode == "pending" and t["expires_at"] is not None:
            item["expires_at"] = t["expires_at"]
        items.append(item)
    if items:
        yield mode, items

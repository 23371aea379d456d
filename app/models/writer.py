"""The group commit's database transaction: the store's side of `CommitPort`."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from app.ledger.commit import Recorded
from app.ledger.documents import WORLD
from app.ledger.keys import Proof
from app.ledger.log import chain_hash, format_instant
from app.ledger.records import AccountKey, Change, HeadKey, Plan, Transaction, TxnKey
from app.ledger.rules import Head
from app.models.connections import Connection, positional
from app.models.log import APPEND, LOCK_LOG_HEADS, append_params, text
from app.models.rows import (
    head_from_row,
    head_key,
    json_rows,
    json_text,
    json_value,
    keys_param,
    plan_params,
    transaction_from_row,
)
from app.models.statements import (
    ENSURE_AND_READ_HEADS,
    LOCK_HEADS,
    LOCK_OWNERS,
    LOCK_TRANSACTIONS,
    WRITE_PLAN,
)

# The writer connections prepare WRITE_PLAN once by name, so that a batch's write and its
# COMMIT travel together in one simple query (asyncpg cannot pipeline two statements).
WRITE_STATEMENT = "twofold_write"
_WRITE_SQL, _WRITE_PARAMS = positional(WRITE_PLAN)
_WRITE_TYPES = ", ".join(["jsonb"] * len(_WRITE_PARAMS))  # each table's rows, as JSON
PREPARE_WRITE = f"PREPARE {WRITE_STATEMENT} ({_WRITE_TYPES}) AS {_WRITE_SQL}"
APPEND_STATEMENT = "twofold_append"
APPEND_TYPES = ("text", "text", "timestamptz", "text", "text")
PREPARE_APPEND = (
    f"PREPARE {APPEND_STATEMENT} ({', '.join(f'{t}[]' for t in APPEND_TYPES)})"
    f" AS {positional(APPEND)[0]}"
)


async def prepare_writer(connection: asyncpg.Connection) -> None:
    """Each writer connection prepares the write and the append once, by name."""
    await connection.execute(PREPARE_WRITE)
    await connection.execute(PREPARE_APPEND)


class Writer:
    """`CommitPort` over a writer connection inside one database transaction."""

    __slots__ = ("connection",)

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    async def record_and_read(
        self, claimed: Sequence[tuple[str, str, str, str]], ids: Sequence[TxnKey]
    ) -> Recorded:
        read = await self.connection.execute(
            ENSURE_AND_READ_HEADS,
            {"world": WORLD, "transactions": keys_param(ids), "heads": keys_param(claimed)},
        )
        recorded = Recorded()
        for r in read:
            if r["taken"] is not None:
                recorded.taken.append((r["tenant"], r["taken"]))
            elif r["balance_rule"]:
                recorded.heads[head_key(r)] = head_from_row(r)
            if r["created"] is not None:
                recorded.created[(r["tenant"], r["account"])] = (r["balance_rule"], r["created"])
            if r["owned"]:
                recorded.owned.add((r["tenant"], r["account"]))
        return recorded

    async def lock_owners(self, keys: Sequence[AccountKey]) -> dict[AccountKey, frozenset[str]]:
        found = await self.connection.execute(LOCK_OWNERS, {"accounts": keys_param(keys)})
        return {(r["tenant"], r["id"]): frozenset(k["id"] for k in json_value(r["keys"]))
                for r in found}  # fmt: skip

    async def lock_transactions(self, keys: Sequence[TxnKey]) -> dict[TxnKey, Transaction]:
        found = await self.connection.execute(LOCK_TRANSACTIONS, {"transactions": keys_param(keys)})
        return {(r["tenant"], r["id"]): transaction_from_row(r, r["events"]) for r in found}

    async def lock_heads(
        self, keys: Sequence[HeadKey], read: Mapping[HeadKey, Head]
    ) -> tuple[dict[HeadKey, Head], datetime]:
        given = [(*key, head.rule.value, head.version) if (head := read.get(key))
                 else (*key, None, None) for key in keys]  # fmt: skip
        heads, now = {}, None
        for r in await self.connection.execute(LOCK_HEADS, {"heads": keys_param(given)}):
            if r["now"] is None:
                heads[head_key(r)] = head_from_row(r)
                continue
            now = r["now"]
            for n in r["unchanged"]:
                key = keys[n - 1]
                heads[key] = read[key]
        assert now is not None  # the aggregate's row
        return heads, now

    async def clock(self) -> datetime:
        now: datetime = (await self.connection.execute("SELECT clock_timestamp()")).scalar()
        return now

    async def write_rows(self, plan: Plan) -> None:
        await self.connection.raw.execute(_WRITE_SQL, *write_values(plan, ()))

    async def write_and_commit(
        self, plan: Plan, unused: Sequence[AccountKey], changes: Sequence[Change]
    ) -> None:
        await write_and_commit(self.connection, plan, unused, changes)


def write_values(plan: Plan, unused: Sequence[AccountKey]) -> list[str]:
    """WRITE_PLAN's parameters, in order: the plan's rows and the accounts to drop."""
    params = {
        **plan_params(plan),
        "unused": json_rows(list(unused)),
    }
    return [params[name] for name in _WRITE_PARAMS]


async def write_and_commit(
    connection: Connection,
    plan: Plan,
    unused: Sequence[AccountKey],
    changes: Sequence[Change],
) -> None:
    """Write a plan and commit. A small commit takes one round trip: a simple query of
    three statements, the prepared write with its JSON texts as dollar-quoted literals,
    the log's append (the only statement that waits for the tenant's log head), then
    COMMIT. A large one binds its rows as parameters (`LARGE_MIN`).

    NOTE: the write and the COMMIT are the last two round trips under the balance
    locks; sending them apart, a hot row stayed locked while the event loop came back to
    the batch between them. A signed request's proofs go first, one round trip more.
    """
    if plan.proofs:
        await write_proofs(connection, plan.proofs)
    values = write_values(plan, unused)
    if len(changes) >= LARGE_MIN:
        await _write_large(connection, values, changes)
        return
    log = append_params(changes)
    texts = [*values, *log["prefixes"], *log["suffixes"], *log["tenants"]]
    tag = _dollar_tag(texts)
    literals = ", ".join(f"{tag}{v}{tag}" for v in values)
    append = ""
    if changes:
        log["instants"] = [format_instant(at) for at in log["instants"]]
        arrays = ", ".join(
            f"ARRAY[{', '.join(f'{tag}{v}{tag}' for v in values)}]::{kind}[]"
            for values, kind in zip(log.values(), APPEND_TYPES, strict=True)
        )
        append = f"EXECUTE {APPEND_STATEMENT}({arrays}); "
    await connection.raw.execute(f"EXECUTE {WRITE_STATEMENT}({literals}); {append}COMMIT")


# From this many events on, a commit is large: its rows go as bound parameters, two
# round trips more than the one simple query of literals that small commits make, and
# the chain is computed here rather than by `twofold_append`. Both to spare PostgreSQL
# work that grows with the commit: lexing a megabyte of literals showed in its profile
# at 1,000 transfers a commit (perf), and the PL/pgSQL loop costs it several times what
# Python's sha256 costs an event.
LARGE_MIN = 64


async def _write_large(
    connection: Connection, values: list[str], changes: Sequence[Change]
) -> None:
    """The write, the log and the commit of a large plan. Its events are rendered while
    PostgreSQL runs the write: both are under the balance locks, which bound how many
    large commits that share accounts follow each other a second."""
    write = asyncio.ensure_future(connection.raw.execute(_WRITE_SQL, *values))
    try:
        await asyncio.sleep(0)  # the write goes out before the rendering starts
        log = append_params(changes)
    finally:
        await write
    await _append_chained_here(connection, log)
    await connection.raw.execute("COMMIT")


WRITE_EVENTS = """
INSERT INTO events (tenant, sequence, type, at, body, hash)
SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::timestamptz[], $5::text[],
                     $6::text[])
"""
MOVE_LOG_HEADS = """
UPDATE log_heads h SET sequence = v.sequence, hash = v.hash, at = v.at
FROM unnest($1::text[], $2::bigint[], $3::text[], $4::timestamptz[])
     AS v(tenant, sequence, hash, at)
WHERE h.tenant = v.tenant
"""


async def _append_chained_here(connection: Connection, log: dict[str, list[Any]]) -> None:
    """Lock the heads of the commit's tenants (sorted), number and chain its events in
    order after them, write the events and move the heads."""
    tenants = sorted(set(log["tenants"]))
    heads = {r["tenant"]: (r["sequence"], r["hash"])
             for r in await connection.raw.fetch(LOCK_LOG_HEADS, tenants)}  # fmt: skip
    sequences, bodies, hashes, last_at = [], [], [], {}
    for tenant, prefix, suffix, at in zip(log["tenants"], log["prefixes"], log["suffixes"],
                                          log["instants"], strict=True):  # fmt: skip
        sequence, previous = heads[tenant]
        body = text(prefix, suffix, previous, sequence + 1)
        heads[tenant] = (sequence + 1, chain_hash(previous, body))
        sequences.append(sequence + 1)
        bodies.append(body)
        hashes.append(heads[tenant][1])
        last_at[tenant] = at
    await connection.raw.execute(
        WRITE_EVENTS, log["tenants"], sequences, log["kinds"], log["instants"], bodies, hashes
    )
    await connection.raw.execute(
        MOVE_LOG_HEADS, tenants, [heads[t][0] for t in tenants], [heads[t][1] for t in tenants],
        [last_at[t] for t in tenants],
    )  # fmt: skip


async def write_proofs(connection: Connection, proofs: Sequence[tuple[TxnKey, Proof]]) -> None:
    """Each signed request once (`proofs`), and the transactions recorded from it."""
    ids: dict[int, str] = {}
    made, links = [], []
    for (tenant, transaction_id), proof in proofs:
        if id(proof) not in ids:
            ids[id(proof)] = str(uuid.uuid4())
            made.append((tenant, ids[id(proof)], proof.method, proof.path, proof.body,
                         json_text(dict(proof.headers))))  # fmt: skip
        links.append((tenant, transaction_id, ids[id(proof)]))
    await connection.raw.executemany(
        "INSERT INTO proofs (tenant, id, method, path, body, headers)"
        " VALUES ($1, $2, $3, $4, $5, $6::jsonb)",
        made,
    )
    await connection.raw.executemany(
        "INSERT INTO transaction_proofs (tenant, transaction_id, proof) VALUES ($1, $2, $3)",
        links,
    )


def _dollar_tag(texts: Sequence[str]) -> str:
    """A dollar-quote tag that none of `texts` contains, so each is one literal."""
    while True:
        tag = f"$w{secrets.token_hex(8)}$"
        if not any(tag in text for text in texts):
            return tag

"""The SQL of the store, by the job each statement does (see app/models/store.py)."""

from __future__ import annotations

TRANSACTION_FIELDS = (
    "id", "status", "mode", "lines", "data", "timestamp", "timestamp_given", "created_at",
    "expires_at", "failure", "reverses", "reversal_id", "fingerprint",
)  # fmt: skip
TRANSACTION_COLUMNS = ", ".join(TRANSACTION_FIELDS)
# An account's own columns, as `account_from_row` reads them (the table named `a`).
ACCOUNT_COLUMNS = "a.id, a.balance_rule, a.data, a.created_at, a.keys, a.key_history"

# A journal row's columns, as the audit and the export read them, and the journal's key
# order within a tenant (migration 0009): for each account and currency, `seq`'s order.
JOURNAL_COLUMNS = (
    "account, currency, seq, transaction_id, kind, amount, posted, pending_in, pending_out,"
    " timestamp"
)
JOURNAL_ORDER = "account, currency, timestamp, seq"

# `[[tenant, id], ...]` as rows (see `keys_param`).
TRANSACTION_KEYS = """(SELECT k ->> 0 AS tenant, k ->> 1 AS id
    FROM jsonb_array_elements(CAST(:transactions AS jsonb)) AS k)"""

# Record and check in one statement, the first of a batch: find which ids new documents
# claim are taken already (answered as rows with `taken` set, to be locked next); read the
# committed heads the others name, create the account and balance rows missing among them
# (sorted; rows that exist are only read: no lock, no WAL), and answer the heads. A row
# this statement created reads as zero; an account another request created after this
# statement's snapshot reads with no rule (unknown: not checked unlocked).
# `:heads` is `[[tenant, account, currency, claiming id], ...]`.
ENSURE_AND_READ_HEADS = f"""
WITH taken AS MATERIALIZED (
    SELECT t.tenant, t.id FROM {TRANSACTION_KEYS} AS k
    JOIN transactions t ON t.tenant = k.tenant AND t.id = k.id
), wanted AS (
    SELECT DISTINCT h ->> 0 AS tenant, h ->> 1 AS account, h ->> 2 AS currency
    FROM jsonb_array_elements(CAST(:heads AS jsonb)) AS h
    WHERE NOT EXISTS (SELECT 1 FROM taken WHERE taken.tenant = h ->> 0 AND taken.id = h ->> 3)
), found AS MATERIALIZED (
    SELECT k.tenant, k.account, k.currency, a.balance_rule, b.posted, b.pending_in,
           b.pending_out, b.version, b.last_ts, b.tenant IS NOT NULL AS has_balance,
           coalesce(a.keys <> '[]', false) AS owned
    FROM wanted AS k
    LEFT JOIN accounts a ON a.tenant = k.tenant AND a.id = k.account
    LEFT JOIN balances b
           ON b.tenant = k.tenant AND b.account = k.account AND b.currency = k.currency
), new_accounts AS (
    INSERT INTO accounts (tenant, id, balance_rule)
    SELECT DISTINCT f.tenant, f.account,
           CASE WHEN f.account = :world THEN 'any' ELSE 'non_negative' END
    FROM found f WHERE f.balance_rule IS NULL
    ORDER BY f.tenant, f.account
    ON CONFLICT DO NOTHING
    RETURNING tenant, id, balance_rule, created_at
), new_balances AS (
    INSERT INTO balances (tenant, account, currency)
    SELECT f.tenant, f.account, f.currency FROM found f WHERE NOT f.has_balance
    ORDER BY f.tenant, f.account, f.currency
    ON CONFLICT DO NOTHING
)
SELECT f.tenant, f.account, f.currency,
       coalesce(f.balance_rule, n.balance_rule) AS balance_rule,
       coalesce(f.posted, 0) AS posted, coalesce(f.pending_in, 0) AS pending_in,
       coalesce(f.pending_out, 0) AS pending_out, coalesce(f.version, 0) AS version,
       f.last_ts, n.created_at AS created, NULL AS taken, f.owned
FROM found f
LEFT JOIN new_accounts n ON n.tenant = f.tenant AND n.id = f.account
UNION ALL
SELECT tenant, NULL, NULL, NULL, 0, 0, 0, 0, NULL, NULL, id, false FROM taken
"""


# A transaction's state history: `[[status, at], ...]` in the order entered, kept in its
# row (migration 0008).
EVENTS = "t.history AS events"

LOCK_TRANSACTIONS = f"""
SELECT tenant, {TRANSACTION_COLUMNS}, {EVENTS} FROM transactions t
WHERE (tenant, id) IN (SELECT k.tenant, k.id FROM {TRANSACTION_KEYS} AS k)
ORDER BY tenant, id
FOR UPDATE
"""

# Lock the heads in sorted key order, then read the clock: an instant after every lock
# is held (the aggregate's one row is made after it read every locked row). `:heads` is
# `[[tenant, account, currency, rule, version], ...]`, unique, with the rule and version
# read unlocked, or nulls where they were not (an account committed after that read, a
# head only a flip names). A head whose version is the one read has not changed since:
# it is answered as its ordinal in `:heads` (`unchanged`), not as a row to decode (which
# cost asyncpg and the store more than the rest of a head's lock). Only a head not read
# has its rule read here: a committed account's rule never changes and the account is
# never deleted.
LOCK_HEADS = """
WITH locked AS MATERIALIZED (
    SELECT k.n, b.tenant, b.account, b.currency,
           coalesce(k.value ->> 3, (SELECT a.balance_rule FROM accounts a
                                    WHERE a.tenant = b.tenant AND a.id = b.account))
               AS balance_rule,
           b.posted, b.pending_in, b.pending_out, b.version, b.last_ts,
           b.version = CAST(k.value ->> 4 AS bigint) AS same
    FROM jsonb_array_elements(CAST(:heads AS jsonb)) WITH ORDINALITY AS k(value, n)
    JOIN balances b ON b.tenant = k.value ->> 0 AND b.account = k.value ->> 1
                   AND b.currency = k.value ->> 2
    ORDER BY b.tenant, b.account, b.currency
    FOR UPDATE OF b
)
SELECT tenant, account, currency, balance_rule, posted, pending_in, pending_out, version,
       last_ts, NULL AS unchanged, NULL AS now
FROM locked WHERE same IS NOT TRUE
UNION ALL
SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       coalesce(array_agg(n) FILTER (WHERE same), '{}'), clock_timestamp()
FROM locked
"""

# The owned accounts among `:accounts` (`[[tenant, id], ...]`), locked shared in sorted
# order: a change of their keys waits for this commit. Unowned ones are not locked.
LOCK_OWNERS = """
SELECT a.tenant, a.id, a.keys FROM accounts a
WHERE (a.tenant, a.id) IN (
    SELECT k ->> 0, k ->> 1 FROM jsonb_array_elements(CAST(:accounts AS jsonb)) AS k)
  AND a.keys <> '[]'
ORDER BY a.tenant, a.id
FOR SHARE
"""


def _rows(param: str, columns: str) -> str:
    """`:param` as a table of these typed columns: a JSON array with one array per row,
    its values in the order of `columns` (`name type, ...`).

    NOTE: arrays, not objects: `jsonb` sorts and de-duplicates each object's keys, and
    the keys were most of a row's text; a value is found by its position, unparsed again.
    """
    fields = []
    for n, column in enumerate(columns.split(",")):
        name, kind = column.split()
        # `->>` reads a JSON null as SQL NULL; `->` would keep it, as the jsonb `null`.
        value = f"nullif(v -> {n}, 'null')" if kind == "jsonb" else f"CAST(v ->> {n} AS {kind})"
        fields.append(f"{value} AS {name}")
    elements = f"jsonb_array_elements(CAST(:{param} AS jsonb)) AS v"
    return f"(SELECT {', '.join(fields)} FROM {elements})"


# WRITE_PLAN's rows, table by table; `plan_params` (app/models/rows.py) makes each row's
# values in its columns' order, and an INSERT's columns are listed in the same order.
_HEADS = _rows(
    "heads",
    "tenant text, account text, currency text, posted numeric, pending_in numeric, "
    "pending_out numeric, version bigint, last_ts timestamptz",
)
_ENTRIES = _rows(
    "entries",
    "tenant text, account text, currency text, seq bigint, transaction_id text, "
    "kind text, amount numeric, posted numeric, pending_in numeric, "
    "pending_out numeric, timestamp timestamptz",
)
_INSERTS = _rows(
    "inserts",
    "tenant text, id text, status text, mode text, lines jsonb, data jsonb, "
    "timestamp timestamptz, timestamp_given boolean, created_at timestamptz, "
    "expires_at timestamptz, failure jsonb, reverses text, reversal_id text, "
    "fingerprint text, history jsonb",
)
_UPDATES = _rows(
    "updates", "tenant text, id text, status text, failure jsonb, reversal_id text, history jsonb"
)
_POSTINGS = _rows(
    "postings", "tenant text, account text, timestamp timestamptz, transaction_id text"
)
_UNUSED = _rows("unused", "tenant text, account text")

# One statement writes a whole group commit: heads, journal, rows (with their history),
# postings.
# NOTE: each table's rows arrive as one JSON text: encoding them is one msgspec call,
# where binding ~45 typed arrays cost asyncpg far more per transfer. As `jsonb`, in every
# statement here: PostgreSQL parses it once (a `json` parameter was parsed on receipt,
# again by the statement, and its `jsonb` fields a third time).
WRITE_PLAN = f"""
WITH heads AS (
    UPDATE balances b
    SET posted = v.posted, pending_in = v.pending_in, pending_out = v.pending_out,
        version = v.version, last_ts = v.last_ts
    FROM {_HEADS} AS v
    WHERE b.tenant = v.tenant AND b.account = v.account AND b.currency = v.currency
), journal AS (
    INSERT INTO entries (tenant, account, currency, seq, transaction_id, kind, amount,
                         posted, pending_in, pending_out, timestamp)
    SELECT * FROM {_ENTRIES} AS v
), inserted AS (
    INSERT INTO transactions (tenant, id, status, mode, lines, data, timestamp,
                              timestamp_given, created_at, expires_at, failure, reverses,
                              reversal_id, fingerprint, history)
    SELECT * FROM {_INSERTS} AS v
    -- Sorted, like every lock: two batches recording the same new ids never deadlock.
    -- An id another process recorded first raises unique_violation: the batch rolls
    -- back and runs again, and then finds it taken (`commit_groups`). Not ON CONFLICT: its
    -- speculative insertion probed the key twice and wrote a confirmation to the WAL
    -- for every row, to learn what the rollback and rerun learn anyway.
    ORDER BY v.tenant, v.id
), states AS (
    UPDATE transactions t
    SET status = v.status, failure = v.failure, reversal_id = v.reversal_id,
        history = v.history
    FROM {_UPDATES} AS v
    WHERE t.tenant = v.tenant AND t.id = v.id
), listed AS (
    INSERT INTO transaction_accounts (tenant, account, timestamp, transaction_id)
    SELECT * FROM {_POSTINGS} AS v
), unused AS (
    -- Accounts this batch created that no recorded transaction names (`unrecorded`).
    DELETE FROM accounts a
    USING {_UNUSED} AS v
    WHERE a.tenant = v.tenant AND a.id = v.account
    RETURNING a.tenant, a.id
), unused_balances AS (
    DELETE FROM balances b USING unused u
    WHERE b.tenant = u.tenant AND b.account = u.id AND b.version = 0
)
SELECT 1
"""


READ_TRANSACTION = f"""
SELECT {TRANSACTION_COLUMNS}, {EVENTS} FROM transactions t
WHERE tenant = :tenant AND id = :id
"""

# An account with its used balances: one row per currency.
READ_ACCOUNT = f"""
SELECT {ACCOUNT_COLUMNS}, b.account, b.currency, b.posted,
       b.pending_in, b.pending_out, b.version, b.last_ts
FROM accounts a
LEFT JOIN balances b ON b.tenant = a.tenant AND b.account = a.id AND b.version > 0
WHERE a.tenant = :tenant AND a.id = :id ORDER BY b.currency
"""

# Per currency, the last entry at or before `at`; no row when there is no such account.
READ_BALANCES_AT = """
SELECT x.currency, x.posted, x.pending_in, x.pending_out
FROM accounts a LEFT JOIN LATERAL (
    SELECT b.currency, e.posted, e.pending_in, e.pending_out
    FROM balances b CROSS JOIN LATERAL (
        SELECT posted, pending_in, pending_out FROM entries e
        WHERE e.tenant = b.tenant AND e.account = b.account
          AND e.currency = b.currency AND e.timestamp <= :at
        ORDER BY e.timestamp DESC, e.seq DESC LIMIT 1) e
    WHERE b.tenant = a.tenant AND b.account = a.id
      AND (CAST(:currency AS text) IS NULL OR b.currency = :currency)
) x ON true
WHERE a.tenant = :tenant AND a.id = :id ORDER BY x.currency
"""


# A page of an account's journal, in `(timestamp, currency, seq)` order: each currency's
# entries through the journal's key, merged. `{after}` is empty on the first page, else
# JOURNAL_AFTER: the key after the cursor's, within one currency (see there).
# NOTE: an index in this order (`entries_journal`) cost every entry one B-tree insert
# (~120 bytes of WAL) for this page alone; an account has a few currencies, so reading
# `limit` entries of each and merging costs a page little (migration 0011).
JOURNAL_PAGE = """
SELECT e.seq, e.transaction_id, e.currency, e.amount, e.kind, e.posted, e.pending_in,
       e.pending_out, e.timestamp
FROM balances b CROSS JOIN LATERAL (
    SELECT * FROM entries e
    WHERE e.tenant = b.tenant AND e.account = b.account AND e.currency = b.currency{after}
    ORDER BY e.timestamp, e.seq LIMIT :limit
) e
WHERE b.tenant = :tenant AND b.account = :id
  AND (CAST(:currency AS text) IS NULL OR b.currency = :currency)
ORDER BY e.timestamp, e.currency, e.seq LIMIT :limit
"""
# `(timestamp, currency, seq) > (a_ts, a_currency, a_seq)` for one currency's entries, as
# a bound on its key's `(timestamp, seq)`: a later currency may go on at `a_ts` itself
# (seq is never negative), an earlier one only after it.
JOURNAL_AFTER = """
      AND (e.timestamp, e.seq) > (CAST(:a_ts AS timestamptz),
          CASE WHEN b.currency > :a_currency THEN -1
               WHEN b.currency = :a_currency THEN CAST(:a_seq AS bigint)
               ELSE 9223372036854775807 END)"""


# Holds past their expiry, oldest first, for the sweep. `IS NOT NULL` names the predicate
# of `transactions_expiring`, which holds only transactions with an expiry (migration 0010).
DUE_HOLDS = """
SELECT tenant, id FROM transactions
WHERE status = 'PENDING' AND expires_at IS NOT NULL AND expires_at <= clock_timestamp()
ORDER BY expires_at LIMIT :limit
"""


# Statements with one generic plan and no sequential scans (KEYED_PLANS): the group
# commit's, on the writer pool, and the keyed reads.
KEYED_STATEMENTS = {
    "LOCK_TRANSACTIONS": LOCK_TRANSACTIONS,
    "ENSURE_AND_READ_HEADS": ENSURE_AND_READ_HEADS,
    "LOCK_HEADS": LOCK_HEADS,
    "WRITE_PLAN": WRITE_PLAN,
    "READ_TRANSACTION": READ_TRANSACTION,
    "READ_ACCOUNT": READ_ACCOUNT,
    "READ_BALANCES_AT": READ_BALANCES_AT,
}

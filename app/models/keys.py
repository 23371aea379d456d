"""Account keys for verifying signatures, and the proofs of signed transactions."""

from __future__ import annotations

from collections.abc import Sequence

from app.ledger.keys import Proof, PublicKey
from app.models.connections import Database
from app.models.rows import json_value, keys_from_json

READ_KEYS = """
SELECT id, keys FROM accounts
WHERE tenant = :tenant AND id = ANY(CAST(:ids AS text[])) AND keys <> '[]'
"""

READ_PROOF = """
SELECT p.method, p.path, p.body, p.headers FROM transaction_proofs t
JOIN proofs p ON p.tenant = t.tenant AND p.id = t.proof
WHERE t.tenant = :tenant AND t.transaction_id = :id
"""


async def current_keys(
    store: Database, tenant: str, account_ids: Sequence[str]
) -> dict[str, tuple[PublicKey, ...]]:
    """The current keys of the owned accounts among `account_ids`."""
    async with store.connection() as connection:
        rows = await connection.execute(READ_KEYS, {"tenant": tenant, "ids": list(account_ids)})
        return {r["id"]: keys_from_json(r["keys"]) for r in rows}


async def read_proof(store: Database, tenant: str, transaction_id: str) -> Proof | None:
    async with store.connection() as connection:
        params = {"tenant": tenant, "id": transaction_id}
        row = (await connection.execute(READ_PROOF, params)).first()
    if row is None:
        return None
    return Proof(row["method"], row["path"], bytes(row["body"]), json_value(row["headers"]))

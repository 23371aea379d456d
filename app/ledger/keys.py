"""Account keys and signed requests as plain values: who may take money out of an
account, and the rules of replacing its keys.

The HTTP layer verifies a request's signatures on its exact bytes and hands the ledger
an `Authority`: which (account, key id) pairs signed it. The group commit then checks,
under the accounts' locks, that every owned account a request debits has a signer
among its current keys (`refusal`), so a key replaced while a request was in flight is
never half applied.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from app.ledger.errors import InvalidRequest, LedgerError, SignatureInvalid, SignatureRequired

KEYS_MAX = 8
ALGORITHMS = ("ed25519", "rsa-pss-sha512")
_KEY_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


@dataclass(frozen=True, slots=True)
class PublicKey:
    id: str
    alg: str
    public_key: str  # as given: base64 of the raw bytes (ed25519) or PEM (RSA)


@dataclass(frozen=True, slots=True)
class RetiredKey:
    id: str
    alg: str
    public_key: str
    retired_at: datetime


@dataclass(frozen=True, slots=True)
class Proof:
    """A signed request as received: what anyone can check against the account's keys."""

    method: str
    path: str
    body: bytes
    headers: Mapping[str, str]  # content-digest, signature-input, signature


@dataclass(frozen=True, slots=True)
class Authority:
    """What a request's signatures proved: `signed` when it carried signature headers,
    `signers` the (account, key id) pairs whose signatures verified, `proof` the request."""

    signed: bool = False
    signers: frozenset[tuple[str, str]] = field(default_factory=frozenset)
    proof: Proof | None = None


UNSIGNED = Authority()


def check_keys(keys: Sequence[PublicKey]) -> None:
    """At most `KEYS_MAX` keys, each with a valid id used once and a known algorithm
    (the key material itself is parsed where signatures are verified)."""
    if len(keys) > KEYS_MAX:
        raise InvalidRequest.at("keys", f"at most {KEYS_MAX} keys")
    seen: set[str] = set()
    for i, key in enumerate(keys):
        if not _KEY_ID.fullmatch(key.id):
            raise InvalidRequest.at(f"keys[{i}].id", "a key id matches ^[A-Za-z0-9_.:-]{1,64}$")
        if key.id in seen:
            raise InvalidRequest.at(f"keys[{i}].id", f"key id {key.id} is given twice")
        seen.add(key.id)
        if key.alg not in ALGORITHMS:
            raise InvalidRequest.at(f"keys[{i}].alg", f"one of {', '.join(ALGORITHMS)}")


def replace_keys(
    current: Sequence[PublicKey],
    history: Sequence[RetiredKey],
    new: Sequence[PublicKey],
    now: datetime,
) -> tuple[tuple[PublicKey, ...], tuple[RetiredKey, ...]]:
    """The account's keys and history after `new` replaces `current` at `now`: a key
    kept as it was stays current, a key left out retires, and no id is ever reused.
    `new` passed `check_keys` already (before the account was locked)."""
    kept = {k.id: k for k in current}
    retired_ids = {k.id for k in history}
    for i, key in enumerate(new):
        if key.id in retired_ids or (key.id in kept and kept[key.id] != key):
            raise InvalidRequest.at(
                f"keys[{i}].id", f"key id {key.id} was used on this account before"
            )
    new_ids = {k.id for k in new}
    retired = tuple(
        RetiredKey(k.id, k.alg, k.public_key, now) for k in current if k.id not in new_ids
    )
    return tuple(new), (*history, *retired)


def refusal(
    authority: Authority,
    debited: Iterable[tuple[str, str]],
    owners: Mapping[tuple[str, str], frozenset[str]],
) -> LedgerError | None:
    """Why a request may not take money out of the `debited` accounts (tenant, id),
    given the current key ids of the owned ones (`owners`); None when it may."""
    for key in sorted(debited):
        account, current = key[1], owners.get(key)
        if not current:
            continue
        if not authority.signed:
            return SignatureRequired(
                f"account {account} is owned: sign the request with one of its keys",
                extra={"account": account},
            )
        if not any((account, key_id) in authority.signers for key_id in current):
            return SignatureInvalid(
                f"no valid signature by a current key of account {account}",
                extra={"account": account},
            )
    return None

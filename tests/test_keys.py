"""Account keys as plain values: replacing keys, and who may debit an owned account."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.ledger.errors import InvalidRequest, SignatureInvalid, SignatureRequired
from app.ledger.keys import Authority, PublicKey, RetiredKey, check_keys, refusal, replace_keys

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
K1 = PublicKey("k1", "ed25519", "AAA")
K2 = PublicKey("k2", "ed25519", "BBB")


def test_a_key_left_out_retires_and_a_kept_key_stays() -> None:
    keys, history = replace_keys([K1, K2], [], [K2], NOW)
    assert keys == (K2,)
    assert history == (RetiredKey("k1", "ed25519", "AAA", NOW),)


@pytest.mark.parametrize(
    "new",
    [
        [PublicKey("k1", "ed25519", "CCC")],  # a retired id
        [PublicKey("k2", "ed25519", "CCC")],  # a current id with other material
    ],
)
def test_a_key_id_is_never_reused(new: list[PublicKey]) -> None:
    with pytest.raises(InvalidRequest, match="used on this account before"):
        replace_keys([K2], [RetiredKey("k1", "ed25519", "AAA", NOW)], new, NOW)


def test_keys_are_at_most_eight_with_distinct_valid_ids() -> None:
    check_keys([PublicKey(f"k{i}", "ed25519", "A") for i in range(8)])
    for keys in ([PublicKey(f"k{i}", "ed25519", "A") for i in range(9)], [K1, K1],
                 [PublicKey("k/1", "ed25519", "A")], [PublicKey("k1", "hs256", "A")]):  # fmt: skip
        with pytest.raises(InvalidRequest):
            check_keys(keys)


def test_who_may_debit_an_owned_account() -> None:
    owners = {("t", "alice"): frozenset({"k1", "k2"}), ("t", "carol"): frozenset({"c"})}
    assert refusal(Authority(), [("t", "bob")], owners) is None
    assert isinstance(refusal(Authority(), [("t", "alice")], owners), SignatureRequired)
    by_k2 = Authority(True, frozenset({("alice", "k2")}))
    assert refusal(by_k2, [("t", "alice")], owners) is None
    refused = refusal(by_k2, [("t", "alice"), ("t", "carol")], owners)
    assert isinstance(refused, SignatureInvalid)
    assert refused.extra == {"account": "carol"}
    assert isinstance(refusal(Authority(True, frozenset({("bob", "k1")})), [("t", "alice")],
                              owners), SignatureInvalid)  # fmt: skip

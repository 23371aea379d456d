"""Account keys: owned accounts, RFC 9421 signed requests, proofs anyone can check.

The requests are signed with `app/signing.py` (the `twofold keys` command's side, built
on `http-message-signatures`); proofs are checked here with the `cryptography`
primitives directly, as a client with another implementation would.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from app.signing import check_proof, sign
from integration_tests.server import ROOT, Backends, Service
from integration_tests.test_events import events_after, head
from integration_tests.test_journal import refused_as_append_only

TX = "/v1/transactions"


def ed25519_pair() -> tuple[ed25519.Ed25519PrivateKey, str]:
    private = ed25519.Ed25519PrivateKey.generate()
    raw = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return private, base64.b64encode(raw).decode()


def rsa_pair(bits: int = 2048) -> tuple[rsa.RSAPrivateKey, str]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, pem.decode()


def body_of(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


async def signed(
    api: httpx.AsyncClient,
    method: str,
    path: str,
    value: Any,
    signers: list[tuple[str, Any]],
    created: int | None = None,
    tamper: Callable[[bytes, dict[str, str]], tuple[bytes, dict[str, str]]] | None = None,
) -> httpx.Response:
    body = b"" if value is None else body_of(value)
    headers = sign(method, path, body, signers, created)
    if tamper is not None:
        body, headers = tamper(body, headers)
    if body:
        headers["content-type"] = "application/json"
    return await api.request(method, path, content=body, headers=headers)


async def owned(api: httpx.AsyncClient, account: str, keys: list[dict[str, str]]) -> None:
    response = await api.post("/v1/accounts", json={"id": account, "keys": keys})
    assert response.status_code == 201, response.text


async def owner(
    api: httpx.AsyncClient, fund: Any, account: str, amount: str | None, key_id: str = "k1"
) -> tuple[ed25519.Ed25519PrivateKey, str]:
    """`account` owned by one new Ed25519 key, `key_id`, and credited `amount` USD unless
    None (a credit needs no signature): the key pair."""
    private, public = ed25519_pair()
    await owned(api, account, [{"id": key_id, "alg": "ed25519", "public_key": public}])
    if amount is not None:
        await fund(account, amount)
    return private, public


def transfer(tx_id: str, source: str, target: str, amount: str = "10") -> dict[str, Any]:
    return {"id": tx_id, "lines": [
        {"account": source, "currency": "USD", "amount": f"-{amount}"},
        {"account": target, "currency": "USD", "amount": amount}]}  # fmt: skip


def check_proof_by_hand(proof: dict[str, Any], keys: dict[str, dict[str, str]]) -> None:
    """Verify every signature of a proof with the primitives, from RFC 9421's text."""
    body = base64.b64decode(proof["body"])
    headers = proof["headers"]
    if body:
        digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
        assert headers["content-digest"] == f"sha-256=:{digest}:"
    inputs = dict(re.findall(r"(\w+)=(\([^)]*\)[^,]*)", headers["signature-input"]))
    signatures = dict(re.findall(r"(\w+)=:([^:]*):", headers["signature"]))
    assert inputs
    assert inputs.keys() == signatures.keys()
    for label, params in inputs.items():
        values = {"@method": proof["method"], "@path": proof["path"],
                  "content-digest": headers.get("content-digest")}  # fmt: skip
        lines = [
            f'"{name}": {values[name]}' for name in re.findall(r'"([^"]+)"', params.split(")")[0])
        ]
        base = "\n".join([*lines, f'"@signature-params": {params}']).encode()
        keyid = re.search(r'keyid="([^"]+)"', params)
        assert keyid is not None
        key = keys[keyid.group(1)]
        signature = base64.b64decode(signatures[label])
        if key["alg"] == "ed25519":
            public = ed25519.Ed25519PublicKey.from_public_bytes(base64.b64decode(key["public_key"]))
            public.verify(signature, base)
        else:
            loaded = serialization.load_pem_public_key(key["public_key"].encode())
            assert isinstance(loaded, rsa.RSAPublicKey)
            pss = padding.PSS(mgf=padding.MGF1(hashes.SHA512()), salt_length=64)
            loaded.verify(signature, base, pss, hashes.SHA512())


# Owning an account


async def test_an_owned_account_shows_its_keys(api: httpx.AsyncClient, uid: Any) -> None:
    alice = uid("alice")
    _, public = ed25519_pair()
    await owned(api, alice, [{"id": "k1", "alg": "ed25519", "public_key": public}])
    account = (await api.get(f"/v1/accounts/{alice}")).json()
    assert account["keys"] == [{"id": "k1", "alg": "ed25519", "public_key": public}]
    assert account["key_history"] == []
    again = await api.post("/v1/accounts", json={"id": alice, "keys": [
        {"id": "k1", "alg": "ed25519", "public_key": public}]})  # fmt: skip
    assert again.status_code == 200
    other = await api.post("/v1/accounts", json={"id": alice, "keys": []})
    assert other.status_code == 409
    assert other.json()["code"] == "account_exists"
    plain = (await api.post("/v1/accounts", json={"id": uid("plain")})).json()
    assert plain["keys"] == []
    assert plain["key_history"] == []


@pytest.mark.parametrize(
    ("key", "path"),
    [
        ({"id": "k1", "alg": "ed25519", "public_key": "not base64!"}, "keys[0].public_key"),
        ({"id": "k1", "alg": "ed25519", "public_key": base64.b64encode(b"x" * 31).decode()},
         "keys[0].public_key"),
        ({"id": "k1", "alg": "rsa-pss-sha512", "public_key": "-----BEGIN PUBLIC KEY-----"},
         "keys[0].public_key"),
        ({"id": "k1", "alg": "hmac-sha256", "public_key": "c2VjcmV0"}, "keys[0].alg"),
        ({"id": "k 1", "alg": "ed25519", "public_key": "AAAA"}, "keys[0].id"),
    ],
)  # fmt: skip
async def test_a_key_that_does_not_parse_is_named(
    api: httpx.AsyncClient, uid: Any, key: dict[str, str], path: str
) -> None:
    account = uid("bad-key")
    response = await api.post("/v1/accounts", json={"id": account, "keys": [key]})
    assert response.status_code == 400, response.text
    problem = response.json()
    assert problem["code"] == "invalid_request"
    assert problem["detail"].startswith(path)
    assert (await api.get(f"/v1/accounts/{account}")).status_code == 404


async def test_short_rsa_keys_too_many_keys_and_twice_the_same_id_are_refused(
    api: httpx.AsyncClient, uid: Any
) -> None:
    _, short = rsa_pair(1024)
    _, public = ed25519_pair()
    cases = [
        [{"id": "k1", "alg": "rsa-pss-sha512", "public_key": short}],
        [{"id": f"k{i}", "alg": "ed25519", "public_key": public} for i in range(9)],
        [{"id": "k1", "alg": "ed25519", "public_key": public}] * 2,
    ]
    for keys in cases:
        response = await api.post("/v1/accounts", json={"id": uid("bad"), "keys": keys})
        assert response.status_code == 400, response.text
        assert response.json()["code"] == "invalid_request"


# Debits of an owned account


async def test_an_unsigned_debit_is_refused_and_records_nothing(
    api: httpx.AsyncClient, uid: Any, fund: Any, balance: Any
) -> None:
    alice, newcomer, tx = uid("alice"), uid("newcomer"), uid("tx")
    await owner(api, fund, alice, "100")  # a credit needs no signature
    before = await head(api)
    for path in (TX, f"{TX}/immediate"):
        response = await api.post(path, json=transfer(tx, alice, newcomer))
        assert response.status_code == 403, response.text
        problem = response.json()
        assert problem["code"] == "signature_required"
        assert problem["account"] == alice
    shorthand = {"id": tx, "type": "DEBIT", "account": alice, "currency": "USD", "amount": "1"}
    assert (await api.post(f"{TX}/immediate", json=shorthand)).json()[
        "code"
    ] == "signature_required"
    assert (await api.get(f"{TX}/{tx}")).status_code == 404
    assert (await api.get(f"/v1/accounts/{newcomer}")).status_code == 404
    assert (await head(api))["sequence"] == before["sequence"]
    assert (await balance(alice))["posted"] == 100


async def test_signed_debits_with_ed25519_and_rsa_keep_proofs_that_verify(
    api: httpx.AsyncClient, uid: Any, fund: Any, balance: Any
) -> None:
    alice, bob = uid("alice"), uid("bob")
    ed_private, ed_public = ed25519_pair()
    rsa_private, rsa_public = rsa_pair()
    keys = [{"id": "ed", "alg": "ed25519", "public_key": ed_public},
            {"id": "rsa", "alg": "rsa-pss-sha512", "public_key": rsa_public}]  # fmt: skip
    await owned(api, alice, keys)
    await fund(alice, "100")
    for name, private in (("ed", ed_private), ("rsa", rsa_private)):
        tx = uid(f"tx-{name}")
        response = await signed(api, "POST", f"{TX}/immediate", transfer(tx, alice, bob),
                                [(f"{alice}/{name}", private)])  # fmt: skip
        assert response.status_code == 201, response.text
        answer = await api.get(f"{TX}/{tx}/proof")
        assert answer.status_code == 200, answer.text
        proof = answer.json()
        assert proof["method"] == "POST"
        assert proof["path"] == f"{TX}/immediate"
        assert json.loads(base64.b64decode(proof["body"]))["id"] == tx
        check_proof_by_hand(proof, {f"{alice}/{k['id']}": k for k in keys})
    assert (await balance(alice))["posted"] == 80
    assert (await balance(bob))["posted"] == 20
    unsigned = uid("plain")
    await fund(bob, "1")
    plain = await api.post(f"{TX}/immediate", json=transfer(unsigned, bob, alice, "1"))
    assert plain.status_code == 201
    missing = await api.get(f"{TX}/{unsigned}/proof")
    assert missing.status_code == 404
    assert missing.json()["code"] == "not_found"


def _body(change: Callable[[bytes], bytes]) -> Any:
    return lambda body, headers: (change(body), headers)


def _header(name: str, change: Callable[[str], str]) -> Any:
    return lambda body, headers: (body, {**headers, name: change(headers[name])})


def _digest_of_changed(body: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    changed = body.replace(b'"10"', b'"11"').replace(b'"-10"', b'"-11"')
    digest = base64.b64encode(hashlib.sha256(changed).digest()).decode()
    return changed, {**headers, "content-digest": f"sha-256=:{digest}:"}


SIGNATURE_INPUT, DIGEST = "signature-input", "content-digest"


def _more(body: bytes) -> bytes:
    return body.replace(b'"10"', b'"11"').replace(b'"-10"', b'"-11"')


def _without(name: str) -> Any:
    return lambda body, headers: (body, {k: v for k, v in headers.items() if k != name})


TAMPERINGS = {
    "body changed after signing": _body(_more),
    "digest recomputed for the changed body": _digest_of_changed,
    "unknown alg": _header(SIGNATURE_INPUT, lambda v: v.replace("ed25519", "hmac-sha256")),
    "alg of another key type": _header(SIGNATURE_INPUT,
                                       lambda v: v.replace("ed25519", "rsa-pss-sha512")),
    "signature input garbled": _header(SIGNATURE_INPUT, lambda v: v[: len(v) // 2]),
    "signature not a byte sequence": _header("signature", lambda v: v.replace(":", "")),
    "signature of another label": _header("signature", lambda v: v.replace("sig1=", "other=")),
    "keyid without a key id": _header(SIGNATURE_INPUT,
                                      lambda v: re.sub(r'keyid="[^"]+"', 'keyid="nobody"', v)),
    "signature header dropped": _without("signature"),
    "content-digest not covered": _header(SIGNATURE_INPUT,
                                          lambda v: v.replace(' "content-digest"', "")),
    "digest header dropped": _without(DIGEST),
    "digest of an unknown algorithm": _header(DIGEST, lambda v: v.replace("sha-256", "md5")),
}  # fmt: skip


@pytest.mark.parametrize("how", list(TAMPERINGS))
async def test_each_wrong_signature_is_signature_invalid(
    api: httpx.AsyncClient, uid: Any, fund: Any, balance: Any, how: str
) -> None:
    alice, bob, tx = uid("alice"), uid("bob"), uid("tx")
    private, _ = await owner(api, fund, alice, "100")
    response = await signed(api, "POST", f"{TX}/immediate", transfer(tx, alice, bob),
                            [(f"{alice}/k1", private)], tamper=TAMPERINGS[how])  # fmt: skip
    assert response.status_code == 403, response.text
    assert response.json()["code"] == "signature_invalid"
    assert (await api.get(f"{TX}/{tx}")).status_code == 404
    assert (await balance(alice))["posted"] == 100


async def test_wrong_keys_and_stale_or_future_signatures_are_signature_invalid(
    api: httpx.AsyncClient, uid: Any, fund: Any
) -> None:
    alice, mallory, bob = uid("alice"), uid("mallory"), uid("bob")
    alice_key, _ = await owner(api, fund, alice, "100")
    mallory_key, _ = await owner(api, fund, mallory, None)
    now = int(time.time())
    attempts = {
        "another account's key under its own keyid": ([(f"{mallory}/k1", mallory_key)], None),
        "another account's key under this keyid": ([(f"{alice}/k1", mallory_key)], None),
        "a key id the account lacks": ([(f"{alice}/k9", alice_key)], None),
        "created too old": ([(f"{alice}/k1", alice_key)], now - 301 - 5),
        "created in the future": ([(f"{alice}/k1", alice_key)], now + 301 + 5),
    }
    for why, (signers, created) in attempts.items():
        tx = uid("tx")
        response = await signed(api, "POST", f"{TX}/immediate", transfer(tx, alice, bob),
                                signers, created)  # fmt: skip
        assert response.status_code == 403, (why, response.text)
        assert response.json()["code"] == "signature_invalid", why
        assert (await api.get(f"{TX}/{tx}")).status_code == 404, why
    fresh = await signed(api, "POST", f"{TX}/immediate", transfer(uid("tx"), alice, bob),
                         [(f"{alice}/k1", alice_key)], now - 200)  # fmt: skip
    assert fresh.status_code == 201, fresh.text


async def test_two_owned_accounts_debited_need_a_label_each(
    api: httpx.AsyncClient, uid: Any, fund: Any
) -> None:
    alice, carol, bob = uid("alice"), uid("carol"), uid("bob")
    alice_key, _ = await owner(api, fund, alice, "10", key_id="a")
    carol_key, _ = await owner(api, fund, carol, "10", key_id="c")
    tx = uid("tx")
    both = {"id": tx, "lines": [
        {"account": alice, "currency": "USD", "amount": "-5"},
        {"account": carol, "currency": "USD", "amount": "-5"},
        {"account": bob, "currency": "USD", "amount": "10"}]}  # fmt: skip
    one = await signed(api, "POST", f"{TX}/immediate", both, [(f"{alice}/a", alice_key)])
    assert one.status_code == 403
    assert one.json()["code"] == "signature_invalid"
    assert one.json()["account"] == carol
    two = await signed(api, "POST", f"{TX}/immediate", both,
                       [(f"{alice}/a", alice_key), (f"{carol}/c", carol_key)])  # fmt: skip
    assert two.status_code == 201, two.text


async def test_a_signed_request_must_name_its_ids(
    api: httpx.AsyncClient, uid: Any, fund: Any
) -> None:
    alice = uid("alice")
    private, _ = await owner(api, fund, alice, "10")
    no_id = transfer("x", alice, uid("bob"))
    del no_id["id"]
    response = await signed(api, "POST", f"{TX}/immediate", no_id, [(f"{alice}/k1", private)])
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_request"
    batch = {"mode": "immediate", "transactions": [no_id]}
    response = await signed(api, "POST", f"{TX}/batch", batch, [(f"{alice}/k1", private)])
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_request"


async def test_a_replay_is_the_same_transaction_and_another_id_breaks_the_digest(
    api: httpx.AsyncClient, uid: Any, fund: Any, balance: Any
) -> None:
    alice, bob, tx = uid("alice"), uid("bob"), uid("tx")
    private, _ = await owner(api, fund, alice, "100")
    body = body_of(transfer(tx, alice, bob))
    headers = {**sign("POST", f"{TX}/immediate", body, [(f"{alice}/k1", private)]),
               "content-type": "application/json"}  # fmt: skip
    first = await api.post(f"{TX}/immediate", content=body, headers=headers)
    again = await api.post(f"{TX}/immediate", content=body, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == tx
    other = body.replace(tx.encode(), uid("tx").encode())
    stolen = await api.post(f"{TX}/immediate", content=other, headers=headers)
    assert stolen.status_code == 403
    assert stolen.json()["code"] == "signature_invalid"
    assert (await balance(alice))["posted"] == 90


# Batches


async def test_a_batch_is_one_signed_body_refused_whole(
    api: httpx.AsyncClient, uid: Any, fund: Any, balance: Any
) -> None:
    alice, carol, bob = uid("alice"), uid("carol"), uid("bob")
    alice_key, _ = await owner(api, fund, alice, "10", key_id="a")
    carol_key, _ = await owner(api, fund, carol, "10", key_id="c")
    await fund(bob, "10")
    items = [transfer(uid("t"), alice, bob, "1"), transfer(uid("t"), carol, bob, "1"),
             transfer(uid("t"), bob, alice, "1")]  # fmt: skip
    before = await head(api)
    for atomic in (False, True):
        batch = {"mode": "immediate", "atomic": atomic, "transactions": items}
        unsigned = await api.post(f"{TX}/batch", json=batch)
        assert unsigned.status_code == 403
        assert unsigned.json()["code"] == "signature_required"
        half = await signed(api, "POST", f"{TX}/batch", batch, [(f"{alice}/a", alice_key)])
        assert half.status_code == 403
        assert half.json()["code"] == "signature_invalid"
    for item in items:
        assert (await api.get(f"{TX}/{item['id']}")).status_code == 404
    assert (await head(api))["sequence"] == before["sequence"]
    batch = {"mode": "immediate", "transactions": items}
    whole = await signed(api, "POST", f"{TX}/batch", batch,
                         [(f"{alice}/a", alice_key), (f"{carol}/c", carol_key)])  # fmt: skip
    assert whole.status_code == 200, whole.text
    assert [r["status"] for r in whole.json()["results"]] == ["COMPLETED"] * 3
    assert (await balance(alice))["posted"] == 10
    assert (await balance(carol))["posted"] == 9
    proofs = [(await api.get(f"{TX}/{item['id']}/proof")).json() for item in items]
    assert len({p["body"] for p in proofs}) == 1  # the one body, kept once for all three


# Reversals, voids, executes


async def test_reversing_a_payment_into_an_owned_account_needs_its_signature(
    api: httpx.AsyncClient, uid: Any, fund: Any, balance: Any
) -> None:
    alice, bob = uid("alice"), uid("bob")
    private, public = ed25519_pair()
    await owned(api, alice, [{"id": "k1", "alg": "ed25519", "public_key": public}])
    await fund(bob, "50")
    paid = uid("paid")
    assert (await api.post(f"{TX}/immediate", json=transfer(paid, bob, alice))).status_code == 201
    unsigned = await api.delete(f"{TX}/{paid}")
    assert unsigned.status_code == 403
    assert unsigned.json()["code"] == "signature_required"
    assert (await api.get(f"{TX}/{paid}")).json()["status"] == "COMPLETED"
    reversed_ = await signed(api, "DELETE", f"{TX}/{paid}", None, [(f"{alice}/k1", private)])
    assert reversed_.status_code == 200, reversed_.text
    assert reversed_.json()["status"] == "REVERSED"
    assert (await balance(alice))["posted"] == 0
    proof = (await api.get(f"{TX}/{paid}.reversal/proof")).json()
    assert proof["method"] == "DELETE"
    assert proof["body"] == ""
    assert "content-digest" not in proof["headers"]
    check_proof_by_hand(proof, {f"{alice}/k1": {"alg": "ed25519", "public_key": public}})
    # A hold from an owned account: signed when made, then executed or voided freely.
    for finish in ("execute", "void"):
        hold = uid("hold")
        made = await api.post(TX, json=transfer(hold, bob, alice, "1"))
        assert made.status_code == 201
        out = uid("out")
        await fund(alice, "1")
        held = await signed(api, "POST", TX, transfer(out, alice, bob, "1"),
                            [(f"{alice}/k1", private)])  # fmt: skip
        assert held.status_code == 201, held.text
        done = await (api.put(f"{TX}/{out}") if finish == "execute" else api.delete(f"{TX}/{out}"))
        assert done.status_code == 200, done.text


# Rotation


async def test_rotation_refuses_old_keys_and_keeps_old_proofs_checkable(
    api: httpx.AsyncClient, uid: Any, fund: Any
) -> None:
    alice, bob = uid("alice"), uid("bob")
    old_key, old_public = ed25519_pair()
    new_key, new_public = ed25519_pair()
    old = {"id": "k1", "alg": "ed25519", "public_key": old_public}
    new = {"id": "k2", "alg": "ed25519", "public_key": new_public}
    await owned(api, alice, [old])
    await fund(alice, "100")
    before = uid("before")
    made = await signed(api, "POST", f"{TX}/immediate", transfer(before, alice, bob),
                        [(f"{alice}/k1", old_key)])  # fmt: skip
    assert made.status_code == 201
    path = f"/v1/accounts/{alice}/keys"
    unsigned = await api.put(path, json={"keys": [new]})
    assert unsigned.status_code == 403
    assert unsigned.json()["code"] == "signature_required"
    wrong = await signed(api, "PUT", path, {"keys": [new]}, [(f"{alice}/k1", new_key)])
    assert wrong.status_code == 403
    assert wrong.json()["code"] == "signature_invalid"
    head_before = (await head(api))["sequence"]
    rotated = await signed(api, "PUT", path, {"keys": [new]}, [(f"{alice}/k1", old_key)])
    assert rotated.status_code == 200, rotated.text
    account = rotated.json()
    assert account["keys"] == [new]
    [retired] = account["key_history"]
    assert {k: retired[k] for k in ("id", "alg", "public_key")} == old
    [event] = [e for e in await events_after(api, head_before) if e["type"] == "account.updated"]
    assert event["account"]["id"] == alice
    assert event["account"]["keys"] == [new]
    late = await signed(api, "POST", f"{TX}/immediate", transfer(uid("late"), alice, bob),
                        [(f"{alice}/k1", old_key)])  # fmt: skip
    assert late.status_code == 403
    assert late.json()["code"] == "signature_invalid"
    now = await signed(api, "POST", f"{TX}/immediate", transfer(uid("now"), alice, bob),
                       [(f"{alice}/k2", new_key)])  # fmt: skip
    assert now.status_code == 201
    proof = (await api.get(f"{TX}/{before}/proof")).json()
    check_proof_by_hand(proof, {f"{alice}/k1": retired})
    reused = await signed(api, "PUT", path, {"keys": [new, old]}, [(f"{alice}/k2", new_key)])
    assert reused.status_code == 400
    assert reused.json()["code"] == "invalid_request"
    first = await api.put(f"/v1/accounts/{uid('fresh')}/keys", json={"keys": [new]})
    assert first.status_code == 404
    plain = uid("plain")
    await api.post("/v1/accounts", json={"id": plain})
    first = await api.put(f"/v1/accounts/{plain}/keys", json={"keys": [new]})
    assert first.status_code == 200
    assert first.json()["keys"] == [new]


async def test_keys_replaced_while_signed_debits_are_in_flight(
    api: httpx.AsyncClient, uid: Any, fund: Any, balance: Any
) -> None:
    """Each debit is checked against the keys as they were when it was recorded: every
    debit recorded came before the old key's retirement, every later one is refused."""
    alice, bob = uid("alice"), uid("bob")
    old_key, old_public = ed25519_pair()
    _, new_public = ed25519_pair()
    await owned(api, alice, [{"id": "k1", "alg": "ed25519", "public_key": old_public}])
    await fund(alice, "1000")
    ids = [uid("d") for _ in range(60)]

    async def debit(tx: str) -> httpx.Response:
        return await signed(api, "POST", f"{TX}/immediate", transfer(tx, alice, bob, "1"),
                            [(f"{alice}/k1", old_key)])  # fmt: skip

    async def rotate() -> httpx.Response:
        await asyncio.sleep(0.05)
        return await signed(api, "PUT", f"/v1/accounts/{alice}/keys",
                            {"keys": [{"id": "k2", "alg": "ed25519", "public_key": new_public}]},
                            [(f"{alice}/k1", old_key)])  # fmt: skip

    *answers, rotation = await asyncio.gather(*(debit(tx) for tx in ids), rotate())
    assert rotation.status_code == 200, rotation.text
    retired_at = datetime.fromisoformat(rotation.json()["key_history"][0]["retired_at"])
    done = [a for a in answers if a.status_code == 201]
    refused = [a for a in answers if a.status_code == 403]
    assert len(done) + len(refused) == len(ids)
    assert all(a.json()["code"] == "signature_invalid" for a in refused)
    for answer in done:
        assert datetime.fromisoformat(answer.json()["created_at"]) < retired_at
    assert (await balance(alice))["posted"] == 1000 - len(done)


# The `twofold keys` command, as the README walks through it


def twofold(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "app", "keys", *args], input=stdin,
                          capture_output=True, cwd=ROOT, timeout=60, check=False)  # fmt: skip


async def test_the_keys_command_generates_signs_and_checks(
    api: httpx.AsyncClient, service: Service, uid: Any, fund: Any, tmp_path: Path
) -> None:
    alice, bob, tx = uid("alice"), uid("bob"), uid("tx")
    pem = tmp_path / "alice.pem"
    made = twofold("generate", "--out", str(pem), "--key-id", "k1")
    assert made.returncode == 0, made.stderr
    assert pem.stat().st_mode & 0o777 == 0o600
    assert twofold("generate", "--out", str(pem)).returncode == 1  # never overwritten
    await owned(api, alice, [json.loads(made.stdout)])
    await fund(alice, "30")
    body = body_of(transfer(tx, alice, bob, "12"))
    signed_by = twofold("sign", "--keyid", f"{alice}/k1", "--key", str(pem),
                        "--path", f"{TX}/immediate", "--body", "-", stdin=body)  # fmt: skip
    assert signed_by.returncode == 0, signed_by.stderr
    headers = dict(line.split(": ", 1) for line in signed_by.stdout.decode().splitlines())
    assert set(headers) == {"Content-Digest", "Signature-Input", "Signature"}
    answer = await api.post(f"{TX}/immediate", content=body,
                            headers={**headers, "content-type": "application/json"})  # fmt: skip
    assert answer.status_code == 201, answer.text
    checked = twofold("check-proof", tx, "--url", service.base_url, "--api-key", "abc:123")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.decode().startswith(f"ok sig1: signed by {alice}/k1")
    unsigned = uid("unsigned")
    await api.post(f"{TX}/immediate", json=transfer(unsigned, bob, alice, "1"))
    missing = twofold("check-proof", unsigned, "--url", service.base_url, "--api-key", "abc:123")
    assert missing.returncode == 1


def test_a_proof_with_a_changed_body_or_an_unknown_key_fails_the_check() -> None:
    private, public = ed25519_pair()
    body = b'{"id":"t1"}'
    headers = sign("POST", TX, body, [("alice/k1", private)])
    proof = {"method": "POST", "path": TX, "body": base64.b64encode(body).decode(),
             "headers": headers}  # fmt: skip
    keys = {"alice": {"keys": [{"id": "k1", "alg": "ed25519", "public_key": public}]}}
    assert check_proof(proof, keys)[0].startswith("ok sig1")
    changed = {**proof, "body": base64.b64encode(b'{"id":"t2"}').decode()}
    assert check_proof(changed, keys)[0].startswith("FAILED sig1")
    assert check_proof(proof, {})[0].startswith("FAILED sig1: no key alice/k1")


MALFORMED = [
    {"signature-input": "", "signature": ""},
    {"signature-input": "sig1=", "signature": "sig1=::"},
    {"signature-input": 'sig1=("@method");keyid=1', "signature": "sig1=:AAAA:"},
    {"signature-input": 'sig1=("@method");created="x";keyid="a/k"', "signature": "sig1=:AAAA:"},
    {"signature-input": 'sig1=("@nonsense");created=1;keyid="a/k"', "signature": "sig1=:AAAA:"},
    {"signature-input": "sig1=(\"@method\";created=1", "signature": "sig1=:%%%:"},
    {"signature-input": 'sig1=("@method");created=99999999999999999;keyid="a/k"',
     "signature": "sig1=:AAAA:"},
    {"signature-input": "x" * 5000, "signature": "y"},
    {"signature": "sig1=:AAAA:"},
    {"signature-input": 'sig1=("@method" "@path");created=1;keyid="a/k"'},
    {"content-digest": "sha-256=:not base64:", "signature-input": 'a=();keyid="a/k"',
     "signature": "a=:AAAA:"},
]  # fmt: skip


@pytest.mark.parametrize("headers", MALFORMED)
async def test_malformed_signature_headers_are_signature_invalid_never_a_500(
    api: httpx.AsyncClient, uid: Any, fund: Any, headers: dict[str, str]
) -> None:
    alice, tx = uid("alice"), uid("tx")
    await owner(api, fund, alice, "10")
    headers = {k: v.replace("a/k", f"{alice}/k1") for k, v in headers.items()}
    for path in (f"{TX}/immediate", f"{TX}/batch"):
        value: Any = transfer(tx, alice, uid("bob"))
        if path.endswith("batch"):
            value = {"transactions": [value]}
        response = await api.post(path, content=body_of(value), headers=headers)
        assert response.status_code == 403, response.text
        assert response.json()["code"] == "signature_invalid"
    assert (await api.get(f"{TX}/{tx}")).status_code == 404


@pytest.mark.parametrize(
    "statement", ["UPDATE proofs SET body = ''", "DELETE FROM transaction_proofs"]
)
async def test_proofs_are_append_only_in_the_database(
    api: httpx.AsyncClient, uid: Any, fund: Any, backends: Backends, statement: str
) -> None:
    alice = uid("alice")
    private, _ = await owner(api, fund, alice, "1")
    made = await signed(api, "POST", f"{TX}/immediate", transfer(uid("tx"), alice, uid("b"), "1"),
                        [(f"{alice}/k1", private)])  # fmt: skip
    assert made.status_code == 201
    await refused_as_append_only(backends.database_url, statement)

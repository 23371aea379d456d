"""Signed requests (RFC 9421 HTTP Message Signatures, RFC 9530 Content-Digest): the
account keys' material, and what a request's signatures prove.

Checked once, on the exact bytes received, before the body is decoded for the ledger;
the ledger gets an `Authority` (which account keys signed) and decides, under the
accounts' locks, whether that is enough. A request without signature headers costs one
look at its headers: unowned accounts are the common case.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from http_message_signatures import HTTPMessageSignaturesException

from app.ledger.errors import InvalidRequest, SignatureInvalid
from app.ledger.keys import UNSIGNED, Authority, Proof, PublicKey, check_keys
from app.models.keys import current_keys
from app.models.store import PostgresStore
from app.signing import ALGORITHMS, LabelVerifier, Message, OneKey, labels

RSA_BITS_MIN = 2048
PROOF_HEADERS = ("content-digest", "signature-input", "signature")
SIGNATURE_HEADERS = frozenset((b"signature", b"signature-input"))


def load_key(alg: str, public_key: str) -> Any:
    """The key's material as a `cryptography` key; ValueError names what is wrong."""
    if alg == "ed25519":
        try:
            raw = base64.b64decode(public_key, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("an ed25519 key is the base64 of its raw 32 bytes") from exc
        if len(raw) != 32:
            raise ValueError("an ed25519 key is the base64 of its raw 32 bytes")
        return ed25519.Ed25519PublicKey.from_public_bytes(raw)
    try:
        key = load_pem_public_key(public_key.encode())
    except (ValueError, TypeError, UnicodeError, UnsupportedAlgorithm) as exc:
        raise ValueError("an rsa-pss-sha512 key is a PEM SubjectPublicKeyInfo") from exc
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("an rsa-pss-sha512 key is an RSA public key")
    if key.key_size < RSA_BITS_MIN:
        raise ValueError(f"an RSA key has at least {RSA_BITS_MIN} bits")
    return key


def check_key_material(keys: Sequence[PublicKey]) -> None:
    """Valid ids and algorithms (the ledger's rules), and every key parses as its
    algorithm's public key: a 400 names the first one that does not."""
    check_keys(keys)
    for i, key in enumerate(keys):
        try:
            load_key(key.alg, key.public_key)
        except ValueError as exc:
            raise InvalidRequest.at(f"keys[{i}].public_key", f"key {key.id}: {exc}") from exc


def headers_of(scope: Mapping[str, Any]) -> dict[str, str]:
    """Header values by lower-case name, repeated lines joined as HTTP joins them."""
    headers: dict[str, str] = {}
    for name, value in scope.get("headers", ()):
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


def is_signed(scope: Mapping[str, Any]) -> bool:
    return any(name.lower() in SIGNATURE_HEADERS for name, _ in scope.get("headers", ()))


def key_ids(signature_input: str) -> dict[str, str]:
    """`keyid` by label; SignatureInvalid when the field is malformed or lacks one."""
    try:
        named = labels(signature_input)
    except Exception as exc:  # the parser's errors are not one family
        raise SignatureInvalid("Signature-Input is not a structured dictionary") from exc
    found: dict[str, str] = {}
    for label, keyid in named:
        if "/" not in keyid:
            raise SignatureInvalid(f'signature {label}: keyid is "<account id>/<key id>"')
        found[label] = keyid
    if not found:
        raise SignatureInvalid("Signature-Input names no signature")
    return found


async def authority(store: PostgresStore, scope: Mapping[str, Any], body: bytes) -> Authority:
    """What the request's signatures prove, checked on the exact `body` received;
    `UNSIGNED` without signature headers. Every signature there must verify, else
    SignatureInvalid."""
    if not is_signed(scope):
        return UNSIGNED
    headers = headers_of(scope)
    if "signature" not in headers or "signature-input" not in headers:
        raise SignatureInvalid("a signed request has both Signature-Input and Signature")
    by_label = key_ids(headers["signature-input"])
    owners = {keyid.rsplit("/", 1)[0] for keyid in by_label.values()}
    tenant = scope["state"]["tenant"]
    keys = await current_keys(store, tenant, sorted(owners))
    by_keyid = {f"{account}/{k.id}": k for account, held in keys.items() for k in held}
    raw_path = scope.get("raw_path") or scope["path"].encode()
    query = scope.get("query_string", b"")
    url = f"http://{headers.get('host', 'localhost')}{raw_path.decode('latin-1')}"
    message = Message(scope["method"], url + (f"?{query.decode('latin-1')}" if query else ""),
                      headers)  # fmt: skip
    required = ("@method", "@path", "content-digest") if body else ("@method", "@path")
    signers = set()
    for label, keyid in by_label.items():
        key = by_keyid.get(keyid)
        if key is None:
            raise SignatureInvalid(f"signature {label}: {keyid} is not a current key")
        verifier = LabelVerifier(
            signature_algorithm=ALGORITHMS[key.alg],
            key_resolver=OneKey(load_key(key.alg, key.public_key)),
        )
        verifier.max_clock_skew = timedelta(seconds=store.settings.signature_max_age_s)
        try:
            verifier.verify_label(message, label, max_age=timedelta(0),
                                  require_components=required, body=body)  # fmt: skip
        except (HTTPMessageSignaturesException, ValueError, TypeError) as exc:
            raise SignatureInvalid(f"signature {label}: {exc}") from exc
        account, key_id = keyid.rsplit("/", 1)
        signers.add((account, key_id))
    proof = Proof(scope["method"], raw_path.decode("latin-1"), body,
                  {name: headers[name] for name in PROOF_HEADERS if name in headers})  # fmt: skip
    return Authority(True, frozenset(signers), proof)

"""The client's side of signed requests (RFC 9421 with RFC 9530 `Content-Digest`): key
pairs, the three headers of a signed request, and checking a proof. Used by `twofold
keys`; the service's side is `app/controllers/signatures.py`."""

from __future__ import annotations

import base64
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import http_sf
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from http_message_signatures import (
    HTTPMessageSignaturesException,
    HTTPMessageSigner,
    HTTPMessageVerifier,
    HTTPSignatureKeyResolver,
    algorithms,
)
from http_message_signatures.signatures import SignatureVerifyWarning

ALGORITHMS: Mapping[str, type[algorithms.HTTPSignatureAlgorithm]] = {
    "ed25519": algorithms.ED25519,
    "rsa-pss-sha512": algorithms.RSA_PSS_SHA512,
}


@dataclass
class Message:
    """A request as the signer and verifier read it (method, absolute URL, headers)."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)


class OneKey(HTTPSignatureKeyResolver):
    """The one key a signature is made or checked with (the keyid was resolved before)."""

    def __init__(self, key: Any) -> None:
        self.key = key

    def resolve_public_key(self, key_id: str) -> Any:
        return self.key

    def resolve_private_key(self, key_id: str) -> Any:
        return self.key


def generate_ed25519() -> tuple[str, str]:
    """A new key pair: the private key as PEM (PKCS#8) and the public key as the API
    takes it (base64 of the raw 32 bytes)."""
    private = ed25519.Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    raw = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return pem, base64.b64encode(raw).decode()


def load_private_key(pem: bytes) -> tuple[str, Any]:
    """(alg, key) of a PEM private key: Ed25519 or RSA (signed with RSA-PSS-SHA512)."""
    key = serialization.load_pem_private_key(pem, password=None)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519", key
    if isinstance(key, rsa.RSAPrivateKey):
        return "rsa-pss-sha512", key
    raise ValueError("the key is neither Ed25519 nor RSA")


def sign(
    method: str,
    path: str,
    body: bytes,
    signers: Sequence[tuple[str, Any]],
    created: int | None = None,
) -> dict[str, str]:
    """The `Content-Digest` (when there is a body), `Signature-Input` and `Signature`
    headers of a request signed by each of `signers` ("<account>/<key id>", private
    key), one label each (`sig1`, `sig2`, ...)."""
    message = Message(method.upper(), f"http://twofold{path}")
    components = ["@method", "@path"]
    if body:
        components.append("content-digest")
    instant = datetime.fromtimestamp(created if created is not None else int(time.time()), UTC)
    for i, (keyid, key) in enumerate(signers, start=1):
        alg = "ed25519" if isinstance(key, ed25519.Ed25519PrivateKey) else "rsa-pss-sha512"
        signer = HTTPMessageSigner(signature_algorithm=ALGORITHMS[alg], key_resolver=OneKey(key))
        signer.sign(message, key_id=keyid, label=f"sig{i}", created=instant,
                    covered_component_ids=components, body=body if body else None,
                    use_existing_digest=i > 1, append_if_signature_exists=True)  # fmt: skip
    return {name.lower(): value for name, value in message.headers.items()}


def check_proof(proof: Mapping[str, Any], accounts: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Check a proof (`GET /v1/transactions/{id}/proof`) against the accounts it names
    (`GET /v1/accounts/{id}`, keys and key_history); one line per signature, each
    starting `ok` or `FAILED`."""
    body = base64.b64decode(proof["body"])
    headers = {k: v for k, v in proof["headers"].items() if v is not None}
    message = Message(proof["method"], f"http://twofold{proof['path']}", headers)
    lines = []
    for label, keyid in labels(headers.get("signature-input", "")):
        account_id, _, key_id = keyid.rpartition("/")
        account = accounts.get(account_id, {})
        known = [*account.get("keys", []), *account.get("key_history", [])]
        key = next((k for k in known if k["id"] == key_id), None)
        if key is None:
            lines.append(f"FAILED {label}: no key {keyid}")
            continue
        verifier = _ProofVerifier(signature_algorithm=ALGORITHMS[key["alg"]],
                                  key_resolver=OneKey(_public_key(key)))  # fmt: skip
        try:
            verifier.verify_label(message, label, max_age=None, body=body)
        except HTTPMessageSignaturesException as exc:
            lines.append(f"FAILED {label}: {exc}")
            continue
        lines.append(f"ok {label}: signed by {keyid} ({key['alg']})")
    return lines or ["FAILED no signature in the proof"]


class LabelVerifier(HTTPMessageVerifier):
    """Verifies one signature of a request by its label: one label per owned account,
    each with its own key and algorithm. Labels are not signed, and need not be here:
    the `keyid` inside the signed parameters names the account."""

    allow_label_only_selection = True

    def verify_label(self, message: Any, label: str, **options: Any) -> None:
        with warnings.catch_warnings():
            # The library warns about selecting by label alone: see the class.
            warnings.simplefilter("ignore", SignatureVerifyWarning)
            self.verify(message, expect_label=label, **options)


class _ProofVerifier(LabelVerifier):
    # A proof is checked long after it was made: its age is no reason to refuse it.
    max_clock_skew = timedelta(days=365 * 1000)


def _public_key(key: Mapping[str, str]) -> Any:
    if key["alg"] == "ed25519":
        raw = base64.b64decode(key["public_key"])
        return ed25519.Ed25519PublicKey.from_public_bytes(raw)
    return serialization.load_pem_public_key(key["public_key"].encode())


def labels(signature_input: str) -> list[tuple[str, str]]:
    """(label, keyid) of each signature a Signature-Input names; the keyid is "" when it
    is missing or not a string. The parser's errors (not one family) go up."""
    parsed: Any = http_sf.parse(signature_input.encode(), tltype="dictionary")
    found = []
    for label, member in parsed.items():
        params = member[1] if isinstance(member, tuple) and len(member) == 2 else {}
        keyid = params.get("keyid") if isinstance(params, dict) else None
        found.append((label, keyid if isinstance(keyid, str) else ""))
    return found

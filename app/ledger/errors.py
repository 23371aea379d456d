"""The one family of domain errors; each carries a stable `code`.

LedgerError
 +-- InvalidRequest        invalid_request
 |    +-- InvalidAmount    invalid_amount
 |    +-- Unbalanced       unbalanced
 |    +-- InvalidQuery     invalid_query
 |    +-- InvalidIdempotencyKey  invalid_idempotency_key
 +-- Unauthenticated       unauthenticated
 +-- SignatureRequired     signature_required
 +-- SignatureInvalid      signature_invalid
 +-- NotFound              not_found
 +-- AccountExists, TransactionExists, InvalidState, Expired, IdempotencyInFlight,
 |   SinkExists
 +-- PayloadTooLarge       payload_too_large
 +-- RuleBreach            insufficient_funds | balance_rule_violated
 +-- TimestampOutOfOrder   timestamp_out_of_order
 +-- IdempotencyKeyReused  idempotency_key_reused
 +-- Unavailable           unavailable
      +-- IdempotencyUnavailable  idempotency_unavailable
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self


@dataclass(frozen=True, slots=True)
class FieldError:
    path: str
    message: str


class LedgerError(Exception):
    code = "invalid_request"

    def __init__(
        self,
        detail: str,
        *,
        errors: tuple[FieldError, ...] = (),
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.extra = extra or {}

    @classmethod
    def at(cls, path: str, message: str) -> Self:
        """A problem with one field of the input, named in `errors` as well."""
        return cls(f"{path}: {message}", errors=(FieldError(path, message),))


class InvalidRequest(LedgerError):
    code = "invalid_request"


class InvalidAmount(InvalidRequest):
    code = "invalid_amount"


class Unbalanced(InvalidRequest):
    code = "unbalanced"


class InvalidQuery(InvalidRequest):
    code = "invalid_query"


class InvalidIdempotencyKey(InvalidRequest):
    code = "invalid_idempotency_key"


class Unauthenticated(LedgerError):
    code = "unauthenticated"


class SignatureRequired(LedgerError):
    """A request that takes money out of an owned account carries no signature."""

    code = "signature_required"


class SignatureInvalid(LedgerError):
    """A request's signature headers are malformed, or do not verify against a current
    key of every owned account it takes money out of."""

    code = "signature_invalid"


class NotFound(LedgerError):
    code = "not_found"


class SinkExists(LedgerError):
    code = "sink_exists"


class AccountExists(LedgerError):
    code = "account_exists"


class TransactionExists(LedgerError):
    code = "transaction_exists"


class InvalidState(LedgerError):
    code = "invalid_state"


class Expired(LedgerError):
    code = "expired"


class IdempotencyInFlight(LedgerError):
    code = "idempotency_in_flight"


class PayloadTooLarge(LedgerError):
    code = "payload_too_large"


class TransactionFailed(LedgerError):
    """A document that could not be applied; it is kept as FAILED with this failure."""

    def __init__(self, failure: dict[str, Any]) -> None:
        super().__init__(str(failure["detail"]), extra=failure)
        self.code = str(failure["code"])


class IdempotencyKeyReused(LedgerError):
    code = "idempotency_key_reused"


class RateLimited(LedgerError):
    code = "rate_limited"


class Unavailable(LedgerError):
    code = "unavailable"


class IdempotencyUnavailable(Unavailable):
    code = "idempotency_unavailable"


class BatchFailed(LedgerError):
    code = "batch_failed"

    def __init__(self) -> None:
        super().__init__("another transaction of this atomic batch failed")

"""The JSON Schemas of the OpenAPI document that the request and response Structs
cannot say themselves: id, currency and amount patterns, problems, events, verify."""

from __future__ import annotations

from app.ledger.records import EVENT_TYPES
from app.streams.sink_spec import BATCH_MAX_LIMIT, SCHEMES

ID_PATTERN = "^[A-Za-z0-9_.:@/-]{1,128}$"
CURRENCY_PATTERN = "^[A-Za-z0-9_.:-]{1,32}$"
AMOUNT = {
    "description": "An exact decimal: a string (or a JSON number) of ASCII digits with an"
    " optional sign and at most one point; 38 significant and 18 fractional digits at most.",
    "anyOf": [
        {"type": "string", "pattern": r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)$"},
        {"type": "number"},
    ],
}
# Properties the Structs cannot say: ids, currencies and amounts by their patterns.
REFINED = {
    ("AccountIn", "id"): {"anyOf": [{"type": "string", "pattern": ID_PATTERN}, {"type": "null"}]},
    ("TransactionIn", "id"): {
        "anyOf": [{"type": "string", "pattern": ID_PATTERN}, {"type": "null"}]
    },
    ("TransactionIn", "account"): {
        "anyOf": [{"type": "string", "pattern": ID_PATTERN}, {"type": "null"}]
    },
    ("TransactionIn", "counterparty"): {
        "anyOf": [{"type": "string", "pattern": ID_PATTERN}, {"type": "null"}]
    },
    ("TransactionIn", "currency"): {
        "anyOf": [{"type": "string", "pattern": CURRENCY_PATTERN}, {"type": "null"}]
    },
    ("TransactionIn", "amount"): AMOUNT,
    ("LineIn", "account"): {"type": "string", "pattern": ID_PATTERN},
    ("LineIn", "currency"): {"type": "string", "pattern": CURRENCY_PATTERN},
    ("LineIn", "amount"): AMOUNT,
    ("TransactionIn", "timestamp"): {
        "anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}]
    },
    ("TransactionIn", "expires_at"): {
        "anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}]
    },
    ("SinkIn", "id"): {"anyOf": [{"type": "string", "pattern": ID_PATTERN}, {"type": "null"}]},
    ("SinkIn", "type"): {"enum": list(SCHEMES)},
    ("SinkIn", "url"): {"type": "string", "format": "uri"},
    ("SinkIn", "batch_max"): {
        "anyOf": [{"type": "integer", "minimum": 1, "maximum": BATCH_MAX_LIMIT}, {"type": "null"}],
        "description": "webhook sinks only: events in one request",
    },
    ("SinkIn", "types"): {
        "anyOf": [
            {"type": "array", "minItems": 1, "items": {"enum": list(EVENT_TYPES)}},
            {"type": "null"},
        ]
    },
    ("SinkIn", "after"): {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "null"}]},
}

PROBLEM = {
    "type": "object",
    "required": ["type", "title", "status", "code", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "code": {"type": "string"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["path", "message"],
                "properties": {"path": {"type": "string"}, "message": {"type": "string"}},
            },
        },
        "account": {"type": "string"},
        "currency": {"type": "string"},
        "available": {"type": "string"},
        "required": {"type": "string"},
    },
}
HASH = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
EVENT = {
    "type": "object",
    "description": "One change of the tenant's log; `hash` chains it to the one before.",
    "required": ["sequence", "type", "at", "balances", "previous_hash", "hash"],
    "properties": {
        "sequence": {"type": "integer", "minimum": 1},
        "type": {"enum": list(EVENT_TYPES)},
        "at": {"type": "string", "format": "date-time"},
        "transaction": {"type": "object", "description": "as GET answers it, without events"},
        "account": {"type": "object", "description": "as GET answers it, without balances"},
        "balances": {"type": "object", "description": "{account: {currency: balance}}"},
        "previous_hash": HASH,
        "hash": HASH,
    },
}
EXTRA_SCHEMAS = {
    "Event": EVENT,
    "EventsOut": {
        "type": "object",
        "required": ["items", "next"],
        "properties": {
            "items": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}},
            "next": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        },
    },
    "LogHead": {
        "type": "object",
        "required": ["sequence", "hash", "at"],
        "properties": {
            "sequence": {"type": "integer", "minimum": 0},
            "hash": HASH,
            "at": {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}]},
        },
    },
    "VerifyOut": {
        "type": "object",
        "required": ["ok", "checked", "head", "problems"],
        "properties": {
            "ok": {"type": "boolean"},
            "checked": {
                "type": "object",
                "properties": {
                    k: {"type": "integer"}
                    for k in ("events", "transactions", "entries", "accounts")
                },
            },
            "head": {
                "type": "object",
                "properties": {"sequence": {"type": "integer"}, "hash": HASH},
            },
            "problems": {
                "type": "array",
                "maxItems": 100,
                "items": {
                    "type": "object",
                    "required": ["kind", "where", "detail"],
                    "properties": {
                        "kind": {
                            "enum": [
                                "sequence_gap",
                                "hash_mismatch",
                                "event_mismatch",
                                "entry_mismatch",
                                "transaction_mismatch",
                                "rule_broken",
                                "sum_not_zero",
                            ]
                        },
                        "where": {"type": "string"},
                        "detail": {"type": "string"},
                    },
                },
            },
        },
    },
    "EventStream": {
        "type": "string",
        "description": "Server-Sent Events: `id: <sequence>`, `event: <type>`, `data: <event>`;"
        " a comment line at least every 15 s.",
    },
}
SEARCH = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "query": {
            "type": "object",
            "description": "`must` (all hold) and `should` (one holds) groups of `fields`,"
            " `terms` and `ranges`.",
        },
        "limit": {"type": "integer", "minimum": 1, "maximum": 1000},
        "after": {"type": "string"},
    },
}

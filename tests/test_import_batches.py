"""`twofold import` reads the file from marks, not from an offset per transaction, and
cuts it into batch requests: by mode, by count and by bytes."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from app.cli import data as cli_data


def source(statuses: list[str]) -> io.BytesIO:
    """A file of transactions `t0`, `t1`, ... in these statuses, and an account line."""
    lines = [b'{"account":{"id":"a","balance_rule":"any","data":{},"keys":[]}}\n']
    lines += [
        json.dumps({"transaction": {"id": f"t{i}", "status": status, "data": {},
                                    "timestamp": None, "expires_at": None,
                                    "lines": [{"account": "a", "currency": "USD",
                                               "amount": "1"}]}}).encode() + b"\n"
        for i, status in enumerate(statuses)
    ]  # fmt: skip
    return io.BytesIO(b"".join(lines))


def batches(file: io.BytesIO, size: int) -> list[tuple[str, list[dict[str, Any]]]]:
    index = cli_data._importable(file)
    return list(cli_data._batches(cli_data._transactions(file, index, 0), size))


def test_batches_split_by_mode_count_and_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    file = source(["COMPLETED"] * 7 + ["PENDING"] * 2 + ["COMPLETED"])
    line = len(file.getvalue().splitlines(keepends=True)[1])  # a COMPLETED line
    sizes = [(mode, len(items)) for mode, items in batches(file, 5)]
    assert sizes == [("immediate", 5), ("immediate", 2), ("pending", 2), ("immediate", 1)]
    monkeypatch.setattr(cli_data, "BATCH_BYTES", 3 * line + 1)
    sizes = [(mode, len(items)) for mode, items in batches(file, 5)]
    assert sizes == [("immediate", 3), ("immediate", 3), ("immediate", 1), ("pending", 2),
                     ("immediate", 1)]  # fmt: skip
    # A single transaction larger than the budget still goes, alone.
    monkeypatch.setattr(cli_data, "BATCH_BYTES", 1)
    assert [len(items) for _, items in batches(file, 5)] == [1] * 10


def test_the_import_reads_on_from_a_mark_every_stride(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only every STRIDE-th importable transaction's offset is kept; from any number on,
    the importable ones come in file order, skipped ones left out."""
    monkeypatch.setattr(cli_data, "STRIDE", 3)
    statuses = ["COMPLETED", "FAILED", "PENDING", "VOIDED", "REVERSED", "COMPLETED",
                "FAILED", "COMPLETED", "PENDING", "COMPLETED"]  # fmt: skip
    file = source(statuses)
    index = cli_data._importable(file)
    importable = [f"t{i}" for i, s in enumerate(statuses) if s not in ("FAILED", "VOIDED")]
    assert (index.count, len(index.marks), len(index.accounts), index.skipped) == (7, 3, 1, 3)
    for start in range(index.count + 1):
        ids = [t["id"] for t, _ in cli_data._transactions(file, index, start)]
        assert ids == importable[start:], start


def test_the_next_batch_is_made_while_the_one_before_is_sent() -> None:
    """`_ahead` hands out every item in order, and asks for the next one before the
    caller is done with the one it holds."""
    made: list[str] = []

    def items() -> Iterator[int]:
        for i in range(3):
            made.append(f"made {i}")
            yield i

    seen = []
    for item in cli_data._ahead(items()):
        # The next item is being made in the background; wait until it is.
        deadline = time.monotonic() + 5
        while len(made) < min(item + 2, 3) and time.monotonic() < deadline:
            time.sleep(0.001)
        seen.append((item, len(made)))
    assert seen == [(0, 2), (1, 3), (2, 3)]


def test_a_batch_body_is_the_request_the_api_takes() -> None:
    file = source(["COMPLETED", "PENDING"])
    transactions = cli_data._transactions(file, cli_data._importable(file), 0)
    bodies = list(cli_data._bodies(transactions, 5))
    assert [(size, json.loads(body)["mode"]) for size, body in bodies] == [
        (1, "immediate"), (1, "pending")]  # fmt: skip
    assert json.loads(bodies[0][1])["transactions"] == [
        {"id": "t0", "lines": [{"account": "a", "currency": "USD", "amount": "1"}], "data": {},
         "timestamp": None}]  # fmt: skip

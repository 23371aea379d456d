"""`twofold import` cuts the file into batch requests: by mode, by count and by bytes."""

from __future__ import annotations

import io
import json
from array import array

import pytest

from app import cli_data


def source(statuses: list[str]) -> tuple[io.BytesIO, array[int]]:
    lines = [
        json.dumps({"transaction": {"id": f"t{i}", "status": status, "data": {},
                                    "timestamp": None, "expires_at": None,
                                    "lines": [{"account": "a", "currency": "USD",
                                               "amount": "1"}]}}).encode() + b"\n"
        for i, status in enumerate(statuses)
    ]  # fmt: skip
    offsets, offset = array("q"), 0
    for line in lines:
        offsets.append(offset)
        offset += len(line)
    return io.BytesIO(b"".join(lines)), offsets


def test_batches_split_by_mode_count_and_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    file, offsets = source(["COMPLETED"] * 7 + ["PENDING"] * 2 + ["COMPLETED"])
    line = offsets[1] - offsets[0]  # a COMPLETED line
    sizes = [(mode, len(items)) for mode, items in cli_data._batches(file, offsets, 5)]
    assert sizes == [("immediate", 5), ("immediate", 2), ("pending", 2), ("immediate", 1)]
    monkeypatch.setattr(cli_data, "BATCH_BYTES", 3 * line + 1)
    sizes = [(mode, len(items)) for mode, items in cli_data._batches(file, offsets, 5)]
    assert sizes == [("immediate", 3), ("immediate", 3), ("immediate", 1), ("pending", 2),
                     ("immediate", 1)]  # fmt: skip
    # A single transaction larger than the budget still goes, alone.
    monkeypatch.setattr(cli_data, "BATCH_BYTES", 1)
    assert [len(items) for _, items in cli_data._batches(file, offsets, 5)] == [1] * 10

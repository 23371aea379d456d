"""`twofold import` cuts the file into batch requests: by mode, by count and by bytes."""

from __future__ import annotations

import io
import json
import time
from array import array
from collections.abc import Iterator

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
    file, offsets = source(["COMPLETED", "PENDING"])
    bodies = list(cli_data._bodies(file, offsets, 5))
    assert [(size, json.loads(body)["mode"]) for size, body in bodies] == [
        (1, "immediate"), (1, "pending")]  # fmt: skip
    assert json.loads(bodies[0][1])["transactions"] == [
        {"id": "t0", "lines": [{"account": "a", "currency": "USD", "amount": "1"}], "data": {},
         "timestamp": None}]  # fmt: skip

"""`immutable`: the engine's records, frozen to the type checker, built at a plain
dataclass's speed.

NOTE: a frozen dataclass sets each field through `object.__setattr__`, several times
slower to build than a plain slotted one. The group commit builds several per transfer
(heads, journal rows, results, events), and frozen records were about a quarter of its
Python time a transfer. So these are frozen where mypy looks (it refuses any
assignment to a field) and plain slotted dataclasses at run time, hashed by their fields
as frozen ones are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar, dataclass_transform

T = TypeVar("T")


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def immutable(cls: type[T]) -> type[T]:
    return dataclass(slots=True, unsafe_hash=True)(cls)

"""Greedy batches under a size budget, for the places that must bound what one request carries."""
from __future__ import annotations

from typing import Callable, Iterable, TypeVar

T = TypeVar("T")


def batches_within(items: Iterable[T], size: Callable[[T], int], budget: int) -> list[list[T]]:
    """`items` in order, cut into consecutive batches whose sizes add up to at most `budget`; an item larger
    than the budget travels alone. No empty batch is returned."""
    batches: list[list[T]] = []
    held = 0
    for item in items:
        weight = size(item)
        if not batches or (batches[-1] and held + weight > budget):
            batches.append([])
            held = 0
        batches[-1].append(item)
        held += weight
    return batches

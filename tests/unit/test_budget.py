"""`chalicelib.budget.batches_within`: the greedy cut the event queue and Gmail's raw batches use."""
from __future__ import annotations

from chalicelib.budget import batches_within


def test_batches_stay_within_the_budget_in_order_and_an_oversize_item_travels_alone():
    sizes = [4, 4, 3, 12, 1, 9, 1]
    batches = batches_within(sizes, lambda n: n, 10)
    assert batches == [[4, 4], [3], [12], [1, 9], [1]]
    assert [n for batch in batches for n in batch] == sizes
    assert all(sum(batch) <= 10 or len(batch) == 1 for batch in batches)


def test_nothing_gives_no_batch_and_weightless_items_share_one():
    assert batches_within([], len, 10) == []
    assert batches_within(["", "", ""], len, 0) == [["", "", ""]]

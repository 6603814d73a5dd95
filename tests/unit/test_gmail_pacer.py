"""Guards the Gmail per-user quota (250 quota units per user per second,
developers.google.com/gmail/api/reference/quota): a client that spends past it in one second instead of
waiting for the next, or that waits when it need not."""
from __future__ import annotations

from chalicelib.providers.gmail.client import MAX_BATCH, QUOTA_UNITS_PER_SECOND, UNITS, Pacer


class Clock:
    def __init__(self):
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 3))
        self.now += seconds


def test_spending_within_a_second_waits_for_the_next_one_at_the_limit():
    clock = Clock()
    pacer = Pacer(clock.sleep, clock)
    for _ in range(QUOTA_UNITS_PER_SECOND // UNITS["messages.get"]):      # 50 messages.get = 250 units
        pacer.spend(UNITS["messages.get"])
    assert clock.sleeps == []
    clock.now += 0.25
    pacer.spend(UNITS["history.list"])                                   # unit 252: into the next second
    assert clock.sleeps == [0.75]
    assert pacer.used == UNITS["history.list"]


def test_a_new_second_starts_afresh_without_waiting():
    clock = Clock()
    pacer = Pacer(clock.sleep, clock)
    pacer.spend(200)
    clock.now += 1.0
    pacer.spend(200)
    assert clock.sleeps == [] and pacer.used == 200


def test_two_full_batches_of_messages_get_are_a_second_apart():
    """A batch of 50 messages.get (5 units a part, as `get_raw_batch` spends them) is a second's whole quota."""
    clock = Clock()
    pacer = Pacer(clock.sleep, clock)
    pacer.spend(UNITS["messages.get"] * MAX_BATCH)
    pacer.spend(UNITS["messages.get"] * MAX_BATCH)
    assert clock.sleeps == [1.0]

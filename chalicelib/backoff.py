"""Jitter for retry schedules: every retry delay (a sync job's redelivery, a webhook attempt, an outbox send) is
its base delay plus a random 0-20 % of it.

Without jitter, work that failed together (a receiver or provider outage failing a batch of deliveries or
syncs at the same moment) is retried together at every step of the schedule, and the retries hit the recovering
endpoint as one burst each time; spreading each step by a fraction of its delay de-synchronizes them while
keeping the schedule's documented minimum waits ("Exponential Backoff And Jitter", AWS Architecture Blog,
https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/)."""
from __future__ import annotations

import random

JITTER_FRACTION = 0.2


def jittered(base: float, *, rand: random.Random | None = None) -> float:
    """`base` plus a uniform 0 - `JITTER_FRACTION` × `base` (never less than `base`)."""
    return base + (rand or random).uniform(0, base * JITTER_FRACTION)

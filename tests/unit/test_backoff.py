"""Retry delays are their base plus 0-20 % jitter, so work that failed together is retried spread out."""
import random

from chalicelib import backoff
from chalicelib.outbox import delivery
from chalicelib.providers.base import ErrorCode, ProviderError
from chalicelib.sync import errors


def test_jitter_never_shortens_and_spreads_retries_of_the_same_step():
    rand = random.Random(7)
    delays = [backoff.jittered(300, rand=rand) for _ in range(200)]
    assert all(300 <= d <= 360 for d in delays)
    assert len({round(d) for d in delays}) > 30            # 200 deliveries failing together do not return together
    assert max(delays) - min(delays) > 50


def test_every_retry_schedule_is_jittered():
    temporary = ProviderError(ErrorCode.TEMPORARY, "try later")
    assert len({errors.backoff_seconds(temporary, 2) for _ in range(50)}) > 1
    assert len({round(delivery.backoff(2)) for _ in range(50)}) > 1
    assert all(60 <= delivery.backoff(2) <= 72 for _ in range(50))
    assert all(3600 <= delivery.backoff(20) <= 4320 for _ in range(50))        # capped at an hour, then jittered
    assert delivery.backoff(1, retry_after=600) == 600                          # never sooner than Retry-After

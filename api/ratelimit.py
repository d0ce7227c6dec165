"""In-process rate limits: a token bucket per key (a user, a client address), bounded in memory.

A bucket holds up to `per_min` tokens and refills at `per_min` a minute; a request takes one. The
buckets live in this process: several API processes each allow the rate (configure accordingly).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """Token buckets by key; the least recently used keys go beyond `max_keys`."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, max_keys: int = 50_000) -> None:
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str, *, per_min: float) -> float | None:
        """Take a token: None if allowed, otherwise the seconds until one is there (Retry-After)."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(per_min, now)
            while len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = min(per_min, bucket.tokens + (now - bucket.at) * per_min / 60.0)
            bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return (1.0 - bucket.tokens) * 60.0 / per_min

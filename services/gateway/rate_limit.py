"""A per-key token bucket: how much untrusted callers (users' servers) may report.

Each gateway replica keeps its own buckets in memory, so one user's reports
are bounded by ``replicas * (burst + rate * seconds)``: enough for every
honest report (a kernel start is a human action), and a kernel that floods
gets 429s at almost no cost to anyone else.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum


class Verdict(Enum):
    """What to do with one report."""

    ALLOWED = "allowed"
    FIRST_REFUSAL = "first_refusal"
    """Refused, and the first refusal since this key was last allowed (worth recording once)."""
    REFUSED = "refused"


@dataclass
class _Bucket:
    tokens: float
    updated: float
    refusing: bool = False


class RateLimiter:
    """``burst`` reports at once, then ``per_second`` on average, per key."""

    def __init__(
        self,
        *,
        burst: int,
        per_second: float,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._burst = float(burst)
        self._rate = per_second
        self._max_keys = max_keys
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def check(self, key: str) -> Verdict:
        """Take one token from ``key``'s bucket if there is one."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max_keys:
                self._forget_full(now)
            bucket = self._buckets[key] = _Bucket(self._burst, now)
        bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.updated) * self._rate)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            bucket.refusing = False
            return Verdict.ALLOWED
        first = not bucket.refusing
        bucket.refusing = True
        return Verdict.FIRST_REFUSAL if first else Verdict.REFUSED

    def retry_after(self, key: str) -> float:
        """Seconds until ``key`` has a token again."""
        bucket = self._buckets.get(key)
        if bucket is None or bucket.tokens >= 1:
            return 0.0
        return (1 - bucket.tokens) / self._rate

    def _forget_full(self, now: float) -> None:
        # Keys whose bucket has refilled carry no state worth keeping; if every
        # key is still throttled, start over rather than grow without bound.
        for key in [
            k
            for k, b in self._buckets.items()
            if b.tokens + (now - b.updated) * self._rate >= self._burst
        ]:
            del self._buckets[key]
        if len(self._buckets) >= self._max_keys:
            self._buckets.clear()

"""Request throttling: a token bucket per account and operation, as ECR throttles its API.

`RateLimiter` is what the doors ask ("may this account call this operation now?"). The in-process
`TokenBuckets` answers for one process; a limiter shared by several nodes (Redis, say) only has to
implement the same one method. With `dockyard serve --workers N` each worker keeps its own buckets,
so an account gets up to N times the configured rate until such a shared limiter exists."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

# The seed: "the throttle for the GetAuthorizationToken action is 1 transaction per second (TPS),
# with a 50 TPS burst allowed". Every other operation is unlimited unless configured.
DEFAULT_RATE_LIMITS: dict[str, tuple[float, float]] = {"GetAuthorizationToken": (1.0, 50.0)}
# The key of the limit applied to operations that have none of their own.
ANY_OPERATION = "*"
# A limiter keeps at most this many buckets; idle full ones are dropped first.
MAX_BUCKETS = 100_000


class RateLimiter(Protocol):
    async def admit(self, account_id: str, operation: str) -> bool:
        """Take one token for (account, operation); False means answer "Rate exceeded"."""
        ...


@dataclass(frozen=True)
class RateLimit:
    rate: float  # tokens per second
    burst: float  # bucket size

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError("a rate limit needs a positive rate and a burst of at least 1")


class _Bucket:
    __slots__ = ("tokens", "updated")

    def __init__(self, tokens: float, updated: float) -> None:
        self.tokens = tokens
        self.updated = updated


class TokenBuckets:
    """Token buckets in this process's memory: O(1) per request, no I/O."""

    def __init__(self, limits: Mapping[str, RateLimit], clock: Callable[[], float] | None = None) -> None:
        self._limits = dict(limits)
        self._default = self._limits.pop(ANY_OPERATION, None)
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._clock = clock or time.monotonic
        # Admission runs on the event loop, but `dockyard gc` and tests may share a limiter across threads.
        self._lock = threading.Lock()

    def limit_for(self, operation: str) -> RateLimit | None:
        return self._limits.get(operation, self._default)

    async def admit(self, account_id: str, operation: str) -> bool:
        return self.try_take(account_id, operation)

    def try_take(self, account_id: str, operation: str) -> bool:
        limit = self.limit_for(operation)
        if limit is None:
            return True
        now = self._clock()
        key = (account_id, operation)
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) >= MAX_BUCKETS:
                    self._evict(now)
                bucket = self._buckets[key] = _Bucket(limit.burst, now)
            else:
                bucket.tokens = min(limit.burst, bucket.tokens + (now - bucket.updated) * limit.rate)
                bucket.updated = now
            if bucket.tokens < 1:
                return False
            bucket.tokens -= 1
            return True

    def _evict(self, now: float) -> None:
        """Forget buckets that have refilled: a new bucket starts full, so nothing changes for them."""
        for key, bucket in list(self._buckets.items()):
            limit = self.limit_for(key[1])
            if limit is None or bucket.tokens + (now - bucket.updated) * limit.rate >= limit.burst:
                del self._buckets[key]


def parse_rate_limits(
    specs: Iterable[str], base: Mapping[str, tuple[float, float]] | None = None
) -> dict[str, RateLimit]:
    """Limits from `OPERATION=RATE[:BURST]` items (BURST defaults to RATE; `OPERATION=off` removes a
    limit; `*` names the limit of every operation without one) over `base` (the defaults)."""
    limits = {name: RateLimit(*values) for name, values in (DEFAULT_RATE_LIMITS if base is None else base).items()}
    for spec in specs:
        for item in spec.split(","):
            item = item.strip()
            if not item:
                continue
            name, sep, value = item.partition("=")
            name, value = name.strip(), value.strip()
            if not sep or not name:
                raise ValueError(f"rate limit {item!r} is not OPERATION=RATE[:BURST]")
            if value.lower() == "off":
                limits.pop(name, None)
                continue
            rate_text, _, burst_text = value.partition(":")
            try:
                rate = float(rate_text)
                burst = float(burst_text) if burst_text else max(rate, 1.0)
                limits[name] = RateLimit(rate, burst)
            except ValueError as exc:
                raise ValueError(f"rate limit {item!r} is not OPERATION=RATE[:BURST]: {exc}") from None
    return limits


def limits_as_settings(limits: Mapping[str, RateLimit]) -> dict[str, tuple[float, float]]:
    return {name: (limit.rate, limit.burst) for name, limit in limits.items()}

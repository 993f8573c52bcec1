"""Request throttling: a token bucket per account and operation, as ECR throttles its API.

`RateLimiter` is what the doors ask ("may this account call this operation now?"). The in-process
`TokenBuckets` answers for one process: with `dockyard serve --workers N` each worker keeps its own
buckets, so an account gets up to N times the configured rate. `RedisTokenBuckets` (with
--redis-url) keeps the buckets in Redis, so every worker of every node draws from the same ones."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from dockyard.auth.sigv4 import AwsError
from dockyard.auth.sigv4 import Protocol as AwsProtocol

# The seed: "the throttle for the GetAuthorizationToken action is 1 transaction per second (TPS),
# with a 50 TPS burst allowed". Every other operation is unlimited unless configured.
DEFAULT_RATE_LIMITS: dict[str, tuple[float, float]] = {"GetAuthorizationToken": (1.0, 50.0)}
# The key of the limit applied to operations that have none of their own.
ANY_OPERATION = "*"
# A limiter keeps at most this many buckets; idle full ones are dropped first.
MAX_BUCKETS = 100_000


log = logging.getLogger("dockyard.doors.throttle")

THROTTLED_MESSAGE = "Rate exceeded"
# The registry API's answer (the AWS doors' is Throttled.render's).
REGISTRY_THROTTLED_STATUS = 429
REGISTRY_THROTTLED_CODE = "TOOMANYREQUESTS"


class Throttled(Exception):
    """The caller's account is over its rate for this operation: raised once the caller is known,
    answered by each door in its protocol's words."""

    def __init__(self) -> None:
        super().__init__(THROTTLED_MESSAGE)
        self.message = THROTTLED_MESSAGE

    def render(self, protocol: AwsProtocol) -> AwsError:
        """ThrottlingException (AWS JSON: ECR, CloudTrail) or Throttling (AWS Query: IAM, STS)."""
        code = "ThrottlingException" if protocol == "json" else "Throttling"
        return AwsError(code, self.message, 400)


class RateLimiter(Protocol):
    async def admit(self, account_id: str, operation: str) -> bool:
        """Take one token for (account, operation); False means answer "Rate exceeded"."""
        ...

    async def close(self) -> None: ...


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

    async def close(self) -> None:
        return None

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


# One bucket as a Redis hash {tokens, updated}, refilled and taken from atomically. The clock is
# Redis's own (TIME), so nodes whose clocks disagree still share one bucket correctly; an idle
# bucket expires once it would have refilled anyway.
_TAKE_SCRIPT = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens = tonumber(state[1])
local updated = tonumber(state[2])
if tokens == nil or updated == nil then
  tokens = burst
else
  tokens = math.min(burst, tokens + math.max(0, now - updated) * rate)
end
local admitted = 0
if tokens >= 1 then
  tokens = tokens - 1
  admitted = 1
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens), 'updated', string.format('%.6f', now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return admitted
"""
# How often a Redis outage is logged while requests are admitted without throttling.
_OUTAGE_LOG_SECONDS = 60.0


class RedisTokenBuckets:
    """Token buckets in Redis, shared by every process that uses the same Redis (one per cluster).

    When Redis cannot be reached, requests are admitted (and the outage logged): throttling
    protects the service, it should not take the registry down with it."""

    def __init__(self, url: str, limits: Mapping[str, RateLimit], prefix: str = "dockyard:throttle:") -> None:
        from redis.asyncio import Redis

        self._limits = dict(limits)
        self._default = self._limits.pop(ANY_OPERATION, None)
        self._redis = Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self._take = self._redis.register_script(_TAKE_SCRIPT)
        self._prefix = prefix
        self._last_outage_log = 0.0

    def limit_for(self, operation: str) -> RateLimit | None:
        return self._limits.get(operation, self._default)

    async def admit(self, account_id: str, operation: str) -> bool:
        limit = self.limit_for(operation)
        if limit is None:
            return True
        key = f"{self._prefix}{account_id}:{operation}"
        from redis.exceptions import RedisError  # loaded by __init__ already: only with --redis-url

        try:
            return bool(await self._take(keys=[key], args=[limit.rate, limit.burst]))
        except (OSError, ConnectionError, TimeoutError, RedisError) as exc:
            now = time.monotonic()
            if now - self._last_outage_log >= _OUTAGE_LOG_SECONDS:
                self._last_outage_log = now
                log.warning("throttling is off while Redis is unreachable: %s", exc)
            return True

    async def close(self) -> None:
        await self._redis.aclose()


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

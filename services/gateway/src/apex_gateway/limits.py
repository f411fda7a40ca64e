"""Per-user limits shared by every gateway: the connection cap and the frame rate are kept
in Redis, so N gateways do not multiply them.

- Connections: one sorted set per user (``apex:ws:conns:<user>``), a member per open
  socket scored with its lease's end (Redis time). A gateway renews its sockets' leases
  every third of ``lease_s``; a killed gateway's sockets stop counting once their leases
  end. Admission is one script: drop ended leases, count, add when under the cap.
- Frame rate: a token bucket per user (GCRA: one key holding the time the bucket is next
  full) in one script on Redis' clock, so every gateway draws from the same bucket.

When Redis does not answer, each limit falls back to this process's own count (the
registry's sockets of the user, a local bucket): never to no limit. The fallback is
visible: ``apex_gateway_shared_limits_up`` drops to 0, each degraded decision counts in
``apex_gateway_shared_limits_degraded_total{limit}``, and a warning is logged when the
gateway enters and leaves the degraded state.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions
from prometheus_client import Counter, Gauge

from apex_gateway.ratelimit import TokenBucket
from apex_runtime import CircuitBreaker, CircuitOpen

log = logging.getLogger(__name__)
REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)

# KEYS[1] the user's set; ARGV: member, cap, lease ms. Returns 1 when admitted.
_ACQUIRE = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
  return 1
end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) * 2)
return 1
"""

# KEYS: sets; ARGV: lease ms, then (key index, member) pairs. Renews the leases given.
_RENEW = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local lease = tonumber(ARGV[1])
for i = 2, #ARGV, 2 do
  local key = KEYS[tonumber(ARGV[i])]
  redis.call('ZADD', key, now + lease, ARGV[i + 1])
  redis.call('PEXPIRE', key, lease * 2)
end
return 1
"""

# GCRA. KEYS[1] the user's bucket; ARGV: ms per frame, burst. Returns 0 when allowed,
# otherwise the milliseconds until one more frame is allowed.
_TAKE = """
local t = redis.call('TIME')
local now = t[1] * 1000 + t[2] / 1000
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allow_at = tat + interval - burst * interval
if now < allow_at then
  return math.ceil(allow_at - now)
end
tat = tat + interval
redis.call('SET', KEYS[1], tostring(tat), 'PX', math.ceil(tat - now) + 1000)
return 0
"""


def _conns_key(user_id: str) -> str:
    return f"apex:ws:conns:{user_id}"


def _rate_key(user_id: str) -> str:
    return f"apex:ws:rate:{user_id}"


class UserLimits:
    """The per-user connection cap and frame rate across gateways (see the module)."""

    def __init__(
        self,
        redis: aioredis.Redis,
        breaker: CircuitBreaker,
        *,
        max_connections: int,
        rate_per_s: float,
        burst: int,
        lease_s: float,
        local_connections: Callable[[str], int],
        degraded: Counter | None = None,
        shared_up: Gauge | None = None,
    ) -> None:
        self._redis = redis
        self._breaker = breaker
        self.max_connections = max_connections
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.lease_s = lease_s
        self._local_connections = local_connections
        self._local_buckets: dict[str, TokenBucket] = {}
        self._degraded_metric = degraded
        self._shared_up = shared_up
        self.degraded = False
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(_RENEW)
        self._take = redis.register_script(_TAKE)
        if shared_up is not None:
            shared_up.set(1)

    # --- connections ----------------------------------------------------------------------

    async def admit(self, user_id: str, member: str) -> bool:
        """True when the user may open one more socket (``member`` names it); the slot is
        held until ``release`` or until its lease ends without renewal."""
        lease_ms = int(self.lease_s * 1000)
        try:
            admitted = await self._shared(
                lambda: self._acquire(
                    keys=[_conns_key(user_id)], args=[member, self.max_connections, lease_ms]
                )
            )
        except (*REDIS_ERRORS, CircuitOpen) as exc:
            self._degrade("connections", exc)
            return self._local_connections(user_id) < self.max_connections
        return bool(admitted)

    async def release(self, user_id: str, member: str) -> None:
        try:
            await self._shared(lambda: self._redis.zrem(_conns_key(user_id), member))
        except (*REDIS_ERRORS, CircuitOpen) as exc:
            # its lease ends by itself within lease_s
            self._degrade("connections", exc)

    async def renew(self, held: Iterable[tuple[str, str]]) -> None:
        """Renews the leases of this gateway's sockets, (user_id, member) pairs; also puts
        back the sockets admitted while Redis was away, so they count again."""
        pairs = list(held)
        for start in range(0, len(pairs), 500):
            chunk = pairs[start : start + 500]
            keys = list(dict.fromkeys(_conns_key(user) for user, _ in chunk))
            index = {key: n + 1 for n, key in enumerate(keys)}
            args: list[Any] = [int(self.lease_s * 1000)]
            for user, member in chunk:
                args += [index[_conns_key(user)], member]
            try:
                await self._shared(functools.partial(self._renew, keys=keys, args=args))
            except (*REDIS_ERRORS, CircuitOpen) as exc:
                self._degrade("connections", exc)
                return

    # --- frames -------------------------------------------------------------------------

    async def take_frame(self, user_id: str) -> int:
        """0 when the user may send one more frame now, otherwise the milliseconds to wait."""
        interval_ms = 1000.0 / self.rate_per_s
        try:
            wait = await self._shared(
                lambda: self._take(keys=[_rate_key(user_id)], args=[interval_ms, self.burst])
            )
        except (*REDIS_ERRORS, CircuitOpen) as exc:
            self._degrade("frame_rate", exc)
            return self._local_bucket(user_id).take()
        return int(wait)

    def _local_bucket(self, user_id: str) -> TokenBucket:
        bucket = self._local_buckets.get(user_id)
        if bucket is None:
            if len(self._local_buckets) > 50_000:
                self._local_buckets.clear()
            bucket = self._local_buckets[user_id] = TokenBucket(self.rate_per_s, self.burst)
        return bucket

    # --- the degraded state ----------------------------------------------------------------

    async def _shared(self, call: Callable[[], Any]) -> Any:
        result = await self._breaker.call(call, REDIS_ERRORS)
        if self.degraded:
            self.degraded = False
            if self._shared_up is not None:
                self._shared_up.set(1)
            log.warning("per-user limits are shared across gateways again (Redis answers)")
        return result

    def _degrade(self, limit: str, exc: BaseException) -> None:
        if self._degraded_metric is not None:
            self._degraded_metric.labels(limit).inc()
        if not self.degraded:
            self.degraded = True
            if self._shared_up is not None:
                self._shared_up.set(0)
            log.warning(
                "per-user limits fall back to this gateway's own counts: Redis does not answer (%r)", exc
            )

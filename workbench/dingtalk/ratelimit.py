"""Per-app, per-API rate limiting, shared by every process of the workbench through Redis.

DingTalk counts calls per app per API in one-second windows (reference/dingtalk.md §8.1: 20 QPS on the standard
edition) and answers a call over the limit with 90018 / HTTP 403. The limiter guarantees that no more than `qps`
calls of one API start in ANY window of `WINDOW` seconds, across processes: a sliding log of the calls granted
(a Redis sorted set, scored by Redis's own clock so that every process agrees on the time; without Redis the same
log in this process under a lock).

`WINDOW` is one second plus a 40 ms guard. Between our grant and DingTalk's count of the arrival lie our thread
scheduling, the network and DingTalk's gateway; if call N waited 40 ms longer on that path than call N+qps, a
window of exactly 1 s would let DingTalk see qps+1 calls in its one second. 40 ms covers the jitter seen on
loopback under load and a typical mainland RTT variation, and costs 1 - 1/1.04 ≈ 4% of the limit (steady state
0.96 of qps, above the 0.95 target).

Where an API's limit is high (≥ 200/s: never DingTalk's standard 20/s, but a lifted or negotiated one), one Redis
round trip per call became a fifth of a full sync's CPU. There a process leases several grants per round trip and
uses them within `LEASE_TTL` or drops them. The lease is logged at the latest time its calls may start (now +
`LEASE_TTL`), so the guarantee above holds as it stands; its grants only hold the budget `LEASE_TTL` longer. A
lease is at most 1% of the limit and `MAX_LEASE`, and follows demand: it doubles when a lease was used up and
shrinks to what was used when one lapsed, so a process calling slowly does not log grants it never uses.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

import redis as redis_lib

WINDOW = 1.04  # seconds: DingTalk's 1 s window plus the 40 ms guard explained above
_MIN_SLEEP = 0.001
LEASE_SHARE = 0.01  # of an API's limit, the most one lease may take (below 200/s: 1, no lease)
MAX_LEASE = 32
LEASE_TTL = 0.05  # seconds a leased grant may wait for its call

# KEYS[1] the API's log; ARGV: limit, window (µs), a unique member prefix, grants wanted, their TTL (µs). Returns
# the number of grants logged (1 to wanted), or minus the µs to wait when there is none free. Several grants are
# scored at now + TTL, the latest time their calls may start.
_SLIDING_LOG = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local free = limit - redis.call('ZCARD', KEYS[1])
if free > 0 then
  local n = math.min(tonumber(ARGV[4]), free)
  local at = now
  if n > 1 then at = now + tonumber(ARGV[5]) end
  local members = {}
  for i = 1, n do
    members[2 * i - 1] = at
    members[2 * i] = ARGV[3] .. '.' .. i
  end
  redis.call('ZADD', KEYS[1], unpack(members))
  redis.call('PEXPIRE', KEYS[1], math.ceil((window + tonumber(ARGV[5])) / 1000) + 1000)
  return n
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return -math.max(1, tonumber(oldest[2]) + window - now)
"""


@dataclass
class _Lease:
    """Grants taken from Redis ahead of their calls, by one process for one API."""

    left: int = 0
    lapses: float = 0.0  # monotonic time after which the grants left are dropped
    size: int = 1  # grants to ask for next time
    used: int = 0  # of the current lease


def admit(log: deque[float], now: float, limit: int, window: float = WINDOW) -> float:
    """The sliding-log step on one API's log of grant times: 0.0 if a call may start at `now` (and record it),
    else the seconds until the oldest grant leaves the window. The Lua script above is the same algorithm."""
    while log and log[0] <= now - window:
        log.popleft()
    if len(log) < limit:
        log.append(now)
        return 0.0
    return log[0] + window - now


class RateLimiter:
    """Blocks each call until DingTalk's per-app, per-API limit allows it.

    `app` names the app in the Redis keys (the gateway passes "<app key>@<DingTalk host>"); `default_qps` applies
    to every API not in `per_api` (keyed by path, e.g. "/topapi/v2/user/list").
    """

    def __init__(
        self,
        redis: redis_lib.Redis | None,
        app: str,
        default_qps: int,
        per_api: Mapping[str, int] | None = None,
    ) -> None:
        self._redis = redis
        self._prefix = f"dingtalk:ratelimit:{app}:"
        self._default_qps = default_qps
        self._per_api = dict(per_api or {})
        self._script = redis.register_script(_SLIDING_LOG) if redis is not None else None
        self._logs: dict[str, deque[float]] = {}
        self._leases: dict[str, _Lease] = {}
        self._lock = threading.Lock()
        # Grants must be distinct members of the sorted set across processes: this limiter's id plus a count.
        self._grant_prefix = uuid.uuid4().hex + ":"
        self._grants = itertools.count()

    def limit(self, api: str) -> int:
        """Calls per second allowed for `api`."""
        return self._per_api.get(api, self._default_qps)

    def try_acquire(self, api: str) -> float:
        """Take a slot for `api` if one is free: 0.0 when granted, else the seconds to wait before asking again."""
        limit = self.limit(api)
        if self._script is None:
            with self._lock:
                log = self._logs.setdefault(api, deque())
                return admit(log, time.monotonic(), limit)
        cap = max(1, min(MAX_LEASE, int(limit * LEASE_SHARE)))
        with self._lock:
            lease = self._leases.setdefault(api, _Lease())
            now = time.monotonic()
            if lease.left > 0 and now < lease.lapses:
                lease.left -= 1
                lease.used += 1
                return 0.0
            # The last lease was used up (ask for more) or lapsed with grants left (ask for what was used).
            lease.size = min(cap, lease.size * 2 if lease.left == 0 else max(1, lease.used))
            wanted = lease.size
        asked = time.monotonic()  # Redis scores the grants after this, so lapsing from here is never late
        granted = int(
            self._script(
                keys=[self._prefix + api],
                args=[
                    limit,
                    int(WINDOW * 1e6),
                    f"{self._grant_prefix}{next(self._grants)}",
                    wanted,
                    int(LEASE_TTL * 1e6),
                ],
            )
        )
        if granted < 0:
            return -granted / 1e6
        with self._lock:
            lease.left, lease.lapses, lease.used = granted - 1, asked + LEASE_TTL, 1
        return 0.0

    def acquire(self, api: str) -> None:
        """Block until a call to `api` is allowed."""
        while (wait := self.try_acquire(api)) > 0:
            time.sleep(max(wait, _MIN_SLEEP))

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
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping

import redis as redis_lib

WINDOW = 1.04  # seconds: DingTalk's 1 s window plus the 40 ms guard explained above
_MIN_SLEEP = 0.001

# KEYS[1] the API's log; ARGV: limit, window (µs), a unique member. Returns 0 when granted, else µs to wait.
_SLIDING_LOG = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000) + 1000)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + window - now)
"""


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
        self._lock = threading.Lock()
        # Grants must be distinct members of the sorted set across processes: this limiter's id plus a count.
        self._grant_prefix = uuid.uuid4().hex + ":"
        self._grants = itertools.count()

    def limit(self, api: str) -> int:
        """Calls per second allowed for `api`."""
        return self._per_api.get(api, self._default_qps)

    def try_acquire(self, api: str) -> float:
        """Take a slot for `api` if one is free: 0.0 when granted, else the seconds to wait before asking again."""
        if self._script is not None:
            wait_us = self._script(
                keys=[self._prefix + api],
                args=[self.limit(api), int(WINDOW * 1e6), f"{self._grant_prefix}{next(self._grants)}"],
            )
            return int(wait_us) / 1e6
        with self._lock:
            log = self._logs.setdefault(api, deque())
            return admit(log, time.monotonic(), self.limit(api))

    def acquire(self, api: str) -> None:
        """Block until a call to `api` is allowed."""
        while (wait := self.try_acquire(api)) > 0:
            time.sleep(max(wait, _MIN_SLEEP))

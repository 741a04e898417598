"""The app access token: fetched once, shared by every process through Redis, refreshed before it expires.

DingTalk's app token lives 7,200 s and "repeated calls within validity return the same token and renew it"
(reference/dingtalk.md §1). Fetching it on every call would waste a call per call and could be throttled, so
it is cached with its expiry and refreshed a margin ahead of it (5 minutes, or a fifth of the lifetime for the
short-lived tokens of a test sandbox). Only one caller refreshes at a time: a threading lock within a process and
a Redis lock (SET NX PX, then a re-check of the cache) across processes; the others wait for the cache to fill.
While a token is in its refresh margin it is still valid, so callers that find a refresh under way keep using it.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import redis as redis_lib

from workbench.dingtalk.errors import DingTalkError

log = logging.getLogger(__name__)

REFRESH_MARGIN = 300.0  # seconds before expiry; DingTalk's guide says ~10 min, its stream SDK 5 min
LOCK_TTL_MS = 30_000  # a refresh that takes longer (a dead process) is taken over by the next caller
POLL_INTERVAL = 0.05

# Delete the cached token only if it is still the one that was rejected, so a fresh one is never thrown away.
_COMPARE_AND_DELETE = """
if redis.call('HGET', KEYS[1], 'token') == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True)
class Token:
    value: str
    refresh_at: float  # epoch seconds (wall clock: shared by processes and machines)
    expires_at: float

    @classmethod
    def issued(cls, value: str, lifetime: float, now: float) -> Token:
        margin = min(REFRESH_MARGIN, lifetime / 5)
        return cls(value, now + lifetime - margin, now + lifetime)


Fetch = Callable[[], tuple[str, float]]  # returns (token, lifetime in seconds)


class AppTokenProvider:
    """Hands out the app's access token; `fetch` asks DingTalk for a new one (with the gateway's retries).

    `app` names the app in the Redis keys (the gateway passes "<app key>@<DingTalk host>").
    """

    def __init__(self, fetch: Fetch, *, app: str, redis: redis_lib.Redis | None = None) -> None:
        self._fetch = fetch
        self._redis = redis
        self._key = f"dingtalk:token:{app}"
        self._lock_key = f"{self._key}:lock"
        self._local: Token | None = None
        self._lock = threading.Lock()
        if redis is not None:
            self._compare_and_delete = redis.register_script(_COMPARE_AND_DELETE)
            self._release = redis.register_script(_RELEASE_LOCK)

    def get(self) -> str:
        """A valid token, refreshing it if it is due."""
        now = time.time()
        token = self._cached(now)
        if token is not None and now < token.refresh_at:
            return token.value
        if token is not None and now < token.expires_at:
            # Due but still valid: refresh if nobody else is; otherwise keep using it meanwhile.
            if not self._lock.acquire(blocking=False):
                return token.value
            try:
                return self._refresh(blocking=False, current=token).value
            except DingTalkError as exc:  # DingTalk is having a bad moment; the token still works for a while
                log.warning("dingtalk token refresh failed (%s); using the current token", exc.code)
                return token.value
            finally:
                self._lock.release()
        with self._lock:
            return self._refresh(blocking=True, current=None).value

    def invalidate(self, token: str) -> None:
        """Forget `token` after DingTalk rejected it, unless it has already been replaced."""
        with self._lock:
            if self._local is not None and self._local.value == token:
                self._local = None
        if self._redis is not None:
            self._compare_and_delete(keys=[self._key], args=[token])

    def _cached(self, now: float) -> Token | None:
        token = self._local
        if token is None or now >= token.refresh_at:
            token = self._load_shared() or token
            self._local = token
        return token

    def _refresh(self, *, blocking: bool, current: Token | None) -> Token:
        """Called under the thread lock. Re-checks the cache, then fetches, holding the Redis lock if shared."""
        while True:
            now = time.time()
            token = self._cached(now)
            if token is not None and now < token.refresh_at:
                return token  # another thread or process refreshed it while we waited
            if self._redis is None:
                return self._fetch_and_store()
            owner = uuid.uuid4().hex
            if self._redis.set(self._lock_key, owner, nx=True, px=LOCK_TTL_MS):
                try:
                    token = self._load_shared()
                    if token is not None and time.time() < token.refresh_at:
                        self._local = token
                        return token
                    return self._fetch_and_store()
                finally:
                    self._release(keys=[self._lock_key], args=[owner])
            if not blocking and current is not None:
                return current  # another process is refreshing; the current token is still valid
            time.sleep(POLL_INTERVAL)

    def _fetch_and_store(self) -> Token:
        started = time.time()  # the lifetime counts from before the request: err on the early side
        value, lifetime = self._fetch()
        token = Token.issued(value, lifetime, started)
        self._local = token
        if self._redis is not None:
            ttl_ms = max(1, int((token.expires_at - time.time()) * 1000))
            mapping = {"token": token.value, "refresh_at": token.refresh_at, "expires_at": token.expires_at}
            with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(self._key, mapping=mapping).pexpire(self._key, ttl_ms).execute()
        log.info("dingtalk token refreshed", extra={"api": "/v1.0/oauth2/accessToken"})
        return token

    def _load_shared(self) -> Token | None:
        if self._redis is None:
            return None
        raw = {_text(k): _text(v) for k, v in self._redis.hgetall(self._key).items()}
        if not {"token", "refresh_at", "expires_at"} <= raw.keys():
            return None
        return Token(raw["token"], float(raw["refresh_at"]), float(raw["expires_at"]))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value

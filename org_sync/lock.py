"""The per-corp single-run lock: only one full sync or reconciliation of a corp runs at a time.

Redis `SET NX EX` when Redis is configured (production, several workers), else a row in `org_sync_locks`
(the embedded SQLite mode). The holder keeps it alive from a heartbeat thread, so a lock outlives its holder by
at most `LOCK_TTL`; a holder on this host whose process is gone is taken over at once.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from org_sync.staging import OrgSyncLock
from workbench.db import utcnow

log = logging.getLogger(__name__)

LOCK_TTL = 120  # seconds; refreshed by a heartbeat, so only a dead holder's lock expires


class SyncLocked(RuntimeError):
    """Another full sync or reconciliation of this corp is running."""


class CorpLock:
    """One full sync per corp: Redis `SET NX EX` when Redis is configured, else a row in `org_sync_locks`.

    The holder refreshes the lock from a heartbeat thread, so it expires `ttl` seconds after its holder dies. A
    holder on this host whose process is gone (a killed worker) is taken over at once, so a restarted worker
    resumes without waiting for the expiry.
    """

    _RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
    _REFRESH = (
        "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('expire', KEYS[1], ARGV[2]) end return 0"
    )
    _TAKE_OVER = (
        "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('set', KEYS[1], ARGV[2], 'EX', ARGV[3]) "
        "end return false"
    )

    def __init__(self, corp_id: str, engine: sa.Engine, redis: Any | None, ttl: int = LOCK_TTL) -> None:
        self.corp_id, self.engine, self.redis, self.ttl = corp_id, engine, redis, ttl
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"[:64]
        self.key = f"org_sync:lock:{corp_id}"
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def acquire(self) -> None:
        if not (self._try_redis() if self.redis is not None else self._try_db()):
            raise SyncLocked(f"a full sync of {self.corp_id} is already running")
        self._heartbeat = threading.Thread(target=self._beat, name="org-sync-lock", daemon=True)
        self._heartbeat.start()

    def _try_redis(self) -> bool:
        if self.redis.set(self.key, self.token, nx=True, ex=self.ttl):
            return True
        holder = self.redis.get(self.key)
        holder = holder.decode() if isinstance(holder, bytes) else holder
        return bool(
            holder
            and _holder_dead(holder)
            and self.redis.eval(self._TAKE_OVER, 1, self.key, holder, self.token, self.ttl)
        )

    def _try_db(self) -> bool:
        table = OrgSyncLock.__table__
        expires = utcnow() + timedelta(seconds=self.ttl)
        try:
            with self.engine.begin() as conn:
                conn.execute(table.insert().values(corp_id=self.corp_id, holder=self.token, expires_at=expires))
            return True
        except IntegrityError:
            pass
        with self.engine.begin() as conn:  # taken: take it over only if its holder is dead or expired
            holder = conn.execute(sa.select(table.c.holder).where(table.c.corp_id == self.corp_id)).scalar()
            stale = table.c.expires_at < utcnow()
            if holder and _holder_dead(holder):
                stale = sa.or_(stale, table.c.holder == holder)
            return bool(
                conn.execute(
                    table.update()
                    .where(table.c.corp_id == self.corp_id, stale)
                    .values(holder=self.token, expires_at=expires)
                ).rowcount
            )

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl / 4):
            try:
                self.refresh()
            except Exception:  # e.g. SQLite busy during the apply; the next beat tries again
                log.warning("could not refresh the org sync lock of %s", self.corp_id, exc_info=True)

    def refresh(self) -> None:
        if self.redis is not None:
            self.redis.eval(self._REFRESH, 1, self.key, self.token, self.ttl)
            return
        table = OrgSyncLock.__table__
        with self.engine.begin() as conn:
            conn.execute(
                table.update()
                .where(table.c.corp_id == self.corp_id, table.c.holder == self.token)
                .values(expires_at=utcnow() + timedelta(seconds=self.ttl))
            )

    def release(self) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
        if self.redis is not None:
            self.redis.eval(self._RELEASE, 1, self.key, self.token)
            return
        table = OrgSyncLock.__table__
        with self.engine.begin() as conn:
            conn.execute(table.delete().where(table.c.corp_id == self.corp_id, table.c.holder == self.token))


def _holder_dead(holder: str) -> bool:
    """True when the lock's holder ran on this host and its process no longer exists."""
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False

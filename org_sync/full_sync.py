"""Full sync and reconciliation: fetch the whole DingTalk tree into staging, then apply the difference at once.

Fetch (resumable): breadth-first from dept 1, one `listsub` per department and `user/list` pages of 100 per
department, each API on its own thread pool so that the gateway's per-API limiter is the only brake. Results
stream into the staging tables (org_sync/staging.py) in batches; each batch commits the rows together with the
checkpoint flags they complete (a department's children with its `listed` flag, a page's members with its
cursor), so a run killed at any point resumes exactly from what is committed, without duplicates or losses.

Apply (atomic): one transaction diffs staging against the live tables — creates, renames, moves (paths of whole
subtrees recomputed), other updates, soft deletes and restores of nodes; creates, updates, soft deletes and
restores of members; added, removed and changed memberships — writes the change log and finishes the run row.
Readers see the old tree or the new one. Nodes (≤ ~40,000 a province) are diffed in Python, members and
memberships (~300,000) set-based in SQL so they are never loaded into memory. Before anything is written the
deletion guard compares what would be soft-deleted with `max_delete_share` of what is live and refuses the run.

Only one full sync or reconciliation runs per corp at a time (a Redis lock, or a row in `org_sync_locks`).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from org_sync.apply import tree_lock_key
from org_sync.classify import INTERNAL, classify, load_rules
from org_sync.fetch import DEPT_GET, LISTSUB, USER_LIST, ContactsFetcher, UserPage
from org_sync.models import OrgChange, OrgMember, OrgMembership, OrgNode, OrgSyncRun
from org_sync.staging import OrgStageDept, OrgStageMembership, OrgStageUser, OrgSyncLock
from workbench.db import get_db, utcnow
from workbench.dingtalk import get_gateway
from workbench.queue import get_redis

log = logging.getLogger(__name__)

ROOT_DEPT = 1
# department/get for: "units" (nodes whose name or position says unit: ~4% of calls), "all", or "none".
DEPT_DETAIL = "units"
WORKERS_PER_API = 8  # threads per API: enough to keep each API's 20/s budget busy at loopback latencies
LOCK_TTL = 120  # seconds; refreshed by a heartbeat, so only a dead holder's lock expires
FLUSH_ROWS = 1000  # staged rows per batch
FLUSH_SECONDS = 1.0
MEMBER_FIELDS = ("unionid", "name", "title", "job_number", "mobile_masked", "active", "is_admin", "is_boss")

Stage = OrgStageDept.__table__
StageUser = OrgStageUser.__table__
StageMembership = OrgStageMembership.__table__
Nodes = OrgNode.__table__
Members = OrgMember.__table__
Memberships = OrgMembership.__table__
Changes = OrgChange.__table__
Runs = OrgSyncRun.__table__


class SyncLocked(RuntimeError):
    """Another full sync or reconciliation of this corp is running."""


@dataclass
class Progress:
    """What the live progress line shows."""

    depts_known: int
    depts_listed: int
    depts_paged: int
    people: int  # (member, department) positions staged
    calls: int
    calls_per_s: float
    throttles: int
    retries: int
    eta_s: float | None


@dataclass
class SyncResult:
    run_id: int
    state: str  # succeeded | refused
    counts: dict[str, Any]
    api_calls: dict[str, Any]
    duration_s: float


@dataclass
class _Batch:
    """Results waiting to be committed to staging together with the checkpoint flags they complete."""

    depts: list[dict] = field(default_factory=list)
    listed: list[int] = field(default_factory=list)
    paged: list[int] = field(default_factory=list)
    cursors: list[dict] = field(default_factory=list)
    details: list[dict] = field(default_factory=list)
    users: list[dict] = field(default_factory=list)
    memberships: list[dict] = field(default_factory=list)

    def size(self) -> int:
        return len(self.depts) + len(self.users) + len(self.memberships) + len(self.details) + len(self.listed)


# --- the lock ---------------------------------------------------------------------------------------------------


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


# --- entry point ------------------------------------------------------------------------------------------------


def alert_refused(run_id: int, corp_id: str, reason: str) -> None:
    """Hook for the deletion guard's alert. For now an ERROR log line (and the run row says `refused`); the bot
    issue will push it to the admins' chat from here."""
    log.error("org sync run %s of %s refused: %s", run_id, corp_id, reason, extra={"run_id": run_id})


def run_full_sync(
    corp_id: str | None = None,
    *,
    kind: str = "full",
    resume: bool = True,
    progress: Callable[[Progress], None] | None = None,
    max_delete_share: float | None = None,
    workers: int = WORKERS_PER_API,
    detail: str = DEPT_DETAIL,
    fail_after_calls: int | None = None,
) -> SyncResult:
    """Fetch the corp's whole tree and apply it (inside an app context). `resume` continues the latest
    unfinished run of this corp and kind; `fail_after_calls` is a test hook that raises `InjectedFault`."""
    corp_id = corp_id or current_app.config["SETTINGS"].dingtalk.corp_id
    engine = get_db().engine
    lock = CorpLock(corp_id, engine, get_redis())
    lock.acquire()
    try:
        run_id, prior_calls = _open_run(engine, corp_id, kind, resume)
        started = time.monotonic()
        fetcher = ContactsFetcher(get_gateway(), fail_after_calls=fail_after_calls)
        with fetcher:
            try:
                walker = _Walker(engine, run_id, fetcher, prior_calls, progress, workers, detail)
                walker.run()
            except BaseException as exc:
                _record_interruption(engine, run_id, _api_calls(fetcher, prior_calls), exc)
                raise
        api_calls = _api_calls(fetcher, prior_calls)
        share = (
            current_app.config["SETTINGS"].org_sync_max_delete_share if max_delete_share is None else max_delete_share
        )
        return _apply(engine, run_id, corp_id, api_calls, share, time.monotonic() - started, prior_calls)
    finally:
        lock.release()


def _api_calls(fetcher: ContactsFetcher, prior: dict[str, Any]) -> dict[str, Any]:
    """This run's calls so far: what earlier sessions of a resumed run made plus this session's."""
    by_api = dict(prior.get("by_api") or {})
    for api, n in fetcher.calls.items():
        by_api[api] = by_api.get(api, 0) + n
    return {
        "by_api": by_api,
        "total": sum(by_api.values()),
        "throttles": prior.get("throttles", 0) + fetcher.throttles,
        "retries": prior.get("retries", 0) + fetcher.retries,
        "sessions": prior.get("sessions", 0) + 1,
    }


def _open_run(engine: sa.Engine, corp_id: str, kind: str, resume: bool) -> tuple[int, dict[str, Any]]:
    """The run to work on: the latest unfinished one of this corp and kind when resuming, else a new one."""
    with engine.begin() as conn:
        unfinished = conn.execute(
            sa.select(Runs.c.id, Runs.c.api_calls)
            .where(Runs.c.corp_id == corp_id, Runs.c.kind == kind, Runs.c.state == "running")
            .order_by(Runs.c.id.desc())
        ).all()
        if resume and unfinished:
            run_id, api_calls = unfinished[0]
            log.info("resuming org sync run %s of %s", run_id, corp_id)
            return run_id, dict(api_calls or {})
        for old_id, _ in unfinished:  # abandoned by a fresh start: its staging is of no further use
            _drop_staging(conn, old_id)
            conn.execute(
                Runs.update()
                .where(Runs.c.id == old_id)
                .values(state="failed", finished_at=utcnow(), error="abandoned: a new run started without resume")
            )
        run_id = conn.execute(
            Runs.insert()
            .values(corp_id=corp_id, kind=kind, state="running", counts={}, api_calls={}, checkpoint={})
            .returning(Runs.c.id)
        ).scalar_one()
        conn.execute(
            Stage.insert().values(
                run_id=run_id,
                dept_id=ROOT_DEPT,
                parent_dept_id=None,
                name="",
                sort_order=0,
                has_order=False,
                depth=0,
                code=None,
                wants_detail=True,  # the root's name comes only from department/get
                listed=False,
                paged=False,
                cursor=0,
            )
        )
    return run_id, {}


def _record_interruption(engine: sa.Engine, run_id: int, api_calls: dict[str, Any], exc: BaseException) -> None:
    """The run stays `running` (to be resumed) with what it cost so far and why it stopped."""
    try:
        with engine.begin() as conn:
            conn.execute(
                Runs.update()
                .where(Runs.c.id == run_id)
                .values(api_calls=api_calls, error=f"interrupted: {type(exc).__name__}: {exc}"[:1000])
            )
    except Exception:  # the database itself may be what failed
        log.exception("could not record the interruption of org sync run %s", run_id)


def _drop_staging(conn: Connection, run_id: int) -> None:
    for table in (StageMembership, StageUser, Stage):
        conn.execute(table.delete().where(table.c.run_id == run_id))


def _insert_ignore(conn: Connection, table: sa.Table, rows: list[dict]) -> None:
    """Bulk insert skipping rows already staged (a user listed by several departments, a re-fetched page)."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    conn.execute(insert(table).on_conflict_do_nothing(), rows)


# --- fetch ------------------------------------------------------------------------------------------------------


class _Walker:
    """The breadth-first walk: three queues (list, page, detail), one thread pool per API, batched commits."""

    def __init__(
        self,
        engine: sa.Engine,
        run_id: int,
        fetcher: ContactsFetcher,
        prior_calls: dict[str, Any],
        progress: Callable[[Progress], None] | None,
        workers: int,
        detail: str,
    ) -> None:
        self.engine, self.run_id, self.fetcher, self.prior_calls = engine, run_id, fetcher, prior_calls
        self.progress, self.workers, self.detail = progress, max(1, workers), detail
        self.rules = load_rules()
        self.to_list: deque[int] = deque()
        self.to_page: deque[tuple[int, int]] = deque()
        self.to_detail: deque[int] = deque()
        self.level: dict[int, str] = {}  # provisional, by name: decides which departments get department/get
        self.depth: dict[int, int] = {}
        self.known = self.listed = self.paged = self.people = 0
        self.batch = _Batch()
        self.started = time.monotonic()
        self.calls_at_start = sum((prior_calls.get("by_api") or {}).values())

    def _load_checkpoint(self) -> None:
        """Rebuild the queues from what staging holds (a fresh run holds only the root)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    Stage.c.dept_id,
                    Stage.c.parent_dept_id,
                    Stage.c.name,
                    Stage.c.depth,
                    Stage.c.code,
                    Stage.c.wants_detail,
                    Stage.c.listed,
                    Stage.c.paged,
                    Stage.c.cursor,
                )
                .where(Stage.c.run_id == self.run_id)
                .order_by(Stage.c.depth, Stage.c.dept_id)
            )
            for dept_id, parent, name, depth, code, wants_detail, listed, paged, cursor in rows:
                self.known += 1
                self.depth[dept_id] = depth
                self.level[dept_id] = classify(name, code, self.level.get(parent), depth, rules=self.rules).level
                if listed:
                    self.listed += 1
                else:
                    self.to_list.append(dept_id)
                if paged:
                    self.paged += 1
                else:
                    self.to_page.append((dept_id, cursor))
                if wants_detail:
                    self.to_detail.append(dept_id)
            self.people = conn.execute(
                sa.select(sa.func.count()).select_from(StageMembership).where(StageMembership.c.run_id == self.run_id)
            ).scalar_one()

    def run(self) -> None:
        self._load_checkpoint()
        pools = {
            api: ThreadPoolExecutor(self.workers, thread_name_prefix=f"org-sync{api}")
            for api in (LISTSUB, USER_LIST, DEPT_GET)
        }
        inflight: dict[Future, tuple[str, Any]] = {}
        per_api = dict.fromkeys(pools, 0)
        cap = self.workers * 2  # queued per pool: keeps every thread busy without queueing the whole tree
        last_flush = last_progress = time.monotonic()
        try:
            while self.to_list or self.to_page or self.to_detail or inflight:
                for api, queue, call in (
                    (LISTSUB, self.to_list, self.fetcher.children),
                    (USER_LIST, self.to_page, lambda arg: self.fetcher.user_page(*arg)),
                    (DEPT_GET, self.to_detail, self.fetcher.detail),
                ):
                    while queue and per_api[api] < cap:
                        arg = queue.popleft()
                        inflight[pools[api].submit(call, arg)] = (api, arg)
                        per_api[api] += 1
                done, _ = wait(list(inflight), timeout=0.5, return_when=FIRST_COMPLETED)
                for future in done:
                    api, arg = inflight.pop(future)
                    per_api[api] -= 1
                    result = future.result()  # an error stops the walk; committed work is kept for resume
                    if api == LISTSUB:
                        self._on_children(arg, result)
                    elif api == USER_LIST:
                        self._on_page(arg[0], result)
                    else:
                        self._on_detail(arg, result)
                now = time.monotonic()
                if self.batch.size() >= FLUSH_ROWS or now - last_flush >= FLUSH_SECONDS:
                    self._flush()
                    last_flush = now
                if self.progress and now - last_progress >= 0.5:
                    self.progress(self.snapshot())
                    last_progress = now
            self._flush()
        except BaseException:
            for future in inflight:
                future.cancel()
            self._flush_quietly()
            raise
        finally:
            for pool in pools.values():
                pool.shutdown(wait=True, cancel_futures=True)
        if self.progress:
            self.progress(self.snapshot())

    def _flush_quietly(self) -> None:
        """On the way out: commit what was fully handled; results never handled are simply fetched again."""
        try:
            self._flush()
        except Exception:
            log.exception("could not commit the last staged batch of org sync run %s", self.run_id)

    def _wants_detail(self, level: str) -> bool:
        return self.detail == "all" or (self.detail == "units" and level != INTERNAL)

    def _on_children(self, parent_id: int, children: list[dict]) -> None:
        depth = self.depth[parent_id] + 1
        parent_level = self.level.get(parent_id)
        for index, child in enumerate(children):
            dept_id = int(child["dept_id"])
            if dept_id in self.depth:  # already staged (a resumed run re-listing a parent)
                continue
            level = classify(child.get("name") or "", None, parent_level, depth, rules=self.rules).level
            wants = self._wants_detail(level)
            self.depth[dept_id], self.level[dept_id] = depth, level
            self.batch.depts.append(
                {
                    "run_id": self.run_id,
                    "dept_id": dept_id,
                    "parent_dept_id": parent_id,
                    "name": child.get("name") or "",
                    "sort_order": index,
                    "has_order": False,
                    "depth": depth,
                    "code": None,
                    "wants_detail": wants,
                    "listed": False,
                    "paged": False,
                    "cursor": 0,
                }
            )
            self.known += 1
            self.to_list.append(dept_id)
            self.to_page.append((dept_id, 0))
            if wants:
                self.to_detail.append(dept_id)
        self.batch.listed.append(parent_id)
        self.listed += 1

    def _on_page(self, dept_id: int, page: UserPage) -> None:
        self.batch.users.extend({"run_id": self.run_id, **u} for u in page.users)
        self.batch.memberships.extend({"run_id": self.run_id, **m} for m in page.memberships)
        self.people += len(page.memberships)
        if page.next_cursor is None:
            self.batch.paged.append(dept_id)
            self.paged += 1
        else:
            self.batch.cursors.append({"_dept": dept_id, "v_cursor": page.next_cursor})
            self.to_page.append((dept_id, page.next_cursor))

    def _on_detail(self, dept_id: int, detail: dict) -> None:
        row = {"_dept": dept_id, "v_code": detail.get("code") or None, "v_sort_order": int(detail.get("order") or 0)}
        row["v_name"] = detail.get("name") or ""
        self.batch.details.append(row)

    def _flush(self) -> None:
        batch, self.batch = self.batch, _Batch()
        run = self.run_id
        key = sa.bindparam("_dept")
        with self.engine.begin() as conn:
            _insert_ignore(conn, Stage, batch.depts)
            if batch.listed:
                conn.execute(
                    Stage.update().where(Stage.c.run_id == run, Stage.c.dept_id == key).values(listed=True),
                    [{"_dept": d} for d in batch.listed],
                )
            if batch.cursors:
                conn.execute(
                    Stage.update()
                    .where(Stage.c.run_id == run, Stage.c.dept_id == key)
                    .values(cursor=sa.bindparam("v_cursor")),
                    batch.cursors,
                )
            if batch.paged:
                conn.execute(
                    Stage.update().where(Stage.c.run_id == run, Stage.c.dept_id == key).values(paged=True),
                    [{"_dept": d} for d in batch.paged],
                )
            if batch.details:
                conn.execute(
                    Stage.update()
                    .where(Stage.c.run_id == run, Stage.c.dept_id == key)
                    .values(
                        code=sa.bindparam("v_code"),
                        sort_order=sa.bindparam("v_sort_order"),
                        has_order=True,
                        wants_detail=False,
                        # Only the root's name comes from here; listsub already gave every other name.
                        name=sa.case((Stage.c.dept_id == ROOT_DEPT, sa.bindparam("v_name")), else_=Stage.c.name),
                    ),
                    batch.details,
                )
            _insert_ignore(conn, StageUser, batch.users)
            _insert_ignore(conn, StageMembership, batch.memberships)
            conn.execute(
                Runs.update()
                .where(Runs.c.id == run)
                .values(
                    api_calls=_api_calls(self.fetcher, self.prior_calls),
                    checkpoint={
                        "depts_known": self.known,
                        "depts_listed": self.listed,
                        "depts_paged": self.paged,
                        "people": self.people,
                    },
                )
            )

    def snapshot(self) -> Progress:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        calls = sum(self.fetcher.calls.values())
        rate = calls / elapsed
        remaining = (self.known - self.listed) + (self.known - self.paged) + len(self.to_detail)
        # Both APIs run side by side, so the slower queue sets the pace; unknown departments are not counted yet.
        eta = max(self.known - self.listed, self.known - self.paged) / (rate / 2) if rate > 0 and remaining else None
        return Progress(
            depts_known=self.known,
            depts_listed=self.listed,
            depts_paged=self.paged,
            people=self.people,
            calls=self.calls_at_start + calls,
            calls_per_s=rate,
            throttles=self.fetcher.throttles,
            retries=self.fetcher.retries,
            eta_s=eta,
        )


# --- apply ------------------------------------------------------------------------------------------------------


class _Refused(Exception):
    pass


def _apply(
    engine: sa.Engine,
    run_id: int,
    corp_id: str,
    api_calls: dict[str, Any],
    max_delete_share: float,
    fetch_s: float,
    prior: dict[str, Any],
) -> SyncResult:
    started = time.monotonic()
    try:
        with engine.begin() as conn:
            counts = _apply_in(conn, run_id, corp_id, max_delete_share)
            duration = fetch_s + time.monotonic() - started + float(prior.get("duration_s", 0))
            api_calls = {**api_calls, "duration_s": round(duration, 3)}
            counts["duration_s"] = round(duration, 3)
            counts["apply_s"] = round(time.monotonic() - started, 3)
            _drop_staging(conn, run_id)
            conn.execute(
                Runs.update()
                .where(Runs.c.id == run_id)
                .values(state="succeeded", finished_at=utcnow(), counts=counts, api_calls=api_calls, error=None)
            )
        log.info("org sync run %s of %s succeeded", run_id, corp_id, extra={"run_id": run_id})
        return SyncResult(run_id, "succeeded", counts, api_calls, duration)
    except _Refused as refusal:
        reason, counts = refusal.args
        duration = fetch_s + time.monotonic() - started
        with engine.begin() as conn:
            _drop_staging(conn, run_id)
            conn.execute(
                Runs.update()
                .where(Runs.c.id == run_id)
                .values(state="refused", finished_at=utcnow(), counts=counts, api_calls=api_calls, error=reason[:1000])
            )
        alert_refused(run_id, corp_id, reason)
        return SyncResult(run_id, "refused", counts, api_calls, duration)


def _apply_in(conn: Connection, run_id: int, corp_id: str, max_share: float) -> dict[str, Any]:
    """Everything the run changes, inside the caller's transaction; raises `_Refused` before writing if the
    deletion guard trips."""
    unfinished = conn.execute(
        sa.select(sa.func.count())
        .select_from(Stage)
        .where(Stage.c.run_id == run_id, sa.or_(~Stage.c.listed, ~Stage.c.paged, Stage.c.wants_detail))
    ).scalar_one()
    if unfinished:
        raise RuntimeError(f"run {run_id}: {unfinished} departments not fully fetched; refusing to apply")
    if conn.dialect.name == "postgresql":  # event handlers moving nodes meanwhile would leave stale paths
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(tree_lock_key(corp_id))))
    now = utcnow()
    staged = {
        row.dept_id: row
        for row in conn.execute(
            sa.select(
                Stage.c.dept_id,
                Stage.c.parent_dept_id,
                Stage.c.name,
                Stage.c.sort_order,
                Stage.c.has_order,
                Stage.c.depth,
                Stage.c.code,
            ).where(Stage.c.run_id == run_id)
        )
    }
    live = {
        row.dept_id: row
        for row in conn.execute(
            sa.select(
                Nodes.c.id,
                Nodes.c.dept_id,
                Nodes.c.parent_id,
                Nodes.c.name,
                Nodes.c.sort_order,
                Nodes.c.code,
                Nodes.c.level,
                Nodes.c.layer,
                Nodes.c.level_source,
                Nodes.c.level_override,
                Nodes.c.path,
                Nodes.c.depth,
                Nodes.c.deleted_at,
            ).where(Nodes.c.corp_id == corp_id)
        )
    }

    # The deletion guard, before anything is written.
    live_nodes = sum(1 for r in live.values() if r.deleted_at is None)
    nodes_gone = [r for r in live.values() if r.deleted_at is None and r.dept_id not in staged]
    member_gone_q = sa.select(sa.func.count()).where(
        Members.c.corp_id == corp_id,
        Members.c.deleted_at.is_(None),
        ~sa.exists().where(StageUser.c.run_id == run_id, StageUser.c.userid == Members.c.userid),
    )
    members_gone = conn.execute(member_gone_q).scalar_one()
    live_members = conn.execute(
        sa.select(sa.func.count()).where(Members.c.corp_id == corp_id, Members.c.deleted_at.is_(None))
    ).scalar_one()
    for what, gone, total in (("members", members_gone, live_members), ("nodes", len(nodes_gone), live_nodes)):
        if total and gone / total > max_share:
            reason = (
                f"would delete {gone} of {total} {what} ({gone / total:.1%}), more than the allowed {max_share:.1%}; "
                "nothing was changed"
            )
            raise _Refused(reason, {"would_delete": {"members": members_gone, "nodes": len(nodes_gone)}})

    counts: dict[str, Any] = {"nodes": _apply_nodes(conn, run_id, corp_id, staged, live, nodes_gone, now)}
    counts["memberships"] = {}
    _membership_removals(conn, run_id, corp_id, now, counts["memberships"])
    counts["members"] = _apply_members(conn, run_id, corp_id, now)
    _membership_additions(conn, run_id, corp_id, now, counts["memberships"])
    return counts


def _change(corp_id: str, entity: str, key: Any, action: str, changes: dict, run_id: int, now: Any) -> dict:
    return {
        "corp_id": corp_id,
        "entity": entity,
        "entity_key": str(key),
        "action": action,
        "changes": changes,
        "run_id": run_id,
        "event_id": None,
        "at": now,
    }


def _apply_nodes(
    conn: Connection,
    run_id: int,
    corp_id: str,
    staged: dict[int, Any],
    live: dict[int, Any],
    gone: list[Any],
    now: Any,
) -> dict[str, int]:
    """Nodes: create the new ones, then walk the staged tree top-down to compute parent, path, depth and level of
    every node, and write only what differs."""
    counts = dict.fromkeys(("created", "renamed", "moved", "updated", "reclassified", "deleted", "restored"), 0)
    changes: list[dict] = []
    new = [d for d in staged if d not in live]
    if new:
        placeholder = {"level": INTERNAL, "layer": "service", "level_source": "depth", "path": "", "depth": 0}
        conn.execute(
            Nodes.insert(),
            [
                {
                    "corp_id": corp_id,
                    "dept_id": d,
                    "parent_id": None,
                    "name": staged[d].name,
                    "sort_order": staged[d].sort_order,
                    "code": staged[d].code,
                    "level_override": None,
                    "deleted_at": None,
                    "created_at": now,
                    "updated_at": now,
                    **placeholder,
                }
                for d in new
            ],
        )
        counts["created"] = len(new)
    ids = dict(conn.execute(sa.select(Nodes.c.dept_id, Nodes.c.id).where(Nodes.c.corp_id == corp_id)).all())
    dept_of = {node_id: dept for dept, node_id in ids.items()}
    rules = load_rules()
    level: dict[int, str] = {}
    path: dict[int, str] = {}
    updates: list[dict] = []
    for row in sorted(staged.values(), key=lambda r: (r.depth, r.dept_id)):
        d, parent = row.dept_id, row.parent_dept_id
        node_id = ids[d]
        old = live.get(d)
        path[d] = path.get(parent, "/") + f"{node_id}/"
        override = old.level_override if old is not None else None
        c = classify(row.name, row.code, level.get(parent), row.depth, override=override, rules=rules)
        level[d] = c.level
        # Without department/get, a node keeps its stored order (DingTalk's, from an event or an earlier detail).
        order = row.sort_order if (row.has_order or old is None) else old.sort_order
        code = row.code if (row.has_order or old is None) else old.code
        target = {
            "parent_id": ids.get(parent) if parent is not None else None,
            "name": row.name,
            "sort_order": order,
            "code": code,
            "level": c.level,
            "layer": c.layer,
            "level_source": c.source,
            "path": path[d],
            "depth": row.depth,
            "deleted_at": None,
        }
        if old is None:
            updates.append(_node_update(node_id, target, now))
            changes.append(
                _change(corp_id, "node", d, "create", {"name": [None, row.name], "parent": [None, parent]}, run_id, now)
            )
            continue
        differs = {k: v for k, v in target.items() if getattr(old, k) != v}
        if old.level_source != c.source and "level" not in differs:
            differs["level_source"] = c.source
        if not differs:
            continue
        updates.append(_node_update(node_id, target, now))
        if old.deleted_at is not None:
            counts["restored"] += 1
            changes.append(_change(corp_id, "node", d, "restore", {"deleted": [True, False]}, run_id, now))
        if "name" in differs:
            counts["renamed"] += 1
            changes.append(_change(corp_id, "node", d, "rename", {"name": [old.name, row.name]}, run_id, now))
        if "parent_id" in differs:
            counts["moved"] += 1
            old_parent = dept_of.get(old.parent_id)
            changes.append(_change(corp_id, "node", d, "move", {"parent": [old_parent, parent]}, run_id, now))
        other = {k: [getattr(old, k), differs[k]] for k in ("code", "level") if k in differs}
        if "level" in other:
            counts["reclassified"] += 1
        if other:
            counts["updated"] += 1
            changes.append(_change(corp_id, "node", d, "update", other, run_id, now))
    if updates:
        conn.execute(
            Nodes.update()
            .where(Nodes.c.id == sa.bindparam("_id"))
            .values({k[2:]: sa.bindparam(k) for k in updates[0] if k != "_id"}),
            updates,
        )
    if gone:
        conn.execute(
            Nodes.update().where(Nodes.c.id == sa.bindparam("_id")).values(deleted_at=now, updated_at=now),
            [{"_id": r.id} for r in gone],
        )
        counts["deleted"] = len(gone)
        changes.extend(
            _change(corp_id, "node", r.dept_id, "delete", {"name": [r.name, None]}, run_id, now) for r in gone
        )
    _insert_changes(conn, changes)
    return counts


def _node_update(node_id: int, target: dict[str, Any], now: Any) -> dict[str, Any]:
    """Executemany parameters of one node's update (bind names must differ from the column names)."""
    return {"_id": node_id, **{f"v_{k}": v for k, v in target.items()}, "v_updated_at": now}


def _insert_changes(conn: Connection, rows: Iterable[dict]) -> None:
    batch: list[dict] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= FLUSH_ROWS:
            conn.execute(Changes.insert(), batch)
            batch = []
    if batch:
        conn.execute(Changes.insert(), batch)


def _json_pair(conn: Connection, key: str, old: Any, new: Any) -> sa.ColumnElement:
    """SQL for `{key: [old, new]}` built per row (jsonb on PostgreSQL, JSON text on SQLite)."""
    if conn.dialect.name == "postgresql":
        return sa.func.jsonb_build_object(key, sa.func.jsonb_build_array(old, new))
    return sa.func.json_object(key, sa.func.json_array(old, new))


def _change_select(corp_id: str, entity: str, key: Any, action: str, changes: Any, run_id: int, now: Any) -> list:
    """The columns of an `org_changes` INSERT … SELECT, in `CHANGE_COLUMNS` order."""
    return [
        sa.literal(corp_id),
        sa.literal(entity),
        key,
        sa.literal(action),
        changes,
        sa.literal(run_id),
        sa.literal(now, OrgChange.at.type),
    ]


CHANGE_COLUMNS = ["corp_id", "entity", "entity_key", "action", "changes", "run_id", "at"]


def _apply_members(conn: Connection, run_id: int, corp_id: str, now: Any) -> dict[str, int]:
    """Members, set-based: creates and deletes in one statement each; updates and restores streamed in batches."""
    counts = dict.fromkeys(("created", "updated", "deleted", "restored"), 0)
    s, m = StageUser.c, Members.c
    missing = ~sa.exists().where(m.corp_id == corp_id, m.userid == s.userid)
    null = sa.null()
    conn.execute(
        Changes.insert().from_select(
            CHANGE_COLUMNS,
            sa.select(
                *_change_select(
                    corp_id, "member", s.userid, "create", _json_pair(conn, "name", null, s.name), run_id, now
                )
            ).where(s.run_id == run_id, missing),
        )
    )
    # INSERT … SELECT reports no row count on psycopg, so count first (same predicate, same transaction).
    counts["created"] = conn.execute(
        sa.select(sa.func.count()).select_from(StageUser).where(s.run_id == run_id, missing)
    ).scalar_one()
    conn.execute(
        Members.insert().from_select(
            ["corp_id", "userid", *MEMBER_FIELDS, "deleted_at", "created_at", "updated_at"],
            sa.select(
                sa.literal(corp_id),
                s.userid,
                *(s[f] for f in MEMBER_FIELDS),
                sa.null(),
                sa.literal(now, OrgMember.created_at.type),
                sa.literal(now, OrgMember.updated_at.type),
            ).where(s.run_id == run_id, missing),
        )
    )

    differs = sa.or_(m.deleted_at.is_not(None), *(m[f].is_distinct_from(s[f]) for f in MEMBER_FIELDS))
    changed = conn.execute(
        sa.select(
            m.id,
            m.userid,
            m.deleted_at,
            *(m[f] for f in MEMBER_FIELDS),
            *(s[f].label(f"new_{f}") for f in MEMBER_FIELDS),
        )
        .join_from(Members, StageUser, sa.and_(s.run_id == run_id, s.userid == m.userid))
        .where(m.corp_id == corp_id, differs)
    )
    updates: list[dict] = []
    changes: list[dict] = []

    def flush() -> None:
        if updates:
            conn.execute(
                Members.update()
                .where(m.id == sa.bindparam("_id"))
                .values(deleted_at=None, updated_at=now, **{f: sa.bindparam(f"v_{f}") for f in MEMBER_FIELDS}),
                updates,
            )
            _insert_changes(conn, changes)
            updates.clear()
            changes.clear()

    for row in changed.mappings().fetchall() if conn.dialect.name == "sqlite" else changed.mappings():
        diff = {f: [row[f], row[f"new_{f}"]] for f in MEMBER_FIELDS if row[f] != row[f"new_{f}"]}
        if row["deleted_at"] is not None:
            counts["restored"] += 1
            changes.append(
                _change(corp_id, "member", row["userid"], "restore", {"deleted": [True, False]}, run_id, now)
            )
        if diff:
            counts["updated"] += 1
            changes.append(_change(corp_id, "member", row["userid"], "update", diff, run_id, now))
        updates.append({"_id": row["id"], **{f"v_{f}": row[f"new_{f}"] for f in MEMBER_FIELDS}})
        if len(updates) >= FLUSH_ROWS:
            flush()
    flush()

    gone = sa.and_(
        m.corp_id == corp_id,
        m.deleted_at.is_(None),
        ~sa.exists().where(s.run_id == run_id, s.userid == m.userid),
    )
    conn.execute(
        Changes.insert().from_select(
            CHANGE_COLUMNS,
            sa.select(
                *_change_select(
                    corp_id, "member", m.userid, "delete", _json_pair(conn, "name", m.name, null), run_id, now
                )
            ).where(gone),
        )
    )
    counts["deleted"] = conn.execute(Members.update().where(gone).values(deleted_at=now, updated_at=now)).rowcount
    return counts


def _desired_match(run_id: int) -> sa.ColumnElement[bool]:
    """The staged pair of the enclosing query's member and node (auto-correlated to both)."""
    sm = StageMembership.c
    return sa.exists().where(sm.run_id == run_id, sm.userid == Members.c.userid, sm.dept_id == Nodes.c.dept_id)


def _membership_removals(conn: Connection, run_id: int, corp_id: str, now: Any, counts: dict[str, int]) -> None:
    """Positions no longer in DingTalk (and those of departed members): logged, then deleted."""
    ms, m, n = Memberships.c, Members.c, Nodes.c
    key = m.userid.concat("@").concat(sa.cast(n.dept_id, sa.String))
    conn.execute(
        Changes.insert().from_select(
            CHANGE_COLUMNS,
            sa.select(
                *_change_select(
                    corp_id,
                    "membership",
                    key,
                    "delete",
                    _json_pair(conn, "dept", n.dept_id, sa.null()),
                    run_id,
                    now,
                )
            )
            .select_from(Memberships)
            .join(Members, m.id == ms.member_id)
            .join(Nodes, n.id == ms.node_id)
            .where(m.corp_id == corp_id, ~_desired_match(run_id)),
        )
    )
    corp_members = sa.select(m.id).where(m.corp_id == corp_id).scalar_subquery()
    counts["removed"] = conn.execute(
        Memberships.delete().where(
            ms.member_id.in_(corp_members),
            ~sa.exists().where(
                StageMembership.c.run_id == run_id,
                m.id == ms.member_id,
                n.id == ms.node_id,
                StageMembership.c.userid == m.userid,
                StageMembership.c.dept_id == n.dept_id,
            ),
        )
    ).rowcount


def _membership_additions(conn: Connection, run_id: int, corp_id: str, now: Any, counts: dict[str, int]) -> None:
    """New positions (logged for members who existed before this run; a new member's creation implies them),
    then leader flags and orders that changed."""
    sm, ms, m, n = StageMembership.c, Memberships.c, Members.c, Nodes.c
    joined = (
        sa.select(
            m.id.label("member_id"),
            n.id.label("node_id"),
            sm.is_leader,
            sm.sort_order,
            m.userid,
            n.dept_id,
            m.created_at,
        )
        .select_from(StageMembership)
        .join(Members, sa.and_(m.corp_id == corp_id, m.userid == sm.userid))
        .join(Nodes, sa.and_(n.corp_id == corp_id, n.dept_id == sm.dept_id))
        .where(sm.run_id == run_id, ~sa.exists().where(ms.member_id == m.id, ms.node_id == n.id))
    )
    existing = joined.where(m.created_at != sa.literal(now, OrgMember.created_at.type)).subquery()
    key = existing.c.userid.concat("@").concat(sa.cast(existing.c.dept_id, sa.String))
    conn.execute(
        Changes.insert().from_select(
            CHANGE_COLUMNS,
            sa.select(
                *_change_select(
                    corp_id,
                    "membership",
                    key,
                    "create",
                    _json_pair(conn, "dept", sa.null(), existing.c.dept_id),
                    run_id,
                    now,
                )
            ),
        )
    )
    added = joined.with_only_columns(m.id, n.id, sm.is_leader, sm.sort_order)
    counts["added"] = conn.execute(sa.select(sa.func.count()).select_from(added.subquery())).scalar_one()
    conn.execute(Memberships.insert().from_select(["member_id", "node_id", "is_leader", "sort_order"], added))
    staged_pair = sa.and_(
        sm.run_id == run_id,
        m.id == ms.member_id,
        n.id == ms.node_id,
        sm.userid == m.userid,
        sm.dept_id == n.dept_id,
    )

    def staged_value(column: sa.Column) -> sa.ScalarSelect:
        return sa.select(column).where(staged_pair).correlate(Memberships).scalar_subquery()

    counts["updated"] = conn.execute(
        Memberships.update()
        .where(
            sa.exists()
            .where(staged_pair, sa.or_(sm.is_leader != ms.is_leader, sm.sort_order != ms.sort_order))
            .correlate(Memberships)
        )
        .values(is_leader=staged_value(sm.is_leader), sort_order=staged_value(sm.sort_order))
    ).rowcount

"""The fetch half of a full sync: walk DingTalk's tree into the staging tables, resumably, with live progress.

Breadth-first from dept 1: one `listsub` per department and `user/list` pages of 100 per department (plus
`department/get` where its extra fields are needed), each API on its own thread pool so that the gateway's per-API
limiter is the only brake. Results stream into staging (org_sync/staging.py) in batches, committed in order by one
writer thread while the walk goes on; each batch commits the rows together with the checkpoint flags they complete
(a department's children with its `listed` flag, a page's members with its cursor), so a run killed at any point
resumes exactly from what is committed, without duplicates or losses. The live tables are not touched here
(org_sync/diff.py does that once the walk is complete).
"""

from __future__ import annotations

import logging
import operator
import queue
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from org_sync.classify import INTERNAL, classify, load_rules
from org_sync.fetch import DEPT_GET, LISTSUB, USER_LIST, ContactsFetcher, UserPage
from org_sync.models import OrgSyncRun
from org_sync.staging import OrgStageDept, OrgStageMembership, OrgStageUser
from workbench.db import utcnow

log = logging.getLogger(__name__)

ROOT_DEPT = 1
# department/get for: "units" (nodes whose name or position says unit: ~4% of calls), "all", or "none".
DEPT_DETAIL = "units"
WORKERS_PER_API = 8  # threads per API: enough to keep each API's 20/s budget busy at loopback latencies
FLUSH_ROWS = 1000  # staged rows per batch
FLUSH_SECONDS = 1.0
WRITES_AHEAD = 2  # batches the writer may have pending before the walk waits for it (bounds memory)

Stage = OrgStageDept.__table__
StageUser = OrgStageUser.__table__
StageMembership = OrgStageMembership.__table__
Runs = OrgSyncRun.__table__


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


def run_api_calls(fetcher: ContactsFetcher, prior: dict[str, Any]) -> dict[str, Any]:
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


def open_run(engine: sa.Engine, corp_id: str, kind: str, resume: bool) -> tuple[int, dict[str, Any]]:
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
            drop_staging(conn, old_id)
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


def record_interruption(engine: sa.Engine, run_id: int, api_calls: dict[str, Any], exc: BaseException) -> None:
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


def drop_staging(conn: Connection, run_id: int) -> None:
    """Delete a run's staged rows: of no further use once it is applied, refused or abandoned."""
    for table in (StageMembership, StageUser, Stage):
        conn.execute(table.delete().where(table.c.run_id == run_id))


def insert_ignore(conn: Connection, table: sa.Table, rows: list[dict]) -> None:
    """Bulk insert skipping rows already staged (a user listed by several departments, a re-fetched page).

    PostgreSQL: COPY into a temporary table emptied at commit, then one INSERT … SELECT … ON CONFLICT DO NOTHING.
    An executemany sends one INSERT per row: a province's walk spent 148 s of its 186 s waiting for those.
    """
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        from sqlalchemy.dialects.sqlite import insert

        conn.execute(insert(table).on_conflict_do_nothing(), rows)
        return
    names = list(rows[0])
    columns, values = ", ".join(names), operator.itemgetter(*names)
    incoming = f"{table.name}_incoming"
    conn.exec_driver_sql(f"CREATE TEMPORARY TABLE IF NOT EXISTS {incoming} (LIKE {table.name}) ON COMMIT DELETE ROWS")
    cursor = conn.connection.driver_connection.cursor()
    with cursor, cursor.copy(f"COPY {incoming} ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(values(row))
    conn.exec_driver_sql(
        f"INSERT INTO {table.name} ({columns}) SELECT {columns} FROM {incoming} ON CONFLICT DO NOTHING"
    )


def _drain(finished: queue.SimpleQueue[Future], timeout: float) -> Iterator[Future]:
    """The calls finished so far, waiting up to `timeout` for the first."""
    try:
        yield finished.get(timeout=timeout)
    except queue.Empty:
        return
    while True:
        try:
            yield finished.get_nowait()
        except queue.Empty:
            return


class Walker:
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
        self.writes: deque[Future] = deque()  # batches handed to the writer thread, oldest first
        self.write_failed = False
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
        # Staged batches are committed by one writer thread, in order, while the walk goes on fetching.
        writer = ThreadPoolExecutor(1, thread_name_prefix="org-sync-writer")
        inflight: dict[Future, tuple[str, Any]] = {}
        finished: queue.SimpleQueue[Future] = queue.SimpleQueue()
        per_api = dict.fromkeys(pools, 0)
        cap = self.workers * 2  # queued per pool: keeps every thread busy without queueing the whole tree
        last_flush = last_progress = time.monotonic()
        try:
            while self.to_list or self.to_page or self.to_detail or inflight:
                for api, todo, call in (
                    (LISTSUB, self.to_list, self.fetcher.children),
                    (USER_LIST, self.to_page, lambda arg: self.fetcher.user_page(*arg)),
                    (DEPT_GET, self.to_detail, self.fetcher.detail),
                ):
                    while todo and per_api[api] < cap:
                        arg = todo.popleft()
                        future = pools[api].submit(call, arg)
                        inflight[future] = (api, arg)
                        future.add_done_callback(finished.put)
                        per_api[api] += 1
                for future in _drain(finished, timeout=0.5):
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
                    self._flush(writer)
                    last_flush = now
                if self.progress and now - last_progress >= 0.5:
                    self.progress(self.snapshot())
                    last_progress = now
            self._flush(writer)
            self._wait_writes(0)
        except BaseException:
            for future in inflight:
                future.cancel()
            self._flush_quietly()
            raise
        finally:
            for pool in pools.values():
                pool.shutdown(wait=True, cancel_futures=True)
            writer.shutdown(wait=True)
        if self.progress:
            self.progress(self.snapshot())

    def _flush(self, writer: ThreadPoolExecutor) -> None:
        """Hand the batch, with the checkpoint as it stands now, to the writer; wait if it is too far behind."""
        batch, self.batch = self.batch, _Batch()
        self.writes.append(writer.submit(self._write, batch, *self._checkpoint()))
        self._wait_writes(WRITES_AHEAD)

    def _wait_writes(self, ahead: int) -> None:
        """Raise a failed write; block until at most `ahead` writes are pending."""
        while self.writes and (self.writes[0].done() or len(self.writes) > ahead):
            self.writes.popleft().result()

    def _flush_quietly(self) -> None:
        """On the way out: commit what was fully handled; results never handled are simply fetched again."""
        try:
            while self.writes:
                self.writes.popleft().result()
            self._write(self.batch, *self._checkpoint())
        except Exception:
            log.exception("could not commit the last staged batches of org sync run %s", self.run_id)

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

    def _checkpoint(self) -> tuple[dict[str, Any], dict[str, int]]:
        """The run's calls and progress to commit with the batch now being handed over."""
        progress = {"depts_known": self.known, "depts_listed": self.listed, "depts_paged": self.paged}
        return run_api_calls(self.fetcher, self.prior_calls), {**progress, "people": self.people}

    def _write(self, batch: _Batch, api_calls: dict[str, Any], checkpoint: dict[str, int]) -> None:
        """Commit one batch with its checkpoint. After a failed write no later batch is committed: a later
        checkpoint flag (a department marked paged) must never be committed without the rows before it."""
        if self.write_failed:
            raise RuntimeError("an earlier staged batch failed to commit")
        try:
            self._commit(batch, api_calls, checkpoint)
        except BaseException:
            self.write_failed = True
            raise

    def _commit(self, batch: _Batch, api_calls: dict[str, Any], checkpoint: dict[str, int]) -> None:
        run = self.run_id
        key = sa.bindparam("_dept")
        with self.engine.begin() as conn:
            insert_ignore(conn, Stage, batch.depts)
            if batch.listed:
                conn.execute(
                    Stage.update().where(Stage.c.run_id == run, Stage.c.dept_id.in_(batch.listed)).values(listed=True)
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
                    Stage.update().where(Stage.c.run_id == run, Stage.c.dept_id.in_(batch.paged)).values(paged=True)
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
            insert_ignore(conn, StageUser, batch.users)
            insert_ignore(conn, StageMembership, batch.memberships)
            conn.execute(Runs.update().where(Runs.c.id == run).values(api_calls=api_calls, checkpoint=checkpoint))

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

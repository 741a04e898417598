"""Full sync and reconciliation: fetch the whole DingTalk tree into staging, then apply the difference at once.

A run is three steps, each in its own module:

- `org_sync.lock`: only one full sync or reconciliation runs per corp at a time (Redis, or `org_sync_locks`);
- `org_sync.walk` (resumable): breadth-first through DingTalk into the staging tables, committing checkpoints
  with the rows they complete, so a killed run resumes exactly where it stopped;
- `org_sync.diff` (atomic): one transaction diffs staging against the live tables and writes the difference and
  the change log, unless the deletion guard refuses the run; readers see the old tree or the new one.

This module ties them together and records the run's outcome; a refused run alerts the corp's administrators
(`org_sync.alerts`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from flask import current_app
from sqlalchemy import orm

from org_sync.alerts import alert_refused
from org_sync.diff import Refused, apply_staged
from org_sync.fetch import ContactsFetcher
from org_sync.lock import CorpLock, SyncLocked
from org_sync.models import OrgSyncRun
from org_sync.walk import (
    DEPT_DETAIL,
    WORKERS_PER_API,
    Progress,
    Walker,
    drop_staging,
    open_run,
    record_interruption,
    run_api_calls,
)
from workbench.db import get_db, utcnow
from workbench.dingtalk import get_gateway
from workbench.queue import get_redis

log = logging.getLogger(__name__)

Runs = OrgSyncRun.__table__

# The names callers import from here (cli, jobs, tests, benchmarks).
__all__ = [
    "DEPT_DETAIL",
    "WORKERS_PER_API",
    "CorpLock",
    "Progress",
    "SyncLocked",
    "SyncResult",
    "run_full_sync",
]


@dataclass
class SyncResult:
    run_id: int
    state: str  # succeeded | refused
    counts: dict[str, Any]
    api_calls: dict[str, Any]
    duration_s: float


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
        run_id, prior_calls = open_run(engine, corp_id, kind, resume)
        started = time.monotonic()
        fetcher = ContactsFetcher(get_gateway(), fail_after_calls=fail_after_calls)
        with fetcher:
            try:
                walker = Walker(engine, run_id, fetcher, prior_calls, progress, workers, detail)
                walker.run()
            except BaseException as exc:
                record_interruption(engine, run_id, run_api_calls(fetcher, prior_calls), exc)
                raise
        api_calls = run_api_calls(fetcher, prior_calls)
        share = (
            current_app.config["SETTINGS"].org_sync_max_delete_share if max_delete_share is None else max_delete_share
        )
        return _apply(engine, run_id, corp_id, kind, api_calls, share, time.monotonic() - started, prior_calls)
    finally:
        lock.release()


def _apply(
    engine: sa.Engine,
    run_id: int,
    corp_id: str,
    kind: str,
    api_calls: dict[str, Any],
    max_delete_share: float,
    fetch_s: float,
    prior: dict[str, Any],
) -> SyncResult:
    """Apply the staged tree and finish the run row in the same transaction, or record the refusal."""
    started = time.monotonic()
    try:
        with engine.begin() as conn:
            counts = apply_staged(conn, run_id, corp_id, max_delete_share)
            duration = fetch_s + time.monotonic() - started + float(prior.get("duration_s", 0))
            api_calls = {**api_calls, "duration_s": round(duration, 3)}
            counts["duration_s"] = round(duration, 3)
            counts["apply_s"] = round(time.monotonic() - started, 3)
            drop_staging(conn, run_id)
            conn.execute(
                Runs.update()
                .where(Runs.c.id == run_id)
                .values(state="succeeded", finished_at=utcnow(), counts=counts, api_calls=api_calls, error=None)
            )
        log.info("org sync run %s of %s succeeded", run_id, corp_id, extra={"run_id": run_id})
        return SyncResult(run_id, "succeeded", counts, api_calls, duration)
    except Refused as refused:
        duration = fetch_s + time.monotonic() - started
        _record_refusal(engine, run_id, corp_id, kind, api_calls, refused)
        return SyncResult(run_id, "refused", refused.counts, api_calls, duration)


def _record_refusal(
    engine: sa.Engine, run_id: int, corp_id: str, kind: str, api_calls: dict[str, Any], refused: Refused
) -> None:
    """Mark the run refused and queue the administrators' alert in one transaction: the outbox sends the alert
    only once this commits, so a refusal is never recorded without its alert nor alerted without being recorded."""

    def finish(conn: sa.Connection) -> None:
        drop_staging(conn, run_id)
        conn.execute(
            Runs.update()
            .where(Runs.c.id == run_id)
            .values(
                state="refused",
                finished_at=utcnow(),
                counts=refused.counts,
                api_calls=api_calls,
                error=refused.reason[:1000],
            )
        )

    try:
        with orm.Session(engine) as db:
            finish(db.connection())
            alert_refused(db, run_id, corp_id, kind, refused.reason, refused.refusal)
            db.commit()
    except Exception:
        # The alert must not keep the refusal from being recorded (the run would otherwise stay `running` and
        # be resumed into the same refusal); the run row and the ERROR log still say what happened.
        log.exception("could not queue the alert of refused org sync run %s; recording the refusal alone", run_id)
        with engine.begin() as conn:
            finish(conn)

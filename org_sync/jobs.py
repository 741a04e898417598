"""Full sync and reconciliation as queue jobs, and the nightly reconciliation schedule."""

from __future__ import annotations

import logging

from flask import Flask

from org_sync.full_sync import SyncLocked, run_full_sync
from workbench.queue import get_queue

log = logging.getLogger(__name__)


def full_sync_job(corp_id: str | None = None, resume: bool = True) -> dict:
    """A full sync (resuming an interrupted one); a sync already running for the corp makes this a no-op."""
    return _run("full", corp_id, resume)


def reconcile_job(corp_id: str | None = None) -> dict:
    """The nightly reconciliation: the same engine, recorded as kind "reconcile"."""
    return _run("reconcile", corp_id, True)


def _run(kind: str, corp_id: str | None, resume: bool) -> dict:
    try:
        result = run_full_sync(corp_id, kind=kind, resume=resume)
    except SyncLocked as exc:
        log.info("org sync %s skipped: %s", kind, exc)
        return {"state": "skipped"}
    return {"run_id": result.run_id, "state": result.state}


def enqueue_full_sync(corp_id: str | None = None, resume: bool = True) -> str:
    return get_queue().enqueue(full_sync_job, corp_id, resume, retries=0)


def schedule(app: Flask) -> None:
    seconds = app.config["SETTINGS"].org_sync_reconcile_seconds  # nightly by default; 0 switches it off
    if seconds > 0:
        # 02:10 China time (18:10 UTC): off-peak, and off the top of the hour as DingTalk advises.
        app.extensions["workbench.queue"].every(seconds, reconcile_job, name="org-sync-reconcile", offset=65400)

"""Incremental sync: contact events re-fetch what changed and apply it (reference/dingtalk.md §2.3).

Events carry ids only, and may be late, repeated or out of order, so every handler does the same thing: read the
entity from DingTalk as it is *now* and make the stored row equal it (`org_sync.apply`). Applying an event twice,
or an old event after a newer one, therefore leaves the same tree. Each event is one transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping

from flask import current_app
from sqlalchemy.exc import DBAPIError, IntegrityError

from org_sync import apply
from workbench import db
from workbench.dingtalk.events import Event, EventRouter

log = logging.getLogger(__name__)

USER_EVENTS = ("user_add_org", "user_modify_org", "user_leave_org", "user_active_org", "user_dept_change")
DEPARTMENT_EVENTS = ("org_dept_create", "org_dept_modify", "org_dept_remove")
ATTEMPTS = 3  # a concurrent worker inserting the same row first, or a deadlock, is resolved by applying again
RETRIED_SQLSTATES = frozenset({"40P01", "40001"})  # PostgreSQL: deadlock detected, serialization failure


def register(router: EventRouter) -> None:
    router.on(*USER_EVENTS)(on_user_event)
    router.on(*DEPARTMENT_EVENTS)(on_department_event)


def event_ids(data: Mapping, *keys: str) -> list[str]:
    """The ids an event names, under whichever casing it came (`userId`, legacy `UserId`, a single value)."""
    out: list[str] = []
    for key in keys:
        value = data.get(key)
        if value in (None, "", []):
            continue
        values: Iterable = value if isinstance(value, list | tuple) else [value]
        out += [str(v) for v in values if str(v).strip()]
    return list(dict.fromkeys(out))


def _corp_id(event: Event) -> str:
    return str(event.corp_id or current_app.config["SETTINGS"].dingtalk.corp_id)


def _apply(event: Event, apply_one: Callable[[str, str], object], ids: list[str]) -> None:
    """Apply every id of one event in one transaction, retried when a concurrent worker created a row first."""
    session = db.session()
    for attempt in range(1, ATTEMPTS + 1):
        try:
            for entity_id in ids:
                apply_one(_corp_id(event), entity_id)
            session.commit()
            return
        except DBAPIError as exc:
            session.rollback()
            if attempt == ATTEMPTS or not _raced(exc):
                raise
            log.info("event %s raced another worker; applying again", event.event_type)
        except Exception:
            session.rollback()
            raise


def _raced(exc: DBAPIError) -> bool:
    """A duplicate insert or a deadlock with a concurrent worker: applying again from fresh reads resolves it."""
    return isinstance(exc, IntegrityError) or getattr(exc.orig, "sqlstate", None) in RETRIED_SQLSTATES


def on_user_event(event: Event) -> None:
    """user_add_org / modify / leave / active / dept_change: sync each named user (60121/33012 = left)."""
    ids = event_ids(event.data, "userId", "UserId", "userid")
    _apply(event, lambda corp_id, userid: apply.sync_user(corp_id, userid, event_id=event.event_id), ids)


def on_department_event(event: Event) -> None:
    """org_dept_create / modify / remove: sync each named department (60003 = removed)."""
    ids = [i for i in event_ids(event.data, "deptId", "DeptId", "dept_id") if i.lstrip("-").isdigit()]
    if not ids:
        log.warning("department event %s names no department id", event.event_type)
    _apply(
        event,
        lambda corp_id, dept_id: apply.sync_department(corp_id, int(dept_id), event_id=event.event_id),
        ids,
    )

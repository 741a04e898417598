"""Event ingress shared by every part: DingTalk events from HTTP push and Stream land here.

Each event is recorded once (DingTalk delivers at least once, so the event id is unique), acknowledged at once,
and handled as a job by the handlers the parts registered, bolt-style:

    router = get_router()

    @router.on("user_add_org", "user_modify_org")
    def member_changed(event: Event) -> None: ...

Handlers must be idempotent: a failed event is retried with all its handlers.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from flask import Flask, current_app
from sqlalchemy import orm
from sqlalchemy.exc import IntegrityError

from workbench import db
from workbench.db import Model, UTCDateTime, utcnow
from workbench.queue import get_queue

log = logging.getLogger(__name__)

# Keys of the HTTP-push envelope; the rest is the event's data, as Stream delivers it.
_ENVELOPE = {"EventType", "eventType", "EventTime", "CorpId", "corpId", "BizId", "eventId", "EventId"}


class DingTalkEvent(Model):
    """One DingTalk event as received, and what became of it."""

    __tablename__ = "dingtalk_events"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    event_id: orm.Mapped[str] = orm.mapped_column(sa.String(128), unique=True)
    event_type: orm.Mapped[str] = orm.mapped_column(sa.String(64), index=True)
    channel: orm.Mapped[str] = orm.mapped_column(sa.String(16))  # http | stream
    corp_id: orm.Mapped[str | None] = orm.mapped_column(sa.String(64))
    born_at: orm.Mapped[datetime | None] = orm.mapped_column(UTCDateTime())
    received_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow)
    data: orm.Mapped[dict] = orm.mapped_column(default=dict)
    # received → handled | ignored (no handler) | failed (retried; see last_error)
    state: orm.Mapped[str] = orm.mapped_column(sa.String(16), default="received", index=True)
    attempts: orm.Mapped[int] = orm.mapped_column(default=0)
    handled_at: orm.Mapped[datetime | None] = orm.mapped_column(UTCDateTime())
    last_error: orm.Mapped[str | None] = orm.mapped_column(sa.String(500))


@dataclass(frozen=True)
class Event:
    """What a handler receives: the same shape whichever channel brought it."""

    event_id: str
    event_type: str
    corp_id: str | None
    born_at: datetime | None
    data: Mapping = field(default_factory=dict)
    channel: str = "http"


def _born_at(value: object) -> datetime | None:
    try:
        number = int(str(value))
    except (TypeError, ValueError):
        return None
    # DingTalk sends both seconds and milliseconds.
    return datetime.fromtimestamp(number / 1000 if number > 10**11 else number, UTC)


def _lower_first(key: str) -> str:
    return key[:1].lower() + key[1:]


def event_from_push(payload: Mapping, raw: str) -> Event:
    """Normalise a decrypted HTTP-push payload (flat, `UserId` or `userId` casing) to the Stream shape."""
    event_type = str(payload.get("EventType") or payload.get("eventType") or "")
    # Legacy payloads carry no event id; a redelivery is byte-identical, so its hash dedupes as well.
    event_id = str(payload.get("eventId") or payload.get("EventId") or "sha1:" + hashlib.sha1(raw.encode()).hexdigest())
    data = {_lower_first(k): v for k, v in payload.items() if k not in _ENVELOPE}
    born = payload.get("EventTime") or data.get("timeStamp")
    return Event(event_id, event_type, payload.get("CorpId") or payload.get("corpId"), _born_at(born), data, "http")


Handler = Callable[[Event], None]


class EventRouter:
    """Handlers by event type, registered by the parts in their `init_app`."""

    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = {}

    def on(self, *event_types: str) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            for event_type in event_types:
                self._handlers.setdefault(event_type, []).append(handler)
            return handler

        return register

    def handlers(self, event_type: str) -> list[Handler]:
        return list(self._handlers.get(event_type, ()))


def get_router() -> EventRouter:
    return current_app.extensions["workbench.events"]


def ingest(event: Event) -> bool:
    """Record `event` once and queue its handling; False when it was already recorded (a redelivery)."""
    if not event.event_type or len(event.event_id) > 128:
        raise ValueError("an event needs a type and an id of at most 128 characters")
    session = db.session()
    row = DingTalkEvent(
        event_id=event.event_id,
        event_type=event.event_type[:64],
        channel=event.channel,
        corp_id=(event.corp_id or None) and str(event.corp_id)[:64],
        born_at=event.born_at,
        data=dict(event.data),
    )
    session.add(row)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        log.info("duplicate event ignored", extra={"event": event.event_type})
        return False
    get_queue().enqueue(handle_event, row.id, job_id=f"dingtalk-event-{row.id}")
    return True


def handle_event(row_id: int) -> None:
    """Job: run the registered handlers of one recorded event."""
    session = db.session()
    row = session.get(DingTalkEvent, row_id)
    if row is None or row.state in ("handled", "ignored"):
        return
    event = Event(row.event_id, row.event_type, row.corp_id, row.born_at, row.data, row.channel)
    handlers = get_router().handlers(row.event_type)
    attempts = row.attempts + 1
    try:
        for handler in handlers:
            handler(event)
    except Exception as exc:
        session.rollback()  # what the handlers half-did is undone; the event stays to be retried
        row = session.get(DingTalkEvent, row_id)
        row.attempts, row.state, row.last_error = attempts, "failed", f"{type(exc).__name__}: {exc}"[:500]
        session.commit()
        raise
    row = session.get(DingTalkEvent, row_id)
    row.attempts, row.state = attempts, "handled" if handlers else "ignored"
    row.handled_at, row.last_error = utcnow(), None
    session.commit()


def requeue_unhandled(older_than: timedelta = timedelta(minutes=2)) -> int:
    """Periodic job: queue again events that were recorded but never handled (a crash between commit and
    enqueue, or a failed job whose retries ran out)."""
    cutoff = utcnow() - older_than
    rows = (
        db.session()
        .scalars(
            sa.select(DingTalkEvent.id)
            .where(
                DingTalkEvent.state.in_(("received", "failed")),
                DingTalkEvent.received_at < cutoff,
                DingTalkEvent.attempts < 10,
            )
            .order_by(DingTalkEvent.id)
            .limit(1000)
        )
        .all()
    )
    for row_id in rows:
        get_queue().enqueue(handle_event, row_id, job_id=f"dingtalk-event-{row_id}")
    return len(rows)


def prune_events() -> int:
    """Forget handled and ignored events after `EVENT_RETENTION_DAYS`: their ids only guard against DingTalk's
    retries, which stop within days. Failed ones stay for an administrator to look at."""
    days = current_app.config["SETTINGS"].event_retention_days
    cutoff = utcnow() - timedelta(days=days)
    with db.get_db().engine.begin() as conn:
        deleted = conn.execute(
            sa.delete(DingTalkEvent).where(
                DingTalkEvent.state.in_(("handled", "ignored")), DingTalkEvent.received_at < cutoff
            )
        ).rowcount
    if deleted:
        log.info("dingtalk events pruned", extra={"deleted": deleted, "retention_days": days})
    return deleted


def init_app(app: Flask) -> None:
    app.extensions["workbench.events"] = EventRouter()
    queue = app.extensions["workbench.queue"]
    queue.every(60, requeue_unhandled)
    queue.every(86400, prune_events, name="dingtalk.prune_events", offset=19 * 3600 + 30 * 60)  # 03:30 CST

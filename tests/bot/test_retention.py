"""The bot's retention job on both backends: old final messages, old cards and old daily-send rows go; work in
progress, recent rows and cards that can still decide something stay; large backlogs go in batches."""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from bot import retention
from bot.approvals import CARD_PREFIX
from bot.models import BotApproval, BotCard, DailySend, OutboxMessage
from config import ConfigError, load_settings
from org_sync.models import OrgNode
from supervision.models import AlertNotification
from tests.conftest import run_jobs
from workbench import db
from workbench.db import session, utcnow
from workbench.dingtalk.meter import BILLING_TZ

OLD = timedelta(days=91)  # past the default 90 days
RECENT = timedelta(days=89)


def _message(key: str, state: str, age: timedelta, now: datetime, **fields) -> OutboxMessage:
    at = now - age
    return OutboxMessage(
        idempotency_key=key,
        channel=fields.pop("channel", "robot_oto"),
        target="",
        recipients=["u1"],
        payload={"msgtype": "text", "text": {"content": "随访提醒：张*"}},
        content_digest="d" * 64,
        state=state,
        created_at=at,
        updated_at=at,
        **fields,
    )


def _card(track: str, age: timedelta, now: datetime, *, acted_age: timedelta | None = None) -> BotCard:
    acted = acted_age is not None
    return BotCard(
        out_track_id=track,
        template="approval",
        data={"title": "转诊：李*"},
        acted_by="u1" if acted else None,
        action_id="approval.agree" if acted else None,
        acted_at=now - acted_age if acted else None,
        created_at=now - age,
    )


def _keys(column) -> list:
    db_session = session()
    db_session.expire_all()
    return sorted(db_session.scalars(sa.select(column)))


def test_old_final_messages_go_and_work_in_progress_stays(app, caplog):
    now = utcnow()
    with app.app_context():
        db_session = session()
        db_session.add_all(
            [
                _message("old-sent", "sent", OLD, now, sent_at=now - OLD),
                _message("old-failed", "failed", OLD, now),
                _message("old-queued", "queued", OLD, now),
                _message("old-sending", "sending", OLD, now),
                _message("old-held", "held", OLD, now),
                _message("recent-sent", "sent", RECENT, now, sent_at=now - RECENT),
                _message("recent-failed", "failed", RECENT, now),
            ]
        )
        db_session.commit()
        with caplog.at_level(logging.INFO, logger="bot.retention"):
            counts = retention.prune_messages(now=now)
        assert counts == {"outbox": 2, "cards": 0, "daily_sends": 0, "batches": 1}
        assert _keys(OutboxMessage.idempotency_key) == [
            "old-held",
            "old-queued",
            "old-sending",
            "recent-failed",
            "recent-sent",
        ]
        # A second run finds nothing more to do.
        assert retention.prune_messages(now=now) == {"outbox": 0, "cards": 0, "daily_sends": 0, "batches": 0}
    logged = [r for r in caplog.records if getattr(r, "action", None) == "prune_outbox"]
    assert [(r.deleted, r.retention_days) for r in logged] == [(2, 90)]


def test_the_retention_follows_the_setting(app):
    now = utcnow()
    app.config["SETTINGS"] = dataclasses.replace(app.config["SETTINGS"], message_retention_days=30)
    with app.app_context():
        db_session = session()
        db_session.add_all(
            [
                _message("31-days", "sent", timedelta(days=31), now),
                _message("29-days", "sent", timedelta(days=29), now),
            ]
        )
        db_session.commit()
        assert retention.prune_messages(now=now)["outbox"] == 1
        assert _keys(OutboxMessage.idempotency_key) == ["29-days"]


def test_large_backlogs_go_in_batches_one_transaction_each(app):
    now = utcnow()
    deletes: list[int] = []

    def count_deletes(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("DELETE FROM BOT_OUTBOX"):
            deletes.append(cursor.rowcount)

    with app.app_context():
        db_session = session()
        db_session.add_all(_message(f"old-{n}", "sent", OLD + timedelta(minutes=n), now) for n in range(5))
        db_session.add(_message("recent", "sent", RECENT, now))
        db_session.commit()
        engine = db.get_db().engine
        sa.event.listen(engine, "after_cursor_execute", count_deletes)
        try:
            counts = retention.prune_messages(now=now, batch_size=2)
        finally:
            sa.event.remove(engine, "after_cursor_execute", count_deletes)
        assert counts == {"outbox": 5, "cards": 0, "daily_sends": 0, "batches": 3}
        assert deletes == [2, 2, 1]
        assert _keys(OutboxMessage.idempotency_key) == ["recent"]


def test_daily_send_rows_go_in_batches_too(app):
    now = utcnow()
    today = now.astimezone(BILLING_TZ).date()
    with app.app_context():
        db_session = session()
        for back in (0, 1, 2, 3, 10):
            day = (today - timedelta(days=back)).isoformat()
            db_session.add_all(DailySend(day=day, content_digest="d" * 64, userid=f"u{n}") for n in range(2))
        db_session.commit()
        counts = retention.prune_messages(now=now, batch_size=3)
        assert counts == {"outbox": 0, "cards": 0, "daily_sends": 4, "batches": 2}
        kept = sorted({day for day in _keys(DailySend.day)})
        assert kept == [(today - timedelta(days=back)).isoformat() for back in (2, 1, 0)]


def test_old_cards_go_unless_they_can_still_decide_something(app):
    now = utcnow()
    with app.app_context():
        db_session = session()
        open_approval, done_approval = (
            BotApproval(
                idempotency_key=state,
                title="结算单",
                originator_userid="u0",
                callback="m:f",
                channel="card",
                state=state,
            )
            for state in ("started", "approved")
        )
        db_session.add_all([open_approval, done_approval])
        db_session.flush()
        open_track = f"{CARD_PREFIX}{open_approval.id}:0:aaaa"
        db_session.add_all(
            [
                _card("old-clicked", OLD, now, acted_age=OLD),
                _card("old-open-task-card", OLD, now),
                _card("old-clicked-lately", OLD, now, acted_age=RECENT),
                _card("recent", RECENT, now),
                _card("old-undelivered", OLD, now),
                _message("card:old-undelivered", "held", OLD, now, channel="card", out_track_id="old-undelivered"),
                _card("old-delivered", OLD, now),
                _message("card:old-delivered", "sent", OLD, now, channel="card", out_track_id="old-delivered"),
                _card(open_track, OLD, now),
                _card(f"{CARD_PREFIX}{open_approval.id}:1:bbbb", OLD, now, acted_age=OLD),
                _card(f"{CARD_PREFIX}{done_approval.id}:0:cccc", OLD, now),
                # Approval 1's prefix must not hold approval 1x's cards (nor the reverse).
                _card(f"{CARD_PREFIX}{open_approval.id}0:0:dddd", OLD, now),
            ]
        )
        db_session.commit()
        counts = retention.prune_messages(now=now)
        assert counts == {"outbox": 1, "cards": 6, "daily_sends": 0, "batches": 2}
        assert _keys(BotCard.out_track_id) == sorted([open_track, "old-clicked-lately", "old-undelivered", "recent"])
        assert _keys(OutboxMessage.idempotency_key) == ["card:old-undelivered"]


def test_a_referenced_message_goes_and_the_reference_is_cleared(app):
    now = utcnow()
    with app.app_context():
        db_session = session()
        node = OrgNode(
            corp_id="c", dept_id=1, name="县卫健局", level="county_bureau", layer="admin", level_source="name", path="/"
        )
        old, recent = _message("alert-old", "sent", OLD, now), _message("alert-recent", "sent", RECENT, now)
        db_session.add_all([node, old, recent])
        db_session.flush()
        db_session.add_all(
            AlertNotification(
                route_node_id=node.id,
                conversation_id="cid",
                period="2026-08",
                kind="firing",
                alert_ids=[1],
                outbox_id=row.id,
                sent_at=row.created_at,
            )
            for row in (old, recent)
        )
        db_session.commit()
        recent_id = recent.id
        assert retention.prune_messages(now=now)["outbox"] == 1
        db_session.expire_all()
        notices = db_session.execute(
            sa.select(AlertNotification.conversation_id, AlertNotification.outbox_id).order_by(AlertNotification.id)
        ).all()
        assert [tuple(n) for n in notices] == [("cid", None), ("cid", recent_id)]
        assert _keys(OutboxMessage.idempotency_key) == ["alert-recent"]


def test_the_nightly_job_is_registered_and_runs_as_a_job(app):
    queue = app.extensions["workbench.queue"]
    job = queue.periodic["bot.prune_messages"]
    assert (job.func, job.seconds, job.offset) == ("bot.retention.prune_messages", 86400, 19 * 3600 + 10 * 60)
    now = utcnow()
    with app.app_context():
        db_session = session()
        db_session.add_all([_message("old", "sent", OLD, now), _message("recent", "sent", RECENT, now)])
        db_session.commit()
    queue.enqueue(retention.prune_messages)
    run_jobs(app)
    with app.app_context():
        assert _keys(OutboxMessage.idempotency_key) == ["recent"]


@pytest.mark.parametrize("value", ["29", "0", "-5", "ninety", "90.5"])
def test_message_retention_below_30_days_or_malformed_stops_start_up(value):
    with pytest.raises(ConfigError) as info:
        load_settings({"MESSAGE_RETENTION_DAYS": value}, read_dotenv=False)
    assert info.value.variable == "MESSAGE_RETENTION_DAYS"


def test_message_retention_defaults_to_90_days():
    assert load_settings({}, read_dotenv=False).message_retention_days == 90
    assert load_settings({"MESSAGE_RETENTION_DAYS": "30"}, read_dotenv=False).message_retention_days == 30

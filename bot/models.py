"""The bot's tables: the outbox (every outbound message is a row first), the once-a-day ledger of what each person
was sent, and the custom group robots (自定义机器人) the workbench may post to."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.dialects import postgresql

from workbench.db import Model, UTCDateTime, utcnow

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

CHANNELS = ("robot_webhook", "robot_oto", "robot_group", "work_notice", "card")
STATES = ("queued", "sending", "sent", "failed", "held")
PRIORITIES = {"low": 0, "normal": 1, "high": 2}


class OutboxMessage(Model):
    """One message the workbench means to send, committed with the business change that caused it.

    `recipients` are DingTalk userids for person channels (robot_oto, work_notice); `delivered` grows call by call,
    so a crash mid-way resumes with the people not yet reached. `inflight` names the call in progress
    (`{"uuid", "userids"}`): committed before the call and cleared after it, it is what recovery looks at.
    """

    __tablename__ = "bot_outbox"
    __table_args__ = (sa.Index("ix_bot_outbox_state_channel_target", "state", "channel", "target"),)

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    idempotency_key: orm.Mapped[str] = orm.mapped_column(sa.String(128), unique=True)
    channel: orm.Mapped[str] = orm.mapped_column(sa.String(32))
    # robot_webhook: the robot's name; robot_group: openConversationId; card: openSpaceId; person channels: ""
    # (recipients say who).
    target: orm.Mapped[str] = orm.mapped_column(sa.String(128), default="")
    recipients: orm.Mapped[list] = orm.mapped_column(JSON, default=list)
    payload: orm.Mapped[dict] = orm.mapped_column(default=dict)
    content_digest: orm.Mapped[str] = orm.mapped_column(sa.String(64))
    priority: orm.Mapped[int] = orm.mapped_column(default=PRIORITIES["normal"])
    # queued → sending → sent | failed; queued → held (quota nearly used) → queued
    state: orm.Mapped[str] = orm.mapped_column(sa.String(16), default="queued")
    attempts: orm.Mapped[int] = orm.mapped_column(default=0)
    last_error: orm.Mapped[str | None] = orm.mapped_column(sa.String(500))
    delivered: orm.Mapped[list] = orm.mapped_column(JSON, default=list)
    inflight: orm.Mapped[dict | None] = orm.mapped_column(JSON)
    receipts: orm.Mapped[list] = orm.mapped_column(JSON, default=list)  # one entry per DingTalk call
    send_result: orm.Mapped[dict | None] = orm.mapped_column(JSON)  # work notices: getsendresult
    # DingTalk's own ids (the latest call's, when a message took several calls; all are in `receipts`).
    process_query_key: orm.Mapped[str | None] = orm.mapped_column(sa.String(128))
    task_id: orm.Mapped[str | None] = orm.mapped_column(sa.String(64), index=True)
    out_track_id: orm.Mapped[str | None] = orm.mapped_column(sa.String(64), unique=True)
    instance_id: orm.Mapped[str | None] = orm.mapped_column(sa.String(64), index=True)
    created_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow)
    updated_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    sent_at: orm.Mapped[datetime | None] = orm.mapped_column(UTCDateTime())

    @property
    def pending_recipients(self) -> list[str]:
        done = set(self.delivered)
        return [u for u in self.recipients if u not in done]


class DailySend(Model):
    """Who was sent which content on which day (China time): DingTalk drops the same content to the same person
    twice a day anyway (work notices, code 143106), so the workbench does not spend a call on it."""

    __tablename__ = "bot_daily_sends"

    day: orm.Mapped[str] = orm.mapped_column(sa.String(10), primary_key=True)
    content_digest: orm.Mapped[str] = orm.mapped_column(sa.String(64), primary_key=True)
    userid: orm.Mapped[str] = orm.mapped_column(sa.String(64), primary_key=True)


class WebhookRobot(Model):
    """A custom group robot: its webhook token and 加签 secret, referred to by a name in outbox rows."""

    __tablename__ = "bot_webhook_robots"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    name: orm.Mapped[str] = orm.mapped_column(sa.String(64), unique=True)
    title: orm.Mapped[str] = orm.mapped_column(sa.String(128), default="")
    access_token: orm.Mapped[str] = orm.mapped_column(sa.String(128))
    secret: orm.Mapped[str | None] = orm.mapped_column(sa.String(128))
    created_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow)


class BotCard(Model):
    """An interactive card as the workbench knows it: the data it shows and, once someone acted, who.

    The card is a view of this row; a click is applied by the one request that sets `acted_by` (a conditional
    UPDATE), so a second tap, a second person or a replayed callback finds it taken and just gets the card back."""

    __tablename__ = "bot_cards"
    # Apps find a case's cards by prefix (`referral:<id>:%`, `control:<id>:%`) on every step: an index LIKE can use
    # whatever the database's collation (PostgreSQL needs the pattern operator class for that).
    __table_args__ = (
        sa.Index(
            "ix_bot_cards_out_track_prefix", "out_track_id", postgresql_ops={"out_track_id": "varchar_pattern_ops"}
        ),
    )

    out_track_id: orm.Mapped[str] = orm.mapped_column(sa.String(64), primary_key=True)
    template: orm.Mapped[str] = orm.mapped_column(sa.String(64))
    data: orm.Mapped[dict] = orm.mapped_column(default=dict)  # cardParamMap: every value a string
    version: orm.Mapped[int] = orm.mapped_column(default=1)
    acted_by: orm.Mapped[str | None] = orm.mapped_column(sa.String(64))
    action_id: orm.Mapped[str | None] = orm.mapped_column(sa.String(64))
    acted_at: orm.Mapped[datetime | None] = orm.mapped_column(UTCDateTime())
    created_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow)


APPROVAL_MODES = ("any", "all", "sequence")
APPROVAL_STATES = ("pending", "started", "approved", "refused", "terminated", "failed")
APPROVAL_RESULTS = ("agree", "refuse", "terminated", "failed")
FINAL_APPROVAL_STATES = ("approved", "refused", "terminated", "failed")


class BotApproval(Model):
    """One "ask these people, call me back" request (`bot.approvals.request_approval`), and what became of it.

    It runs as a DingTalk OA process instance (`channel` "workflow", `instance_id` set once started) or, without a
    process code, as approval cards to the approvers (`channel` "card"). `state` moves pending → started →
    approved | refused | terminated | failed, each step a conditional UPDATE so that duplicate events, replayed
    clicks and concurrent workers change it once; `callback_at` is set in the transaction that runs the caller's
    callback, so the callback's own changes and the mark commit together (exactly once)."""

    __tablename__ = "bot_approvals"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    idempotency_key: orm.Mapped[str] = orm.mapped_column(sa.String(128), unique=True)
    title: orm.Mapped[str] = orm.mapped_column(sa.String(200))
    originator_userid: orm.Mapped[str] = orm.mapped_column(sa.String(64))
    approvers: orm.Mapped[list] = orm.mapped_column(JSON, default=list)
    mode: orm.Mapped[str] = orm.mapped_column(sa.String(16), default="any")  # any | all | sequence
    form: orm.Mapped[list] = orm.mapped_column(JSON, default=list)  # [[name, value], …] as shown to approvers
    callback: orm.Mapped[str] = orm.mapped_column(sa.String(200))  # "module:function"
    context: orm.Mapped[dict] = orm.mapped_column(JSON, default=dict)
    channel: orm.Mapped[str] = orm.mapped_column(sa.String(16))  # workflow | card
    process_code: orm.Mapped[str | None] = orm.mapped_column(sa.String(64))
    instance_id: orm.Mapped[str | None] = orm.mapped_column(sa.String(64), unique=True)
    state: orm.Mapped[str] = orm.mapped_column(sa.String(16), default="pending")
    result: orm.Mapped[str | None] = orm.mapped_column(sa.String(16))  # agree | refuse | terminated | failed
    # Who decided what, as far as the workbench saw it: {userid, result, at, via (card|event|read), task_id?}.
    decisions: orm.Mapped[list] = orm.mapped_column(JSON, default=list)
    attempts: orm.Mapped[int] = orm.mapped_column(default=0)
    last_error: orm.Mapped[str | None] = orm.mapped_column(sa.String(500))
    # Set before the start call and kept: a row still `pending` with it set was interrupted mid-call.
    start_claimed_at: orm.Mapped[datetime | None] = orm.mapped_column(UTCDateTime())
    created_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow)
    updated_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    started_at: orm.Mapped[datetime | None] = orm.mapped_column(UTCDateTime())
    checked_at: orm.Mapped[datetime | None] = orm.mapped_column(UTCDateTime())  # last event or read of the instance
    finished_at: orm.Mapped[datetime | None] = orm.mapped_column(UTCDateTime())
    callback_at: orm.Mapped[datetime | None] = orm.mapped_column(UTCDateTime())

    __table_args__ = (sa.Index("ix_bot_approvals_state", "state"),)

"""Retention of the bot's own tables: sent messages, cards and the once-a-day ledger do not outlive their purpose.

The outbox and the cards keep what a message showed (masked patient names in reminders, referral notices, task
cards); precision-control retention anonymises a campaign's persons, but these copies would stay for ever. A nightly
job (`prune_messages`, 03:10 China time) deletes, after `MESSAGE_RETENTION_DAYS` (default 90, at least 30):

- outbox rows in a final state (`sent`, `failed`) not changed since the cut-off. Rows still `queued`, `sending` or
  `held` are work in progress and stay, however old.
- cards whose last known change (the click, else the sending) is older than the cut-off. Their buttons only
  shortcut what the app's own pages do (a precision-control task, a referral), so an old open card goes too: a late
  tap gets "卡片不存在" and the person uses the page. Two kinds stay: a card whose outbox row has not reached a final
  state (not delivered yet), and an unclicked card of an approval still open (`bot.approvals`, card mode), since
  such a card is the approver's only way to decide.
- `bot_daily_sends` rows older than the two days before today (China time): the same-day dedupe reads today's only,
  the spare days cover a clock or time zone slip around midnight. Not tied to the setting: they hold digests and
  userids only, and nothing needs them after the day.

A row that another table references through a foreign key (`alert_notifications.outbox_id` today; found from the
schema, so a new reference is handled without changing this module) has the reference set to NULL in the batch
that deletes the row: the referencing row keeps its own record of what was sent, and the column is nullable by
design (it is NULL already when the outbox skipped a message). A NOT NULL reference keeps the row instead.

After a row is gone its idempotency key (and a card's out_track_id) may be used again: keys guard against repeats
within a business action's retry window (job retries, double submits), days not months; callers that need a
lasting "already sent" mark keep their own (ControlNotice, reminder marks, AlertNotification).

Deletes run in batches of `BATCH_SIZE` rows, each batch its own transaction, so a large backlog (the first run on a
busy county) neither locks a table for long nor holds one huge transaction.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app

from bot.approvals import CARD_PREFIX
from bot.models import FINAL_APPROVAL_STATES, BotApproval, BotCard, DailySend, OutboxMessage
from workbench import db
from workbench.db import utcnow
from workbench.dingtalk.meter import BILLING_TZ

log = logging.getLogger(__name__)

PRUNE_OFFSET = 19 * 3600 + 10 * 60  # 19:10 UTC = 03:10 China time, before the audit (03:20) and event (03:30) prunes
BATCH_SIZE = 2000  # rows per statement and transaction
FINAL_STATES = ("sent", "failed")  # bot.models.STATES: the outbox never changes these rows again by itself
DAILY_SEND_SPARE_DAYS = 2


def prune_messages(now: datetime | None = None, *, batch_size: int = BATCH_SIZE) -> dict[str, int]:
    """The nightly job: delete old final outbox rows, old cards and old daily-send rows (see the module docstring).

    Returns the number of rows deleted per table (`outbox`, `cards`, `daily_sends`) and the number of batches
    (transactions) it took."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    now = now or utcnow()
    days = current_app.config["SETTINGS"].message_retention_days
    cutoff = now - timedelta(days=days)
    engine = db.get_db().engine
    outbox, outbox_batches = _prune_keyed(engine, OutboxMessage.__table__, _old_outbox(cutoff), batch_size)
    cards, card_batches = _prune_keyed(engine, BotCard.__table__, _old_cards(cutoff), batch_size)
    daily, daily_batches = _prune_daily_sends(engine, now, batch_size)
    counts = {
        "outbox": outbox,
        "cards": cards,
        "daily_sends": daily,
        "batches": outbox_batches + card_batches + daily_batches,
    }
    for table in ("outbox", "cards", "daily_sends"):
        if counts[table]:
            log.info(
                "bot rows pruned",
                extra={"action": f"prune_{table}", "deleted": counts[table], "retention_days": days},
            )
    return counts


def _old_outbox(cutoff: datetime) -> sa.ColumnElement[bool]:
    return sa.and_(OutboxMessage.state.in_(FINAL_STATES), OutboxMessage.updated_at < cutoff)


def _old_cards(cutoff: datetime) -> sa.ColumnElement[bool]:
    undelivered = (
        sa.select(OutboxMessage.id)
        .where(OutboxMessage.out_track_id == BotCard.out_track_id, OutboxMessage.state.not_in(FINAL_STATES))
        .exists()
    )
    # Approval cards are named bot-approval:<approval id>:<index>:<random>; the ":" after the id keeps approval 1
    # from matching approval 12's cards.
    open_approval = (
        sa.select(BotApproval.id)
        .where(
            BotApproval.state.not_in(FINAL_APPROVAL_STATES),
            BotCard.out_track_id.like(sa.literal(CARD_PREFIX) + sa.cast(BotApproval.id, sa.String) + ":%"),
        )
        .exists()
    )
    return sa.and_(
        sa.func.coalesce(BotCard.acted_at, BotCard.created_at) < cutoff,
        ~undelivered,
        ~sa.and_(BotCard.acted_by.is_(None), open_approval),
    )


def _references(table: sa.Table) -> list[sa.Column]:
    """Columns of other tables with a foreign key to `table` (its single-column primary key)."""
    import workbench.models  # noqa: F401 - every part's models, so that the metadata knows every reference

    return [
        fk.parent for other in db.Model.metadata.sorted_tables for fk in other.foreign_keys if fk.column.table is table
    ]


def _prune_keyed(engine: sa.Engine, table: sa.Table, old: sa.ColumnElement[bool], batch_size: int) -> tuple[int, int]:
    """Delete the rows of `table` matching `old`, `batch_size` at a time, one transaction per batch; nullable
    references to them are set to NULL first, rows with a NOT NULL reference are kept. Returns (deleted, batches)."""
    (key,) = table.primary_key.columns
    references = _references(table)
    held = [~sa.select(ref).where(ref == key).exists() for ref in references if not ref.nullable]
    nullable = [ref for ref in references if ref.nullable]
    condition = sa.and_(old, *held)
    deleted = batches = 0
    while True:
        with engine.begin() as conn:
            # Locked (PostgreSQL) so that an administrator's retry cannot revive a row between the two statements;
            # rows another transaction holds are left for the next run.
            ids = conn.scalars(
                sa.select(key).where(condition).order_by(key).limit(batch_size).with_for_update(skip_locked=True)
            ).all()
            if not ids:
                break
            for ref in nullable:
                conn.execute(sa.update(ref.table).where(ref.in_(ids)).values({ref.name: None}))
            deleted += conn.execute(sa.delete(table).where(key.in_(ids), condition)).rowcount or 0
        batches += 1
        if len(ids) < batch_size:
            break
    return deleted, batches


def _prune_daily_sends(engine: sa.Engine, now: datetime, batch_size: int) -> tuple[int, int]:
    """Delete ledger rows of days before the spare window; `day` is an ISO date, so text order is date order."""
    first_kept = (now.astimezone(BILLING_TZ).date() - timedelta(days=DAILY_SEND_SPARE_DAYS)).isoformat()
    columns = (DailySend.day, DailySend.content_digest, DailySend.userid)
    deleted = batches = 0
    while True:
        with engine.begin() as conn:
            batch = sa.select(*columns).where(DailySend.day < first_kept).limit(batch_size)
            count = conn.execute(sa.delete(DailySend).where(sa.tuple_(*columns).in_(batch))).rowcount or 0
        if not count:
            break
        deleted += count
        batches += 1
        if count < batch_size:
            break
    return deleted, batches

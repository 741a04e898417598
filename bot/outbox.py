"""The outbox: every outbound message is a row first, committed with the business change that caused it, then
delivered by a job with retries, exactly once where DingTalk lets us know (see `bot.channels` for each channel).

Life of a row: `enqueue_message` adds it to the caller's session; when the caller commits, an `after_commit` hook
queues `deliver(channel, target)`. The job claims queued rows (state `sending`), plans the fewest calls, and for
each call commits `inflight = {uuid, userids}` before calling DingTalk and the result after; rows whose recipients
were all reached become `sent`. `recover_outbox` (every 15 s) re-queues what is waiting (alerts in their group_wait,
rate-limited posts, job failures), resumes rows a crash left in `sending`, and releases held rows once the quota
allows.

Delivery is exactly once where DingTalk drops repeats (custom robot `msgUuid`, card `outTrackId`, work notices'
same-content-same-day rule) and at most once elsewhere (enterprise robot: an interrupted call becomes "outcome
unknown" for an administrator). Calls DingTalk refused are retried; a call that timed out after DingTalk took it
is indistinguishable from a refused one, so the gateway's own retry can repeat an enterprise-robot message.

Rows never log their content: logs name the row id, channel and counts only.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, timedelta

import sqlalchemy as sa
from flask import current_app
from sqlalchemy import event, orm

from bot import messages
from bot.channels import Call, get_channel
from bot.models import CHANNELS, PRIORITIES, DailySend, OutboxMessage, WebhookRobot
from workbench.db import session, utcnow
from workbench.dingtalk import get_gateway, get_meter
from workbench.dingtalk.errors import DingTalkError, QuotaExceededError, ThrottledError, TransientError
from workbench.dingtalk.meter import BILLING_TZ
from workbench.errors import ApiError
from workbench.queue import get_queue

log = logging.getLogger(__name__)

PERSON_CHANNELS = ("robot_oto", "work_notice")
MAX_ATTEMPTS = 5
CLAIM_LIMIT = 1000
QUOTA_HOLD_RATIO = 0.9  # above this share of the month's quota, low-priority rows wait
GROUP_WAIT = 10  # seconds; see _group_wait_over
LEASE = timedelta(minutes=5)  # a row `sending` for longer was left by a crashed worker
RESULT_DELAY = timedelta(seconds=30)  # DingTalk fills a work notice's send result shortly after the send
MESSAGE_LIMITS = {"work_notice": 2000, "robot_group": 15000, "robot_webhook": 15000, "robot_oto": 15000}
_PENDING = "bot.outbox.pending"


class DeliveryIncomplete(Exception):
    """Some calls failed for a reason worth retrying; raised so that the job queue runs `deliver` again."""


# -- enqueueing ---------------------------------------------------------------------------------------------------


def enqueue_message(
    channel: str,
    message: dict,
    *,
    idempotency_key: str,
    to: Sequence[str] = (),
    target: str = "",
    priority: str = "normal",
    db: orm.Session | None = None,
) -> OutboxMessage | None:
    """Add a message to the outbox in the caller's transaction; it is delivered once the caller commits.

    `to` are userids (robot_oto, work_notice), `target` the robot name (robot_webhook) or openConversationId
    (robot_group). The same `idempotency_key` again returns the first row. People who were already sent the same
    content today are left out; if that leaves nobody, nothing is queued and None is returned.
    """
    db = db or session()
    _validate(channel, message, to, target, priority, idempotency_key, db)
    existing = db.scalar(sa.select(OutboxMessage).where(OutboxMessage.idempotency_key == idempotency_key))
    if existing is not None:
        return existing
    digest = messages.content_digest(message)
    recipients = list(dict.fromkeys(to))
    if channel in PERSON_CHANNELS:
        recipients = _not_sent_today(db, digest, recipients)
        if not recipients:
            log.info("message already sent to everyone today; not queued", extra={"channel": channel})
            return None
    return add_row(
        db,
        channel=channel,
        target=target,
        payload=message,
        digest=digest,
        idempotency_key=idempotency_key,
        recipients=recipients,
        priority=priority,
    )


def add_row(
    db: orm.Session,
    *,
    channel: str,
    target: str,
    payload: dict,
    digest: str,
    idempotency_key: str,
    recipients: Sequence[str] = (),
    priority: str = "normal",
    out_track_id: str | None = None,
) -> OutboxMessage:
    """The row itself, validated by the caller (`enqueue_message`, `bot.cards.send_card`), delivered after commit."""
    row = OutboxMessage(
        idempotency_key=idempotency_key,
        channel=channel,
        target=target,
        recipients=list(recipients),
        payload=payload,
        content_digest=digest,
        priority=PRIORITIES[priority],
        state="queued",
        attempts=0,
        delivered=[],
        receipts=[],
        out_track_id=out_track_id,
    )
    db.add(row)
    db.info.setdefault(_PENDING, set()).add((channel, target))
    return row


def _validate(
    channel: str, message: dict, to: Sequence[str], target: str, priority: str, key: str, db: orm.Session
) -> None:
    if channel not in CHANNELS or channel == "card":  # cards go through bot.cards.send_card
        raise ApiError("invalid_channel", f"channel 只能是 {', '.join(CHANNELS[:-1])}", field="channel")
    if priority not in PRIORITIES:
        raise ApiError("invalid_priority", f"priority 只能是 {', '.join(PRIORITIES)}", field="priority")
    if not key or len(key) > 128:
        raise ApiError("invalid_idempotency_key", "idempotency_key 必填且不超过128个字符", field="idempotency_key")
    if not isinstance(message, dict) or message.get("msgtype") not in ("markdown", "text") or not message.get("text"):
        raise ApiError("invalid_message", "message 须由 bot.messages 的模板生成", field="message")
    if messages.size(message) > MESSAGE_LIMITS[channel]:
        raise ApiError("message_too_long", f"消息超过 {MESSAGE_LIMITS[channel]} 字节", field="message")
    if channel in PERSON_CHANNELS:
        if not to or not all(isinstance(u, str) and u for u in to):
            raise ApiError("invalid_recipients", "to 须为非空的 userid 列表", field="to")
    elif not target:
        raise ApiError("invalid_target", "target 必填（机器人名称或群 openConversationId）", field="target")
    if channel == "robot_webhook" and db.scalar(sa.select(WebhookRobot.id).where(WebhookRobot.name == target)) is None:
        raise ApiError("unknown_robot", f"未配置名为 {target} 的群机器人", field="target", status=404)


def _today() -> str:
    return utcnow().astimezone(BILLING_TZ).strftime("%Y-%m-%d")


def _not_sent_today(db: orm.Session, digest: str, userids: list[str]) -> list[str]:
    """Drop people who got this content today, and record the rest as sent today (same transaction)."""
    day = _today()
    already: set[str] = set()
    for start in range(0, len(userids), 500):
        chunk = userids[start : start + 500]
        already |= set(
            db.scalars(
                sa.select(DailySend.userid).where(
                    DailySend.day == day, DailySend.content_digest == digest, DailySend.userid.in_(chunk)
                )
            )
        )
    fresh = [u for u in userids if u not in already]
    db.add_all(DailySend(day=day, content_digest=digest, userid=u) for u in fresh)
    return fresh


@event.listens_for(orm.Session, "after_commit")
def _queue_delivery(db: orm.Session) -> None:
    """Queue delivery only after the rows are committed, so a rolled-back change never sends anything."""
    pending = db.info.pop(_PENDING, None)
    for channel, target in sorted(pending or ()):
        schedule_delivery(channel, target)


@event.listens_for(orm.Session, "after_rollback")
def _forget_delivery(db: orm.Session) -> None:
    db.info.pop(_PENDING, None)


def schedule_delivery(channel: str, target: str = "") -> None:
    get_queue().enqueue(deliver, channel, target, retries=3)


# -- delivering ---------------------------------------------------------------------------------------------------


def deliver(channel: str, target: str = "") -> None:
    """The delivery job: send every queued row of one channel and target in the fewest calls."""
    db = session()
    try:
        rows = _claim(db, channel, target)
        if not rows:
            return
        ch = get_channel(channel)
        retry = False
        for call in ch.plan(rows):
            if not ch.admit(call):
                log.info("rate limit reached; rows wait for the next run", extra={"channel": channel})
                break
            retry |= not _make_call(db, call, channel)
        _settle(db, rows)
    except BaseException:
        db.rollback()  # a dying job leaves what it committed, never half-recorded changes for the next job
        raise
    if retry:
        raise DeliveryIncomplete(f"{channel}: some calls failed and will be retried")


def _claim(db: orm.Session, channel: str, target: str) -> list[OutboxMessage]:
    """Take the queued rows of (channel, target) for this worker; low-priority ones are held when quota is tight."""
    if channel == "robot_webhook" and not _group_wait_over(db, target):
        db.commit()
        return []
    query = (
        sa.select(OutboxMessage)
        .where(OutboxMessage.state == "queued", OutboxMessage.channel == channel, OutboxMessage.target == target)
        .order_by(OutboxMessage.priority.desc(), OutboxMessage.id)
        .limit(CLAIM_LIMIT)
        .with_for_update(skip_locked=True)
    )
    rows = list(db.scalars(query))
    if not rows:
        db.commit()
        return []
    tight = quota_tight(get_channel(channel).quota_kind)
    claimed = []
    for row in rows:
        if tight and row.priority == PRIORITIES["low"]:
            row.state = "held"
        else:
            row.state = "sending"
            claimed.append(row)
    held = len(rows) - len(claimed)
    if held:
        log.warning(
            "DingTalk quota nearly used: holding low-priority messages",
            extra={"channel": channel, "held": held, "quota": get_channel(channel).quota_kind},
        )
    db.commit()
    return claimed


def _group_wait_over(db: orm.Session, robot: str) -> bool:
    """Alertmanager's group_wait: a robot's first queued alert waits `BOT_WEBHOOK_GROUP_WAIT` seconds (default
    10) so that the alerts of one evaluation round go out as one message; `recover_outbox` sends them after."""
    wait = current_app.config.get("BOT_WEBHOOK_GROUP_WAIT", GROUP_WAIT)
    if wait <= 0:
        return True
    oldest = db.scalar(
        sa.select(sa.func.min(OutboxMessage.created_at)).where(
            OutboxMessage.state == "queued", OutboxMessage.channel == "robot_webhook", OutboxMessage.target == robot
        )
    )
    if oldest is None:
        return True
    if oldest.tzinfo is None:  # SQLite hands an aggregate back as a naive UTC value
        oldest = oldest.replace(tzinfo=UTC)
    return oldest <= utcnow() - timedelta(seconds=wait)


def quota_tight(kind: str) -> bool:
    """Whether this month's metered use of `kind` ("api" or "message") is past `QUOTA_HOLD_RATIO` of the quota."""
    usage = get_meter().usage()[kind]
    return usage["used"] >= usage["quota"] * QUOTA_HOLD_RATIO


def _make_call(db: orm.Session, call: Call, channel: str) -> bool:
    """One call, bracketed by two commits; False when it failed in a way worth retrying."""
    for row, userids in call.parts:
        row.inflight = {"uuid": call.uuid, "userids": userids}
    db.commit()
    try:
        receipt = get_channel(channel).send(call)
    except DingTalkError as exc:
        return _record_failure(db, call, exc)
    _record_success(db, call, receipt)
    return True


def _record_success(db: orm.Session, call: Call, receipt: dict) -> None:
    now = utcnow()
    for row, userids in call.parts:
        row.delivered = [*row.delivered, *userids]
        row.receipts = [*row.receipts, {**receipt, "uuid": call.uuid, "userids": userids, "at": now.isoformat()}]
        row.inflight = None
        row.process_query_key = receipt.get("process_query_key") or row.process_query_key
        row.task_id = receipt.get("task_id") or row.task_id
        if not row.pending_recipients:
            row.state, row.sent_at, row.last_error = "sent", now, None
    db.commit()


def _record_failure(db: orm.Session, call: Call, exc: DingTalkError) -> bool:
    """DingTalk refused the call (it counts nothing it refused): retry what may succeed later, fail the rest."""
    retryable = isinstance(exc, ThrottledError | TransientError)
    for row, _userids in call.parts:
        row.inflight = None
        row.attempts += 1
        row.last_error = str(exc)[:500]
        if isinstance(exc, QuotaExceededError):
            row.state = "held"
        elif not retryable or row.attempts >= MAX_ATTEMPTS:
            row.state = "failed"
    db.commit()
    log.warning("delivery call failed", extra={"status": exc.code, "rows": [r.id for r, _ in call.parts]})
    return retryable


def _settle(db: orm.Session, rows: list[OutboxMessage]) -> None:
    """Rows still `sending` after the run (rate-limited, or a retryable failure) go back to the queue."""
    for row in rows:
        if row.state == "sending":
            row.state = "queued"
    db.commit()


# -- recovery, held rows, results ---------------------------------------------------------------------------------


def recover_outbox(lease: timedelta = LEASE) -> dict:
    """The periodic sweep: resume rows a crash left `sending`, release held rows, re-queue waiting deliveries."""
    db = session()
    try:
        return _recover(db, utcnow() - lease)
    except BaseException:
        db.rollback()
        raise


def _recover(db: orm.Session, stale) -> dict:
    stuck = list(
        db.scalars(
            sa.select(OutboxMessage)
            .where(OutboxMessage.state == "sending", OutboxMessage.updated_at <= stale)
            .order_by(OutboxMessage.id)
            .with_for_update(skip_locked=True)
        )
    )
    resumed = _resume(db, stuck)
    released = _release_held(db)
    waiting = db.execute(
        sa.select(OutboxMessage.channel, OutboxMessage.target).where(OutboxMessage.state == "queued").distinct()
    ).all()
    db.commit()
    for channel, target in waiting:
        schedule_delivery(channel, target)
    return {"resumed": resumed, "released": released, "scheduled": len(waiting)}


def _resume(db: orm.Session, rows: list[OutboxMessage]) -> int:
    """Rows a crash left `sending`. With no call in flight they simply go back to the queue. A call in flight is
    made again where DingTalk drops repeats (same uuid, same content); elsewhere it may have arrived, so the row
    fails as "outcome unknown" for an administrator to check and retry, rather than reach people twice."""
    calls: dict[str, list[OutboxMessage]] = defaultdict(list)
    for row in rows:
        if not row.inflight:
            row.state = "queued"
        elif get_channel(row.channel).idempotent:
            calls[row.inflight["uuid"]].append(row)
        else:
            row.state = "failed"
            row.last_error = "outcome_unknown: 发送过程中断，无法确认是否送达；请确认后在管理接口重试"
            row.receipts = [*row.receipts, {**row.inflight, "outcome": "unknown"}]
            row.inflight = None
    db.commit()
    for call_uuid, call_rows in calls.items():
        channel = get_channel(call_rows[0].channel)
        if hasattr(channel, "rebuild"):
            call = channel.rebuild(call_uuid, call_rows)
        else:
            call = Call(call_uuid, [(r, list(r.inflight["userids"])) for r in call_rows], call_rows[0].payload)
        if not channel.admit(call):
            continue  # the robot's minute is full: the rows stay interrupted and the next recovery run resumes them
        if _make_call(db, call, channel.name):
            log.info("resumed an interrupted call", extra={"channel": channel.name, "rows": len(call_rows)})
        _settle(db, call_rows)
    return len(rows)


def _release_held(db: orm.Session) -> int:
    released = 0
    for channel in CHANNELS:
        if quota_tight(get_channel(channel).quota_kind):
            continue
        result = db.execute(
            sa.update(OutboxMessage)
            .where(OutboxMessage.state == "held", OutboxMessage.channel == channel)
            .values(state="queued", updated_at=utcnow())
        )
        released += result.rowcount or 0
    return released


def fetch_send_results(min_age: timedelta = RESULT_DELAY) -> int:
    """Read `getsendresult` once per work-notice task and keep it on the rows (who was invalid, forbidden,
    read); one metered call per task, so it waits until DingTalk has had time to fill the result. Returns the
    number of tasks read."""
    db = session()
    rows = db.scalars(
        sa.select(OutboxMessage)
        .where(
            OutboxMessage.channel == "work_notice",
            OutboxMessage.state == "sent",
            OutboxMessage.send_result.is_(None),
            OutboxMessage.sent_at <= utcnow() - min_age,
        )
        .order_by(OutboxMessage.id)
        .limit(CLAIM_LIMIT)
    ).all()
    agent = current_app.config["SETTINGS"].dingtalk.agent_id
    results: dict[str, dict] = {}
    for row in rows:
        tasks = list(dict.fromkeys(r["task_id"] for r in row.receipts if r.get("task_id")))
        for task_id in tasks:
            if task_id not in results:
                reply = get_gateway().oapi(
                    "/topapi/message/corpconversation/getsendresult", {"agent_id": agent, "task_id": int(task_id)}
                )
                results[task_id] = reply.get("send_result") or {}
        row.send_result = summarize_send_results({t: results[t] for t in tasks})
        db.commit()
    return len(results)


def summarize_send_results(results: dict[str, dict]) -> dict:
    """One row's view of its tasks' results: the per-task replies and the union of each list of userids.

    `forbidden` people include those DingTalk refused as repeats (143106): after a resumed call they were reached
    by the interrupted one."""
    summary: dict = {"tasks": results}
    for name in ("invalid_user_id_list", "forbidden_user_id_list", "failed_user_id_list", "read_user_id_list"):
        summary[name] = sorted({u for result in results.values() for u in result.get(name) or []})
    return summary


# -- administration -----------------------------------------------------------------------------------------------


def retry_message(message_id: int) -> OutboxMessage:
    """Send a failed or held row again (an administrator's decision: for "outcome unknown" it may repeat)."""
    db = session()
    row = db.get(OutboxMessage, message_id)
    if row is None:
        raise ApiError("not_found", "消息不存在", status=404)
    if row.state not in ("failed", "held"):
        raise ApiError("not_retryable", f"只能重试失败或暂缓的消息（当前状态 {row.state}）", status=409, field="state")
    row.state, row.attempts, row.inflight = "queued", 0, None
    db.info.setdefault(_PENDING, set()).add((row.channel, row.target))
    db.commit()
    return row


def counts_by_state() -> dict[str, int]:
    rows = session().execute(sa.select(OutboxMessage.state, sa.func.count()).group_by(OutboxMessage.state))
    counts = {state: 0 for state in ("queued", "sending", "sent", "failed", "held")}
    counts.update({state: n for state, n in rows})
    return counts


def register_robot(name: str, access_token: str, secret: str | None = None, title: str = "") -> WebhookRobot:
    """Configure a custom group robot (its webhook token and 加签 secret) under a name rows can target."""
    db = session()
    robot = db.scalar(sa.select(WebhookRobot).where(WebhookRobot.name == name))
    if robot is None:
        robot = WebhookRobot(name=name)
        db.add(robot)
    robot.title, robot.access_token, robot.secret = title, access_token, secret
    db.commit()
    return robot

"""The outbox against a real sandbox, on both backends: exactly-once delivery, batching, coalescing, crash
recovery, once-a-day dedupe and the quota hold."""

from __future__ import annotations

import logging
import time
import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa

from bot import messages, outbox
from bot.models import OutboxMessage
from tests.bot.conftest import accepted, deliver_all, sandbox_messages
from workbench.db import session
from workbench.dingtalk import get_meter

BATCH_SEND = "/v1.0/robot/oToMessages/batchSend"
ASYNC_SEND = "/topapi/message/corpconversation/asyncsend_v2"


def _rows(app) -> list[OutboxMessage]:
    with app.app_context():
        db = session()
        db.expire_all()
        return list(db.scalars(sa.select(OutboxMessage).order_by(OutboxMessage.id)))


def _alert(n: int, tag: str) -> dict:
    return messages.alert(
        level="warning",
        indicator="基层就诊率",
        org_name=f"第{n}卫生院",
        summary=f"告警 {tag}-{n}：基层就诊率低于目标",
        at_mobiles=["13800001234"] if n == 0 else (),
    )


def _crash_once(monkeypatch) -> list[int]:
    """Make the worker die once right after DingTalk accepted a call, before the outbox recorded it."""
    crashes: list[int] = []
    real = outbox._record_success

    def crash(db, call, receipt):
        if not crashes:
            crashes.append(1)
            raise RuntimeError("worker killed")
        return real(db, call, receipt)

    monkeypatch.setattr(outbox, "_record_success", crash)
    return crashes


def _recover(app) -> dict:
    with app.app_context():
        return outbox.recover_outbox(lease=timedelta(0))


def test_webhook_alert_is_signed_delivered_once_and_after_commit_only(app, sandbox, robot):
    tag = uuid.uuid4().hex[:8]
    with app.app_context():
        db = session()
        outbox.enqueue_message("robot_webhook", _alert(0, tag), idempotency_key=f"rolled-back-{tag}", target="alerts")
        db.rollback()
        row = outbox.enqueue_message("robot_webhook", _alert(1, tag), idempotency_key=f"a-{tag}", target="alerts")
        again = outbox.enqueue_message("robot_webhook", _alert(1, tag), idempotency_key=f"a-{tag}", target="alerts")
        assert again is row
        db.commit()
    deliver_all(app)
    _recover(app)  # a sweep afterwards finds nothing to resend
    deliver_all(app)
    got = sandbox_messages(sandbox, conversation=robot["open_conversation_id"])
    assert len(got) == 1
    assert f"告警 {tag}-1" in got[0]["content"]["markdown"]["text"]
    [row] = _rows(app)
    assert row.state == "sent" and row.sent_at is not None and row.attempts == 0
    assert row.receipts[0]["msg_uuid"] and row.inflight is None


def test_burst_of_500_alerts_coalesced_under_the_robot_limit(app, sandbox, robot):
    tag = uuid.uuid4().hex[:8]
    with app.app_context():
        for n in range(500):
            outbox.enqueue_message("robot_webhook", _alert(n, tag), idempotency_key=f"{tag}-{n}", target="alerts")
        session().commit()
    deliver_all(app)
    got = sandbox_messages(sandbox, conversation=robot["open_conversation_id"])
    assert 1 <= len(got) <= 19
    text = "\n".join(m["content"]["markdown"]["text"] for m in got)
    for n in range(500):
        assert f"告警 {tag}-{n}：" in text
    assert got[0]["content"]["at"]["atMobiles"] == ["13800001234"]
    assert {r.state for r in _rows(app)} == {"sent"}


def test_alerts_committed_one_by_one_never_trip_the_limit(app, sandbox, robot):
    """100 separate transactions: at most 19 posts a minute; what does not fit waits queued (never dropped,
    never refused by DingTalk) and goes out merged once the window has room."""
    tag = uuid.uuid4().hex[:8]
    with app.app_context():
        for n in range(100):
            outbox.enqueue_message("robot_webhook", _alert(n, tag), idempotency_key=f"{tag}-{n}", target="alerts")
            session().commit()
    deliver_all(app)
    _recover(app)
    deliver_all(app)
    got = sandbox_messages(sandbox, conversation=robot["open_conversation_id"])
    assert len(got) <= 19
    rows = _rows(app)
    assert {r.state for r in rows} <= {"sent", "queued"}
    assert not any(r.last_error for r in rows)  # DingTalk never answered 410100
    text = "\n".join(m["content"]["markdown"]["text"] for m in got)
    for n, row in enumerate(rows):
        assert (f"告警 {tag}-{n}：" in text) == (row.state == "sent")


def test_crash_after_webhook_post_resends_with_the_same_msg_uuid(app, sandbox, robot, monkeypatch):
    tag = uuid.uuid4().hex[:8]
    crashes = _crash_once(monkeypatch)
    with app.app_context():
        for n in range(3):
            outbox.enqueue_message("robot_webhook", _alert(n, tag), idempotency_key=f"{tag}-{n}", target="alerts")
        session().commit()
    deliver_all(app)
    assert crashes == [1]
    rows = _rows(app)
    assert {r.state for r in rows} == {"sending"} and all(r.inflight for r in rows)
    assert _recover(app)["resumed"] == 3
    deliver_all(app)
    got = sandbox_messages(sandbox, conversation=robot["open_conversation_id"])
    assert len(got) == 1  # the repeat post carried the same msgUuid: DingTalk dropped it
    assert {r.state for r in _rows(app)} == {"sent"}


def test_45_people_one_text_take_3_batch_sends(app, sandbox, userids):
    tag = uuid.uuid4().hex[:8]
    people = userids[:45]
    before = accepted(sandbox, BATCH_SEND)
    since = str(len(sandbox_messages(sandbox)))
    with app.app_context():
        msg = messages.text(f"随访提醒 {tag}")
        # Three callers, same content: merged into the fewest calls.
        for n, part in enumerate((people[:15], people[15:30], people[30:])):
            outbox.enqueue_message("robot_oto", msg, idempotency_key=f"{tag}-{n}", to=part)
        session().commit()
    deliver_all(app)
    assert accepted(sandbox, BATCH_SEND) - before == 3
    got = sandbox_messages(sandbox, kind="robot_oto", since=since)
    received = [u for m in got if tag in m["content"]["content"] for u in m["userids"]]
    assert sorted(received) == sorted(people)
    rows = _rows(app)
    assert {r.state for r in rows} == {"sent"} and all(r.process_query_key for r in rows)


def test_crash_after_batch_send_is_not_sent_twice(app, sandbox, userids, monkeypatch):
    """batchSend has no idempotency key through the SDK: an interrupted call is "outcome unknown", never resent
    on its own; the administrator's retry is the deliberate second send."""
    tag = uuid.uuid4().hex[:8]
    crashes = _crash_once(monkeypatch)
    since = str(len(sandbox_messages(sandbox)))
    with app.app_context():
        outbox.enqueue_message("robot_oto", messages.text(f"复诊 {tag}"), idempotency_key=tag, to=userids[:5])
        session().commit()
    deliver_all(app)
    assert crashes == [1]
    _recover(app)
    deliver_all(app)
    [row] = _rows(app)
    assert row.state == "failed" and row.last_error.startswith("outcome_unknown")
    assert row.receipts[-1]["outcome"] == "unknown"
    got = [m for m in sandbox_messages(sandbox, kind="robot_oto", since=since) if tag in m["content"]["content"]]
    assert len(got) == 1


def test_250_work_notice_recipients_take_3_calls_and_results_are_fetched(app, sandbox, userids, monkeypatch):
    tag = uuid.uuid4().hex[:8]
    people = userids[:250]
    crashes = _crash_once(monkeypatch)  # and the second call is interrupted after DingTalk took it
    before = accepted(sandbox, ASYNC_SEND)
    since = str(len(sandbox_messages(sandbox)))
    with app.app_context():
        msg = messages.notice(title="医保结算结果", lines=[f"批次 {tag} 已结算"])
        outbox.enqueue_message("work_notice", msg, idempotency_key=tag, to=people)
        session().commit()
    deliver_all(app)
    assert crashes == [1]
    _recover(app)
    deliver_all(app)
    # 3 calls, plus the interrupted one made again: DingTalk drops the repeat (same content, same day).
    assert accepted(sandbox, ASYNC_SEND) - before == 4
    got = [m for m in sandbox_messages(sandbox, kind="work_notice", since=since) if tag in str(m["content"])]
    received = [u for m in got for u in m["userids"]]
    assert sorted(received) == sorted(people)  # each person exactly once
    [row] = _rows(app)
    assert row.state == "sent" and sorted(row.delivered) == sorted(people)
    assert len({r["task_id"] for r in row.receipts}) == 3  # the interrupted call's task id was never recorded
    with app.app_context():
        assert outbox.fetch_send_results(min_age=timedelta(0)) == 3
        assert outbox.fetch_send_results(min_age=timedelta(0)) == 0  # read once
    [row] = _rows(app)
    assert len(row.send_result["tasks"]) == 3
    # The repeat of the interrupted call reached nobody: DingTalk refused it as the same content today.
    assert len(row.send_result["forbidden_user_id_list"]) == 100


def test_same_content_to_the_same_person_once_a_day(app, userids):
    a, b, c = userids[:3]
    with app.app_context():
        msg = messages.text(f"今日随访 {uuid.uuid4().hex[:8]}")
        first = outbox.enqueue_message("work_notice", msg, idempotency_key="d1", to=[a, b, a])
        second = outbox.enqueue_message("work_notice", msg, idempotency_key="d2", to=[b, c])
        third = outbox.enqueue_message("work_notice", msg, idempotency_key="d3", to=[a, c])
        other = outbox.enqueue_message("work_notice", messages.text("另一条"), idempotency_key="d4", to=[a])
        session().commit()
        assert first.recipients == [a, b]
        assert second.recipients == [c]
        assert third is None
        assert other.recipients == [a]


def test_low_priority_is_held_near_the_quota_and_released_after(app, sandbox, userids, caplog):
    tag = uuid.uuid4().hex[:8]
    with app.app_context():
        get_meter().record("api", 4600)  # 92% of the 5,000 metered calls
        outbox.enqueue_message(
            "robot_oto", messages.text(f"低 {tag}"), idempotency_key=f"l-{tag}", to=userids[:2], priority="low"
        )
        outbox.enqueue_message(
            "robot_oto", messages.text(f"高 {tag}"), idempotency_key=f"h-{tag}", to=userids[:2], priority="high"
        )
        with caplog.at_level(logging.WARNING, logger="bot.outbox"):
            session().commit()
            deliver_all(app)
    states = {r.idempotency_key: r.state for r in _rows(app)}
    assert states == {f"l-{tag}": "held", f"h-{tag}": "sent"}
    warning = [r for r in caplog.records if "quota nearly used" in r.getMessage()]
    assert warning and warning[0].held == 1
    assert tag not in caplog.text  # no message bodies in logs
    with app.app_context():
        db = session()
        db.execute(sa.text("DELETE FROM dingtalk_quota_usage"))  # a new month
        db.commit()
        assert outbox.recover_outbox()["released"] == 1
    deliver_all(app)
    assert {r.state for r in _rows(app)} == {"sent"}


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"channel": "sms"}, "channel"),
        ({"priority": "urgent"}, "priority"),
        ({"to": []}, "to"),
        ({"channel": "robot_webhook", "target": "nobody"}, "target"),
        ({"message": {"msgtype": "image"}}, "message"),
        ({"message": messages.text("长" * 1000)}, "message"),
    ],
)
def test_bad_input_names_the_field(app, kwargs, field):
    from workbench.errors import ApiError

    args = {"channel": "work_notice", "message": messages.text("x"), "to": ["u1"], "priority": "normal"} | kwargs
    with app.app_context(), pytest.raises(ApiError) as info:
        outbox.enqueue_message(args.pop("channel"), args.pop("message"), idempotency_key="k", **args)
    assert info.value.field == field


def test_group_wait_folds_one_round_of_alerts_into_one_message(app, sandbox, robot):
    app.config["BOT_WEBHOOK_GROUP_WAIT"] = 1
    tag = uuid.uuid4().hex[:8]
    with app.app_context():
        for n in range(3):
            outbox.enqueue_message("robot_webhook", _alert(n, tag), idempotency_key=f"{tag}-{n}", target="alerts")
            session().commit()
    deliver_all(app)
    assert sandbox_messages(sandbox, conversation=robot["open_conversation_id"]) == []
    assert {r.state for r in _rows(app)} == {"queued"}
    time.sleep(1.1)
    with app.app_context():
        outbox.recover_outbox()  # the periodic sweep
    deliver_all(app)
    [post] = sandbox_messages(sandbox, conversation=robot["open_conversation_id"])
    assert all(f"告警 {tag}-{n}：" in post["content"]["markdown"]["text"] for n in range(3))

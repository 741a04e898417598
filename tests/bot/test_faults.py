"""Delivery on a bad day at DingTalk: a sandbox failing 30% of calls (502 pages, 系统繁忙, slow replies).
Whatever fails is retried; nobody gets a message twice and nothing is lost."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa

from bot import messages, outbox
from bot.models import OutboxMessage
from tests.bot.conftest import deliver_all, sandbox_messages
from tests.support.sandbox import SandboxProcess
from workbench.db import session


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxProcess]:
    """Overrides the session sandbox for this module: the `app` fixture talks to this faulty one."""
    with SandboxProcess("--scale", "small", "--seed", "7", "--fault-rate", "0.3", "--fault-delay", "0.2") as process:
        yield process


def test_every_message_exactly_once_despite_faults(app, sandbox, robot, userids):
    tag = uuid.uuid4().hex[:8]
    with app.app_context():
        outbox.enqueue_message(
            "robot_oto", messages.text(f"转诊通知 {tag}"), idempotency_key=f"o-{tag}", to=userids[:45]
        )
        outbox.enqueue_message(
            "work_notice", messages.text(f"结算通知 {tag}"), idempotency_key=f"n-{tag}", to=userids[:250]
        )
        for n in range(30):
            alert = messages.alert(level="info", indicator="门诊量", org_name="卫生院", summary=f"告警 {tag}-{n}：")
            outbox.enqueue_message("robot_webhook", alert, idempotency_key=f"w-{tag}-{n}", target="alerts")
        session().commit()
    for _ in range(6):  # the periodic sweep, run by hand: re-queues what a failed job left queued
        deliver_all(app)
        with app.app_context():
            db = session()
            db.expire_all()
            if {r.state for r in db.scalars(sa.select(OutboxMessage))} == {"sent"}:
                break
            outbox.recover_outbox(lease=timedelta(0))
    with app.app_context():
        assert {r.state for r in session().scalars(sa.select(OutboxMessage))} == {"sent"}

    oto = Counter(
        u for m in sandbox_messages(sandbox, kind="robot_oto") if tag in str(m["content"]) for u in m["userids"]
    )
    assert set(oto) == set(userids[:45]) and set(oto.values()) == {1}
    notices = sandbox_messages(sandbox, kind="work_notice")
    received = Counter(u for m in notices if tag in str(m["content"]) for u in m["userids"])
    assert set(received) == set(userids[:250]) and set(received.values()) == {1}
    posts = sandbox_messages(sandbox, conversation=robot["open_conversation_id"])
    text = "\n".join(m["content"]["markdown"]["text"] for m in posts)
    for n in range(30):
        assert text.count(f"告警 {tag}-{n}：") == 1
    faults = sum(api["faults"] for api in sandbox.admin("GET", "stats").json()["apis"].values())
    assert faults > 0  # the bad day did happen

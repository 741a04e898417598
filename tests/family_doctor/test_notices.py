"""Notices to one resident, against the sandbox with jobs running: a card in the team's chat @-ing them and seen
only by them and the team; a one-to-one robot message when they are not in a chat; nothing without an account.
The team's chat is the real one `chats.sync_team_chat` builds when residents are signed (queued by signing)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from bot import messages
from bot.cards import send_card
from bot.models import OutboxMessage
from mini_apps.family_doctor import chats, notices, reminders, service
from mini_apps.family_doctor.cards import RESIDENT_NOTICE
from mini_apps.family_doctor.models import Contract
from tests.bot.conftest import sandbox_messages
from tests.conftest import run_jobs
from tests.family_doctor.conftest import World, id_number
from workbench import db
from workbench.audit import AuditRecord
from workbench.errors import ApiError

API = "/api/family-doctor"


def resident_account(sandbox, name: str) -> str:
    """A resident's DingTalk account in the sandbox (outside the org's contacts)."""
    reply = sandbox.admin("POST", "residents", json={"name": name})
    assert reply.status_code == 200, reply.text
    return reply.json()["userid"]


def sign(client, headers, team_id: int, n: int, *, name: str, userid: str | None, ends_in: int | None = None, **over):
    """Sign a resident (ID number `n`); `ends_in`: the contract ends that many days from today."""
    body = {"name": name, "id_number": id_number(n), "phone": "13812345678", "team_id": team_id, **over}
    if userid:
        body["dingtalk_userid"] = userid
    if ends_in is not None:
        end = service.today() + timedelta(days=ends_in)
        body |= {"start_date": service.add_years(end + timedelta(days=1), -1).isoformat(), "end_date": end.isoformat()}
    reply = client.post(f"{API}/contracts", json=body, headers=headers)
    assert reply.status_code == 201, reply.get_json()
    return reply.get_json()


def userid_of(client, headers) -> str:
    return client.get("/api/me", headers=headers).get_json()["member"]["userid"]


def cards_about(sandbox, userid: str, since: str = "0") -> list[dict]:
    """Group cards that @ this person."""
    return [
        m
        for m in sandbox_messages(sandbox, kind="card", since=since)
        if m["card"] and userid in (m["card"]["atUserIds"] or {})
    ]


def empty_team(client, world: World, name: str) -> int:
    """A second team of the institution with no staff: the chat sync makes no group for it."""
    reply = client.post(
        f"{API}/teams", json={"institution_id": world.institution_id, "name": name}, headers=world.county_admin
    )
    assert reply.status_code == 201, reply.get_json()
    return reply.get_json()["id"]


def test_a_renewal_reminder_reaches_the_right_resident_once_in_the_team_chat(
    tree_app, tree_client, sandbox, world: World
):
    client = tree_client
    doctor = userid_of(client, world.doctor)
    expiring = resident_account(sandbox, "王小明")
    neighbour = resident_account(sandbox, "李四")
    since = str(len(sandbox_messages(sandbox)))
    signed = sign(client, world.doctor, world.team_id, 101, name="王小明", userid=expiring, ends_in=20)
    sign(client, world.doctor, world.team_id, 102, name="李四", userid=neighbour)
    run_jobs(tree_app)  # the chat sync that signing queued: the group with the doctor and both residents

    with tree_app.app_context():
        session = db.session()
        chat = chats.chat_of(session, world.team_id)
        assert chat is not None
        assert chats.in_chat(session, world.team_id, expiring) and chats.in_chat(session, world.team_id, neighbour)
        today = service.today()
        periodic = tree_app.extensions["workbench.queue"].periodic
        assert periodic["mini_apps.family_doctor.reminders.run_daily"].seconds == 86400
        assert reminders.run_daily(today)["renewal_reminders"] == {"sent": 1, "failed": 0}
        assert reminders.run_daily(today)["renewal_reminders"] == {"sent": 0, "failed": 0}  # once
        assert reminders.remind_renewals(today + timedelta(days=1)) == {"sent": 0, "failed": 0}  # the next day too
        contract = session.get(Contract, signed["contract"]["id"])
        assert contract.renewal_reminded_at is not None
        conversation = chat.open_conversation_id
    run_jobs(tree_app)

    [card] = cards_about(sandbox, expiring, since)
    assert card["conversation"] == conversation
    view = card["card"]
    assert view["atUserIds"] == {expiring: "王小明"}
    assert set(view["recipients"]) == {expiring, doctor}  # the resident and the team; not the neighbour
    data = view["cardData"]["cardParamMap"]
    assert data["resident"] == "王*明"
    end = date.fromisoformat(signed["contract"]["end_date"])
    assert f"{end.month}月{end.day}日到期" in data["markdown"] and "续约" in data["markdown"]
    assert id_number(101) not in str(view) and "13812345678" not in str(view)
    # What each person can see: the card is in the resident's and the doctor's view, not the neighbour's.
    assert [m["id"] for m in sandbox_messages(sandbox, userid=expiring, kind="card", since=since)] == [card["id"]]
    assert card["id"] in [m["id"] for m in sandbox_messages(sandbox, userid=doctor, kind="card", since=since)]
    assert sandbox_messages(sandbox, userid=neighbour, kind="card", since=since) == []
    assert cards_about(sandbox, neighbour, since) == []


def test_a_resident_outside_any_chat_gets_a_robot_message_and_one_without_an_account_nothing(
    tree_app, tree_client, sandbox, world: World
):
    client = tree_client
    team = empty_team(client, world, "第二家庭医生团队")
    account = resident_account(sandbox, "赵六")
    since = str(len(sandbox_messages(sandbox)))
    reachable = sign(client, world.county_admin, team, 201, name="赵六", userid=account, ends_in=20)
    unreachable = sign(client, world.county_admin, team, 202, name="钱七", userid=None, ends_in=10)
    run_jobs(tree_app)

    with tree_app.app_context():
        session = db.session()
        assert chats.chat_of(session, team) is None  # no staff, no group
        rows_before = session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage))
        key = f"test:unreachable:{unreachable['id']}"
        assert notices.notify_resident(session, unreachable["id"], title="通知", lines=["内容"], key=key) == (
            "unreachable"
        )
        assert notices.message_resident(session, unreachable["id"], messages.text("你好"), key=key) is False
        session.commit()
        assert session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage)) == rows_before

        assert reminders.remind_renewals() == {"sent": 1, "failed": 0}
        assert reminders.remind_renewals() == {"sent": 0, "failed": 0}
        assert session.get(Contract, reachable["contract"]["id"]).renewal_reminded_at is not None
        assert session.get(Contract, unreachable["contract"]["id"]).renewal_reminded_at is None
    run_jobs(tree_app)

    [robot] = sandbox_messages(sandbox, kind="robot_oto", userid=account, since=since)
    assert robot["userids"] == [account]
    assert "家庭医生签约即将到期" in robot["content"]["title"] and "第二家庭医生团队" in robot["content"]["text"]
    assert id_number(201) not in str(robot) and "13812345678" not in str(robot)
    assert cards_about(sandbox, account, since) == []


def test_notify_resident_is_idempotent_per_key_and_message_resident_goes_one_to_one(
    tree_app, tree_client, sandbox, world: World
):
    client = tree_client
    account = resident_account(sandbox, "孙八")
    since = str(len(sandbox_messages(sandbox)))
    resident = sign(client, world.doctor, world.team_id, 301, name="孙八", userid=account)
    run_jobs(tree_app)

    with tree_app.app_context():
        session = db.session()
        key = f"referral:appointment:{resident['id']}:{account}"
        lines = ["转诊预约：县人民医院心内科", "就诊时间：12月3日上午"]
        link = "https://example.invalid/h5/referral/1"
        for _ in range(2):
            assert (
                notices.notify_resident(session, resident["id"], title="转诊预约成功", lines=lines, key=key, link=link)
                == "group"
            )
            session.commit()
        assert notices.message_resident(session, resident["id"], messages.text("请按时就诊"), key=key) is True
        assert notices.message_resident(session, resident["id"], messages.text("请按时就诊"), key=key) is True
        session.commit()
        # A card for one person's robot chat cannot @ or restrict: those are group-card settings.
        with pytest.raises(ApiError) as raised:
            send_card(RESIDENT_NOTICE, {"title": "x"}, out_track_id="t", userid=account, recipients=[account])
        assert raised.value.field == "recipients"
        session.rollback()
    run_jobs(tree_app)

    [card] = cards_about(sandbox, account, since)
    data = card["card"]["cardData"]["cardParamMap"]
    assert data["title"] == "转诊预约成功" and data["link"] == link and "心内科" in data["markdown"]
    [robot] = sandbox_messages(sandbox, kind="robot_oto", userid=account, since=since)
    assert robot["content"]["content"] == "请按时就诊"


def test_the_team_messages_a_resident_one_to_one_and_only_the_team_may(tree_app, tree_client, sandbox, world: World):
    client = tree_client
    account = resident_account(sandbox, "赵六")
    with_account = sign(client, world.doctor, world.team_id, 111, name="赵六", userid=account)["id"]
    without = sign(client, world.doctor, world.team_id, 112, name="钱七", userid=None)["id"]
    since = str(len(sandbox_messages(sandbox)))

    reply = client.post(
        f"{API}/residents/{with_account}/messages", json={"text": "明天上午请来复查血压"}, headers=world.doctor
    )
    assert reply.status_code == 202, reply.get_json()
    run_jobs(tree_app)
    sent = [m for m in sandbox_messages(sandbox, kind="robot_oto", since=since) if account in m["userids"]]
    assert len(sent) == 1 and "明天上午请来复查血压" in sent[0]["content"]["text"]
    assert "第一家庭医生团队" in sent[0]["content"]["title"]

    for body, field in (({"text": ""}, "text"), ({"text": "x" * 501}, "text"), ({}, "text")):
        bad = client.post(f"{API}/residents/{with_account}/messages", json=body, headers=world.doctor)
        assert bad.status_code == 422 and field in str(bad.get_json()), bad.get_json()
    no_account = client.post(f"{API}/residents/{without}/messages", json={"text": "你好"}, headers=world.doctor)
    assert no_account.status_code == 409 and no_account.get_json()["error"]["field"] == "resident_id"
    # A colleague not on the team cannot even see the resident; the county admin sees but is no caregiver.
    outsider = client.post(f"{API}/residents/{with_account}/messages", json={"text": "你好"}, headers=world.colleague)
    assert outsider.status_code == 404
    admin = client.post(f"{API}/residents/{with_account}/messages", json={"text": "你好"}, headers=world.county_admin)
    assert admin.status_code == 403
    with tree_app.app_context():
        actions = (
            db.session()
            .scalars(sa.select(AuditRecord.outcome).where(AuditRecord.action == "family_doctor.resident.message"))
            .all()
        )
    assert sorted(actions) == ["denied", "ok"]

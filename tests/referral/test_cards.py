"""Referral cards against the sandbox, with jobs running: the receiving side's cards (masked patient, diagnosis,
reason, priority), 接收 clicked through `/_sandbox/cards/<outTrackId>/click` (accepted, the earliest published slot
booked), every card updated in place, a second person's click showing who acted and changing nothing, 退回 with
and without a reason, the applicant's outcome notice, the patient's appointment in their family doctor's chat,
and the green channel (accepted at submit, urgent notices, cards saying so)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa
from werkzeug.serving import make_server

from bot import cards as bot_cards
from bot.models import BotCard
from mini_apps.family_doctor import chats
from mini_apps.referral import slots, timers
from mini_apps.referral.models import Referral, ReferralEvent, ReferralSlot
from tests.bot.conftest import sandbox_messages
from tests.conftest import run_jobs
from tests.referral.conftest import ReferralWorld, id_number, up_payload
from tests.support.sandbox import free_port
from workbench import db
from workbench.audit import AuditRecord

API = "/api/referrals"


@pytest.fixture
def served(tree_app) -> Iterator[str]:
    """The workbench on a real port with the card callback registered, so sandbox clicks reach it."""
    port = free_port()
    server = make_server("127.0.0.1", port, tree_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    with tree_app.app_context():
        bot_cards.register_callback(f"http://127.0.0.1:{port}/bot/card/callback")
    yield f"http://127.0.0.1:{port}"
    server.shutdown()


def publish_tomorrow(app, world: ReferralWorld, capacity: int = 1) -> ReferralSlot:
    with app.app_context():
        session = db.session()
        slot = ReferralSlot(
            department_id=world.hospital_department_id,
            day=slots.today() + timedelta(days=1),
            half_day="am",
            capacity=capacity,
            booked=0,
            updated_by="test",
        )
        session.add(slot)
        session.commit()
        session.refresh(slot)
        session.expunge(slot)
        return slot


def patient_name() -> str:
    """A name of its own per test: the sandbox, like DingTalk, drops the same work notice to the same person a
    second time in a day, and both backends' runs share the session's sandbox and the referral numbers."""
    return "王秀" + chr(0x4E00 + uuid.uuid4().int % 0x5000)


def submit(client, world: ReferralWorld, name: str | None = None, **overrides) -> dict:
    body = up_payload(world, submit=True, **overrides)
    if body.get("patient"):
        body["patient"] = {**body["patient"], "name": name or patient_name()}
    reply = client.post(API, json=body, headers=world.doctor.headers)
    assert reply.status_code == 201, reply.get_json()
    return reply.get_json()


def mark(sandbox) -> str:
    """Where this test's messages begin (the sandbox lives for the session; ids repeat across backends)."""
    return str(len(sandbox_messages(sandbox)))


def cards_of(sandbox, referral_id: int, since: str) -> dict[str, dict]:
    """The referral's cards as the sandbox shows them, by the person they were sent to."""
    found = {}
    for message in sandbox_messages(sandbox, kind="card", since=since):
        card = message["card"]
        if card and card["outTrackId"].startswith(f"referral:{referral_id}:"):
            [userid] = message["userids"]
            found[userid] = card
    return found


def params(card: dict) -> dict[str, str]:
    return card["cardData"]["cardParamMap"]


def click(sandbox, card: dict, userid: str, action: str, **button_params) -> dict:
    reply = sandbox.admin(
        "POST",
        f"cards/{card['outTrackId']}/click",
        json={"userid": userid, "action_id": action, "params": button_params},
    )
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    assert "apply_error" not in answer  # reply time is measured in bench/bot.py, not here
    return answer


def receivers(app, referral_id: int) -> set[str]:
    with app.app_context():
        session = db.session()
        return set(timers.receiving_side(session, session.get(Referral, referral_id)))


def events(app, referral_id: int) -> list[tuple[str, str | None, int | None]]:
    with app.app_context():
        rows = db.session().scalars(
            sa.select(ReferralEvent).where(ReferralEvent.referral_id == referral_id).order_by(ReferralEvent.id)
        )
        return [(e.action, e.actor, e.member_id) for e in rows]


def notices_to(sandbox, userid: str, number: str, since: str, kind: str = "work_notice") -> list[str]:
    return [
        str(m["content"])
        for m in sandbox_messages(sandbox, kind=kind, userid=userid, since=since)
        if number in str(m["content"])
    ]


def test_the_first_click_accepts_and_books_and_every_card_shows_it(
    tree_app, tree_client, sandbox, ref_world: ReferralWorld, served
):
    w = ref_world
    since = mark(sandbox)
    slot = publish_tomorrow(tree_app, w)
    name = patient_name()
    referral = submit(tree_client, w, name, priority="urgent")
    rid, number = referral["id"], referral["referral_no"]
    run_jobs(tree_app)

    cards = cards_of(sandbox, rid, since)
    assert set(cards) == receivers(tree_app, rid)
    assert {w.receiver.userid, w.coordinators[0].userid, w.coordinators[1].userid} <= set(cards)
    for card in cards.values():
        shown = params(card)
        assert shown["patient"].startswith(f"王*{name[-1]}") and shown["priority"] == "加急"
        assert shown["diagnosis"].startswith("I10 ") and "血压控制不佳" in shown["reason"]
        assert shown["state"] == "待接收" and shown["actionable"] == "true" and shown["referral_no"] == number
        assert name not in str(card) and id_number(22) not in str(card) and "13812345678" not in str(card)
    assert len({card["outTrackId"] for card in cards.values()}) == len(cards)
    assert all(len(card["outTrackId"]) <= 64 for card in cards.values())

    first, second = w.coordinators
    answer = click(sandbox, cards[first.userid], first.userid, "referral.accept")
    assert "apply_error" not in answer
    shown = tree_client.get(f"{API}/{rid}", headers=w.doctor.headers).get_json()
    assert shown["state"] == "scheduled" and shown["slot"]["id"] == slot.id
    run_jobs(tree_app)

    when = f"{slot.day.isoformat()} 上午"
    for card in cards_of(sandbox, rid, since).values():
        assert params(card)["state"] == "已预约" and params(card)["slot"] == when
        assert params(card)["acted_by"] == f"已由{first.name}接收并预约" and params(card)["actionable"] == "false"

    # The second coordinator taps 接收 on their own card: it shows who accepted; nothing changes.
    click(sandbox, cards_of(sandbox, rid, since)[second.userid], second.userid, "referral.accept")
    assert params(cards_of(sandbox, rid, since)[second.userid])["acted_by"] == f"已由{first.name}接收并预约"
    history = events(tree_app, rid)
    assert [action for action, _, _ in history] == ["create", "submit", "accept", "schedule"]
    assert history[2][2] is not None and history[2][2] == history[3][2]  # one person: the first to click
    with tree_app.app_context():
        assert db.session().get(ReferralSlot, slot.id).booked == 1

    # The applicant learns the outcome: accepted, then the appointment.
    outcomes = notices_to(sandbox, w.doctor.userid, number, since)
    assert any("转诊已接收" in text for text in outcomes)
    assert any("转诊已预约" in text and when in text for text in outcomes)
    assert all(name not in text for text in outcomes)


def test_a_click_after_the_page_accepted_shows_who_did(
    tree_app, tree_client, sandbox, ref_world: ReferralWorld, served
):
    w = ref_world
    since = mark(sandbox)
    rid = submit(tree_client, w)["id"]
    run_jobs(tree_app)
    cards = cards_of(sandbox, rid, since)
    reply = tree_client.post(f"{API}/{rid}/actions/accept", json={}, headers=w.receiver.headers)
    assert reply.status_code == 200, reply.get_json()
    # The coordinator taps before (PostgreSQL: RQ jobs wait) or after (SQLite: in-process) the cards were updated.
    coordinator = w.coordinators[0]
    click(sandbox, cards[coordinator.userid], coordinator.userid, "referral.accept")
    shown = params(cards_of(sandbox, rid, since)[coordinator.userid])
    assert shown["acted_by"] == f"已由{w.receiver.name}接收" and shown["state"] == "已接收"
    assert [action for action, _, _ in events(tree_app, rid)] == ["create", "submit", "accept"]
    run_jobs(tree_app)
    assert all(params(card)["state"] == "已接收" for card in cards_of(sandbox, rid, since).values())


def test_reject_needs_a_reason_and_only_the_receiving_side_acts(
    tree_app, tree_client, sandbox, ref_world: ReferralWorld, served
):
    w = ref_world
    since = mark(sandbox)
    referral = submit(tree_client, w)
    rid, number = referral["id"], referral["referral_no"]
    run_jobs(tree_app)
    cards = cards_of(sandbox, rid, since)
    coordinator = w.coordinators[0]
    card = cards[coordinator.userid]

    # Someone not on the receiving side (the applicant, tapping a forwarded card): nothing happens.
    click(sandbox, card, w.doctor.userid, "referral.accept")
    shown = cards_of(sandbox, rid, since)[coordinator.userid]
    assert shown["privateData"][w.doctor.userid]["cardParamMap"]["hint"] == "您不是该转诊的接收方，不能办理"
    assert not params(shown).get("hint")  # only the one who tapped is told
    # 退回 without a reason: the card stays open and points the coordinator to the page.
    click(sandbox, card, coordinator.userid, "referral.reject")
    shown = cards_of(sandbox, rid, since)[coordinator.userid]
    assert "转诊页面" in shown["privateData"][coordinator.userid]["cardParamMap"]["hint"]
    assert [action for action, _, _ in events(tree_app, rid)] == ["create", "submit"]
    with tree_app.app_context():
        assert db.session().get(BotCard, card["outTrackId"]).acted_by is None

    # With a reason (a template whose input fills the button's `reason`): rejected.
    click(sandbox, card, coordinator.userid, "referral.reject", reason="本院该专科暂停收治，建议转市级医院")
    assert tree_client.get(f"{API}/{rid}", headers=w.doctor.headers).get_json()["state"] == "rejected"
    run_jobs(tree_app)
    for shown in map(params, cards_of(sandbox, rid, since).values()):
        assert shown["state"] == "已退回" and shown["acted_by"] == f"已由{coordinator.name}退回"
    [outcome] = [text for text in notices_to(sandbox, w.doctor.userid, number, since) if "转诊被退回" in text]
    assert "本院该专科暂停收治" in outcome


def test_the_patient_gets_the_appointment_in_the_family_doctor_chat(
    tree_app, tree_client, sandbox, ref_world: ReferralWorld, served
):
    w = ref_world
    since = mark(sandbox)
    account = sandbox.admin("POST", "residents", json={"name": "钱桂兰"}).json()["userid"]
    reply = tree_client.post(
        "/api/family-doctor/teams",
        json={"institution_id": w.grassroots_institution_id, "name": "转诊卡片团队"},
        headers=w.county_admin.headers,
    )
    assert reply.status_code == 201, reply.get_json()
    team_id = reply.get_json()["id"]
    reply = tree_client.post(
        f"/api/family-doctor/teams/{team_id}/members",
        json={"userid": w.doctor.userid, "role": "leader"},
        headers=w.county_admin.headers,
    )
    assert reply.status_code == 200, reply.get_json()
    reply = tree_client.post(
        "/api/family-doctor/contracts",
        json={
            "name": "钱桂兰",
            "id_number": id_number(77),
            "phone": "13900002222",
            "team_id": team_id,
            "dingtalk_userid": account,
        },
        headers=w.doctor.headers,
    )
    assert reply.status_code == 201, reply.get_json()
    resident = reply.get_json()
    run_jobs(tree_app)  # the team chat the signing queued
    with tree_app.app_context():
        chat = chats.chat_of(db.session(), team_id)
        assert chat is not None and chats.in_chat(db.session(), team_id, account)
        conversation = chat.open_conversation_id

    slot = publish_tomorrow(tree_app, w)
    referral = submit(tree_client, w, resident_id=resident["id"], patient=None)
    run_jobs(tree_app)
    coordinator = w.coordinators[1]
    click(sandbox, cards_of(sandbox, referral["id"], since)[coordinator.userid], coordinator.userid, "referral.accept")
    run_jobs(tree_app)

    [card] = [
        m["card"]
        for m in sandbox_messages(sandbox, kind="card", conversation=conversation, since=since)
        if m["card"] and account in (m["card"]["atUserIds"] or {}) and "转诊" in str(m["card"])
    ]
    shown = params(card)
    assert shown["title"] == "转诊预约成功" and shown["resident"] == "钱*兰"
    assert f"{slot.day.isoformat()} 上午" in shown["markdown"] and referral["referral_no"] in shown["markdown"]
    assert id_number(77) not in str(card) and "13900002222" not in str(card)
    with tree_app.app_context():
        [record] = db.session().scalars(
            sa.select(AuditRecord).where(
                AuditRecord.action == "referral.patient_notice", AuditRecord.resource_id == str(referral["id"])
            )
        )
        assert record.detail["reach"] == "group" and record.detail["resident_id"] == resident["id"]


def test_a_patient_who_is_not_a_resident_is_recorded_as_such(
    tree_app, tree_client, sandbox, ref_world: ReferralWorld, served
):
    w = ref_world
    publish_tomorrow(tree_app, w)
    rid = submit(tree_client, w)["id"]
    reply = tree_client.post(
        f"{API}/{rid}/actions/accept",
        json={"slot": {"day": (slots.today() + timedelta(days=1)).isoformat(), "half_day": "am"}},
        headers=w.receiver.headers,
    )
    assert reply.status_code == 200, reply.get_json()
    with tree_app.app_context():
        [record] = db.session().scalars(
            sa.select(AuditRecord).where(
                AuditRecord.action == "referral.patient_notice", AuditRecord.resource_id == str(rid)
            )
        )
        assert record.detail["reach"] == "no_resident"


def test_the_green_channel_is_accepted_at_submit_with_urgent_notices(
    tree_app, tree_client, sandbox, ref_world: ReferralWorld, served
):
    w = ref_world
    since = mark(sandbox)
    name = patient_name()
    referral = submit(tree_client, w, name, priority="green", mode="emergency", clinical={})
    rid, number = referral["id"], referral["referral_no"]
    assert referral["state"] == "accepted"
    assert [(action, actor) for action, actor, _ in events(tree_app, rid)][1:] == [
        ("submit", events(tree_app, rid)[1][1]),
        ("auto_accept", "system"),
    ]
    run_jobs(tree_app)

    cards = cards_of(sandbox, rid, since)
    expected = receivers(tree_app, rid)
    assert set(cards) == expected
    for shown in map(params, cards.values()):
        assert shown["title"].startswith("【绿色通道】") and shown["priority"] == "绿色通道"
        assert shown["state"] == "已接收（绿色通道）" and shown["actionable"] == "false"
        assert shown["acted_by"] == "已由系统绿色通道自动接收"
    for userid in expected:
        for kind in ("work_notice", "robot_oto"):
            found = notices_to(sandbox, userid, number, since, kind)
            assert len(found) == 1, (userid, kind)
            text = found[0]
            assert "【绿色通道】" in text and name not in text and f"王*{name[-1]}" in text
    assert any("绿色通道转诊已自动接收" in text for text in notices_to(sandbox, w.doctor.userid, number, since))

    # A tap on the card changes nothing: the platform already accepted.
    coordinator = w.coordinators[0]
    click(sandbox, cards[coordinator.userid], coordinator.userid, "referral.accept")
    assert [action for action, _, _ in events(tree_app, rid)] == ["create", "submit", "auto_accept"]


def test_two_coordinators_clicking_at_once_one_accepts_one_slot_the_other_sees_who(
    tree_app, tree_client, sandbox, ref_world: ReferralWorld, served
):
    w = ref_world
    since = mark(sandbox)
    slot = publish_tomorrow(tree_app, w, capacity=5)
    rid = submit(tree_client, w)["id"]
    run_jobs(tree_app)
    cards = cards_of(sandbox, rid, since)
    answers: dict[str, dict] = {}

    def tap(person) -> None:
        answers[person.userid] = click(sandbox, cards[person.userid], person.userid, "referral.accept")

    threads = [threading.Thread(target=tap, args=(person,)) for person in w.coordinators]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(answers) == {person.userid for person in w.coordinators}
    history = events(tree_app, rid)
    assert [action for action, _, _ in history] == ["create", "submit", "accept", "schedule"]
    with tree_app.app_context():
        assert db.session().get(ReferralSlot, slot.id).booked == 1
    winner = next(person for person in w.coordinators if f"已由{person.name}" in str(answers[person.userid]["card"]))
    for person in w.coordinators:  # both cards, the loser's too, name the winner
        shown = params(cards_of(sandbox, rid, since)[person.userid])
        assert shown["acted_by"] == f"已由{winner.name}接收并预约" and shown["state"] == "已预约"

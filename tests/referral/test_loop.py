"""The whole two-way referral loop against the sandbox, with jobs running and the card clicks made through
`/_sandbox/cards/<outTrackId>/click`: a township doctor refers a signed resident up; a hospital coordinator accepts
from their card (the earliest published slot booked); the resident gets the appointment in their family doctor's
chat; the hospital sees the patient arrive and finishes treatment, then refers them down; the township doctor
accepts the down-referral from their own card, receives the patient and follows them up until it closes."""

from __future__ import annotations

import sqlalchemy as sa

from mini_apps.family_doctor import chats
from mini_apps.referral.models import Referral
from tests.bot.conftest import sandbox_messages
from tests.conftest import run_jobs
from tests.referral.conftest import ReferralWorld, id_number
from tests.referral.test_cards import cards_of, click, events, mark, params, publish_tomorrow, served, submit
from workbench import db

API = "/api/referrals"
__all__ = ["served"]  # the fixture, imported for this module's tests


def act(client, headers, referral_id: int, action: str, **body) -> dict:
    reply = client.post(f"{API}/{referral_id}/actions/{action}", json=body, headers=headers)
    assert reply.status_code == 200, (action, reply.get_json())
    return reply.get_json()


def test_up_to_the_hospital_and_back_down_to_follow_up(
    tree_app, tree_client, sandbox, ref_world: ReferralWorld, served
):
    w = ref_world
    since = mark(sandbox)

    # A signed resident with a DingTalk account, in the township team's chat.
    account = sandbox.admin("POST", "residents", json={"name": "孙玉梅"}).json()["userid"]
    team = tree_client.post(
        "/api/family-doctor/teams",
        json={"institution_id": w.grassroots_institution_id, "name": "双向转诊团队"},
        headers=w.county_admin.headers,
    ).get_json()
    tree_client.post(
        f"/api/family-doctor/teams/{team['id']}/members",
        json={"userid": w.doctor.userid, "role": "leader"},
        headers=w.county_admin.headers,
    )
    resident = tree_client.post(
        "/api/family-doctor/contracts",
        json={"name": "孙玉梅", "id_number": id_number(88), "team_id": team["id"], "dingtalk_userid": account},
        headers=w.doctor.headers,
    ).get_json()
    run_jobs(tree_app)
    with tree_app.app_context():
        conversation = chats.chat_of(db.session(), team["id"]).open_conversation_id

    # Up: filed, carded to the hospital, accepted from a card with the slot booked.
    slot = publish_tomorrow(tree_app, w)
    up = submit(tree_client, w, resident_id=resident["id"], patient=None)
    run_jobs(tree_app)
    coordinator = w.coordinators[0]
    click(sandbox, cards_of(sandbox, up["id"], since)[coordinator.userid], coordinator.userid, "referral.accept")
    run_jobs(tree_app)
    assert tree_client.get(f"{API}/{up['id']}", headers=w.doctor.headers).get_json()["slot"]["id"] == slot.id
    appointment = [
        m
        for m in sandbox_messages(sandbox, kind="card", conversation=conversation, since=since)
        if m["card"] and account in (m["card"]["atUserIds"] or {}) and up["referral_no"] in str(m["card"])
    ]
    assert len(appointment) == 1 and params(appointment[0]["card"])["title"] == "转诊预约成功"

    # At the hospital: arrival, treatment, done; then the way back down.
    for action in ("arrive", "start_treatment", "complete"):
        act(tree_client, w.receiver.headers, up["id"], action)
    down_body = {
        "direction": "down",
        "mode": "outpatient",
        "priority": "routine",
        "applicant_department_id": w.hospital_department_id,
        "target_institution_id": w.grassroots_institution_id,
        "reason_code": "rehab_chronic",
        "parent_id": up["id"],
        "consent": True,
        "submit": True,
        "primary_diagnosis": {"code": "I10"},
        "clinical": {
            "rehab_plan": "低盐饮食，每日步行30分钟",
            "medication_list": "氨氯地平 5mg qd",
            "follow_up_schedule": "出院后7天首次随访，之后每季度",
        },
    }
    reply = tree_client.post(API, json=down_body, headers=w.receiver.headers)
    assert reply.status_code == 201, reply.get_json()
    down = reply.get_json()
    run_jobs(tree_app)

    # The township doctor gets the down-referral as a card and accepts it there.
    down_cards = cards_of(sandbox, down["id"], since)
    assert w.doctor.userid in down_cards  # the resident's family-doctor team, at the target institution
    assert not {c.userid for c in w.coordinators} & set(down_cards)  # the hospital's office answers for the hospital
    click(sandbox, down_cards[w.doctor.userid], w.doctor.userid, "referral.accept")
    run_jobs(tree_app)
    assert params(cards_of(sandbox, down["id"], since)[w.doctor.userid])["state"] == "已接收"
    received = act(tree_client, w.doctor.headers, down["id"], "receive_patient")
    assert received["state"] == "received_patient"
    with tree_app.app_context():
        clock = db.session().scalar(sa.select(Referral.respond_by).where(Referral.id == down["id"]))
    assert clock is not None  # the first follow-up is due within REFERRAL_SLA's first_follow_up
    act(tree_client, w.doctor.headers, down["id"], "start_follow_up")
    closed = act(tree_client, w.doctor.headers, down["id"], "close")
    assert closed["state"] == "closed" and closed["parent_id"] == up["id"]

    assert [a for a, _, _ in events(tree_app, up["id"])] == [
        "create", "submit", "accept", "schedule", "arrive", "start_treatment", "complete",
    ]  # fmt: skip
    assert [a for a, _, _ in events(tree_app, down["id"])] == [
        "create", "submit", "accept", "receive_patient", "start_follow_up", "close",
    ]  # fmt: skip
    timeline = tree_client.get(f"{API}/{down['id']}/events", headers=w.doctor.headers).get_json()["items"]
    assert [e["action"] for e in timeline][-1] == "close"

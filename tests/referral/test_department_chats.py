"""Referral cards into the receiving department's group chat, against the sandbox with jobs running: a chat created
through the API is a sandbox scene group with the department's members and the hospital's coordinators; a submit
then sends exactly one card to it, @-ing the coordinators, and no one-to-one cards; a coordinator accepts with a
click on the group card, which is updated in place; a group member who is not on the receiving side is refused
and nothing changes; receivers outside the group (the county's referral office) still get their own card; a
registered group of the institution takes the cards of a department without its own; without a chat (deleted)
the cards go one-to-one as before; the green channel's group card (@-ing the named doctor too) with the urgent
notice; bad input."""

from __future__ import annotations

import dataclasses

import sqlalchemy as sa

from bot import groups
from bot.models import BotCard
from mini_apps.referral import chats, timers
from mini_apps.referral.models import Referral, ReferralChat
from org_sync.models import OrgMember, OrgMembership, OrgNode
from tests.bot.conftest import sandbox_messages
from tests.conftest import run_jobs
from tests.referral.conftest import ReferralWorld
from tests.referral.test_cards import click, events, mark, params, patient_name, publish_tomorrow, served, submit
from workbench import db
from workbench.audit import AuditRecord

API = "/api/referrals"
__all__ = ["served"]  # the fixture, imported for this module's tests


def referral_cards(sandbox, referral_id: int, since: str) -> tuple[list[dict], dict[str, dict]]:
    """(the referral's group card messages, its one-to-one cards by person) as the sandbox shows them."""
    in_groups, one_to_one = [], {}
    for message in sandbox_messages(sandbox, kind="card", since=since):
        card = message["card"]
        if not card or not card["outTrackId"].startswith(f"referral:{referral_id}:"):
            continue
        if message["conversation"]:
            in_groups.append(message)
        else:
            [userid] = message["userids"]
            one_to_one[userid] = card
    return in_groups, one_to_one


def card(sandbox, out_track_id: str) -> dict:
    """The card as it is now (updates change the card, not the message that delivered it)."""
    return next(m["card"] for m in sandbox_messages(sandbox, kind="card") if m["card"]["outTrackId"] == out_track_id)


def department_userids(app, node_id: int) -> set[str]:
    with app.app_context():
        return set(
            db.session().scalars(
                sa.select(OrgMember.userid)
                .join(OrgMembership, OrgMembership.member_id == OrgMember.id)
                .where(OrgMembership.node_id == node_id, OrgMember.active.is_(True), OrgMember.deleted_at.is_(None))
            )
        )


def department_of(app, userid: str) -> int:
    with app.app_context():
        return db.session().scalar(
            sa.select(OrgMembership.node_id)
            .join(OrgMember, OrgMember.id == OrgMembership.member_id)
            .where(OrgMember.userid == userid)
            .limit(1)
        )


def receivers(app, referral_id: int) -> set[str]:
    with app.app_context():
        session = db.session()
        return set(timers.receiving_side(session, session.get(Referral, referral_id)))


def create_chat(client, world: ReferralWorld, node_id: int) -> dict:
    reply = client.post(f"{API}/chats/{node_id}/create", headers=world.county_admin.headers)
    assert reply.status_code == 201, reply.get_json()
    return reply.get_json()


def county_of(app, institution_id: int) -> int:
    with app.app_context():
        session = db.session()
        path = session.get(OrgNode, institution_id).path
        ancestors = [int(part) for part in path.strip("/").split("/") if part]
        return session.scalar(sa.select(OrgNode.id).where(OrgNode.id.in_(ancestors), OrgNode.level == "county_bureau"))


def error_of(reply) -> dict:
    return reply.get_json()["error"]


def test_one_card_goes_to_the_department_chat_and_a_coordinator_accepts_from_it(
    tree_app, tree_client, sandbox, ref_world: ReferralWorld, served
):
    w = ref_world
    first, second = w.coordinators
    chat = create_chat(tree_client, w, w.hospital_department_id)
    cid = chat["open_conversation_id"]
    assert chat["source"] == "created" and chat["node_id"] == w.hospital_department_id and cid

    # The sandbox group holds the department's members and the hospital's coordinators (and its owner).
    group = sandbox.admin("GET", f"groups/{cid}").json()
    expected = department_userids(tree_app, w.hospital_department_id) | {first.userid, second.userid}
    assert set(group["members"]) - {group["owner"]} == expected - {group["owner"]}
    assert group["owner"] in expected | {w.county_admin.userid}
    assert "转诊群" in group["title"] and chat["member_count"] == len(set(group["members"]))
    with tree_app.app_context():
        assert db.session().scalar(
            sa.select(sa.func.count()).select_from(AuditRecord).where(AuditRecord.action == "referral.chat.create")
        )

    since = mark(sandbox)
    slot = publish_tomorrow(tree_app, w)
    rid = submit(tree_client, w, priority="urgent")["id"]
    run_jobs(tree_app)

    in_groups, one_to_one = referral_cards(sandbox, rid, since)
    assert len(in_groups) == 1 and one_to_one == {}
    [message] = in_groups
    assert message["conversation"] == cid
    group_card = message["card"]
    assert group_card["atUserIds"] == {first.userid: first.name, second.userid: second.name}
    assert group_card["recipients"] is None  # the whole department sees it
    shown = params(group_card)
    assert shown["state"] == "待接收" and shown["actionable"] == "true" and shown["priority"] == "加急"
    assert receivers(tree_app, rid) <= set(group["members"])  # nobody who may act is left without the card

    # A member of the group who is not on the receiving side is refused; nothing changes.
    outsider = w.other_county_doctor
    with tree_app.app_context():
        groups.add_group_members(cid, [outsider.userid])
    answer = click(sandbox, group_card, outsider.userid, "referral.accept")
    assert answer["reply"]["userPrivateData"]["cardParamMap"]["hint"] == "您不是该转诊的接收方，不能办理"
    assert not answer["reply"]["cardData"]["cardParamMap"].get("hint")  # the others in the group do not read it
    assert tree_client.get(f"{API}/{rid}", headers=w.doctor.headers).get_json()["state"] == "submitted"
    assert [action for action, _, _ in events(tree_app, rid)] == ["create", "submit"]
    with tree_app.app_context():
        assert db.session().get(BotCard, group_card["outTrackId"]).acted_by is None

    # A coordinator in the group accepts from the same card: the earliest slot is booked, the card shows it.
    click(sandbox, group_card, first.userid, "referral.accept")
    shown_referral = tree_client.get(f"{API}/{rid}", headers=w.doctor.headers).get_json()
    assert shown_referral["state"] == "scheduled" and shown_referral["slot"]["id"] == slot.id
    run_jobs(tree_app)
    shown = params(card(sandbox, group_card["outTrackId"]))
    assert shown["state"] == "已预约" and shown["actionable"] == "false"
    assert shown["acted_by"] == f"已由{first.name}接收并预约" and shown["slot"] == f"{slot.day.isoformat()} 上午"

    # The second coordinator's tap on the group card changes nothing.
    click(sandbox, card(sandbox, group_card["outTrackId"]), second.userid, "referral.accept")
    assert [action for action, _, _ in events(tree_app, rid)] == ["create", "submit", "accept", "schedule"]
    assert params(card(sandbox, group_card["outTrackId"]))["acted_by"] == f"已由{first.name}接收并预约"


def test_receivers_outside_an_institution_group_still_get_their_own_card(
    tree_app, tree_client, sandbox, ref_world: ReferralWorld, served
):
    w = ref_world
    # The county's referral office: a coordinator granted on the county, on the receiving side of its hospitals.
    county = county_of(tree_app, w.hospital_id)
    reply = tree_client.post(
        "/api/auth/grants",
        json={"userid": w.county_admin.userid, "role": "referral_coordinator", "node_id": county},
        headers=w.county_admin.headers,
    )
    assert reply.status_code == 201, reply.get_json()

    # The hospital registers a group it already has; the department has none of its own.
    with tree_app.app_context():
        existing = groups.create_scene_group(
            "医院转诊协调群",
            w.coordinators[0].userid,
            [w.coordinators[1].userid, w.receiver.userid],
            template_id="tpl-family-doctor-team",
            uuid=f"test-hospital-group-{patient_name()}",
        )
    reply = tree_client.put(
        f"{API}/chats/{w.hospital_id}",
        json={"conversation_id": existing.open_conversation_id},
        headers=w.coordinators[0].headers,
    )
    assert reply.status_code == 200, reply.get_json()
    assert reply.get_json()["source"] == "registered" and reply.get_json()["member_count"] is None
    listed = tree_client.get(f"{API}/chats", headers=w.county_admin.headers).get_json()["items"]
    assert [c["node_id"] for c in listed] == [w.hospital_id]

    since = mark(sandbox)
    rid = submit(tree_client, w)["id"]
    run_jobs(tree_app)
    in_groups, one_to_one = referral_cards(sandbox, rid, since)
    assert [m["conversation"] for m in in_groups] == [existing.open_conversation_id]
    assert set(one_to_one) == {w.county_admin.userid}  # the one receiver outside the hospital
    assert w.county_admin.userid in receivers(tree_app, rid)

    # Whoever acts first, every card of the referral shows it.
    click(sandbox, one_to_one[w.county_admin.userid], w.county_admin.userid, "referral.accept")
    run_jobs(tree_app)
    shown = params(card(sandbox, in_groups[0]["card"]["outTrackId"]))
    assert shown["state"] == "已接收" and shown["acted_by"] == f"已由{w.county_admin.name}接收"


def test_without_a_chat_the_cards_go_one_to_one(tree_app, tree_client, sandbox, ref_world: ReferralWorld, served):
    w = ref_world
    chat = create_chat(tree_client, w, w.hospital_department_id)
    assert (
        tree_client.get(f"{API}/chats/{w.hospital_department_id}", headers=w.coordinators[1].headers).status_code == 200
    )
    reply = tree_client.delete(f"{API}/chats/{w.hospital_department_id}", headers=w.coordinators[1].headers)
    assert reply.status_code == 204
    assert tree_client.get(f"{API}/chats/{w.hospital_department_id}", headers=w.county_admin.headers).status_code == 404

    since = mark(sandbox)
    rid = submit(tree_client, w)["id"]
    run_jobs(tree_app)
    in_groups, one_to_one = referral_cards(sandbox, rid, since)
    assert in_groups == [] and set(one_to_one) == receivers(tree_app, rid)
    assert chat["open_conversation_id"] not in {m["conversation"] for m in sandbox_messages(sandbox, since=since)}


def test_the_green_channel_card_goes_to_the_group_with_the_urgent_notice(
    tree_app, tree_client, sandbox, ref_world: ReferralWorld, served
):
    w = ref_world
    cid = create_chat(tree_client, w, w.hospital_department_id)["open_conversation_id"]
    since = mark(sandbox)
    referral = submit(
        tree_client, w, priority="green", mode="emergency", clinical={}, target_doctor_userid=w.receiver.userid
    )
    run_jobs(tree_app)
    in_groups, one_to_one = referral_cards(sandbox, referral["id"], since)
    assert [m["conversation"] for m in in_groups] == [cid] and one_to_one == {}
    # The named doctor is @-ed with the coordinators.
    assert in_groups[0]["card"]["atUserIds"] == {p.userid: p.name for p in (w.receiver, *w.coordinators)}
    shown = params(in_groups[0]["card"])
    assert shown["state"] == "已接收（绿色通道）" and shown["title"].startswith("【绿色通道】")
    for person in (w.receiver, *w.coordinators):
        notices = sandbox_messages(sandbox, kind="work_notice", userid=person.userid, since=since)
        assert any("绿色通道" in str(m["content"]) and referral["referral_no"] in str(m["content"]) for m in notices)


def test_bad_input_is_refused_naming_the_field(tree_app, tree_client, sandbox, ref_world: ReferralWorld):
    w = ref_world
    dept = w.hospital_department_id
    admin = w.county_admin.headers

    for body, field in (({}, "conversation_id"), ({"conversation_id": "  "}, "conversation_id")):
        reply = tree_client.put(f"{API}/chats/{dept}", json=body, headers=admin)
        assert reply.status_code == 422 and error_of(reply)["field"] == field, reply.get_json()
    reply = tree_client.put(f"{API}/chats/{dept}", json={"conversation_id": "cidNoSuchGroup=="}, headers=admin)
    assert reply.status_code == 422 and error_of(reply)["field"] == "conversation_id", reply.get_json()

    # Not a department or an institution: the county itself.
    reply = tree_client.post(f"{API}/chats/{county_of(tree_app, w.hospital_id)}/create", headers=admin)
    assert reply.status_code == 422 and error_of(reply)["field"] == "node_id", reply.get_json()
    # A node that does not exist, or outside the caller's scope, is the same 404.
    elsewhere = department_of(tree_app, w.other_county_doctor.userid)
    for node_id, headers in ((999_999_999, admin), (elsewhere, admin), (elsewhere, w.coordinators[0].headers)):
        reply = tree_client.post(f"{API}/chats/{node_id}/create", headers=headers)
        assert reply.status_code == 404 and error_of(reply)["field"] == "node_id", reply.get_json()
    # Clinicians do not manage chats.
    assert tree_client.post(f"{API}/chats/{dept}/create", headers=w.receiver.headers).status_code == 403
    assert tree_client.get(f"{API}/chats", headers=w.doctor.headers).status_code == 403
    assert tree_client.get(f"{API}/chats/{dept}", headers=admin).status_code == 404
    assert tree_client.delete(f"{API}/chats/{dept}", headers=admin).status_code == 404

    # Without a scene-group template nothing is created, and the reply says why.
    settings = tree_app.config["SETTINGS"]
    tree_app.config["SETTINGS"] = dataclasses.replace(
        settings, dingtalk=dataclasses.replace(settings.dingtalk, scene_group_template_id=None)
    )
    try:
        reply = tree_client.post(f"{API}/chats/{dept}/create", headers=admin)
        assert reply.status_code == 409 and error_of(reply)["message"] == chats.NO_TEMPLATE
    finally:
        tree_app.config["SETTINGS"] = settings
    with tree_app.app_context():
        assert db.session().scalar(sa.select(sa.func.count()).select_from(ReferralChat)) == 0

    # A second group for the same department is a conflict; a registered group is not synced by the workbench.
    create_chat(tree_client, w, dept)
    reply = tree_client.post(f"{API}/chats/{dept}/create", headers=admin)
    assert reply.status_code == 409 and error_of(reply)["field"] == "node_id"
    assert tree_client.post(f"{API}/chats/{dept}/sync", headers=admin).status_code == 200
    existing = tree_client.get(f"{API}/chats/{dept}", headers=admin).get_json()["open_conversation_id"]
    reply = tree_client.put(f"{API}/chats/{w.hospital_id}", json={"conversation_id": existing}, headers=admin)
    assert reply.status_code == 200
    reply = tree_client.post(f"{API}/chats/{w.hospital_id}/sync", headers=admin)
    assert reply.status_code == 409 and error_of(reply)["field"] == "node_id"


def test_a_created_group_follows_who_belongs_in_it(tree_app, tree_client, sandbox, ref_world: ReferralWorld, served):
    w = ref_world
    newcomer = w.county_admin
    reply = tree_client.post(f"{API}/chats/{w.hospital_department_id}/create", headers=w.coordinators[0].headers)
    assert reply.status_code == 201, reply.get_json()
    cid, members = reply.get_json()["open_conversation_id"], reply.get_json()["member_count"]
    assert newcomer.userid not in sandbox.admin("GET", f"groups/{cid}").json()["members"]

    # A new coordinator of the hospital: their first card comes one-to-one, and the group takes them in.
    reply = tree_client.post(
        "/api/auth/grants",
        json={"userid": newcomer.userid, "role": "referral_coordinator", "node_id": w.hospital_id},
        headers=w.county_admin.headers,
    )
    assert reply.status_code == 201, reply.get_json()
    grant = reply.get_json()["id"]
    since = mark(sandbox)
    rid = submit(tree_client, w)["id"]
    run_jobs(tree_app)
    in_groups, one_to_one = referral_cards(sandbox, rid, since)
    assert len(in_groups) == 1 and set(one_to_one) == {newcomer.userid}
    assert newcomer.userid not in in_groups[0]["card"]["atUserIds"]
    assert newcomer.userid in sandbox.admin("GET", f"groups/{cid}").json()["members"]
    view = tree_client.get(f"{API}/chats/{w.hospital_department_id}", headers=w.county_admin.headers).get_json()
    assert view["member_count"] == members + 1 and view["last_error"] is None

    # From then on the group card alone, @-ing them too.
    since = mark(sandbox)
    rid = submit(tree_client, w)["id"]
    run_jobs(tree_app)
    in_groups, one_to_one = referral_cards(sandbox, rid, since)
    assert len(in_groups) == 1 and one_to_one == {}
    assert newcomer.userid in in_groups[0]["card"]["atUserIds"]

    # Once the role is withdrawn they leave the group: the department's patients are no longer theirs to see.
    assert tree_client.delete(f"/api/auth/grants/{grant}", headers=w.county_admin.headers).status_code == 200
    rid = submit(tree_client, w)["id"]
    run_jobs(tree_app)
    assert newcomer.userid not in sandbox.admin("GET", f"groups/{cid}").json()["members"]
    assert newcomer.userid not in receivers(tree_app, rid)

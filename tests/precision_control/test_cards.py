"""Task cards against the sandbox, with jobs running: after a dispatch the named doctor gets a card per task (the
person masked, category, priority, due time), clicked through `/_sandbox/cards/<outTrackId>/click`: 接收 → accepted
and the card updated (still open for 完成), 完成 with the key result → completed with `positive` set; a colleague who
does not work the task gets a private hint and nothing changes; double clicks add no second event; a template the
card cannot complete sends the doctor to the H5 page; every team member's card follows a click on one of them and a
step taken on the page; a big batch is one summary work notice per recipient, not a card per task."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from werkzeug.serving import make_server

from bot import cards as bot_cards
from bot.models import BotCard
from mini_apps.precision_control import cards
from mini_apps.precision_control.models import ControlTask, ControlTaskEvent
from org_sync.models import OrgMember, OrgMembership, OrgNode
from tests.bot.conftest import sandbox_messages
from tests.conftest import run_jobs
from tests.precision_control.conftest import ControlWorld, id_number
from tests.precision_control.test_pages import Worklist, doctor_and_clinic, make_worklist
from tests.support.auth import bearer, sign_in
from tests.support.sandbox import free_port
from workbench import db

API = "/api/precision-control"
# The key result (the first choice field) alone completes the task: no other field is required.
CARD_TEMPLATE = {
    "kind": "contact",
    "fields": [
        {
            "code": "outcome",
            "label": "核查结果",
            "type": "choice",
            "required": True,
            "choices": ["阴性", "阳性"],
            "positive": "阳性",
        },
        {"code": "remark", "label": "说明", "type": "text"},
    ],
}


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


def mark(sandbox) -> str:
    """Where this test's messages begin (the sandbox lives for the session; ids repeat across backends)."""
    return str(len(sandbox_messages(sandbox)))


def task_cards(sandbox, task_id: int, since: str) -> dict[str, dict]:
    """The task's cards as the sandbox shows them, by the person they were sent to."""
    found = {}
    for message in sandbox_messages(sandbox, kind="card", since=since):
        card = message["card"]
        if card and card["outTrackId"].startswith(f"control:{task_id}:"):
            [userid] = message["userids"]
            assert userid not in found, "one card per person and assignment"
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
    assert "apply_error" not in answer
    return answer


def announce(app, work: Worklist) -> None:
    """Deliver what the campaign's dispatch queued (its cards and notices), as the outbox worker would."""
    run_jobs(app)


def steps(app, task_id: int) -> list[str]:
    with app.app_context():
        return list(
            db.session().scalars(
                sa.select(ControlTaskEvent.action)
                .where(ControlTaskEvent.task_id == task_id)
                .order_by(ControlTaskEvent.id)
            )
        )


def task_row(app, task_id: int) -> ControlTask:
    with app.app_context():
        session = db.session()
        task = session.get(ControlTask, task_id)
        session.expunge(task)
        return task


def colleague_of(app, world: ControlWorld, clinic: int) -> OrgMember:
    """Another active member of the clinician's institution, with a DingTalk userid."""
    with app.app_context():
        session = db.session()
        path = session.scalar(sa.select(OrgNode.path).where(OrgNode.id == clinic))
        member = session.scalars(
            sa.select(OrgMember)
            .join(OrgMembership, OrgMembership.member_id == OrgMember.id)
            .join(OrgNode, OrgNode.id == OrgMembership.node_id)
            .where(
                OrgNode.path.startswith(path),
                OrgMember.userid != world.clinician.userid,
                OrgMember.active.is_(True),
                OrgMember.deleted_at.is_(None),
            )
            .order_by(OrgMember.id)
            .limit(1)
        ).one()
        session.expunge(member)
        return member


def test_the_named_doctor_accepts_and_completes_from_the_card(tree_app, tree_client, sandbox, pc_world, served):
    w = pc_world
    since = mark(sandbox)
    work = make_worklist(tree_app, tree_client, w, ["001001", "001009"], template=CARD_TEMPLATE)
    announce(tree_app, work)
    doctor = w.clinician.userid
    task_id = work.tasks["001009"]

    [card] = task_cards(sandbox, task_id, since).values()
    assert set(task_cards(sandbox, task_id, since)) == {doctor}
    assert set(task_cards(sandbox, work.tasks["001001"], since)) == {doctor}
    shown = params(card)
    assert shown["person"] == work.names["001009"][0] + "*" + work.names["001009"][2:]
    assert shown["category"] == "发热" and shown["priority"] == "紧急" and shown["title"].startswith("【紧急】")
    assert shown["due"].endswith("前完成") and shown["state"] == "已分派" and shown["actionable"] == "true"
    assert shown["choices"] == "阴性|阳性" and shown["key_label"] == "核查结果" and shown["complete_on_card"] == "true"
    assert shown["detail_url"].endswith(f"/h5/apps/precision_control/tasks/{task_id}")
    assert work.names["001009"] not in str(card) and id_number(701) not in str(card) and "13800000001" not in str(card)
    assert len(card["outTrackId"]) <= 64

    # Announcing again (a retried dispatch) sends nothing twice.
    announce(tree_app, work)
    assert len(task_cards(sandbox, task_id, since)) == 1

    # 接收: accepted by the doctor; the card says so and stays open for 完成.
    click(sandbox, card, doctor, "control.accept")
    task = task_row(tree_app, task_id)
    assert (task.state, task.member_id) == ("accepted", work.doctor)
    shown = params(task_cards(sandbox, task_id, since)[doctor])
    assert shown["state"] == "已接收" and shown["acted_by"] == f"已由{w.clinician.name}接收"
    assert shown["actionable"] == "true"
    with tree_app.app_context():
        assert db.session().get(BotCard, card["outTrackId"]).acted_by is None
    # A second 接收 changes nothing.
    click(sandbox, card, doctor, "control.accept")
    assert steps(tree_app, task_id) == ["dispatch", "accept"]

    # 完成 without a choice: a hint, nothing changes; with the key result: completed, positive set.
    click(sandbox, card, doctor, "control.complete")
    hinted = task_cards(sandbox, task_id, since)[doctor]
    assert hinted["privateData"][doctor]["cardParamMap"]["hint"] == "请选择核查结果后完成"
    assert task_row(tree_app, task_id).state == "accepted"
    click(sandbox, card, doctor, "control.complete", value="阳性")
    task = task_row(tree_app, task_id)
    assert (task.state, task.positive, task.result) == ("completed", True, {"outcome": "阳性"})
    run_jobs(tree_app)
    shown = params(task_cards(sandbox, task_id, since)[doctor])
    assert shown["state"] == "已完成" and shown["acted_by"] == f"已由{w.clinician.name}完成"
    assert shown["result"] == "核查结果：阳性（阳性）" and shown["actionable"] == "false"
    # A double tap on 完成: no second event.
    click(sandbox, card, doctor, "control.complete", value="阴性")
    assert steps(tree_app, task_id) == ["dispatch", "accept", "complete"]
    assert task_row(tree_app, task_id).result == {"outcome": "阳性"}

    # The other card: 完成 straight away (accepting on the way), negative.
    other = task_cards(sandbox, work.tasks["001001"], since)[doctor]
    click(sandbox, other, doctor, "control.complete", value="阴性")
    task = task_row(tree_app, work.tasks["001001"])
    assert (task.state, task.positive) == ("completed", False)
    assert steps(tree_app, work.tasks["001001"]) == ["dispatch", "complete"]


def test_someone_who_does_not_work_the_task_gets_a_private_hint(tree_app, tree_client, sandbox, pc_world, served):
    w = pc_world
    since = mark(sandbox)
    work = make_worklist(tree_app, tree_client, w, ["001001"], template=CARD_TEMPLATE)
    announce(tree_app, work)
    task_id = work.tasks["001001"]
    [card] = task_cards(sandbox, task_id, since).values()
    _, clinic = doctor_and_clinic(tree_app, w)
    outsiders = [colleague_of(tree_app, w, clinic).userid, w.county_admin.userid]
    for userid in outsiders:
        for action, extra in (("control.accept", {}), ("control.complete", {"value": "阴性"})):
            click(sandbox, card, userid, action, **extra)
            shown = task_cards(sandbox, task_id, since)[w.clinician.userid]
            assert shown["privateData"][userid]["cardParamMap"]["hint"] == cards.NOT_YOURS
            assert not params(shown).get("hint")  # only the one who tapped is told
    assert task_row(tree_app, task_id).state == "assigned"
    assert steps(tree_app, task_id) == ["dispatch"]
    with tree_app.app_context():
        assert db.session().get(BotCard, card["outTrackId"]).acted_by is None
    # The doctor can still act on it.
    click(sandbox, card, w.clinician.userid, "control.accept")
    assert task_row(tree_app, task_id).state == "accepted"


def test_a_template_with_more_required_fields_is_finished_on_the_page(tree_app, tree_client, sandbox, pc_world, served):
    w = pc_world
    since = mark(sandbox)
    work = make_worklist(tree_app, tree_client, w, ["001001"])  # 体温 (number) is required too
    announce(tree_app, work)
    task_id = work.tasks["001001"]
    [card] = task_cards(sandbox, task_id, since).values()
    assert params(card)["complete_on_card"] == "false" and params(card)["choices"] == "阴性|阳性"
    click(sandbox, card, w.clinician.userid, "control.complete", value="阴性")
    shown = task_cards(sandbox, task_id, since)[w.clinician.userid]
    assert "任务页面" in shown["privateData"][w.clinician.userid]["cardParamMap"]["hint"]
    assert task_row(tree_app, task_id).state == "assigned" and steps(tree_app, task_id) == ["dispatch"]


def test_every_team_members_card_follows_the_task(tree_app, tree_client, sandbox, pc_world, served):
    w = pc_world
    since = mark(sandbox)
    _, clinic = doctor_and_clinic(tree_app, w)
    colleague = colleague_of(tree_app, w, clinic)
    team = tree_client.post(
        "/api/family-doctor/teams",
        json={"institution_id": clinic, "name": f"精密智控团队{uuid.uuid4().hex[:6]}"},
        headers=w.county_admin.headers,
    )
    assert team.status_code == 201, team.get_json()
    team_id = team.get_json()["id"]
    for userid in (w.clinician.userid, colleague.userid):
        reply = tree_client.post(
            f"/api/family-doctor/teams/{team_id}/members",
            json={"userid": userid, "role": "doctor"},
            headers=w.county_admin.headers,
        )
        assert reply.status_code == 200, reply.get_json()
    work = make_worklist(
        tree_app,
        tree_client,
        w,
        ["004001", "004002"],
        template=CARD_TEMPLATE,
        rules={"004": {"node_id": clinic, "team_id": team_id}},
    )
    announce(tree_app, work)
    first, second = work.tasks["004001"], work.tasks["004002"]
    both = {w.clinician.userid, colleague.userid}
    assert set(task_cards(sandbox, first, since)) == both and set(task_cards(sandbox, second, since)) == both

    # The colleague accepts on their card: they claim it; the doctor's card shows who, and may no longer act.
    click(sandbox, task_cards(sandbox, first, since)[colleague.userid], colleague.userid, "control.accept")
    assert task_row(tree_app, first).member_id == colleague.id
    run_jobs(tree_app)
    mine = task_cards(sandbox, first, since)[w.clinician.userid]
    assert params(mine)["state"] == "已接收" and params(mine)["acted_by"] == f"已由{colleague.name}接收"
    assert params(mine)["assignee"] == colleague.name
    click(sandbox, mine, w.clinician.userid, "control.complete", value="阴性")
    hint = task_cards(sandbox, first, since)[w.clinician.userid]["privateData"][w.clinician.userid]
    assert hint["cardParamMap"]["hint"] == cards.NOT_YOURS
    assert steps(tree_app, first) == ["dispatch", "accept"]

    # A step on the H5 page (the API): every card of the task follows, and a finished task's cards close.
    doctor = bearer(sign_in(tree_client, sandbox, w.clinician.userid))
    done = tree_client.post(f"{API}/tasks/{second}/complete", json={"result": {"outcome": "阴性"}}, headers=doctor)
    assert done.status_code == 200, done.get_json()
    run_jobs(tree_app)
    for card in task_cards(sandbox, second, since).values():
        shown = params(card)
        assert shown["state"] == "已完成" and shown["actionable"] == "false"
        assert shown["acted_by"] == f"已由{w.clinician.name}完成" and shown["result"] == "核查结果：阴性"
    with tree_app.app_context():
        closed = (
            db.session()
            .scalars(sa.select(BotCard.action_id).where(BotCard.out_track_id.like(f"control:{second}:%")))
            .all()
        )
        assert closed == ["control.closed", "control.closed"]
    late = task_cards(sandbox, second, since)[colleague.userid]
    click(sandbox, late, colleague.userid, "control.complete", value="阳性")
    assert steps(tree_app, second) == ["dispatch", "complete"]


def test_a_big_batch_is_one_summary_notice_per_recipient(tree_app, tree_client, sandbox, pc_world, served):
    w = pc_world
    since = mark(sandbox)
    codes = [f"00100{n}" for n in range(1, 6)] + ["001009"]  # the last one urgent
    # A name of its own: the sandbox, like DingTalk, drops the same work notice to the same person a second time
    # in a day, and both backends' runs share the session's sandbox.
    name = f"重点人群核查{uuid.uuid4().hex[:8]}"
    work = make_worklist(tree_app, tree_client, w, codes, template=CARD_TEMPLATE, name=name)
    # The dispatch (activation) told the doctor: 6 > CARD_CUTOFF, so one notice and no cards. Announcing the same
    # tasks again (a retried dispatch) sends nothing.
    with tree_app.app_context():
        session = db.session()
        again = cards.send_assignment_notices(session, sorted(work.tasks.values()))
        session.commit()
    run_jobs(tree_app)
    assert again == {"cards": 0, "notices": 0, "recipients": 1}
    for code in codes:
        assert task_cards(sandbox, work.tasks[code], since) == {}
    notices = [
        str(m["content"])
        for m in sandbox_messages(sandbox, kind="work_notice", userid=w.clinician.userid, since=since)
        if "精密智控任务" in str(m["content"])
    ]
    assert len(notices) == 1
    [notice] = notices
    assert "新分派任务：6 项" in notice and "其中紧急：1 项" in notice and name in notice and "最早截止" in notice
    assert f"/h5/apps/precision_control/?campaign_id={work.campaign_id}" in notice
    assert not any(name in notice for name in work.names.values())

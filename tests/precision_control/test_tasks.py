"""The doctors' tasks over HTTP: the list with counts, one task with its person (in the clear only for who works
it, every view audited), accept → start → the result form checked against the campaign's template, unreachable,
transfer, close by the county, and a double accept moving the task once."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from sqlalchemy import orm

from mini_apps.precision_control import tasks
from mini_apps.precision_control.models import CampaignPerson, ControlTask, ControlTaskEvent
from org_sync.models import OrgMember
from tests.precision_control.conftest import campaign_body, id_number
from workbench import db
from workbench.audit import AuditRecord
from workbench.auth.principal import load_principal
from workbench.errors import ApiError

API = "/api/precision-control"


@dataclass
class Desk:
    campaign_id: int
    doctor: int  # member id of the clinician
    named: list[int]  # tasks routed to the clinician by name
    clinic: int  # a task routed to the clinician's institution, nobody named
    elsewhere: int  # a task in another institution of the county


@pytest.fixture
def desk(tree_app, tree_client, pc_world) -> Desk:
    w, admin = pc_world, pc_world.county_admin.headers
    with tree_app.app_context():
        session = db.session()
        doctor = session.scalar(sa.select(OrgMember.id).where(OrgMember.userid == w.clinician.userid))
        clinic = load_principal(session, doctor).institution_ids()[0]
    other = next(i for i in w.institution_ids if i != clinic)
    created = tree_client.post(f"{API}/campaigns", json=campaign_body(w.county_id), headers=admin)
    assert created.status_code == 201, created.get_json()
    campaign_id = created.get_json()["id"]
    rules = f"{API}/campaigns/{campaign_id}/dispatch-rules"
    for prefix, body in [
        ("001", {"node_id": clinic, "member_id": doctor}),
        ("002", {"node_id": clinic}),
        ("003", {"node_id": other}),
    ]:
        reply = tree_client.put(rules, json={"division_prefix": w.division + prefix, **body}, headers=admin)
        assert reply.status_code == 200, reply.get_json()
    codes = ["001001", "001002", "002001", "003001"]
    items = [
        {
            "name": f"王{'一二三四'[n]}",
            "id_number": id_number(300 + n),
            "phone": f"1390000{n:04d}",
            "address": f"幸福路{n}号",
            "division_code": w.division + code,
            "category": "发热",
        }
        for n, code in enumerate(codes)
    ]
    pushed = tree_client.post(f"{API}/campaigns/{campaign_id}/roster/items", json={"items": items}, headers=admin)
    assert pushed.status_code == 200, pushed.get_json()
    active = tree_client.patch(f"{API}/campaigns/{campaign_id}", json={"state": "active"}, headers=admin)
    assert active.status_code == 200, active.get_json()
    with tree_app.app_context():
        rows = db.session().execute(
            sa.select(CampaignPerson.division_code, ControlTask.id)
            .join(CampaignPerson, CampaignPerson.id == ControlTask.person_id)
            .where(ControlTask.campaign_id == campaign_id)
        )
        by_code = {code[6:]: task_id for code, task_id in rows}
    return Desk(campaign_id, doctor, [by_code["001001"], by_code["001002"]], by_code["002001"], by_code["003001"])


def _post(client, task_id: int, step: str, who, body: dict | None = None):
    return client.post(f"{API}/tasks/{task_id}/{step}", json=body or {}, headers=who.headers)


def test_a_doctor_lists_opens_accepts_and_completes_with_the_form_checked(tree_app, tree_client, pc_world, desk):
    doctor = pc_world.clinician
    listed = tree_client.get(f"{API}/tasks?mine=true", headers=doctor.headers)
    assert listed.status_code == 200, listed.get_json()
    body = listed.get_json()
    assert {item["id"] for item in body["items"]} == {*desk.named, desk.clinic}
    assert body["counts"]["assigned"] == 3 and body["counts"]["overdue"] == 0
    first = next(item for item in body["items"] if item["id"] == desk.named[0])
    assert first["name_masked"] == "王*" and "name" not in first and "id_number" not in first
    assert first["campaign_name"] == "重点人群随访" and first["overdue"] is False

    opened = tree_client.get(f"{API}/tasks/{desk.named[0]}", headers=doctor.headers)
    assert opened.status_code == 200, opened.get_json()
    task = opened.get_json()
    assert task["person"]["name"] == "王一" and task["person"]["id_number"] == id_number(300)
    assert task["person"]["phone"] == "13900000000" and task["person"]["address"] == "幸福路0号"
    assert task["may_work"] is True and task["task_template"]["fields"][0]["code"] == "temperature"
    with tree_app.app_context():
        reads = (
            db.session()
            .scalars(sa.select(AuditRecord).where(AuditRecord.action == "precision_control.person.read"))
            .all()
        )
        assert [(r.resource_id, r.detail["clear"]) for r in reads] == [(str(desk.named[0]), True)]
        assert "王一" not in str([r.detail for r in reads])

    accepted = _post(tree_client, desk.named[0], "accept", doctor)
    assert (accepted.status_code, accepted.get_json()["state"]) == (200, "accepted")
    assert _post(tree_client, desk.named[0], "accept", doctor).status_code == 409
    assert _post(tree_client, desk.named[0], "start", doctor).get_json()["state"] == "in_progress"

    complete = f"{API}/tasks/{desk.named[0]}/complete"
    for result, field in [
        ({"temperature": 50, "result": "阴性"}, "result.temperature"),
        ({"temperature": "高", "result": "阴性"}, "result.temperature"),
        ({"temperature": 37.2}, "result.result"),
        ({"temperature": 37.2, "result": "未知"}, "result.result"),
        ({"temperature": 37.2, "result": "阴性", "extra": 1}, "result.extra"),
    ]:
        reply = tree_client.post(complete, json={"result": result}, headers=doctor.headers)
        assert (reply.status_code, reply.get_json()["error"]["field"]) == (422, field), (result, reply.get_json())
    not_a_form = tree_client.post(complete, json={"result": "阳性"}, headers=doctor.headers)
    assert (not_a_form.status_code, not_a_form.get_json()["error"]["field"]) == (422, "result")
    assert tree_client.get(f"{API}/tasks/{desk.named[0]}", headers=doctor.headers).get_json()["state"] == "in_progress"

    done = tree_client.post(complete, json={"result": {"temperature": 38.5, "result": "阳性"}}, headers=doctor.headers)
    assert done.status_code == 200, done.get_json()
    assert (done.get_json()["state"], done.get_json()["positive"]) == ("completed", True)
    assert done.get_json()["result"] == {"temperature": 38.5, "result": "阳性"}
    negative = tree_client.post(
        f"{API}/tasks/{desk.named[1]}/complete",
        json={"result": {"temperature": 36.6, "result": "阴性"}, "note": "电话随访"},
        headers=doctor.headers,
    )
    assert (negative.status_code, negative.get_json()["positive"]) == (200, False)
    assert negative.get_json()["accepted_at"] is not None  # completing straight away accepts on the way

    counts = tree_client.get(f"{API}/tasks?mine=true", headers=doctor.headers).get_json()["counts"]
    assert (counts["completed"], counts["assigned"]) == (2, 1)
    finished = tree_client.get(f"{API}/tasks?mine=true&state=finished", headers=doctor.headers).get_json()
    assert {item["id"] for item in finished["items"]} == set(desk.named)
    with tree_app.app_context():
        steps = (
            db.session()
            .scalars(sa.select(ControlTaskEvent.action).where(ControlTaskEvent.task_id == desk.named[0]).order_by("id"))
            .all()
        )
        assert steps == ["dispatch", "accept", "start", "complete"]
    history = tree_client.get(f"{API}/tasks/{desk.named[0]}", headers=doctor.headers).get_json()["events"]
    assert [(e["action"], e["actor_name"]) for e in history][1:] == [
        ("accept", doctor.name),
        ("start", doctor.name),
        ("complete", doctor.name),
    ]


def test_an_institution_task_is_claimed_by_whoever_accepts_it(tree_app, tree_client, pc_world, desk):
    doctor = pc_world.clinician
    unclaimed = tree_client.get(f"{API}/tasks/{desk.clinic}", headers=doctor.headers).get_json()
    # Anyone of the institution may take it on, but sees the person only once it is theirs.
    assert unclaimed["may_work"] is True and unclaimed["person"].get("name") is None
    accepted = _post(tree_client, desk.clinic, "accept", doctor)
    assert accepted.status_code == 200, accepted.get_json()
    assert accepted.get_json()["member_id"] == desk.doctor
    claimed = tree_client.get(f"{API}/tasks/{desk.clinic}", headers=doctor.headers).get_json()
    assert claimed["person"]["name"] == "王三" and claimed["person"]["id_number"] == id_number(302)


def test_unreachable_and_transfer_need_their_reasons(tree_app, tree_client, pc_world, desk):
    doctor = pc_world.clinician
    for body, field in [
        ({"attempts": 3}, "reason"),
        ({"reason": "  ", "attempts": 3}, "reason"),
        ({"reason": "电话停机", "attempts": 0}, "attempts"),
        ({"reason": "电话停机"}, "attempts"),
        ({"reason": "电话停机", "attempts": "3"}, "attempts"),
    ]:
        reply = _post(tree_client, desk.named[0], "unreachable", doctor, body)
        assert (reply.status_code, reply.get_json()["error"]["field"]) == (422, field), body
    gone = _post(tree_client, desk.named[0], "unreachable", doctor, {"reason": "电话停机，上门无人", "attempts": 3})
    assert (gone.status_code, gone.get_json()["state"]) == (200, "unreachable")
    assert gone.get_json()["finished_at"] is not None

    missing = _post(tree_client, desk.named[1], "transfer", doctor, {"reason": "已迁居"})
    assert (missing.status_code, missing.get_json()["error"]["field"]) == (422, "destination")
    moved = _post(tree_client, desk.named[1], "transfer", doctor, {"reason": "已迁居", "destination": "江苏省南京市"})
    assert (moved.status_code, moved.get_json()["state"]) == (200, "transferred")
    with tree_app.app_context():
        detail = db.session().scalar(
            sa.select(ControlTaskEvent.detail).where(
                ControlTaskEvent.task_id == desk.named[1], ControlTaskEvent.action == "transfer"
            )
        )
        assert detail == {"destination": "江苏省南京市"}
    assert _post(tree_client, desk.named[1], "complete", doctor, {"result": {}}).status_code == 409


def test_who_sees_what_and_who_may_act(tree_app, tree_client, pc_world, desk):
    w = pc_world
    # The county administrator oversees: the task masked, no working it, but closing it.
    seen = tree_client.get(f"{API}/tasks/{desk.named[0]}", headers=w.county_admin.headers)
    assert seen.status_code == 200
    person = seen.get_json()["person"]
    assert person["name_masked"] == "王*" and person.get("name") is None and person.get("id_number") is None
    assert seen.get_json()["may_work"] is False and seen.get_json()["may_close"] is True
    assert _post(tree_client, desk.named[0], "accept", w.county_admin).status_code == 403
    listed = tree_client.get(f"{API}/tasks", headers=w.county_admin.headers).get_json()
    assert {item["id"] for item in listed["items"]} == {*desk.named, desk.clinic, desk.elsewhere}
    assert tree_client.get(f"{API}/tasks?mine=true", headers=w.county_admin.headers).get_json()["total"] == 0

    # Another county: as if the task did not exist.
    for step in ("accept", "close"):
        assert _post(tree_client, desk.named[0], step, w.other_county_admin, {"reason": "x"}).status_code == 404
    assert tree_client.get(f"{API}/tasks/{desk.named[0]}", headers=w.other_county_admin.headers).status_code == 404
    assert tree_client.get(f"{API}/tasks", headers=w.other_county_admin.headers).get_json()["total"] == 0
    # The clinician does not see another institution's task, and may not close their own.
    assert tree_client.get(f"{API}/tasks/{desk.elsewhere}", headers=w.clinician.headers).status_code == 404
    assert _post(tree_client, desk.elsewhere, "accept", w.clinician).status_code == 404
    assert _post(tree_client, desk.named[0], "close", w.clinician, {"reason": "重复"}).status_code == 403

    blank = _post(tree_client, desk.named[0], "close", w.county_admin, {"reason": ""})
    assert (blank.status_code, blank.get_json()["error"]["field"]) == (422, "reason")
    closed = _post(tree_client, desk.named[0], "close", w.county_admin, {"reason": "重复登记"})
    assert (closed.status_code, closed.get_json()["state"]) == (200, "closed")
    assert _post(tree_client, desk.named[0], "close", w.county_admin, {"reason": "重复登记"}).status_code == 409
    assert _post(tree_client, desk.named[0], "accept", w.clinician).status_code == 409  # theirs, but closed
    assert tree_client.get(f"{API}/tasks?state=bogus", headers=w.clinician.headers).status_code == 422


def test_an_ended_campaign_takes_no_more_steps(tree_app, tree_client, pc_world, desk):
    ended = tree_client.patch(
        f"{API}/campaigns/{desk.campaign_id}", json={"state": "ended"}, headers=pc_world.county_admin.headers
    )
    assert ended.status_code == 200, ended.get_json()
    assert _post(tree_client, desk.named[0], "accept", pc_world.clinician).status_code == 409


def test_a_double_accept_moves_the_task_once(tree_app, pc_world, desk):
    with tree_app.app_context():
        engine = db.get_db().engine
        barrier = threading.Barrier(2)
        outcomes: list[object] = []

        def accept() -> None:  # as two requests would: each in its own app context and session
            with tree_app.app_context(), orm.Session(engine, expire_on_commit=False) as own:
                principal = load_principal(own, desk.doctor)
                own.commit()
                barrier.wait(timeout=30)
                try:
                    outcomes.append(tasks.accept_task(own, principal, desk.named[0])["state"])
                except ApiError as error:
                    outcomes.append(error.status)

        threads = [threading.Thread(target=accept) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert sorted(outcomes, key=str) == [409, "accepted"]
        accepts = db.session().scalar(
            sa.select(sa.func.count())
            .select_from(ControlTaskEvent)
            .where(ControlTaskEvent.task_id == desk.named[0], ControlTaskEvent.action == "accept")
        )
        assert accepts == 1

"""Appointment capacity (号源): publishing it (who may, and its limits), reading the free places, booking to
capacity and releasing — and, on PostgreSQL, many coordinators racing for the last places."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import timedelta

import pytest
import sqlalchemy as sa

from mini_apps.referral import slots
from mini_apps.referral.models import ReferralSlot
from tests.support.auth import bearer, sign_in
from tests.support.tree import Tree, node_id
from workbench import db
from workbench.audit import AuditRecord
from workbench.errors import ApiError

API = "/api/referrals/slots"


@dataclass
class Hospital:
    """A county's lead hospital with a department; who works there and who refers to it."""

    county: int  # DingTalk dept ids below
    lead: int
    department: int
    other_department: int
    department_members: list[str]  # userids of members with a position in `department`
    lead_leaders: list[str]  # userids leading the lead hospital's own node
    coordinator: str  # a member of another department, to be granted referral_coordinator on the lead
    grassroots_doctor: str  # works only in a member institution's department of the county
    county_admin: str
    other_lead_department: int  # a department of another county's lead hospital


def find_hospital(t: Tree) -> Hospital:
    """The first county whose lead hospital has two staffed departments and a leader, with a grassroots doctor."""
    for county in t.counties():
        leads = [d for d in t.depts if t.level(d) == "medical_community_lead" and t.county_of(d) == county]
        for lead in leads:
            departments = [
                d for d in t.depts if t.depts[d].get("parent_id") == lead and t.level(d) == "internal_department"
            ]
            staffed = [(d, [u["userid"] for u in t.users if d in u["dept_id_list"]]) for d in departments]
            staffed = [(d, users) for d, users in staffed if users]
            leaders = [
                u["userid"]
                for u in t.users
                if any(x["dept_id"] == lead and x["leader"] for x in u.get("leader_in_dept") or [])
            ]
            if len(staffed) < 2 or not leaders:
                continue
            (department, members), (other, others) = staffed[0], staffed[1]
            coordinator = next((u for u in others if u not in members and u not in leaders), None)
            try:
                doctor = t.member_at("internal_department", "member_institution", county=county)
                admin = t.member_at("county_bureau", county=county)
            except LookupError:
                continue
            if coordinator is None:
                continue
            elsewhere = next(
                d
                for d in t.depts
                if t.level(d) == "internal_department"
                and t.level(t.unit_of(d)) == "medical_community_lead"
                and t.county_of(d) != county
            )
            return Hospital(
                county,
                lead,
                department,
                other,
                members,
                leaders,
                coordinator,
                doctor["userid"],
                admin["userid"],
                elsewhere,
            )
    raise LookupError("no suitable county in the sandbox province")


def grant_coordinator(client, sandbox, h: Hospital, app) -> None:
    """The county admin makes `h.coordinator` the lead hospital's referral coordinator (转诊协调员)."""
    admin = bearer(sign_in(client, sandbox, h.county_admin))
    reply = client.post(
        "/api/auth/grants",
        json={"userid": h.coordinator, "role": "referral_coordinator", "node_id": node_id(app, h.lead)},
        headers=admin,
    )
    assert reply.status_code == 201, reply.get_json()


@pytest.fixture
def hospital(tree_app, tree_client, sandbox, tree) -> Hospital:
    h = find_hospital(Tree(tree))
    grant_coordinator(tree_client, sandbox, h, tree_app)
    return h


def _error(reply) -> dict:
    return reply.get_json()["error"]


def test_coordinators_publish_capacity_and_anyone_who_refers_reads_the_free_places(
    tree_app, tree_client, sandbox, hospital
):
    h = hospital
    coordinator = bearer(sign_in(tree_client, sandbox, h.coordinator))
    department = node_id(tree_app, h.department)
    day = slots.today() + timedelta(days=1)
    body = {"department_id": department, "day": day.isoformat(), "half_day": "am", "capacity": 3}

    reply = tree_client.put(API, json=body, headers=coordinator)
    assert reply.status_code == 200, reply.get_json()
    first = reply.get_json()
    assert first | {"id": None} == {
        "id": None,
        "department_id": department,
        "day": day.isoformat(),
        "half_day": "am",
        "capacity": 3,
        "free": 3,
    }
    # Publishing again changes the same slot.
    reply = tree_client.put(API, json=body | {"capacity": 5}, headers=coordinator)
    assert reply.get_json()["id"] == first["id"] and reply.get_json()["capacity"] == 5
    # The lead hospital's own leaders (institution admins) may too.
    leader = bearer(sign_in(tree_client, sandbox, h.lead_leaders[0]))
    reply = tree_client.put(API, json=body | {"half_day": "pm", "capacity": 2}, headers=leader)
    assert reply.status_code == 200, reply.get_json()

    with tree_app.app_context():
        session = db.session()
        slots.book(session, department, day, "am")
        session.commit()
        actions = session.scalars(
            sa.select(AuditRecord.resource_id).where(AuditRecord.action == "referral.slot.publish")
        ).all()
        assert actions.count(str(first["id"])) == 2

    doctor = bearer(sign_in(tree_client, sandbox, h.grassroots_doctor))
    reply = tree_client.get(API, query_string={"department_id": department}, headers=doctor)
    assert reply.status_code == 200, reply.get_json()
    listing = reply.get_json()
    assert listing["from"] == slots.today().isoformat()
    assert listing["to"] == (slots.today() + timedelta(days=6)).isoformat()
    assert [(i["day"], i["half_day"], i["capacity"], i["free"]) for i in listing["items"]] == [
        (day.isoformat(), "am", 5, 4),
        (day.isoformat(), "pm", 2, 2),
    ]
    # A window that misses the day shows nothing; an inverted or too long one is refused naming `to`.
    later = {"department_id": department, "from": (day + timedelta(days=1)).isoformat()}
    assert tree_client.get(API, query_string=later, headers=doctor).get_json()["items"] == []
    for window in ({"to": (day - timedelta(days=2)).isoformat()}, {"to": (day + timedelta(days=90)).isoformat()}):
        reply = tree_client.get(
            API, query_string={"department_id": department, "from": day.isoformat(), **window}, headers=doctor
        )
        assert reply.status_code == 422 and _error(reply)["field"] == "to"
    reply = tree_client.get(API, query_string={"department_id": node_id(tree_app, h.lead)}, headers=doctor)
    assert reply.status_code == 404 and _error(reply)["field"] == "department_id"
    assert tree_client.get(API, query_string={"department_id": department}).status_code == 401


def test_publishing_rules(tree_app, tree_client, sandbox, hospital):
    h = hospital
    coordinator = bearer(sign_in(tree_client, sandbox, h.coordinator))
    department = node_id(tree_app, h.department)
    tomorrow = slots.today() + timedelta(days=1)
    body = {"department_id": department, "day": tomorrow.isoformat(), "half_day": "am", "capacity": 2}

    # A clinician without a publishing role: forbidden; a coordinator outside the hospital: no such department.
    doctor = bearer(sign_in(tree_client, sandbox, h.grassroots_doctor))
    assert tree_client.put(API, json=body, headers=doctor).status_code == 403
    elsewhere = body | {"department_id": node_id(tree_app, h.other_lead_department)}
    reply = tree_client.put(API, json=elsewhere, headers=coordinator)
    assert reply.status_code == 404 and _error(reply)["field"] == "department_id"
    # Only departments take appointments, not the hospital's own node.
    reply = tree_client.put(API, json=body | {"department_id": node_id(tree_app, h.lead)}, headers=coordinator)
    assert reply.status_code == 404 and _error(reply)["field"] == "department_id"

    yesterday = slots.today() - timedelta(days=1)
    for change, field in (
        ({"day": yesterday.isoformat()}, "day"),
        ({"capacity": -1}, "capacity"),
        ({"capacity": 1000}, "capacity"),
        ({"capacity": "3"}, "capacity"),
        ({"half_day": "night"}, "half_day"),
    ):
        reply = tree_client.put(API, json=body | change, headers=coordinator)
        assert reply.status_code == 422 and _error(reply)["field"] == field, (change, reply.get_json())

    assert tree_client.put(API, json=body, headers=coordinator).status_code == 200
    with tree_app.app_context():
        session = db.session()
        slots.book(session, department, tomorrow, "am")
        slots.book(session, department, tomorrow, "am")
        session.commit()
    # Not below what is booked; down to exactly that is fine, and so is closing a slot nobody booked.
    reply = tree_client.put(API, json=body | {"capacity": 1}, headers=coordinator)
    assert reply.status_code == 409 and _error(reply)["field"] == "capacity" and _error(reply)["booked"] == 2
    assert tree_client.put(API, json=body | {"capacity": 2}, headers=coordinator).get_json()["free"] == 0
    closed = tree_client.put(API, json=body | {"half_day": "pm", "capacity": 0}, headers=coordinator)
    assert closed.status_code == 200 and closed.get_json()["free"] == 0
    with tree_app.app_context():
        capacity, booked = (
            db.session()
            .execute(
                sa.select(ReferralSlot.capacity, ReferralSlot.booked).where(
                    ReferralSlot.department_id == department, ReferralSlot.half_day == "am"
                )
            )
            .one()
        )
        assert (capacity, booked) == (2, 2)


def test_booking_to_capacity_and_releasing(tree_app, tree_client, sandbox, hospital):
    h = hospital
    coordinator = bearer(sign_in(tree_client, sandbox, h.coordinator))
    department = node_id(tree_app, h.department)
    day = slots.today() + timedelta(days=2)
    body = {"department_id": department, "day": day.isoformat(), "half_day": "pm", "capacity": 2}
    assert tree_client.put(API, json=body, headers=coordinator).status_code == 200

    with tree_app.app_context():
        session = db.session()
        first = slots.book(session, department, day, "pm")
        second = slots.book(session, department, day, "pm")
        assert first.id == second.id and second.booked == 2
        session.commit()
        with pytest.raises(ApiError) as full:
            slots.book(session, department, day, "pm")
        assert (full.value.status, full.value.code, full.value.field) == (409, "slot_full", "slot")
        session.rollback()
        # Nothing published for the morning, nor for a closed slot.
        with pytest.raises(ApiError) as none:
            slots.book(session, department, day, "am")
        assert (none.value.status, none.value.code, none.value.field) == (409, "no_capacity", "slot")
        session.rollback()

        slots.release(session, first.id)
        session.commit()
        again = slots.book(session, department, day, "pm")
        assert again.booked == 2
        session.commit()
        for _ in range(3):  # releasing more than was booked stops at zero
            slots.release(session, first.id)
        session.commit()
        assert session.scalar(sa.select(ReferralSlot.booked).where(ReferralSlot.id == first.id)) == 0

    assert tree_client.put(API, json=body | {"half_day": "am", "capacity": 0}, headers=coordinator).status_code == 200
    with tree_app.app_context():
        session = db.session()
        with pytest.raises(ApiError) as closed:
            slots.book(session, department, day, "am")
        assert closed.value.code == "no_capacity"
        session.rollback()


def test_a_week_at_once_all_or_nothing(tree_app, tree_client, sandbox, hospital):
    coordinator = bearer(sign_in(tree_client, sandbox, hospital.coordinator))
    department = node_id(tree_app, hospital.department)
    monday = slots.today() + timedelta(days=7 - slots.today().weekday())
    week = {
        "department_id": department,
        "from": monday.isoformat(),
        "capacity": {"am": [3, 3, 3, 3, 3, None, None], "pm": [2, 2, 2, 2, 2, 0, None]},
    }
    reply = tree_client.put(f"{API}/week", json=week, headers=coordinator)
    assert reply.status_code == 200, reply.get_json()
    placed = [(i["day"], i["half_day"], i["capacity"]) for i in reply.get_json()["items"]]
    expected = [((monday + timedelta(days=n)).isoformat(), "am", 3) for n in range(5)]
    expected += [((monday + timedelta(days=n)).isoformat(), "pm", 2 if n < 5 else 0) for n in range(6)]
    assert placed == sorted(expected)
    listing = tree_client.get(
        API, query_string={"department_id": department, "from": monday.isoformat()}, headers=coordinator
    ).get_json()
    assert [(i["day"], i["half_day"], i["capacity"]) for i in listing["items"]] == sorted(expected)

    tuesday = monday + timedelta(days=1)
    with tree_app.app_context():
        session = db.session()
        slots.book(session, department, tuesday, "am")
        session.commit()
    # Closing Tuesday morning is refused (one place is booked), and so is the rest of the same request.
    change = week | {"capacity": {"am": [9, 0, None, None, None, None, None]}}
    reply = tree_client.put(f"{API}/week", json=change, headers=coordinator)
    assert reply.status_code == 409, reply.get_json()
    assert _error(reply) | {"message": None} == {
        "code": "conflict",
        "message": None,
        "field": "capacity",
        "booked": 1,
        "day": tuesday.isoformat(),
        "half_day": "am",
    }
    with tree_app.app_context():
        monday_am = db.session().scalar(
            sa.select(ReferralSlot.capacity).where(
                ReferralSlot.department_id == department, ReferralSlot.day == monday, ReferralSlot.half_day == "am"
            )
        )
        assert monday_am == 3

    for bad, field in (
        (week | {"from": (slots.today() - timedelta(days=1)).isoformat()}, "from"),
        (week | {"capacity": {"am": [1, 2, 3]}}, "capacity"),
        (week | {"capacity": {"night": [1] * 7}}, "capacity"),
    ):
        reply = tree_client.put(f"{API}/week", json=bad, headers=coordinator)
        assert reply.status_code == 422 and _error(reply)["field"].startswith(field), reply.get_json()
    doctor = bearer(sign_in(tree_client, sandbox, hospital.grassroots_doctor))
    assert tree_client.put(f"{API}/week", json=week, headers=doctor).status_code == 403


@pytest.mark.parametrize("backend", ["postgresql"])
def test_concurrent_bookings_never_exceed_capacity(tree_app, tree_client, sandbox, hospital):
    h = hospital
    coordinator = bearer(sign_in(tree_client, sandbox, h.coordinator))
    department = node_id(tree_app, h.department)
    day = slots.today() + timedelta(days=3)
    body = {"department_id": department, "day": day.isoformat(), "half_day": "am", "capacity": 5}
    assert tree_client.put(API, json=body, headers=coordinator).status_code == 200
    with tree_app.app_context():
        session = db.session()
        for _ in range(3):
            slots.book(session, department, day, "am")
        session.commit()

    threads, start = 12, threading.Barrier(12)
    outcomes: list[str] = []
    lock = threading.Lock()

    def take_one() -> None:
        with tree_app.app_context():
            session = db.session()
            start.wait()
            try:
                slots.book(session, department, day, "am")
                session.commit()
                outcome = "booked"
            except ApiError as exc:
                session.rollback()
                outcome = exc.code
            finally:
                session.close()
            with lock:
                outcomes.append(outcome)

    workers = [threading.Thread(target=take_one) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert sorted(outcomes) == ["booked"] * 2 + ["slot_full"] * 10
    with tree_app.app_context():
        assert db.session().scalar(sa.select(ReferralSlot.booked).where(ReferralSlot.department_id == department)) == 5

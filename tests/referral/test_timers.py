"""Referral clocks: the SLA table and its setting, the reminder at half time, the escalation (and expiry) at the
deadline, the first follow-up clock of a down-referral and no-shows — each exactly once, with the work notices
reaching the right people in the sandbox. Referrals are put in their states through the ORM; the jobs take `now`."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa
from flask import Flask

from config import load_settings
from mini_apps.referral import timers
from mini_apps.referral.models import Referral, ReferralEvent, ReferralSlot
from org_sync.models import OrgMember
from tests.conftest import run_jobs
from tests.referral.test_slots import Hospital, find_hospital, grant_coordinator
from tests.support.tree import Tree, node_id
from workbench import db
from workbench.audit import AuditRecord
from workbench.auth.models import RoleGrant

T0 = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)
PATIENT = "欧阳娜娜"
ID_NUMBER = "330102195003070018"
NO_TIMERS = {"reminded": 0, "escalated": 0, "no_show": 0}


def test_the_sla_table_and_its_setting():
    # Outside an app: the defaults.
    assert timers.deadline_for("up", "routine", "submitted", T0) == T0 + timedelta(hours=24)
    assert timers.deadline_for("lateral", "urgent", "submitted", T0) == T0 + timedelta(hours=2)
    assert timers.deadline_for("up", "green", "submitted", T0) == T0 + timedelta(minutes=15)
    assert timers.deadline_for("down", "routine", "submitted", T0) == T0 + timedelta(hours=48)
    assert timers.deadline_for("down", "routine", "received_patient", T0) == T0 + timedelta(days=7)
    for direction, state in (("up", "accepted"), ("up", "scheduled"), ("up", "expired"), ("down", "accepted")):
        assert timers.deadline_for(direction, "urgent", state, T0) is None

    app = Flask(__name__)
    app.config["SETTINGS"] = load_settings({"REFERRAL_SLA": "urgent=30m, down_ack=1d,green=90s"}, read_dotenv=False)
    with app.app_context():
        assert timers.deadline_for("up", "urgent", "submitted", T0) == T0 + timedelta(minutes=30)
        assert timers.deadline_for("down", "urgent", "submitted", T0) == T0 + timedelta(days=1)
        assert timers.deadline_for("up", "green", "submitted", T0) == T0 + timedelta(seconds=90)
        assert timers.deadline_for("up", "routine", "submitted", T0) == T0 + timedelta(hours=24)  # not overridden


def test_the_timers_run_every_minute(app):
    periodic = app.extensions["workbench.queue"].periodic["mini_apps.referral.timers.run_timers"]
    assert periodic.seconds == 60
    with app.app_context():
        assert timers.run_timers() == NO_TIMERS  # as the scheduler calls it: now, nothing due


# -- a referral in a given state ----------------------------------------------------------------------------------


@dataclass
class Places:
    hospital: Hospital
    lead: int  # node ids below
    department: int
    grassroots_institution: int
    grassroots_department: int
    grassroots_lead: int  # the lead of the grassroots institution's medical community
    doctor_member_id: int
    grassroots_colleagues: set[str]  # userids of the grassroots doctor's department


def _member_id(session, userid: str) -> int:
    return session.scalar(sa.select(OrgMember.id).where(OrgMember.userid == userid))


def places_of(app, tree: dict, h: Hospital) -> Places:
    t = Tree(tree)
    doctor = next(u for u in t.users if u["userid"] == h.grassroots_doctor)
    department = doctor["dept_id_list"][0]
    institution = t.unit_of(department)
    lead = next(d for d in t.ancestors(institution) if t.level(d) == "medical_community_lead")
    with app.app_context():
        member_id = _member_id(db.session(), h.grassroots_doctor)
    return Places(
        h,
        node_id(app, h.lead),
        node_id(app, h.department),
        node_id(app, institution),
        node_id(app, department),
        node_id(app, lead),
        member_id,
        {u["userid"] for u in t.users if department in u["dept_id_list"]},
    )


def make_referral(session, p: Places, **values) -> Referral:
    """An up-referral from the grassroots doctor to the lead hospital's department, submitted at T0."""
    referral = Referral(
        referral_no=f"ZZT{uuid.uuid4().hex[:13]}",
        direction="up",
        mode="outpatient",
        priority="routine",
        state="submitted",
        applicant_institution_id=p.grassroots_institution,
        applicant_department_id=p.grassroots_department,
        applicant_member_id=p.doctor_member_id,
        target_institution_id=p.lead,
        target_department_id=p.department,
        reason_code="further_care",
        patient_name=PATIENT,
        patient_id_hash=uuid.uuid4().hex,
        patient_id_cipher="v1:not-read-here",
        patient_id_masked="330102********0018",
        patient_sex="F",
        patient_birth_date=date(1950, 3, 7),
        primary_diagnosis_code="I10",
        primary_diagnosis_name="特发性（原发性）高血压",
        submitted_at=T0,
    )
    for key, value in values.items():
        setattr(referral, key, value)
    if "respond_by" not in values:
        referral.respond_by = timers.deadline_for(referral.direction, referral.priority, referral.state, T0)
    session.add(referral)
    session.commit()
    return referral


def notices_about(sandbox, referral_no: str, *, outcomes: bool = False) -> list[dict]:
    """The timers' work notices about a referral; the applicant's outcome notices (notifications.py, which link
    to the referral: 查看转诊) only with `outcomes`."""
    found = sandbox.admin("GET", "messages", params={"kind": "work_notice"}).json()["messages"]
    about = [m for m in found if referral_no in str(m["content"])]
    return [m for m in about if ("查看转诊" in str(m["content"])) == outcomes]


def _no_secrets(notice: dict) -> None:
    content = str(notice["content"])
    assert PATIENT not in content and ID_NUMBER not in content and "欧**娜" in content


@pytest.fixture
def places(tree_app, tree_client, sandbox, tree) -> Places:
    h = find_hospital(Tree(tree))
    grant_coordinator(tree_client, sandbox, h, tree_app)
    return places_of(tree_app, tree, h)


# -- reminders and escalations ------------------------------------------------------------------------------------


def test_a_reminder_at_half_time_exactly_once(tree_app, sandbox, places):
    with tree_app.app_context():
        session = db.session()
        referral = make_referral(session, places, priority="urgent")
        referral_id, number = referral.id, referral.referral_no
        assert referral.respond_by == T0 + timedelta(hours=2)

        assert timers.run_timers(T0 + timedelta(minutes=59, seconds=59)) == NO_TIMERS
        assert timers.run_timers(T0 + timedelta(hours=1)) == NO_TIMERS | {"reminded": 1}
        assert timers.run_timers(T0 + timedelta(hours=1, minutes=30)) == NO_TIMERS
        session.expire_all()
        referral = session.get(Referral, referral_id)
        assert referral.reminded_at == T0 + timedelta(hours=1) and referral.escalated_at is None
        assert referral.state == "submitted"
        [record] = session.scalars(sa.select(AuditRecord).where(AuditRecord.action == "referral.timer.remind")).all()
        assert (record.actor, record.resource_id) == ("system", str(referral_id))

    run_jobs(tree_app)
    [notice] = notices_about(sandbox, number)
    # The receiving side: the target department's members and the hospital's referral coordinator.
    assert sorted(notice["userids"]) == sorted({*places.hospital.department_members, places.hospital.coordinator})
    assert "转诊待接收提醒" in str(notice["content"])
    _no_secrets(notice)


def test_escalation_and_expiry_at_the_deadline_exactly_once(tree_app, sandbox, places):
    with tree_app.app_context():
        session = db.session()
        referral = make_referral(session, places)
        referral_id, number = referral.id, referral.referral_no
        deadline = T0 + timedelta(hours=24)

        assert timers.run_timers(deadline - timedelta(seconds=1)) == NO_TIMERS | {"reminded": 1}
        assert timers.run_timers(deadline) == NO_TIMERS | {"escalated": 1}
        assert timers.run_timers(deadline) == NO_TIMERS
        assert timers.run_timers(deadline + timedelta(days=3)) == NO_TIMERS
        session.expire_all()
        referral = session.get(Referral, referral_id)
        assert referral.state == "expired" and referral.escalated_at == deadline and referral.respond_by is None
        events = session.scalars(sa.select(ReferralEvent).where(ReferralEvent.referral_id == referral_id)).all()
        assert [(e.action, e.from_state, e.to_state, e.actor, e.member_id, e.at) for e in events] == [
            ("expire", "submitted", "expired", "system", None, deadline)
        ]

    run_jobs(tree_app)
    reminder, escalation = sorted(notices_about(sandbox, number), key=lambda m: "超时" in str(m["content"]))
    assert sorted(reminder["userids"]) == sorted({*places.hospital.department_members, places.hospital.coordinator})
    # The referral office: the coordinator granted on the medical community's lead hospital.
    assert escalation["userids"] == [places.hospital.coordinator]
    assert "转诊超时未接收" in str(escalation["content"])
    _no_secrets(escalation)
    [outcome] = notices_about(sandbox, number, outcomes=True)  # the referring doctor learns it expired
    assert outcome["userids"] == [places.hospital.grassroots_doctor] and "重新提交" in str(outcome["content"])


def test_without_coordinators_the_leaders_are_told(tree_app, sandbox, tree):
    h = find_hospital(Tree(tree))  # nobody granted referral_coordinator here
    p = places_of(tree_app, tree, h)
    with tree_app.app_context():
        session = db.session()
        # No target department either: only the hospital answers.
        referral = make_referral(session, p, priority="green", target_department_id=None)
        number = referral.referral_no
        assert timers.run_timers(T0 + timedelta(minutes=8)) == NO_TIMERS | {"reminded": 1}
        assert timers.run_timers(T0 + timedelta(minutes=15)) == NO_TIMERS | {"escalated": 1}

    run_jobs(tree_app)
    notices = notices_about(sandbox, number)
    assert len(notices) == 2
    for notice in notices:  # the lead hospital is its own community's lead: its leaders both times
        assert sorted(notice["userids"]) == sorted(h.lead_leaders)


def test_a_down_referral_waits_on_the_grassroots_side(tree_app, sandbox, tree):
    h = find_hospital(Tree(tree))
    p = places_of(tree_app, tree, h)
    with tree_app.app_context():
        session = db.session()
        # The referral office of the grassroots institution's own medical community.
        office = _member_id(session, h.county_admin)
        session.add(RoleGrant(member_id=office, role="referral_coordinator", node_id=p.grassroots_lead, granted_by="t"))
        session.commit()
        down = dict(
            direction="down",
            applicant_institution_id=p.lead,
            applicant_department_id=p.department,
            applicant_member_id=_member_id(session, h.department_members[0]),
            target_institution_id=p.grassroots_institution,
            target_department_id=p.grassroots_department,
            target_member_id=p.doctor_member_id,
        )
        waiting = make_referral(session, p, **down, state="received_patient")
        assert waiting.respond_by == T0 + timedelta(days=7)
        unanswered = make_referral(session, p, **down)
        assert unanswered.respond_by == T0 + timedelta(hours=48)
        ids = waiting.id, unanswered.id

        assert timers.run_timers(T0 + timedelta(days=1)) == NO_TIMERS | {"reminded": 1}  # half of 48 h
        assert timers.run_timers(T0 + timedelta(days=2)) == NO_TIMERS | {"escalated": 1}
        assert timers.run_timers(T0 + timedelta(days=3, hours=12)) == NO_TIMERS | {"reminded": 1}  # half of 7 days
        assert timers.run_timers(T0 + timedelta(days=7)) == NO_TIMERS | {"escalated": 1}
        assert timers.run_timers(T0 + timedelta(days=8)) == NO_TIMERS
        session.expire_all()
        waiting, unanswered = (session.get(Referral, i) for i in ids)
        # The follow-up clock only escalates; an unacknowledged down-referral expires.
        assert waiting.state == "received_patient" and waiting.escalated_at == T0 + timedelta(days=7)
        assert unanswered.state == "expired"
        assert session.scalar(sa.select(sa.func.count()).where(ReferralEvent.referral_id == ids[0])) == 0

    run_jobs(tree_app)
    for number in (waiting.referral_no, unanswered.referral_no):
        reminder, escalation = sorted(notices_about(sandbox, number), key=lambda m: "超时" in str(m["content"]))
        # Reminded: the grassroots department and doctor, who act on it — not the community's referral office at
        # the lead hospital (a grant on another institution does not act for this one); the office gets the
        # escalation.
        assert sorted(reminder["userids"]) == sorted(p.grassroots_colleagues | {h.grassroots_doctor})
        assert escalation["userids"] == [h.county_admin]
    assert "首次康复随访" in str(notices_about(sandbox, waiting.referral_no))


# -- no-shows -----------------------------------------------------------------------------------------------------


def test_a_booked_patient_who_did_not_come_is_a_no_show_once_the_half_day_is_over(tree_app, sandbox, places):
    day = date(2026, 11, 23)
    china = timedelta(hours=8)
    with tree_app.app_context():
        session = db.session()
        am, pm = (
            ReferralSlot(department_id=places.department, day=day, half_day=half, capacity=3, booked=1, updated_by="t")
            for half in ("am", "pm")
        )
        session.add_all([am, pm])
        session.commit()
        morning = make_referral(session, places, state="scheduled", slot_id=am.id, respond_by=None)
        afternoon = make_referral(session, places, state="scheduled", slot_id=pm.id, respond_by=None)
        came = make_referral(session, places, state="arrived", slot_id=am.id, respond_by=None)
        ids = morning.id, afternoon.id, came.id
        noon = datetime(2026, 11, 23, 12, 0, tzinfo=UTC) - china

        assert timers.run_timers(noon - timedelta(seconds=1)) == NO_TIMERS
        assert timers.run_timers(noon) == NO_TIMERS | {"no_show": 1}
        assert timers.run_timers(noon + timedelta(hours=5, minutes=59)) == NO_TIMERS
        assert timers.run_timers(noon + timedelta(hours=6)) == NO_TIMERS | {"no_show": 1}
        assert timers.run_timers(noon + timedelta(days=2)) == NO_TIMERS
        session.expire_all()
        assert [session.get(Referral, i).state for i in ids] == ["no_show", "no_show", "arrived"]
        events = session.scalars(
            sa.select(ReferralEvent).where(ReferralEvent.referral_id.in_(ids)).order_by(ReferralEvent.id)
        ).all()
        assert [(e.referral_id, e.action, e.actor, e.at) for e in events] == [
            (ids[0], "no_show", "system", noon),
            (ids[1], "no_show", "system", noon + timedelta(hours=6)),
        ]
        # The places stay consumed.
        assert [session.get(ReferralSlot, s.id).booked for s in (am, pm)] == [1, 1]
        numbers = [session.get(Referral, i).referral_no for i in ids]

    run_jobs(tree_app)
    # The referring doctor is told, once per missed appointment.
    for number, when in zip(numbers, ("2026-11-23上午", "2026-11-23下午", None), strict=True):
        told = notices_about(sandbox, number)
        if when is None:
            assert told == []
            continue
        [notice] = told
        assert notice["userids"] == [places.hospital.grassroots_doctor]
        assert "转诊患者爽约" in str(notice["content"]) and when in str(notice["content"])
        _no_secrets(notice)

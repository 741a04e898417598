"""A county for referrals, signed in over HTTP against the session sandbox's tree: a grassroots doctor in a member
institution's department, the county's lead hospital with a department and its clinician, two referral
coordinators of the hospital (granted by the county admin), the county admin, and another county's doctor."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import pytest

from mini_apps.family_doctor import idcard
from tests.support.auth import bearer, sign_in
from tests.support.tree import Tree, node_id


@dataclass
class Person:
    userid: str
    name: str
    headers: dict[str, str]


@dataclass
class ReferralWorld:
    doctor: Person  # grassroots applicant
    receiver: Person  # clinician of the hospital's target department
    coordinators: tuple[Person, Person]  # referral_coordinator of the hospital
    county_admin: Person
    other_county_doctor: Person
    other_department_clinician: Person | None  # same hospital, another department
    grassroots_institution_id: int
    grassroots_department_id: int
    hospital_id: int
    hospital_department_id: int


def _only_in(t: Tree, dept: int) -> list[dict]:
    return [u for u in t.users if u["dept_id_list"] == [dept]]


def _grassroots_doctor(t: Tree, county: int) -> tuple[dict, int] | None:
    for user in t.users:
        depts = user["dept_id_list"]
        if len(depts) == 1 and t.level(depts[0]) == "internal_department":
            unit = t.unit_of(depts[0])
            if t.level(unit) == "member_institution" and t.county_of(unit) == county:
                return user, depts[0]
    return None


def _hospital(t: Tree, county: int) -> tuple[int, list[tuple[int, list[dict]]]] | None:
    """The county's lead hospital and its departments with members who work only there."""
    for lead in (d for d in t.depts if t.level(d) == "medical_community_lead" and t.county_of(d) == county):
        departments = [
            (d, _only_in(t, d))
            for d, dept in t.depts.items()
            if dept.get("parent_id") == lead and t.level(d) == "internal_department"
        ]
        departments = [(d, users) for d, users in departments if users]
        if len(departments) >= 2 and sum(len(users) for _, users in departments) >= 4:
            return lead, departments
    return None


@pytest.fixture
def ref_world(tree_app, tree_client, sandbox, tree) -> ReferralWorld:
    t = Tree(tree)
    chosen = None
    other_doctor = None
    for county in t.counties():
        doctor = _grassroots_doctor(t, county)
        hospital = _hospital(t, county)
        try:
            admin = t.member_at("county_bureau", county=county)
        except LookupError:
            continue
        if chosen is None and doctor and hospital:
            chosen = (county, doctor, hospital, admin)
        elif chosen is not None and doctor and other_doctor is None:
            other_doctor = doctor[0]
        if chosen and other_doctor:
            break
    assert chosen and other_doctor, "the small sandbox province should have two such counties"
    county, (doctor, doctor_dept), (lead, departments), admin = chosen
    target_dept, target_users = max(departments, key=lambda item: len(item[1]))
    others = [(d, users) for d, users in departments if d != target_dept]
    pool = [u for _, users in others for u in users] + target_users[1:]
    assert len(pool) >= 2, "two coordinators are needed besides the receiving clinician"

    def person(user: dict) -> Person:
        return Person(user["userid"], user["name"], bearer(sign_in(tree_client, sandbox, user["userid"])))

    county_admin = person(admin)
    hospital_id = node_id(tree_app, lead)
    coordinators = []
    for user in pool[:2]:
        reply = tree_client.post(
            "/api/auth/grants",
            json={"userid": user["userid"], "role": "referral_coordinator", "node_id": hospital_id},
            headers=county_admin.headers,
        )
        assert reply.status_code == 201, reply.get_json()
        coordinators.append(person(user))  # signed in after the grant: roles are read per request anyway
    other_clinician = next((u for _, users in others for u in users if u not in pool[:2]), None)
    return ReferralWorld(
        doctor=person(doctor),
        receiver=person(target_users[0]),
        coordinators=(coordinators[0], coordinators[1]),
        county_admin=county_admin,
        other_county_doctor=person(other_doctor),
        other_department_clinician=person(other_clinician) if other_clinician else None,
        grassroots_institution_id=node_id(tree_app, t.unit_of(doctor_dept)),
        grassroots_department_id=node_id(tree_app, doctor_dept),
        hospital_id=hospital_id,
        hospital_department_id=node_id(tree_app, target_dept),
    )


def id_number(n: int, born: date = date(1958, 4, 12), address: str = "330102") -> str:
    return idcard.make(address, born, n)


def up_payload(world: ReferralWorld, **overrides: Any) -> dict[str, Any]:
    """A complete up-referral from the grassroots doctor to the hospital department (a draft unless `submit`)."""
    body: dict[str, Any] = {
        "direction": "up",
        "mode": "outpatient",
        "priority": "routine",
        "applicant_department_id": world.grassroots_department_id,
        "target_institution_id": world.hospital_id,
        "target_department_id": world.hospital_department_id,
        "reason_code": "further_care",
        "reason_text": "血压控制不佳，需进一步诊治",
        "patient": {"name": "王秀英", "id_number": id_number(22), "phone": "13812345678"},
        "consent": True,
        "primary_diagnosis": {"code": "I10"},
        "secondary_diagnoses": [{"code": "E11.9"}],
        "clinical": {
            "chief_complaint": "头晕2周",
            "present_illness": "血压波动在170/100左右",
            "allergies": "青霉素过敏",
            "medications": "氨氯地平 5mg qd",
        },
    }
    body.update(overrides)
    return body

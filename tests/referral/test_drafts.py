"""Editing a draft over `PATCH /api/referrals/<id>`, both backends: partial edits keep the rest, the whole referral
is checked as on create (422 naming the field, nothing changed), `submit` goes through the state machine like
create-with-submit, a referral past its draft is a 409 with the allowed actions, and only the applicant side may
edit (the receiving institution 403, anyone outside 404, as for reading). A down-referral draft keeps its parent's
patient."""

from __future__ import annotations

import sqlalchemy as sa

from mini_apps.referral.models import ReferralEvent
from tests.referral.conftest import ReferralWorld, id_number, up_payload
from workbench import db
from workbench.audit import AuditRecord

API = "/api/referrals"


def _draft(client, world: ReferralWorld, **overrides) -> dict:
    reply = client.post(API, json=up_payload(world, **overrides), headers=world.doctor.headers)
    assert reply.status_code == 201, reply.get_json()
    assert reply.get_json()["state"] == "draft"
    return reply.get_json()


def _events(app, referral_id: int) -> list[str]:
    with app.app_context():
        return list(
            db.session().scalars(
                sa.select(ReferralEvent.action)
                .where(ReferralEvent.referral_id == referral_id)
                .order_by(ReferralEvent.id)
            )
        )


def _audits(app, action: str) -> list[AuditRecord]:
    with app.app_context():
        return list(db.session().scalars(sa.select(AuditRecord).where(AuditRecord.action == action)))


def test_a_partial_edit_keeps_the_rest_and_merges_clinical_fields(tree_app, tree_client, ref_world: ReferralWorld):
    w = ref_world
    draft = _draft(tree_client, w, consent=False)
    rid = draft["id"]

    reply = tree_client.patch(
        f"{API}/{rid}",
        json={"mode": "inpatient", "priority": "urgent", "clinical": {"allergies": "", "treatment": "硝苯地平"}},
        headers=w.doctor.headers,
    )
    assert reply.status_code == 200, reply.get_json()
    edited = reply.get_json()
    assert (edited["mode"], edited["priority"], edited["state"]) == ("inpatient", "urgent", "draft")
    # Untouched fields are the draft's.
    for key in ("target_department_id", "reason_code", "reason_text", "primary_diagnosis", "secondary_diagnoses"):
        assert edited[key] == draft[key], key
    assert edited["patient"] == draft["patient"] and edited["referral_no"] == draft["referral_no"]
    # Clinical fields merge one by one; an empty one clears it.
    assert edited["clinical"] == {
        "chief_complaint": "头晕2周",
        "present_illness": "血压波动在170/100左右",
        "medications": "氨氯地平 5mg qd",
        "treatment": "硝苯地平",
    }
    assert edited["consent"] is False and edited["consent_at"] is None
    assert edited["allowed_actions"] == ["submit", "cancel"]

    # A new patient, diagnosis and consent; the ID number is checked and stored masked.
    number = id_number(57)
    reply = tree_client.patch(
        f"{API}/{rid}",
        json={
            "patient": {"name": "赵桂兰", "id_number": number},
            "primary_diagnosis": {"code": "I63.9"},
            "secondary_diagnoses": [],
            "consent": True,
        },
        headers=w.doctor.headers,
    )
    assert reply.status_code == 200, reply.get_json()
    edited = reply.get_json()
    assert edited["patient"]["name"] == "赵桂兰" and edited["patient"]["id_number"] != number
    assert edited["patient"]["id_number"].startswith("330") and "*" in edited["patient"]["id_number"]
    assert edited["patient"]["phone"] is None
    assert edited["primary_diagnosis"]["code"] == "I63.9" and edited["secondary_diagnoses"] == []
    assert edited["consent"] is True and edited["consent_at"]
    assert edited["submitted_at"] is None

    # Still a draft: the hospital sees nothing; the edits are audited by field name, no values.
    assert tree_client.get(f"{API}?box=inbox", headers=w.receiver.headers).get_json()["total"] == 0
    assert _events(tree_app, rid) == ["create"]
    audits = _audits(tree_app, "referral.update")
    assert len(audits) == 2 and {a.resource_id for a in audits} == {str(rid)}
    assert audits[1].detail["fields"] == ["consent", "patient", "primary_diagnosis", "secondary_diagnoses"]
    assert number not in str(audits[1].detail)


def test_submit_through_patch_is_the_state_machine_submit(tree_app, tree_client, ref_world: ReferralWorld):
    w = ref_world
    rid = _draft(tree_client, w, consent=False)["id"]

    # Submitting needs consent, as on create: 422, nothing changed.
    reply = tree_client.patch(f"{API}/{rid}", json={"submit": True, "reason_text": "改"}, headers=w.doctor.headers)
    assert reply.status_code == 422 and reply.get_json()["error"]["field"] == "consent"
    stored = tree_client.get(f"{API}/{rid}", headers=w.doctor.headers).get_json()
    assert stored["state"] == "draft" and stored["reason_text"] == "血压控制不佳，需进一步诊治"

    reply = tree_client.patch(
        f"{API}/{rid}", json={"submit": True, "consent": True, "priority": "urgent"}, headers=w.doctor.headers
    )
    assert reply.status_code == 200, reply.get_json()
    sent = reply.get_json()
    assert sent["state"] == "submitted" and sent["submitted_at"] and sent["respond_by"]
    assert sent["priority"] == "urgent" and sent["allowed_actions"] == ["cancel"]
    assert _events(tree_app, rid) == ["create", "submit"]
    inbox = tree_client.get(f"{API}?box=inbox", headers=w.receiver.headers).get_json()
    assert [item["id"] for item in inbox["items"]] == [rid]

    # Past its draft: 409 with what the applicant may do instead, nothing changed.
    reply = tree_client.patch(f"{API}/{rid}", json={"mode": "inpatient"}, headers=w.doctor.headers)
    assert reply.status_code == 409
    error = reply.get_json()["error"]
    assert error["code"] == "illegal_transition" and error["details"] == {"allowed": ["cancel"], "state": "submitted"}
    assert "草稿" in error["message"]
    assert tree_client.get(f"{API}/{rid}", headers=w.doctor.headers).get_json()["mode"] == "outpatient"

    # The receiving institution reads it but may not edit it (403); another county does not see it (404).
    reply = tree_client.patch(f"{API}/{rid}", json={"mode": "inpatient"}, headers=w.receiver.headers)
    assert reply.status_code == 403, reply.get_json()
    reply = tree_client.patch(f"{API}/{rid}", json={"mode": "inpatient"}, headers=w.county_admin.headers)
    assert reply.status_code == 403, reply.get_json()  # a supervisor reads, never acts
    reply = tree_client.patch(f"{API}/{rid}", json={"mode": "inpatient"}, headers=w.other_county_doctor.headers)
    assert reply.status_code == 404
    assert _events(tree_app, rid) == ["create", "submit"]


def test_a_draft_is_edited_only_by_its_applicant_side(tree_app, tree_client, ref_world: ReferralWorld):
    w = ref_world
    rid = _draft(tree_client, w)["id"]
    # A draft is the applicant's own: the hospital, a supervisor and another county all get 404, as for reading.
    for person in (w.receiver, w.coordinators[0], w.county_admin, w.other_county_doctor):
        reply = tree_client.patch(f"{API}/{rid}", json={"mode": "inpatient"}, headers=person.headers)
        assert reply.status_code == 404, (person.userid, reply.get_json())
    assert tree_client.patch(f"{API}/{rid}", json={"mode": "inpatient"}).status_code == 401
    assert tree_client.patch(f"{API}/999999", json={"mode": "inpatient"}, headers=w.doctor.headers).status_code == 404
    assert tree_client.get(f"{API}/{rid}", headers=w.doctor.headers).get_json()["mode"] == "outpatient"


def test_bad_edits_are_422_naming_the_field_and_change_nothing(tree_app, tree_client, ref_world: ReferralWorld):
    w = ref_world
    draft = _draft(tree_client, w)
    rid = draft["id"]
    cases = [
        ({"patient": {"name": "李四", "id_number": "330102195804120000"}}, "patient.id_number"),
        ({"patient": {"name": "李四"}}, "patient.id_number"),
        ({"primary_diagnosis": {"code": "Q99.99"}}, "primary_diagnosis.code"),
        ({"secondary_diagnoses": [{"code": "E11.9"}, {"code": "X"}]}, "secondary_diagnoses.1.code"),
        ({"target_department_id": w.grassroots_department_id}, "target_department_id"),
        ({"target_department_id": None}, "target_department_id"),
        ({"target_institution_id": w.grassroots_institution_id}, "target_institution_id"),
        ({"applicant_department_id": w.hospital_department_id}, "applicant_department_id"),
        ({"clinical": {"rehab_plan": "步行训练"}}, "clinical.rehab_plan"),
        ({"resident_id": 999999}, "resident_id"),
        ({"target_doctor_userid": "nobody-here"}, "target_doctor_userid"),
        ({"direction": "sideways"}, "direction"),
        ({"direction": None}, "direction"),
        ({"mode": "teleport"}, "mode"),
        ({"parent_id": rid}, "parent_id"),
        ({"direction": "down", "parent_id": rid}, "parent_id"),
        ({"reason_text": "长" * 501}, "reason_text"),
        ({"submit": "yes please"}, "submit"),
    ]
    for body, field in cases:
        reply = tree_client.patch(f"{API}/{rid}", json=body, headers=w.doctor.headers)
        assert reply.status_code == 422, (field, reply.get_json())
        error = reply.get_json()["error"]
        named = error.get("field") or next(iter(_flatten(error.get("details", {}).get("json", {}))), None)
        assert named == field, (field, error)
        assert error["message"]
    after = tree_client.get(f"{API}/{rid}", headers=w.doctor.headers).get_json()
    assert after == draft, "nothing written, not even updated_at"
    assert _audits(tree_app, "referral.update") == []


def _flatten(tree: dict, prefix: str = "") -> list[str]:
    """Marshmallow's nested error dict as dotted names (`patient.id_number`, `secondary_diagnoses.1.code`)."""
    names: list[str] = []
    for key, value in tree.items():
        name = f"{prefix}{key}"
        names += _flatten(value, name + ".") if isinstance(value, dict) else [name]
    return names


def _completed_up_referral(client, world: ReferralWorld) -> int:
    reply = client.post(API, json=up_payload(world, submit=True), headers=world.doctor.headers)
    assert reply.status_code == 201, reply.get_json()
    rid = reply.get_json()["id"]
    for action in ("accept", "arrive", "start_treatment", "complete"):
        reply = client.post(f"{API}/{rid}/actions/{action}", json={}, headers=world.receiver.headers)
        assert reply.status_code == 200, (action, reply.get_json())
    return rid


def test_a_down_referral_draft_keeps_the_parents_patient(tree_app, tree_client, ref_world: ReferralWorld):
    w = ref_world
    parent = _completed_up_referral(tree_client, w)
    down = {
        "direction": "down",
        "mode": "outpatient",
        "applicant_department_id": w.hospital_department_id,
        "target_institution_id": w.grassroots_institution_id,
        "reason_code": "rehab_chronic",
        "parent_id": parent,
        "primary_diagnosis": {"code": "I10"},
        "clinical": {"rehab_plan": "低盐饮食"},
    }
    reply = tree_client.post(API, json=down, headers=w.receiver.headers)
    assert reply.status_code == 201, reply.get_json()
    draft = reply.get_json()
    assert draft["state"] == "draft" and draft["target_department_id"] is None

    reply = tree_client.patch(
        f"{API}/{draft['id']}",
        json={
            "target_department_id": w.grassroots_department_id,
            "clinical": {"medication_list": "氨氯地平 5mg qd", "follow_up_schedule": "出院后7天首次随访"},
        },
        headers=w.receiver.headers,
    )
    assert reply.status_code == 200, reply.get_json()
    edited = reply.get_json()
    assert edited["patient"] == draft["patient"] and edited["parent_id"] == parent
    assert edited["target_department_id"] == w.grassroots_department_id
    assert set(edited["clinical"]) == {"rehab_plan", "medication_list", "follow_up_schedule"}

    # Turned into an up-referral, the down-only fields are refused until cleared.
    reply = tree_client.patch(f"{API}/{draft['id']}", json={"direction": "up"}, headers=w.receiver.headers)
    assert reply.status_code == 422 and reply.get_json()["error"]["field"] == "parent_id"

    reply = tree_client.patch(
        f"{API}/{draft['id']}", json={"submit": True, "consent": True}, headers=w.receiver.headers
    )
    assert reply.status_code == 200, reply.get_json()
    assert reply.get_json()["state"] == "submitted"
    inbox = tree_client.get(f"{API}?box=inbox&direction=down", headers=w.doctor.headers).get_json()
    assert [item["id"] for item in inbox["items"]] == [draft["id"]]

"""The referral core over HTTP against the sandbox's tree: create (draft, submitted), read with the record shared
only while it is the receiving side's to act on, outbox and inbox lists, transitions (out of order is a 409 with
the allowed ones; two coordinators accepting at once), attachments, scope, a down-referral after an up one."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa

from mini_apps.family_doctor.service import today
from mini_apps.referral.models import Referral, ReferralAttachment, ReferralEvent, ReferralSlot
from tests.referral.conftest import ReferralWorld, up_payload
from workbench import db
from workbench.audit import AuditRecord
from workbench.db import utcnow

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def _count(app, model) -> int:
    with app.app_context():
        return db.session().scalar(sa.select(sa.func.count()).select_from(model))


def _audits(app, action: str) -> list[AuditRecord]:
    with app.app_context():
        return list(db.session().scalars(sa.select(AuditRecord).where(AuditRecord.action == action)))


def _submitted(client, world: ReferralWorld, **overrides) -> dict:
    reply = client.post(
        "/api/referrals", json=up_payload(world, submit=True, **overrides), headers=world.doctor.headers
    )
    assert reply.status_code == 201, reply.get_json()
    return reply.get_json()


def _act(client, headers, referral_id: int, action: str, **body):
    return client.post(f"/api/referrals/{referral_id}/actions/{action}", json=body, headers=headers)


def test_create_draft_then_submit_and_read_from_both_sides(tree_app, tree_client, ref_world: ReferralWorld):
    w = ref_world
    reply = tree_client.post("/api/referrals", json=up_payload(w), headers=w.doctor.headers)
    assert reply.status_code == 201, reply.get_json()
    draft = reply.get_json()
    assert draft["state"] == "draft" and draft["state_name"] == "草稿"
    assert draft["referral_no"].startswith("ZZ") and draft["referral_no"].endswith(f"{draft['id']:06d}")
    assert draft["primary_diagnosis"] == {"code": "I10", "name": "特发性（原发性）高血压"}
    assert draft["secondary_diagnoses"][0]["code"] == "E11.9"
    assert draft["patient"]["id_number"].startswith("330") and "*" in draft["patient"]["id_number"]
    assert draft["patient"]["sex"] == "F" and draft["patient"]["birth_date"] == "1958-04-12"
    assert draft["patient"]["phone"] == "138****5678"
    assert draft["clinical"]["allergies"] == "青霉素过敏"
    assert draft["allowed_actions"] == ["submit", "cancel"] and draft["submitted_at"] is None

    # A draft is the applicant's own: the hospital neither lists nor opens it.
    inbox = tree_client.get("/api/referrals?box=inbox", headers=w.receiver.headers).get_json()
    assert inbox["total"] == 0
    assert tree_client.get(f"/api/referrals/{draft['id']}", headers=w.receiver.headers).status_code == 404

    reply = _act(tree_client, w.doctor.headers, draft["id"], "submit")
    assert reply.status_code == 200, reply.get_json()
    body = reply.get_json()
    assert body["state"] == "submitted" and body["submitted_at"] and body["respond_by"]

    # Submitted at once: the SLA clock starts (routine: 24 h).
    now = _submitted(tree_client, w, priority="urgent")
    assert now["state"] == "submitted" and now["consent_at"]

    for person in (w.receiver, *w.coordinators):
        seen = tree_client.get(f"/api/referrals/{draft['id']}", headers=person.headers)
        assert seen.status_code == 200, seen.get_json()
        seen = seen.get_json()
        assert seen["clinical"]["chief_complaint"] == "头晕2周" and seen["attachments"] == []
        assert seen["allowed_actions"] == ["accept", "reject"]
        assert seen["patient"]["name"] == "王秀英" and "*" in seen["patient"]["id_number"]

    inbox = tree_client.get("/api/referrals?box=inbox", headers=w.receiver.headers).get_json()
    assert inbox["total"] == 2 and inbox["counts"] == {"all": 2, "states": {"submitted": 2}}
    assert {item["patient"]["name"] for item in inbox["items"]} == {"王*英"}  # masked in lists
    urgent = tree_client.get("/api/referrals?box=inbox&priority=urgent", headers=w.receiver.headers).get_json()
    assert [item["id"] for item in urgent["items"]] == [now["id"]]
    outbox = tree_client.get("/api/referrals?box=outbox&state=draft", headers=w.doctor.headers).get_json()
    assert outbox["total"] == 0 and outbox["counts"]["states"] == {"submitted": 2}
    assert tree_client.get("/api/referrals?box=outbox", headers=w.receiver.headers).get_json()["total"] == 0

    events = tree_client.get(f"/api/referrals/{draft['id']}/events", headers=w.receiver.headers).get_json()["items"]
    assert [(e["action"], e["to_state"]) for e in events] == [("create", "draft"), ("submit", "submitted")]
    assert events[1]["member_name"] == w.doctor.name

    reads = _audits(tree_app, "referral.read")
    assert reads and all(r.resource_type == "referral" for r in reads)
    assert all("王秀英" not in str(r.detail) for r in reads + _audits(tree_app, "referral.list"))
    assert len(_audits(tree_app, "referral.list")) == 5


def test_a_signed_resident_is_referred_from_the_registry(tree_app, tree_client, ref_world: ReferralWorld):
    from tests.referral.conftest import id_number

    w = ref_world
    reply = tree_client.post(
        "/api/family-doctor/teams",
        json={"institution_id": w.grassroots_institution_id, "name": "转诊测试团队"},
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
        json={"name": "赵建国", "id_number": id_number(31), "phone": "13900001111", "team_id": team_id},
        headers=w.doctor.headers,
    )
    assert reply.status_code == 201, reply.get_json()
    resident = reply.get_json()

    # Someone who cannot see the resident cannot refer them (as if there were no such resident).
    body = up_payload(w, resident_id=resident["id"], patient=None, submit=True)
    outsider = {**body, "applicant_department_id": None}  # their own (only) institution
    reply = tree_client.post("/api/referrals", json=outsider, headers=w.other_county_doctor.headers)
    assert reply.status_code == 422 and reply.get_json()["error"]["field"] == "resident_id"
    reply = tree_client.post("/api/referrals", json=body, headers=w.doctor.headers)
    assert reply.status_code == 201, reply.get_json()
    referral = reply.get_json()
    assert referral["patient"]["resident_id"] == resident["id"]
    assert referral["patient"]["id_number"] == resident["id_number"] and referral["patient"]["name"] == "赵建国"
    assert referral["patient"]["phone"] == resident["phone"] and referral["patient"]["sex"] == "M"


def test_bad_input_is_a_clear_4xx_and_stores_nothing(tree_app, tree_client, ref_world: ReferralWorld):
    w = ref_world
    cases = [
        (up_payload(w, submit=True, consent=False), 422, "consent"),
        (up_payload(w, patient={"name": "李四", "id_number": "330102195804120000"}), 422, "patient.id_number"),
        (up_payload(w, primary_diagnosis={"code": "Q99.99"}), 422, "primary_diagnosis.code"),
        (up_payload(w, primary_diagnosis={"code": "ZZZ"}), 422, "primary_diagnosis.code"),
        (up_payload(w, secondary_diagnoses=[{"code": "E11.9"}, {"code": "X"}]), 422, "secondary_diagnoses.1.code"),
        (up_payload(w, target_department_id=w.grassroots_department_id), 422, "target_department_id"),
        (up_payload(w, target_department_id=None), 422, "target_department_id"),
        (up_payload(w, target_institution_id=w.grassroots_institution_id), 422, "target_institution_id"),
        (up_payload(w, applicant_department_id=w.hospital_department_id), 422, "applicant_department_id"),
        (up_payload(w, clinical={"rehab_plan": "步行训练"}), 422, "clinical.rehab_plan"),
        (up_payload(w, patient=None), 422, "patient"),
        (up_payload(w, resident_id=999999, patient=None), 422, "resident_id"),
        (up_payload(w, target_doctor_userid="nobody-here"), 422, "target_doctor_userid"),
        (up_payload(w, direction="sideways"), 422, "direction"),
    ]
    for body, status, field in cases:
        reply = tree_client.post("/api/referrals", json=body, headers=w.doctor.headers)
        assert reply.status_code == status, (field, reply.get_json())
        error = reply.get_json()["error"]
        assert error["field"] == field, error
        assert error["message"]
    assert _count(tree_app, Referral) == 0
    assert _count(tree_app, ReferralEvent) == 0


def test_transitions_out_of_order_are_409_with_the_allowed_ones(tree_app, tree_client, ref_world: ReferralWorld):
    w = ref_world
    referral = _submitted(tree_client, w)
    rid = referral["id"]

    reply = _act(tree_client, w.doctor.headers, rid, "arrive")
    assert reply.status_code == 409
    error = reply.get_json()["error"]
    assert error["code"] == "illegal_transition" and error["details"]["allowed"] == ["cancel"]

    reply = _act(tree_client, w.receiver.headers, rid, "complete")
    assert reply.status_code == 409 and reply.get_json()["error"]["details"]["allowed"] == ["accept", "reject"]
    reply = _act(tree_client, w.receiver.headers, rid, "teleport")
    assert reply.status_code == 409 and reply.get_json()["error"]["details"]["allowed"] == ["accept", "reject"]

    reply = _act(tree_client, w.receiver.headers, rid, "reject")
    assert reply.status_code == 422 and reply.get_json()["error"]["field"] == "reason"

    # Nothing changed by the refusals.
    assert tree_client.get(f"/api/referrals/{rid}", headers=w.doctor.headers).get_json()["state"] == "submitted"
    with tree_app.app_context():
        assert db.session().scalar(sa.select(sa.func.count()).where(ReferralEvent.referral_id == rid)) == 2

    reply = _act(tree_client, w.receiver.headers, rid, "reject", reason="本科室无床位，建议转心内科")
    assert reply.status_code == 200 and reply.get_json()["state"] == "rejected"
    assert reply.get_json()["clinical"] is None  # no longer theirs to act on
    events = tree_client.get(f"/api/referrals/{rid}/events", headers=w.doctor.headers).get_json()["items"]
    assert events[-1]["reason"] == "本科室无床位，建议转心内科" and events[-1]["member_name"] == w.receiver.name

    reply = _act(tree_client, w.doctor.headers, rid, "resubmit")
    assert reply.status_code == 200 and reply.get_json()["state"] == "submitted"


def test_scope_other_county_404_admin_reads_but_cannot_act(tree_app, tree_client, ref_world: ReferralWorld):
    w = ref_world
    rid = _submitted(tree_client, w)["id"]

    outsider = w.other_county_doctor.headers
    assert tree_client.get(f"/api/referrals/{rid}", headers=outsider).status_code == 404
    assert tree_client.get(f"/api/referrals/{rid}/events", headers=outsider).status_code == 404
    assert _act(tree_client, outsider, rid, "accept").status_code == 404
    assert tree_client.get("/api/referrals?box=inbox", headers=outsider).get_json()["total"] == 0
    assert tree_client.get("/api/referrals?box=outbox", headers=outsider).get_json()["total"] == 0
    if w.other_department_clinician is not None:
        # Same hospital, another department: not theirs to see.
        assert tree_client.get(f"/api/referrals/{rid}", headers=w.other_department_clinician.headers).status_code == 404

    admin = w.county_admin.headers
    seen = tree_client.get(f"/api/referrals/{rid}", headers=admin)
    assert seen.status_code == 200
    seen = seen.get_json()
    assert seen["sides"] == ["supervisor"] and seen["allowed_actions"] == []
    assert seen["clinical"] is None and seen["attachments"] is None and "*" in seen["patient"]["name"]
    reply = _act(tree_client, admin, rid, "accept")
    assert reply.status_code == 403
    assert tree_client.get("/api/referrals?box=inbox", headers=admin).get_json()["total"] == 1
    assert tree_client.get("/api/referrals?box=outbox", headers=admin).get_json()["total"] == 1
    # A draft stays the applicant's own: not in the supervisor's lists, not readable.
    draft = tree_client.post("/api/referrals", json=up_payload(w), headers=w.doctor.headers).get_json()
    assert tree_client.get("/api/referrals?box=outbox", headers=admin).get_json()["total"] == 1
    assert tree_client.get(f"/api/referrals/{draft['id']}", headers=admin).status_code == 404
    assert tree_client.get(f"/api/referrals/{rid}", headers=w.doctor.headers).get_json()["state"] == "submitted"


def test_attachments_checked_encrypted_and_shared_like_the_record(tree_app, tree_client, ref_world: ReferralWorld):
    w = ref_world
    rid = _submitted(tree_client, w)["id"]
    url = f"/api/referrals/{rid}/attachments"

    def upload(content: bytes, filename: str, kind: str = "exam_report", headers=None):
        import io

        return tree_client.post(
            url,
            data={"kind": kind, "file": (io.BytesIO(content), filename)},
            headers=headers or w.doctor.headers,
            content_type="multipart/form-data",
        )

    reply = upload(PDF, "心电图报告.pdf")
    assert reply.status_code == 201, reply.get_json()
    stored = reply.get_json()
    assert stored["content_type"] == "application/pdf" and stored["size"] == len(PDF)

    refused = [
        (upload(b"MZ\x90\x00" + b"\x00" * 200, "report.pdf"), 415),  # a "PDF" that is a Windows executable
        (upload(b"\x7fELF\x02\x01" + b"\x00" * 64, "scan.png"), 415),
        (upload(b"#!/bin/sh\nrm -rf /\n", "notes.pdf"), 415),
        (upload(b"\x89PNG\r\n\x1a\n" + b"\x00" * 32, "report.pdf"), 415),  # a PNG named .pdf
        (upload(b"plain text", "notes.txt"), 415),
        (upload(b"A" * (30 * 1024 * 1024), "big.pdf"), 413),
    ]
    for reply, status in refused:
        assert reply.status_code == status, reply.get_json()
        assert reply.get_json()["error"]["field"] == "file"
    reply = upload(PDF, "a.pdf", kind="selfie")
    assert reply.status_code == 422 and reply.get_json()["error"]["field"] == "kind"
    assert _count(tree_app, ReferralAttachment) == 1
    with tree_app.app_context():
        row = db.session().get(ReferralAttachment, stored["id"])
        assert PDF not in row.content and len(row.sha256) == 64

    # The hospital department reads it while the referral is theirs to act on.
    reply = tree_client.get(f"{url}/{stored['id']}", headers=w.receiver.headers)
    assert reply.status_code == 200 and reply.data == PDF
    assert reply.headers["Content-Type"] == "application/pdf"
    assert reply.headers["Content-Disposition"].startswith("attachment")
    assert reply.headers["Cache-Control"] == "no-store"
    assert len(_audits(tree_app, "referral.attachment.read")) == 1
    assert tree_client.get(f"{url}/{stored['id']}", headers=w.county_admin.headers).status_code == 404
    assert tree_client.get(f"{url}/{stored['id']}", headers=w.other_county_doctor.headers).status_code == 404

    detail = tree_client.get(f"/api/referrals/{rid}", headers=w.receiver.headers).get_json()
    assert [a["filename"] for a in detail["attachments"]] == ["心电图报告.pdf"]


def test_a_chunked_upload_is_cut_off_at_the_limit(tree_app, tree_client, ref_world: ReferralWorld):
    """No Content-Length to refuse up front: the stream itself stops at the limit and nothing is stored."""
    import io

    w = ref_world
    rid = _submitted(tree_client, w)["id"]
    boundary = "----referral-test"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="kind"\r\n\r\nexam_report\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.pdf"\r\n'
        "Content-Type: application/pdf\r\n\r\n"
    ).encode()
    body = head + b"%PDF-" + b"A" * (30 * 1024 * 1024) + f"\r\n--{boundary}--\r\n".encode()
    reply = tree_client.post(
        f"/api/referrals/{rid}/attachments",
        input_stream=io.BytesIO(body),
        headers={
            **w.doctor.headers,
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Transfer-Encoding": "chunked",
        },
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert reply.status_code == 413, reply.get_json()
    assert reply.get_json()["error"]["field"] == "file"
    assert _count(tree_app, ReferralAttachment) == 0


def test_cancelling_a_scheduled_referral_gives_the_slot_back(tree_app, tree_client, ref_world: ReferralWorld):
    w = ref_world
    rid = _submitted(tree_client, w)["id"]
    day = _publish(tree_app, w.hospital_department_id, capacity=1)
    reply = _act(tree_client, w.coordinators[1].headers, rid, "accept", slot={"day": day.isoformat(), "half_day": "am"})
    assert reply.status_code == 200 and reply.get_json()["state"] == "scheduled"
    other = _submitted(tree_client, w)["id"]
    reply = _act(
        tree_client, w.coordinators[1].headers, other, "accept", slot={"day": day.isoformat(), "half_day": "am"}
    )
    assert reply.status_code == 409 and reply.get_json()["error"]["code"] == "slot_full"

    reply = _act(tree_client, w.doctor.headers, rid, "cancel")
    assert reply.status_code == 422 and reply.get_json()["error"]["field"] == "reason"
    reply = _act(tree_client, w.doctor.headers, rid, "cancel", reason="患者已自行就医")
    assert reply.status_code == 200 and reply.get_json()["state"] == "cancelled"
    with tree_app.app_context():
        assert db.session().scalar(sa.select(ReferralSlot.booked)) == 0
    reply = _act(
        tree_client, w.coordinators[1].headers, other, "accept", slot={"day": day.isoformat(), "half_day": "am"}
    )
    assert reply.status_code == 200 and reply.get_json()["state"] == "scheduled"


def _publish(app, department_id: int, capacity: int = 3):
    day = today() + timedelta(days=2)
    with app.app_context():
        session = db.session()
        session.add(
            ReferralSlot(department_id=department_id, day=day, half_day="am", capacity=capacity, updated_by="test")
        )
        session.commit()
    return day


def test_loop_accept_with_slot_complete_then_down_referral(tree_app, tree_client, ref_world: ReferralWorld):
    w = ref_world
    rid = _submitted(tree_client, w)["id"]
    day = _publish(tree_app, w.hospital_department_id)
    coordinator = w.coordinators[0]

    # No capacity that afternoon: nothing changes.
    reply = _act(tree_client, coordinator.headers, rid, "accept", slot={"day": day.isoformat(), "half_day": "pm"})
    assert reply.status_code == 409 and reply.get_json()["error"]["code"] == "no_capacity"
    assert tree_client.get(f"/api/referrals/{rid}", headers=w.doctor.headers).get_json()["state"] == "submitted"

    reply = _act(tree_client, coordinator.headers, rid, "accept", slot={"day": day.isoformat(), "half_day": "am"})
    assert reply.status_code == 200, reply.get_json()
    body = reply.get_json()
    assert body["state"] == "scheduled" and body["slot"]["day"] == day.isoformat() and body["accepted_at"]
    events = tree_client.get(f"/api/referrals/{rid}/events", headers=w.doctor.headers).get_json()["items"]
    assert [e["action"] for e in events] == ["create", "submit", "accept", "schedule"]

    # Not completed yet: no down-referral can follow it.
    down = {
        "direction": "down",
        "mode": "outpatient",
        "priority": "routine",
        "applicant_department_id": w.hospital_department_id,
        "target_institution_id": w.grassroots_institution_id,
        "reason_code": "rehab_chronic",
        "parent_id": rid,
        "consent": True,
        "submit": True,
        "primary_diagnosis": {"code": "I10"},
        "clinical": {"rehab_plan": "低盐饮食，每日步行30分钟", "follow_up_schedule": "出院后7天首次随访"},
    }
    reply = tree_client.post("/api/referrals", json=down, headers=w.receiver.headers)
    assert reply.status_code == 422 and reply.get_json()["error"]["field"] == "parent_id"

    for action in ("arrive", "start_treatment", "complete"):
        reply = _act(tree_client, w.receiver.headers, rid, action)
        assert reply.status_code == 200, (action, reply.get_json())
    done = reply.get_json()
    assert done["state"] == "completed" and done["completed_at"] and done["arrived_at"]
    # The hospital stops seeing the record once the referral is no longer theirs to act on; the applicant does.
    assert done["clinical"] is None and done["attachments"] is None and "*" in done["patient"]["name"]
    assert tree_client.get(f"/api/referrals/{rid}", headers=w.coordinators[1].headers).get_json()["clinical"] is None
    assert tree_client.get(f"/api/referrals/{rid}", headers=w.doctor.headers).get_json()["clinical"]

    # Only the treating institution refers down from it.
    own = {**down, "applicant_department_id": w.grassroots_department_id}
    reply = tree_client.post("/api/referrals", json=own, headers=w.doctor.headers)
    assert reply.status_code == 422 and reply.get_json()["error"]["field"] == "parent_id"
    reply = tree_client.post("/api/referrals", json=down, headers=w.receiver.headers)
    assert reply.status_code == 201, reply.get_json()
    child = reply.get_json()
    assert child["direction"] == "down" and child["parent_id"] == rid and child["state"] == "submitted"
    assert child["patient"]["id_number"] == done["patient"]["id_number"]  # the up-referral's patient

    inbox = tree_client.get("/api/referrals?box=inbox&direction=down", headers=w.doctor.headers).get_json()
    assert [item["id"] for item in inbox["items"]] == [child["id"]]
    seen = tree_client.get(f"/api/referrals/{child['id']}", headers=w.doctor.headers).get_json()
    assert seen["clinical"]["rehab_plan"].startswith("低盐饮食") and seen["allowed_actions"] == ["accept", "reject"]
    for action in ("accept", "receive_patient", "start_follow_up"):
        reply = _act(tree_client, w.doctor.headers, child["id"], action)
        assert reply.status_code == 200, (action, reply.get_json())
    reply = _act(tree_client, w.doctor.headers, child["id"], "close")
    assert reply.status_code == 200 and reply.get_json()["state"] == "closed" and reply.get_json()["closed_at"]


def test_a_stale_read_loses_with_409_naming_who_acted(tree_app, tree_client, ref_world: ReferralWorld):
    """The conditional UPDATE: two sessions read the referral as submitted, the first to write wins."""
    from sqlalchemy import orm

    from mini_apps.referral.service import apply_transition
    from org_sync.models import OrgMember
    from workbench.errors import ApiError

    w = ref_world
    rid = _submitted(tree_client, w)["id"]
    first, second = w.coordinators
    with tree_app.app_context():
        engine = db.get_db().engine
        with orm.Session(engine) as a, orm.Session(engine) as b:
            ids = dict(a.execute(sa.select(OrgMember.userid, OrgMember.id)).all())
            stale, fresh = a.get(Referral, rid), b.get(Referral, rid)
            assert stale.state == fresh.state == "submitted"
            apply_transition(b, fresh, "accept", actor="b", member_id=ids[first.userid], side="receiver")
            b.commit()
            with pytest.raises(ApiError) as refused:
                apply_transition(a, stale, "accept", actor="a", member_id=ids[second.userid], side="receiver")
            a.rollback()
    assert refused.value.status == 409 and refused.value.code == "conflict"
    assert f"已由{first.name}接收" in refused.value.message and refused.value.extra["details"]["by"] == first.name
    events = tree_client.get(f"/api/referrals/{rid}/events", headers=w.doctor.headers).get_json()["items"]
    assert [e["action"] for e in events] == ["create", "submit", "accept"]


@pytest.mark.parametrize("backend", ["postgresql"])
def test_two_coordinators_accept_at_once_one_wins(tree_app, ref_world: ReferralWorld, backend):
    w = ref_world
    client = tree_app.test_client()
    rid = _submitted(client, w)["id"]
    day = _publish(tree_app, w.hospital_department_id, capacity=5)
    barrier = threading.Barrier(2)
    replies: dict[str, tuple[int, dict]] = {}

    def accept(person) -> None:
        own = tree_app.test_client()
        barrier.wait()
        reply = _act(own, person.headers, rid, "accept", slot={"day": day.isoformat(), "half_day": "am"})
        replies[person.name] = (reply.status_code, reply.get_json())

    threads = [threading.Thread(target=accept, args=(person,)) for person in w.coordinators]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    statuses = sorted(status for status, _ in replies.values())
    assert statuses == [200, 409], replies
    winner = next(name for name, (status, _) in replies.items() if status == 200)
    loser_error = next(body["error"] for status, body in replies.values() if status == 409)
    assert winner in loser_error["message"] and loser_error["details"]["by"] == winner
    with tree_app.app_context():
        session = db.session()
        assert session.scalar(sa.select(ReferralSlot.booked)) == 1
        accepts = session.scalar(
            sa.select(sa.func.count()).where(ReferralEvent.referral_id == rid, ReferralEvent.action == "accept")
        )
        assert accepts == 1
        assert session.get(Referral, rid).state == "scheduled"
    assert utcnow()


def test_documents_are_recognised_by_their_bytes():
    from workbench.uploads import sniff

    assert sniff(PDF) == "application/pdf"
    assert sniff(b"\x89PNG\r\n\x1a\n\x00\x00") == "image/png"
    assert sniff(b"\xff\xd8\xff\xe0\x00\x10JFIF") == "image/jpeg"
    assert sniff(b"\x00" * 128 + b"DICM" + b"\x02\x00") == "application/dicom"
    assert sniff(b"\x00" * 127 + b"DICM") is None
    assert sniff(b"MZ\x90\x00") is None and sniff(b"PK\x03\x04") is None

"""FHIR R4 over HTTP against the sandbox's tree: a referral with two diagnoses and an attachment exports as a
Bundle that the `fhir.resources` R4B models accept, and imports back into an equivalent referral; bad inbound
Bundles are 422s naming the JSON path and store nothing; the export is for the sides sharing the record, audited."""

from __future__ import annotations

import base64
import copy
import hashlib
import io
import json

import sqlalchemy as sa
from fhir.resources.R4B.bundle import Bundle

from mini_apps.referral import fhir
from mini_apps.referral.models import Referral
from tests.referral.conftest import ReferralWorld, id_number, up_payload
from workbench import db
from workbench.audit import AuditRecord

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def _count(app) -> int:
    with app.app_context():
        return db.session().scalar(sa.select(sa.func.count()).select_from(Referral))


def _submitted_with_attachment(client, w: ReferralWorld) -> dict:
    body = up_payload(w, submit=True, priority="urgent", mode="emergency")
    body["clinical"]["present_illness"] = "血压波动在170/100左右\n伴头痛"  # a field over two lines
    reply = client.post("/api/referrals", json=body, headers=w.doctor.headers)
    assert reply.status_code == 201, reply.get_json()
    referral = reply.get_json()
    reply = client.post(
        f"/api/referrals/{referral['id']}/attachments",
        data={"kind": "exam_report", "file": (io.BytesIO(PDF), "心电图报告.pdf")},
        headers=w.doctor.headers,
        content_type="multipart/form-data",
    )
    assert reply.status_code == 201, reply.get_json()
    return client.get(f"/api/referrals/{referral['id']}", headers=w.doctor.headers).get_json()


def _export(client, headers, referral_id: int):
    return client.get(f"/api/referrals/{referral_id}/fhir", headers=headers)


def _resources(bundle: dict, kind: str) -> list[tuple[int, dict]]:
    return [(i, e["resource"]) for i, e in enumerate(bundle["entry"]) if e["resource"]["resourceType"] == kind]


def test_export_validates_and_round_trips_through_import(tree_app, tree_client, ref_world: ReferralWorld):
    w = ref_world
    original = _submitted_with_attachment(tree_client, w)
    reply = _export(tree_client, w.doctor.headers, original["id"])
    assert reply.status_code == 200, reply.get_json()
    assert reply.headers["Content-Type"].startswith("application/fhir+json")
    assert reply.headers["Cache-Control"] == "no-store"
    bundle = reply.get_json()

    parsed = Bundle.model_validate(bundle)  # a real FHIR model accepts it (raises otherwise)
    assert parsed.type == "transaction" and all(e.request.method == "POST" for e in parsed.entry)
    assert [k for k in ("Task", "ServiceRequest", "Patient", "Condition", "DocumentReference")] == [
        k for k in dict.fromkeys(e["resource"]["resourceType"] for e in bundle["entry"])
    ]
    (_, task), (_, request), (_, patient) = (
        _resources(bundle, "Task")[0],
        _resources(bundle, "ServiceRequest")[0],
        _resources(bundle, "Patient")[0],
    )
    urls = {e["resource"]["resourceType"]: e["fullUrl"] for e in bundle["entry"][:3]}
    assert task["status"] == "requested" and task["businessStatus"]["coding"][0]["code"] == "submitted"
    assert task["intent"] == "order" and task["focus"]["reference"] == urls["ServiceRequest"]
    assert task["for"]["reference"] == urls["Patient"] and task["authoredOn"].endswith("Z")
    assert task["owner"]["display"] and task["requester"]["display"]
    assert task["owner"]["identifier"]["system"].startswith("urn:workbench:org-node:")
    assert request["priority"] == "urgent" and request["status"] == "active"
    assert request["category"][0]["coding"][0]["code"] == "3457005"
    assert request["reasonCode"][0]["coding"][0]["code"] == "further_care"
    assert request["reasonCode"][0]["text"] == "血压控制不佳，需进一步诊治"
    assert request["code"]["coding"][0]["code"] == "emergency"

    # The patient with the full ID number under the national OID; gender and birth date from it.
    assert patient["identifier"][0]["system"] == "urn:oid:2.16.156.10011.1.3"
    assert patient["identifier"][0]["value"] == id_number(22)
    assert patient["name"][0]["text"] == "王秀英" and patient["gender"] == "female"
    assert patient["birthDate"] == "1958-04-12" and patient["telecom"][0]["value"] == "13812345678"

    conditions = _resources(bundle, "Condition")
    assert [c["code"]["coding"][0]["code"] for _, c in conditions] == ["I10", "E11.9"]
    assert {c["code"]["coding"][0]["system"] for _, c in conditions} == {"http://hl7.org/fhir/sid/icd-10"}
    documents = [d for _, d in _resources(bundle, "DocumentReference")]
    note, report = documents
    report_at = _resources(bundle, "DocumentReference")[1][0]
    text = base64.b64decode(note["content"][0]["attachment"]["data"]).decode()
    assert "【主诉】\n头晕2周" in text and "【过敏史】\n青霉素过敏" in text
    attachment = report["content"][0]["attachment"]
    assert attachment["contentType"] == "application/pdf" and attachment["size"] == len(PDF)
    assert attachment["hash"] == base64.b64encode(hashlib.sha1(PDF).digest()).decode()
    stored = original["attachments"][0]
    assert attachment["url"].endswith(f"/api/referrals/{original['id']}/attachments/{stored['id']}")
    # The URL is the real download.
    path = attachment["url"].split("://", 1)[1].split("/", 1)[1]
    assert tree_client.get("/" + path, headers=w.doctor.headers).data == PDF

    # Import: the same shape makes an equivalent referral.
    before = _count(tree_app)
    reply = tree_client.post(
        "/api/referrals/fhir", data=reply.data, content_type="application/fhir+json", headers=w.doctor.headers
    )
    assert reply.status_code == 201, reply.get_json()
    copy_ = reply.get_json()
    assert _count(tree_app) == before + 1 and copy_["id"] != original["id"]
    same = (
        "direction",
        "mode",
        "priority",
        "state",
        "applicant_institution_id",
        "applicant_department_id",
        "target_institution_id",
        "target_department_id",
        "target_member_id",
        "reason_code",
        "reason_text",
        "primary_diagnosis",
        "secondary_diagnoses",
        "consent",
        "clinical",
    )
    assert {k: copy_[k] for k in same} == {k: original[k] for k in same}
    assert copy_["clinical"]["present_illness"] == "血压波动在170/100左右\n伴头痛"
    # The export links its documents by URL: not fetched, and said so.
    assert copy_["attachments"] == [] and copy_["not_fetched"] == [
        f"entry[{report_at}].resource.content[0].attachment.url"
    ]
    for key in ("name", "sex", "birth_date", "id_number", "phone"):
        assert copy_["patient"][key] == original["patient"][key]
    # Exported again, the Bundle says the same.
    again = _export(tree_client, w.doctor.headers, copy_["id"]).get_json()
    assert _resources(again, "Patient")[0][1]["identifier"] == patient["identifier"]


def test_bad_inbound_bundles_are_422_naming_the_path(tree_app, tree_client, ref_world: ReferralWorld):
    w = ref_world
    rid = tree_client.post("/api/referrals", json=up_payload(w, submit=True), headers=w.doctor.headers).get_json()["id"]
    good = _export(tree_client, w.doctor.headers, rid).get_json()
    conditions = _resources(good, "Condition")
    (patient_at, _), (task_at, _) = _resources(good, "Patient")[0], _resources(good, "Task")[0]
    (request_at, _) = _resources(good, "ServiceRequest")[0]
    before = _count(tree_app)

    def broken(change) -> dict:
        bundle = copy.deepcopy(good)
        change(bundle)
        return bundle

    def entry(bundle: dict, at: int) -> dict:
        return bundle["entry"][at]["resource"]

    second = conditions[1][0]
    cases = [
        (
            broken(lambda b: entry(b, second)["code"]["coding"][0].update(code="Q99.99")),
            f"entry[{second}].resource.code.coding[0].code",
        ),
        (broken(lambda b: entry(b, second)["code"]["coding"][0].update(code=5)), None),  # not FHIR: a number
        (broken(lambda b: entry(b, task_at).pop("owner")), f"entry[{task_at}].resource.owner"),
        (
            broken(lambda b: entry(b, patient_at)["identifier"][0].update(value="330102195804120011")),
            f"entry[{patient_at}].resource.identifier",
        ),
        (broken(lambda b: entry(b, patient_at).update(gender="male")), f"entry[{patient_at}].resource.gender"),
        (broken(lambda b: entry(b, request_at).pop("reasonCode")), f"entry[{request_at}].resource.reasonCode"),
        (broken(lambda b: entry(b, task_at).update(status="completed")), f"entry[{task_at}].resource.status"),
        (
            broken(lambda b: entry(b, task_at)["owner"]["identifier"].update(value="999999999")),
            f"entry[{task_at}].resource.owner.identifier.value",
        ),
        (broken(lambda b: b.update(type="searchset")), "type"),
        ({"resourceType": "Patient"}, "resourceType"),
    ]
    for bundle, path in cases:
        reply = tree_client.post("/api/referrals/fhir", json=bundle, headers=w.doctor.headers)
        assert reply.status_code == 422, (path, reply.get_json())
        field = reply.get_json()["error"]["field"]
        if path is None:
            assert field == f"entry[{second}].resource.code.coding[0].code"
        else:
            assert field == path, reply.get_json()
    reply = tree_client.post("/api/referrals/fhir", data=b"not json", headers=w.doctor.headers)
    assert reply.status_code == 422
    # A bundle without consent is the same 422 as POST /api/referrals.
    no_consent = broken(lambda b: entry(b, request_at).pop("extension"))
    reply = tree_client.post("/api/referrals/fhir", json=no_consent, headers=w.doctor.headers)
    assert reply.status_code == 422 and reply.get_json()["error"]["field"] == "consent"
    assert _count(tree_app) == before


def test_export_scope_and_audit(tree_app, tree_client, ref_world: ReferralWorld):
    w = ref_world
    rid = tree_client.post("/api/referrals", json=up_payload(w, submit=True), headers=w.doctor.headers).get_json()["id"]

    assert _export(tree_client, w.county_admin.headers, rid).status_code == 403  # the supervisor reads, masked
    assert _export(tree_client, w.other_county_doctor.headers, rid).status_code == 404
    assert _export(tree_client, w.receiver.headers, rid).status_code == 200  # theirs to act on now
    assert _export(tree_client, w.doctor.headers, rid).status_code == 200
    with tree_app.app_context():
        audits = list(
            db.session().scalars(
                sa.select(AuditRecord).where(AuditRecord.action == "referral.read", AuditRecord.resource_id == str(rid))
            )
        )
    exports = [a for a in audits if a.detail.get("reason") == "fhir_export"]
    assert len(exports) == 2
    assert sorted(tuple(a.detail["sides"]) for a in exports) == [("applicant",), ("receiver",)]
    assert all("王秀英" not in str(a.detail) and id_number(22) not in str(a.detail) for a in exports)

    # Rejected, the referral is no longer the hospital's to act on: it stops exporting it; the applicant still can.
    reply = tree_client.post(
        f"/api/referrals/{rid}/actions/reject", json={"reason": "本科室无床位"}, headers=w.receiver.headers
    )
    assert reply.status_code == 200, reply.get_json()
    assert _export(tree_client, w.receiver.headers, rid).status_code == 403
    bundle = _export(tree_client, w.doctor.headers, rid).get_json()
    task = _resources(bundle, "Task")[0][1]
    assert task["status"] == "rejected" and _resources(bundle, "ServiceRequest")[0][1]["status"] == "on-hold"


def test_clinical_text_round_trips():
    clinical = {"chief_complaint": "胸痛2小时", "treatment": "阿司匹林 300mg 嚼服\n硝酸甘油舌下含服", "rehab_plan": "x"}
    assert fhir.parse_clinical_text(fhir.clinical_text(clinical)) == clinical
    assert fhir.parse_clinical_text("无标题的文字") == {}


def test_inline_documents_arrive_as_attachments_and_bad_ones_refuse_the_bundle(
    tree_app, tree_client, ref_world: ReferralWorld
):
    w = ref_world
    original = _submitted_with_attachment(tree_client, w)
    bundle = _export(tree_client, w.doctor.headers, original["id"]).get_json()
    [(at, report)] = _resources(bundle, "DocumentReference")[1:]
    attachment = report["content"][0]["attachment"]
    attachment.pop("url")
    attachment |= {"data": base64.b64encode(PDF).decode(), "title": "检验报告单"}

    def post(body: dict):
        return tree_client.post(
            "/api/referrals/fhir", data=json.dumps(body), content_type="application/fhir+json", headers=w.doctor.headers
        )

    reply = post(bundle)
    assert reply.status_code == 201, reply.get_json()
    copy_ = reply.get_json()
    assert copy_["not_fetched"] == []
    [stored] = copy_["attachments"]
    assert (stored["kind"], stored["filename"], stored["content_type"]) == (
        "exam_report",
        "检验报告单.pdf",
        "application/pdf",
    )
    download = tree_client.get(f"/api/referrals/{copy_['id']}/attachments/{stored['id']}", headers=w.doctor.headers)
    assert download.data == PDF

    # An executable dressed as a PDF, or bytes that are not base64: 422 at the path, nothing stored.
    before = _count(tree_app)
    for data, message in ((base64.b64encode(b"MZ\x90\x00" + PDF).decode(), "PDF"), ("@@not base64@@", "base64")):
        attachment["data"] = data
        reply = post(bundle)
        assert reply.status_code == 422, reply.get_json()
        error = reply.get_json()["error"]
        assert error["field"] == f"entry[{at}].resource.content[0].attachment.data" and message in error["message"]
    assert _count(tree_app) == before

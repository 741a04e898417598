"""FHIR R4 for the regional health platforms (issue 7; domain.md §4.2, §4.5): a referral out as a Bundle, and a
Bundle of the same shape in as a new referral.

The Bundle is a `transaction`: the platform creates the referral's resources all or nothing, and the entries point
at each other by their `urn:uuid:` fullUrls, which the receiving server rewrites (a `collection` has no processing
rules). Inbound, `transaction` and `collection` are both accepted. The entries:
- **Task** (the workflow): `status` from `states.FHIR_TASK_STATUS`, the fine state in `businessStatus`, intent
  order, code `fulfill`, focus → ServiceRequest, for → Patient, requester/owner the applicant and target
  institutions as logical Organization references (identifier: the org node's 部门编码 when it has one, else its
  node id; display: its name).
- **ServiceRequest** (the order): category referral (SNOMED CT 3457005) plus the direction (上转/下转/平转), code the
  mode, priority routine|urgent|stat (green channel = stat), reasonCode the coded reason with its free text,
  reasonReference → Conditions (the primary diagnosis first), supportingInfo → DocumentReferences, requester the
  applicant department (or institution), performer the target department (or institution) and doctor, basedOn the
  up-referral a down-referral follows (by referral number), the patient's consent (知情同意) as an extension.
- **Patient**: name, gender, birthDate, telecom, and the resident ID number (居民身份证号码) under
  `urn:oid:2.16.156.10011.1.3` — the identifier OID the NHC's health-information standards give 患者身份证号
  (WS/T 500 shared-document CDA headers write `<id root="2.16.156.10011.1.3" extension="…"/>`; Chinese FHIR
  integrations use the same OID as the Identifier.system). The full number goes out because the receiving platform
  matches the person by it; so the export is for the sides that share the clinical record, and audited.
- **Condition** per diagnosis, ICD-10 under `http://hl7.org/fhir/sid/icd-10`.
- **DocumentReference** per attachment: contentType, size, `hash` (base64 SHA-1 as FHIR Attachment.hash defines
  it, computed from the decrypted bytes at export: the model keeps SHA-256 and stays as it is) and the API
  download URL (the platform fetches it with its own credentials; bytes are not inlined).
- The clinical summary (主诉 … current medication, and a down-referral's rehab plan) as one more DocumentReference,
  type LOINC 57133-1 "Referral note", inline base64 `text/plain` with one 【label】 heading per field: a document
  the platform files as 转诊病历 (the CN profile's supportingInformation → DocumentReference), which people can
  read and `from_bundle` parses back field by field.

`from_bundle` first validates the JSON against the R4B models of `fhir.resources` (R4B's Task, ServiceRequest,
Patient, Condition and DocumentReference are R4's), then maps it to `service.create_referral` input; anything
missing or invalid is a 422 naming its JSON path (`entry[2].resource.code.coding[0].code`). Other documents with
their bytes inline (`attachment.data`) become the referral's attachments, checked as uploads are (PDF, PNG, JPEG or
DICOM recognised from the bytes, ≤ 20 MB, no executables) before anything is stored; documents referenced by URL
only are not fetched (no requests to addresses a Bundle names) and the reply lists them under `not_fetched`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from mini_apps.referral import service, states
from mini_apps.referral.models import ATTACHMENT_KINDS, MODES, REASONS, Referral, ReferralAttachment
from org_sync.models import OrgMember, OrgNode
from workbench import audit, privacy, uploads
from workbench.auth.principal import Principal
from workbench.errors import ApiError

FHIR_JSON = "application/fhir+json"
ID_CARD_SYSTEM = "urn:oid:2.16.156.10011.1.3"  # 患者身份证号 (WS/T 500)
ICD10_SYSTEM = "http://hl7.org/fhir/sid/icd-10"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
REFERRAL_NOTE = "57133-1"  # LOINC: Referral note
# Local code systems and identifiers of this platform (no national ones exist for them).
BASE = "urn:workbench:referral:"
DIRECTION_SYSTEM = BASE + "direction"
MODE_SYSTEM = BASE + "mode"
REASON_SYSTEM = BASE + "reason"
STATE_SYSTEM = BASE + "state"
KIND_SYSTEM = BASE + "attachment-kind"
REFERRAL_NO_SYSTEM = BASE + "referral-no"
CONSENT_EXTENSION = BASE + "consent"
ORG_CODE_SYSTEM = "urn:workbench:org-node:code"  # 部门编码
ORG_ID_SYSTEM = "urn:workbench:org-node:id"
USERID_SYSTEM = "urn:workbench:dingtalk:userid"

PRIORITY_TO_FHIR = {"routine": "routine", "urgent": "urgent", "green": "stat"}
PRIORITY_FROM_FHIR = {"routine": "routine", "urgent": "urgent", "asap": "urgent", "stat": "green"}
GENDER = {"M": "male", "F": "female"}
CLINICAL_LABELS = {
    "chief_complaint": "主诉",
    "present_illness": "现病史",
    "past_history": "既往史",
    "allergies": "过敏史",
    "physical_exam": "体格检查",
    "auxiliary_exams": "辅助检查",
    "treatment": "治疗经过",
    "medications": "目前用药",
    "rehab_plan": "康复计划",
    "medication_list": "用药清单",
    "follow_up_schedule": "随访安排",
}
_HEADING = re.compile(r"^【(" + "|".join(CLINICAL_LABELS.values()) + r")】$")


# -- export ---------------------------------------------------------------------------------------------------------


def _instant(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _coding(system: str, code: str, display: str | None) -> dict[str, Any]:
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return coding


def _org_ref(node: OrgNode) -> dict[str, Any]:
    identifier = (
        {"system": ORG_CODE_SYSTEM, "value": node.code}
        if node.code
        else {"system": ORG_ID_SYSTEM, "value": str(node.id)}
    )
    return {"type": "Organization", "identifier": identifier, "display": node.name}


def _urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def clinical_text(clinical: Mapping[str, Any]) -> str:
    """The clinical summary as text: a 【label】 heading line, then the field, per filled field."""
    parts = [f"【{label}】\n{clinical[key]}" for key, label in CLINICAL_LABELS.items() if clinical.get(key)]
    return "\n".join(parts)


def parse_clinical_text(text: str) -> dict[str, str]:
    """The fields back from `clinical_text` (lines before the first heading are ignored)."""
    keys = {label: key for key, label in CLINICAL_LABELS.items()}
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.split("\n"):
        heading = _HEADING.match(line.strip())
        if heading:
            current = found.setdefault(keys[heading.group(1)], [])
        elif current is not None:
            current.append(line)
    return {key: "\n".join(lines).strip() for key, lines in found.items() if "\n".join(lines).strip()}


def to_bundle(
    session: orm.Session,
    referral: Referral,
    *,
    base_url: str = "",
    clinical: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The referral as a FHIR R4 transaction Bundle (see the module docstring). `base_url` prefixes attachment
    download URLs (`https://host/`); `clinical` is the decrypted summary (read here when not given). Reads and
    decrypts the ID number, phone and attachments: callers check the side and audit."""
    keys = privacy.keyring()
    nodes = {
        node.id: node
        for node in session.scalars(
            sa.select(OrgNode).where(
                OrgNode.id.in_(
                    [
                        n
                        for n in (
                            referral.applicant_institution_id,
                            referral.applicant_department_id,
                            referral.target_institution_id,
                            referral.target_department_id,
                        )
                        if n
                    ]
                )
            )
        )
    }
    if clinical is None:
        text = privacy.decrypt_field(referral.clinical_cipher, keys, context=service.CLINICAL_CONTEXT)
        clinical = json.loads(text) if text else {}
    task_url, request_url, patient_url = _urn(), _urn(), _urn()
    subject = {"reference": patient_url}
    entries: list[tuple[str, dict[str, Any]]] = []

    # Patient
    id_number = privacy.decrypt_field(referral.patient_id_cipher, keys, context=service.ID_CONTEXT)
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "identifier": [
            {
                "use": "official",
                "type": {
                    "coding": [_coding("http://terminology.hl7.org/CodeSystem/v2-0203", "NI", None)],
                    "text": "居民身份证号码",
                },
                "system": ID_CARD_SYSTEM,
                "value": id_number,
            }
        ],
        "name": [{"use": "official", "text": referral.patient_name}],
        "gender": GENDER.get(referral.patient_sex, "unknown"),
        "birthDate": referral.patient_birth_date.isoformat(),
    }
    if referral.patient_phone_cipher:
        phone = privacy.decrypt_field(referral.patient_phone_cipher, keys, context=service.PHONE_CONTEXT)
        if phone:
            patient["telecom"] = [{"system": "phone", "value": phone, "use": "mobile"}]

    # Conditions: the primary diagnosis first, as reasonReference keeps them in order.
    conditions = []
    diagnoses = [{"code": referral.primary_diagnosis_code, "name": referral.primary_diagnosis_name}]
    diagnoses += list(referral.secondary_diagnoses or [])
    for diagnosis in diagnoses:
        url = _urn()
        conditions.append(url)
        entries.append(
            (
                url,
                {
                    "resourceType": "Condition",
                    "clinicalStatus": {
                        "coding": [
                            _coding("http://terminology.hl7.org/CodeSystem/condition-clinical", "active", "Active")
                        ]
                    },
                    "category": [
                        {
                            "coding": [
                                _coding(
                                    "http://terminology.hl7.org/CodeSystem/condition-category",
                                    "encounter-diagnosis",
                                    "Encounter Diagnosis",
                                )
                            ]
                        }
                    ],
                    "code": {
                        "coding": [_coding(ICD10_SYSTEM, diagnosis["code"], diagnosis.get("name"))],
                        "text": diagnosis.get("name") or diagnosis["code"],
                    },
                    "subject": subject,
                },
            )
        )

    # Documents: the clinical summary, then each attachment.
    documents = []
    summary = clinical_text(clinical).encode()
    url = _urn()
    documents.append(url)
    entries.append(
        (
            url,
            {
                "resourceType": "DocumentReference",
                "status": "current",
                "type": {"coding": [_coding(LOINC, REFERRAL_NOTE, "Referral note")], "text": "转诊病历摘要"},
                "subject": subject,
                "date": _instant(referral.updated_at),
                "content": [
                    {
                        "attachment": {
                            "contentType": "text/plain; charset=utf-8",
                            "language": "zh-CN",
                            "data": base64.b64encode(summary).decode(),
                            "size": len(summary),
                            "hash": base64.b64encode(hashlib.sha1(summary).digest()).decode(),
                            "title": "病情摘要",
                        }
                    }
                ],
            },
        )
    )
    attachments = session.scalars(
        sa.select(ReferralAttachment)
        .where(ReferralAttachment.referral_id == referral.id)
        .order_by(ReferralAttachment.id)
    )
    for row in attachments:
        content = privacy.decrypt_bytes(row.content, keys, context=f"{service.ATTACHMENT_CONTEXT}:{referral.id}")
        url = _urn()
        documents.append(url)
        entries.append(
            (
                url,
                {
                    "resourceType": "DocumentReference",
                    "status": "current",
                    "type": {
                        "coding": [_coding(KIND_SYSTEM, row.kind, ATTACHMENT_KINDS.get(row.kind))],
                        "text": ATTACHMENT_KINDS.get(row.kind, row.kind),
                    },
                    "subject": subject,
                    "date": _instant(row.created_at),
                    "content": [
                        {
                            "attachment": {
                                "contentType": row.content_type,
                                "url": f"{base_url.rstrip('/')}/api/referrals/{referral.id}/attachments/{row.id}",
                                "size": row.size,
                                "hash": base64.b64encode(hashlib.sha1(content).digest()).decode(),
                                "title": row.filename,
                                "creation": _instant(row.created_at),
                            }
                        }
                    ],
                },
            )
        )

    applicant = nodes[referral.applicant_institution_id]
    target = nodes[referral.target_institution_id]
    identifier = [{"system": REFERRAL_NO_SYSTEM, "value": referral.referral_no}] if referral.referral_no else []
    request: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "identifier": identifier,
        "status": _request_status(referral),
        "intent": "order",
        "category": [
            {
                "coding": [
                    _coding(SNOMED, "3457005", "Patient referral"),
                    _coding(DIRECTION_SYSTEM, referral.direction, states.DIRECTIONS.get(referral.direction)),
                ],
                "text": states.DIRECTIONS.get(referral.direction, "转诊"),
            }
        ],
        "priority": PRIORITY_TO_FHIR.get(referral.priority, "routine"),
        "code": {
            "coding": [_coding(MODE_SYSTEM, referral.mode, MODES.get(referral.mode))],
            "text": MODES.get(referral.mode, referral.mode),
        },
        "subject": subject,
        "authoredOn": _instant(referral.submitted_at or referral.created_at),
        "requester": _org_ref(nodes.get(referral.applicant_department_id) or applicant),
        "performer": [_org_ref(nodes.get(referral.target_department_id) or target)],
        "reasonCode": [
            {
                "coding": [_coding(REASON_SYSTEM, referral.reason_code, REASONS.get(referral.reason_code))],
                "text": referral.reason_text or REASONS.get(referral.reason_code, referral.reason_code),
            }
        ],
        "reasonReference": [{"reference": url} for url in conditions],
        "supportingInfo": [{"reference": url} for url in documents],
    }
    if not identifier:
        del request["identifier"]
    if referral.consent and referral.consent_at:
        request["extension"] = [{"url": CONSENT_EXTENSION, "valueDateTime": _instant(referral.consent_at)}]
    if referral.target_member_id is not None and (doctor := session.get(OrgMember, referral.target_member_id)):
        request["performer"].append(
            {"type": "Practitioner", "identifier": {"system": USERID_SYSTEM, "value": doctor.userid}}
        )
    if referral.parent_id is not None and (parent := session.get(Referral, referral.parent_id)):
        request["basedOn"] = [
            {"type": "ServiceRequest", "identifier": {"system": REFERRAL_NO_SYSTEM, "value": parent.referral_no}}
        ]

    task: dict[str, Any] = {
        "resourceType": "Task",
        "identifier": identifier,
        "status": states.FHIR_TASK_STATUS[referral.state],
        "businessStatus": {
            "coding": [_coding(STATE_SYSTEM, referral.state, states.STATES.get(referral.state))],
            "text": states.STATES.get(referral.state, referral.state),
        },
        "intent": "order",
        "priority": request["priority"],
        "code": {
            "coding": [_coding("http://hl7.org/fhir/CodeSystem/task-code", "fulfill", "Fulfill the focal request")]
        },
        "focus": {"reference": request_url},
        "for": subject,
        "authoredOn": _instant(referral.created_at),
        "lastModified": _instant(referral.updated_at),
        "requester": _org_ref(applicant),
        "owner": _org_ref(target),
    }
    if not identifier:
        del task["identifier"]

    ordered = [(task_url, task), (request_url, request), (patient_url, patient), *entries]
    bundle_entries = []
    for full_url, resource in ordered:
        entry_request: dict[str, Any] = {"method": "POST", "url": resource["resourceType"]}
        if resource["resourceType"] == "Patient":
            # The platform keeps one Patient per person.
            entry_request["ifNoneExist"] = f"identifier={ID_CARD_SYSTEM}|{id_number}"
        bundle_entries.append({"fullUrl": full_url, "resource": resource, "request": entry_request})
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "timestamp": _instant(datetime.now(UTC)),
        "entry": bundle_entries,
    }


def _request_status(referral: Referral) -> str:
    """ServiceRequest.status: the order is active while it runs, on hold while refused or missed (the applicant
    resubmits, reschedules or closes), completed when the patient was treated, revoked when withdrawn or closed
    without care."""
    state = referral.state
    if state == "draft":
        return "draft"
    if state == "cancelled":
        return "revoked"
    if state in {"rejected", "expired", "no_show"}:
        return "on-hold"
    if state == "completed":
        return "completed"
    if state == "closed":
        treated = referral.arrived_at if referral.direction == "down" else referral.completed_at
        return "completed" if treated is not None else "revoked"
    return "active"


def export_referral(
    principal: Principal, referral_id: int, *, base_url: str = "", session: orm.Session | None = None
) -> dict[str, Any]:
    """The Bundle for a caller on a side that shares the clinical record now (a supervisor, or a receiving side
    the referral is no longer theirs: 403; anyone else: 404). Audited as a read with the reason `fhir_export`."""
    from workbench import db

    session = session or db.session()
    referral, _, found = service.visible_referral(session, principal, referral_id)
    if found == {service.SUPERVISOR} or not service.shares_record(referral, found):
        raise ApiError("forbidden", "只有当前共享病历的转诊双方可以导出 FHIR", status=403)
    bundle = to_bundle(session, referral, base_url=base_url)
    audit.record(
        principal,
        "referral.read",
        resource_type="referral",
        resource_id=referral.id,
        node_id=service.audit_node(referral, found),
        detail={
            "reason": "fhir_export",
            "resident_id": referral.resident_id,
            "sides": sorted(found),
            "identifiers": True,  # the full ID number and phone left in the Bundle
        },
    )
    return bundle


# -- import ---------------------------------------------------------------------------------------------------------


class _Bad(Exception):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path, self.message = path, message


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _invalid(path: str, message: str) -> ApiError:
    return ApiError("validation_error", message, status=422, field=path)


def _validate_structure(bundle: Any) -> None:
    """The JSON must be valid FHIR (R4B models): types, required elements, known resource types."""
    from fhir.resources.R4B.bundle import Bundle
    from pydantic import ValidationError

    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise _invalid("resourceType", "须为 FHIR Bundle")
    try:
        Bundle.model_validate(bundle)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = tuple(part for part in error["loc"] if not (isinstance(part, str) and part.startswith("function-")))
        raise _invalid(_path(loc) or "entry", f"不符合 FHIR R4：{error['msg']}") from None
    except ValueError as exc:  # unknown resourceType and the like
        raise _invalid("entry", f"不符合 FHIR R4：{exc}") from None


def _code(concept: Any, system: str, path: str) -> tuple[str, str]:
    """The code under `system` in a CodeableConcept, with its path."""
    codings = (concept or {}).get("coding") or []
    for index, coding in enumerate(codings):
        if coding.get("system") == system:
            if not coding.get("code"):
                raise _Bad(f"{path}.coding[{index}].code", "缺少编码")
            return coding["code"], f"{path}.coding[{index}].code"
    raise _Bad(f"{path}.coding", f"缺少 {system} 的编码")


def _org(session: orm.Session, reference: Any, path: str) -> OrgNode:
    identifier = (reference or {}).get("identifier") or {}
    system, value = identifier.get("system"), identifier.get("value")
    node = None
    if not value:
        raise _Bad(f"{path}.identifier.value", "须以机构编码标识组织")
    if system == ORG_CODE_SYSTEM:
        found = list(session.scalars(sa.select(OrgNode).where(OrgNode.code == value, OrgNode.deleted_at.is_(None))))
        node = found[0] if len(found) == 1 else None
    elif system == ORG_ID_SYSTEM and value.isdigit():
        node = session.get(OrgNode, int(value))
        node = node if node is not None and node.deleted_at is None else None
    else:
        raise _Bad(f"{path}.identifier.system", f"机构标识须为 {ORG_CODE_SYSTEM} 或 {ORG_ID_SYSTEM}")
    if node is None:
        raise _Bad(f"{path}.identifier.value", f"未知的机构：{value}")
    return node


def from_bundle(bundle: Any, session: orm.Session | None = None) -> dict[str, Any]:
    """An inbound Bundle (transaction or collection, the shape `to_bundle` writes) as `service.create_referral`
    input; 422 naming the JSON path of what is missing or invalid."""
    from workbench import db

    session = session or db.session()
    _validate_structure(bundle)
    try:
        return _map(session, bundle)
    except _Bad as exc:
        raise _invalid(exc.path, exc.message) from None


def _map(session: orm.Session, bundle: dict[str, Any]) -> dict[str, Any]:
    if bundle.get("type") not in {"transaction", "collection"}:
        raise _Bad("type", "Bundle.type 须为 transaction 或 collection")
    entries = bundle.get("entry") or []
    by_type: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    by_url: dict[str, tuple[int, dict[str, Any]]] = {}
    for index, entry in enumerate(entries):
        resource = entry.get("resource") or {}
        by_type.setdefault(resource.get("resourceType"), []).append((index, resource))
        if entry.get("fullUrl"):
            by_url[entry["fullUrl"]] = (index, resource)

    def one(kind: str) -> tuple[int, dict[str, Any]]:
        found = by_type.get(kind) or []
        if len(found) != 1:
            raise _Bad("entry", f"Bundle 须含且仅含一个 {kind}")
        return found[0]

    task_at, task = one("Task")
    request_at, request = one("ServiceRequest")
    patient_at, patient = one("Patient")
    t, r, p = f"entry[{task_at}].resource", f"entry[{request_at}].resource", f"entry[{patient_at}].resource"
    focus = (task.get("focus") or {}).get("reference")
    if focus not in by_url or by_url[focus][0] != request_at:
        raise _Bad(f"{t}.focus.reference", "Task.focus 须指向 Bundle 中的 ServiceRequest")

    status = task.get("status")
    if status not in {"draft", "requested"}:
        raise _Bad(f"{t}.status", "新转诊的 Task.status 须为 draft 或 requested")
    data: dict[str, Any] = {"submit": status == "requested"}

    direction, path = _code((request.get("category") or [{}])[0], DIRECTION_SYSTEM, f"{r}.category[0]")
    if direction not in states.DIRECTIONS:
        raise _Bad(path, f"未知的转诊方向：{direction}")
    mode, path = _code(request.get("code"), MODE_SYSTEM, f"{r}.code")
    if mode not in MODES:
        raise _Bad(path, f"未知的转诊类型：{mode}")
    priority = request.get("priority") or "routine"
    if priority not in PRIORITY_FROM_FHIR:
        raise _Bad(f"{r}.priority", f"未知的优先级：{priority}")
    data.update(direction=direction, mode=mode, priority=PRIORITY_FROM_FHIR[priority])

    reasons = request.get("reasonCode") or []
    if not reasons:
        raise _Bad(f"{r}.reasonCode", "缺少转诊原因")
    reason, path = _code(reasons[0], REASON_SYSTEM, f"{r}.reasonCode[0]")
    if reason not in REASONS:
        raise _Bad(path, f"未知的转诊原因：{reason}")
    text = (reasons[0].get("text") or "").strip()
    data.update(reason_code=reason, reason_text="" if text == REASONS[reason] else text[:500])

    # Parties: the target institution from Task.owner, departments and the doctor from the ServiceRequest.
    if not task.get("owner"):
        raise _Bad(f"{t}.owner", "缺少接收机构")
    target = _org(session, task["owner"], f"{t}.owner")
    data["target_institution_id"] = target.id
    data["target_department_id"] = None
    data["target_doctor_userid"] = None
    for index, performer in enumerate(request.get("performer") or []):
        identifier = performer.get("identifier") or {}
        if identifier.get("system") == USERID_SYSTEM:
            data["target_doctor_userid"] = identifier.get("value")
            continue
        node = _org(session, performer, f"{r}.performer[{index}]")
        if node.level == "internal_department":
            data["target_department_id"] = node.id
    data["applicant_department_id"] = None
    if request.get("requester"):
        node = _org(session, request["requester"], f"{r}.requester")
        if node.level == "internal_department":
            data["applicant_department_id"] = node.id
    data["parent_id"] = None
    for index, based_on in enumerate(request.get("basedOn") or []):
        identifier = based_on.get("identifier") or {}
        if identifier.get("system") == REFERRAL_NO_SYSTEM:
            parent = session.scalar(sa.select(Referral.id).where(Referral.referral_no == identifier.get("value")))
            if parent is None:
                raise _Bad(f"{r}.basedOn[{index}].identifier.value", "未知的上转转诊单号")
            data["parent_id"] = parent
    data["consent"] = any(
        ext.get("url") == CONSENT_EXTENSION and (ext.get("valueDateTime") or ext.get("valueBoolean") is True)
        for ext in request.get("extension") or []
    )

    data["patient"] = _patient(patient, p)
    data.update(_diagnoses(request, r, by_type, by_url))
    data["clinical"] = _clinical(request, r, by_url, direction)
    data["documents"], data["not_fetched"] = _documents(request, r, by_url)
    return data


@dataclass(frozen=True)
class InboundDocument:
    kind: str
    filename: str
    content: bytes


def _is_referral_note(document: dict[str, Any]) -> bool:
    codings = (document.get("type") or {}).get("coding") or []
    return any(c.get("system") == LOINC and c.get("code") == REFERRAL_NOTE for c in codings)


def _documents(
    request: dict[str, Any], r: str, by_url: Mapping[str, tuple[int, dict[str, Any]]]
) -> tuple[list[InboundDocument], list[str]]:
    """The supporting documents other than the referral note: inline ones checked as uploads are (so a bad one
    refuses the Bundle before anything is stored), URL-only ones listed by path."""
    documents: list[InboundDocument] = []
    not_fetched: list[str] = []
    for index, reference in enumerate(request.get("supportingInfo") or []):
        at, document = by_url.get(reference.get("reference") or "") or (None, {})
        if document.get("resourceType") != "DocumentReference" or _is_referral_note(document):
            continue
        attachment = ((document.get("content") or [{}])[0]).get("attachment") or {}
        path = f"entry[{at}].resource.content[0].attachment"
        if not attachment.get("data"):
            not_fetched.append(f"{path}.url")
            continue
        try:
            content = base64.b64decode(attachment["data"], validate=True)
        except ValueError:
            raise _Bad(f"{path}.data", "附件内容须为 base64") from None
        if len(content) > service.MAX_ATTACHMENT:
            raise _Bad(f"{path}.data", "附件不能超过 20 MB")
        content_type = None if uploads.is_executable(content) else uploads.sniff(content)
        if content_type is None:
            raise _Bad(f"{path}.data", "附件只接受 PDF、PNG、JPEG 或 DICOM 文件")
        codes = [
            c.get("code") for c in (document.get("type") or {}).get("coding") or [] if c.get("system") == KIND_SYSTEM
        ]
        kind = next((code for code in codes if code in ATTACHMENT_KINDS), "other")
        extension = dict(service.SNIFFED)[content_type][0]
        title = str(attachment.get("title") or f"附件{index + 1}").replace("\\", "/").rsplit("/", 1)[-1][:180]
        filename = title if title.lower().endswith(dict(service.SNIFFED)[content_type]) else title + extension
        documents.append(InboundDocument(kind, filename, content))
    return documents, not_fetched


def _patient(patient: dict[str, Any], p: str) -> dict[str, Any]:
    id_number = None
    for index, identifier in enumerate(patient.get("identifier") or []):
        if identifier.get("system") == ID_CARD_SYSTEM:
            id_number = identifier.get("value")
            if not id_number:
                raise _Bad(f"{p}.identifier[{index}].value", "缺少身份证号")
    if id_number is None:
        raise _Bad(f"{p}.identifier", f"缺少居民身份证号（system {ID_CARD_SYSTEM}）")
    names = patient.get("name") or []
    name = ""
    if names:
        name = names[0].get("text") or "".join([names[0].get("family") or "", *(names[0].get("given") or [])])
    if not name.strip():
        raise _Bad(f"{p}.name", "缺少患者姓名")
    from mini_apps.family_doctor import idcard
    from mini_apps.family_doctor.service import today

    try:
        parsed = idcard.parse(id_number, today())
    except idcard.InvalidIdNumber as exc:
        raise _Bad(f"{p}.identifier", str(exc)) from None
    if patient.get("gender") in {"male", "female"} and patient["gender"] != GENDER[parsed.sex]:
        raise _Bad(f"{p}.gender", "性别与身份证号不符")
    if patient.get("birthDate") and str(patient["birthDate"]) != parsed.birth_date.isoformat():
        raise _Bad(f"{p}.birthDate", "出生日期与身份证号不符")
    phone = next(
        (t.get("value") for t in patient.get("telecom") or [] if t.get("system") == "phone" and t.get("value")), None
    )
    return {"name": name.strip()[:50], "id_number": id_number, "phone": phone}


def _diagnoses(
    request: dict[str, Any],
    r: str,
    by_type: Mapping[str, list[tuple[int, dict[str, Any]]]],
    by_url: Mapping[str, tuple[int, dict[str, Any]]],
) -> dict[str, Any]:
    """Conditions in reasonReference order (the primary first), else in entry order."""
    conditions: list[tuple[int, dict[str, Any]]] = []
    for index, reference in enumerate(request.get("reasonReference") or []):
        target = by_url.get(reference.get("reference") or "")
        if target is None or target[1].get("resourceType") != "Condition":
            raise _Bad(f"{r}.reasonReference[{index}].reference", "须指向 Bundle 中的 Condition")
        conditions.append(target)
    if not conditions:
        conditions = list(by_type.get("Condition") or [])
    if not conditions:
        raise _Bad("entry", "缺少诊断（Condition）")
    from mini_apps.referral import icd10

    codes = []
    for at, condition in conditions:
        code, path = _code(condition.get("code"), ICD10_SYSTEM, f"entry[{at}].resource.code")
        if icd10.lookup(code) is None:
            raise _Bad(path, f"未知的 ICD-10 诊断编码：{code}")
        codes.append({"code": code})
    if len(codes) > 21:
        raise _Bad(f"{r}.reasonReference", "诊断不能超过 21 个")
    return {"primary_diagnosis": codes[0], "secondary_diagnoses": codes[1:]}


def _clinical(
    request: dict[str, Any], r: str, by_url: Mapping[str, tuple[int, dict[str, Any]]], direction: str
) -> dict[str, str]:
    """The summary from the supporting DocumentReference of type Referral note (inline text)."""
    for index, reference in enumerate(request.get("supportingInfo") or []):
        target = by_url.get(reference.get("reference") or "")
        if target is None:
            raise _Bad(f"{r}.supportingInfo[{index}].reference", "须指向 Bundle 中的资源")
        at, document = target
        if document.get("resourceType") != "DocumentReference":
            continue
        if not _is_referral_note(document):
            continue
        attachment = ((document.get("content") or [{}])[0]).get("attachment") or {}
        path = f"entry[{at}].resource.content[0].attachment.data"
        if not attachment.get("data"):
            raise _Bad(path, "病情摘要须以 data 内联")
        try:
            text = base64.b64decode(attachment["data"], validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            raise _Bad(path, "病情摘要须为 UTF-8 文本的 base64") from None
        clinical = parse_clinical_text(text)
        if direction != "down":
            clinical = {k: v for k, v in clinical.items() if k in service.CLINICAL_FIELDS}
        too_long = next((k for k, v in clinical.items() if len(v) > 4000), None)
        if too_long:
            raise _Bad(path, f"「{CLINICAL_LABELS[too_long]}」不能超过 4000 字")
        return clinical
    return {}


def import_bundle(principal: Principal, bundle: Any, session: orm.Session | None = None) -> dict[str, Any]:
    """Create a referral from an inbound Bundle; the caller is the applicant side, as for POST /api/referrals.
    Its inline documents are attached (already checked by `from_bundle`)."""
    data = from_bundle(bundle, session)
    documents, not_fetched = data.pop("documents"), data.pop("not_fetched")
    created = service.create_referral(principal, data, session)
    for document in documents:
        service.add_attachment(principal, created["id"], document.kind, document.filename, document.content, session)
    if documents:
        created = service.get_referral(principal, created["id"], session)
    return {**created, "not_fetched": not_fetched}

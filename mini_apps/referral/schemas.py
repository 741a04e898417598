"""The referral API contract (marshmallow): what `/api/referrals/...` accepts and returns.

Format rules live here (a bad field is a 422 naming it); the ID checksum, ICD-10 codes, the tree and the caller's
scope are checked in `service`. Patients' ID numbers and phones only ever leave masked.
"""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate

from mini_apps.family_doctor.schemas import PHONE
from mini_apps.referral import states
from mini_apps.referral.models import ATTACHMENT_KINDS, HALF_DAYS, MODES, PRIORITIES, REASONS

TEXT = validate.Length(max=4000)


def _not_blank(value: str) -> None:
    if not value.strip():
        raise ValidationError("不能为空")


class DiagnosisInputSchema(Schema):
    code = fields.String(required=True, validate=validate.Length(min=1, max=16))
    name = fields.String(load_default=None, metadata={"description": "ignored: the catalogue's name is stored"})


class PatientInputSchema(Schema):
    """A patient who is not (or not visibly) a signed resident, entered by hand."""

    name = fields.String(required=True, validate=[validate.Length(min=1, max=50), _not_blank])
    id_number = fields.String(required=True, validate=validate.Length(min=1, max=18))
    phone = fields.String(
        load_default=None, allow_none=True, validate=validate.Regexp(PHONE, error="联系电话格式不正确")
    )


class ClinicalSchema(Schema):
    """病情摘要; a down-referral also carries the rehab plan, medication list and follow-up schedule."""

    chief_complaint = fields.String(validate=TEXT, metadata={"description": "主诉"})
    present_illness = fields.String(validate=TEXT, metadata={"description": "现病史"})
    past_history = fields.String(validate=TEXT, metadata={"description": "既往史"})
    allergies = fields.String(validate=TEXT, metadata={"description": "过敏史"})
    physical_exam = fields.String(validate=TEXT, metadata={"description": "体格检查"})
    auxiliary_exams = fields.String(validate=TEXT, metadata={"description": "辅助检查"})
    treatment = fields.String(validate=TEXT, metadata={"description": "治疗经过"})
    medications = fields.String(validate=TEXT, metadata={"description": "current medication"})
    rehab_plan = fields.String(validate=TEXT, metadata={"description": "down only: 康复计划"})
    medication_list = fields.String(validate=TEXT, metadata={"description": "down only: 用药清单"})
    follow_up_schedule = fields.String(validate=TEXT, metadata={"description": "down only: 随访安排"})


class ReferralInputSchema(Schema):
    direction = fields.String(required=True, validate=validate.OneOf(tuple(states.DIRECTIONS)))
    mode = fields.String(required=True, validate=validate.OneOf(tuple(MODES)))
    priority = fields.String(load_default="routine", validate=validate.OneOf(tuple(PRIORITIES)))
    submit = fields.Boolean(load_default=False, metadata={"description": "submit at once instead of a draft"})
    applicant_department_id = fields.Integer(
        strict=True, load_default=None, metadata={"description": "the caller's department (node id)"}
    )
    target_institution_id = fields.Integer(strict=True, required=True)
    target_department_id = fields.Integer(
        strict=True, load_default=None, metadata={"description": "required for up and lateral referrals"}
    )
    target_doctor_userid = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=64))
    reason_code = fields.String(required=True, validate=validate.OneOf(tuple(REASONS)))
    reason_text = fields.String(load_default="", validate=validate.Length(max=500))
    parent_id = fields.Integer(
        strict=True, load_default=None, metadata={"description": "down only: the completed up-referral it follows"}
    )
    resident_id = fields.Integer(strict=True, load_default=None, metadata={"description": "a signed resident"})
    patient = fields.Nested(PatientInputSchema, load_default=None, allow_none=True)
    consent = fields.Boolean(load_default=False, metadata={"description": "知情同意: required to submit"})
    primary_diagnosis = fields.Nested(DiagnosisInputSchema, required=True)
    secondary_diagnoses = fields.List(
        fields.Nested(DiagnosisInputSchema), load_default=list, validate=validate.Length(max=20)
    )
    clinical = fields.Nested(ClinicalSchema, load_default=dict)


class ReferralPatchSchema(ReferralInputSchema):
    """A draft's edit: any of the create fields, each checked as on create; absent ones keep the draft's values
    (no defaults are filled in), and `clinical` merges field by field (an empty string clears one)."""

    def __init__(self, *args, **kwargs) -> None:
        # Partial at the top level only: a `patient` given again still needs its name and ID number.
        kwargs.setdefault("partial", tuple(ReferralInputSchema._declared_fields))
        super().__init__(*args, **kwargs)


class SlotInputSchema(Schema):
    day = fields.Date(required=True)
    half_day = fields.String(required=True, validate=validate.OneOf(tuple(HALF_DAYS)))


class ActionInputSchema(Schema):
    reason = fields.String(load_default="", validate=validate.Length(max=500))
    slot = fields.Nested(SlotInputSchema, load_default=None, allow_none=True, metadata={"description": "accept only"})


class ReferralQuerySchema(Schema):
    box = fields.String(load_default="inbox", validate=validate.OneOf(("outbox", "inbox")))
    state = fields.String(load_default=None, validate=validate.OneOf(tuple(states.STATES)))
    direction = fields.String(load_default=None, validate=validate.OneOf(tuple(states.DIRECTIONS)))
    priority = fields.String(load_default=None, validate=validate.OneOf(tuple(PRIORITIES)))
    page = fields.Integer(load_default=1, validate=validate.Range(min=1))
    per_page = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))


class DiagnosisSchema(Schema):
    code = fields.String()
    name = fields.String()


class PatientSchema(Schema):
    resident_id = fields.Integer(allow_none=True)
    name = fields.String(metadata={"description": "masked unless the caller shares the record"})
    sex = fields.String()
    birth_date = fields.Date()
    age = fields.Integer()
    id_number = fields.String(metadata={"description": "masked"})
    phone = fields.String(allow_none=True, metadata={"description": "masked"})


class SlotSchema(Schema):
    id = fields.Integer()
    day = fields.Date()
    half_day = fields.String()
    half_day_name = fields.String()


class AttachmentSchema(Schema):
    id = fields.Integer()
    kind = fields.String(metadata={"description": ", ".join(f"{k} ({v})" for k, v in ATTACHMENT_KINDS.items())})
    kind_name = fields.String()
    filename = fields.String()
    content_type = fields.String()
    size = fields.Integer()
    sha256 = fields.String()
    created_at = fields.DateTime()


class ReferralSummarySchema(Schema):
    id = fields.Integer()
    referral_no = fields.String()
    direction = fields.String()
    direction_name = fields.String()
    mode = fields.String()
    mode_name = fields.String()
    priority = fields.String()
    priority_name = fields.String()
    state = fields.String()
    state_name = fields.String()
    parent_id = fields.Integer(allow_none=True)
    applicant_institution_id = fields.Integer()
    applicant_institution_name = fields.String(allow_none=True)
    applicant_department_id = fields.Integer(allow_none=True)
    applicant_department_name = fields.String(allow_none=True)
    applicant_member_id = fields.Integer()
    target_institution_id = fields.Integer()
    target_institution_name = fields.String(allow_none=True)
    target_department_id = fields.Integer(allow_none=True)
    target_department_name = fields.String(allow_none=True)
    target_member_id = fields.Integer(allow_none=True)
    reason_code = fields.String()
    reason_name = fields.String()
    reason_text = fields.String()
    patient = fields.Nested(PatientSchema)
    primary_diagnosis = fields.Nested(DiagnosisSchema)
    secondary_diagnoses = fields.List(fields.Nested(DiagnosisSchema))
    consent = fields.Boolean()
    consent_at = fields.DateTime(allow_none=True)
    respond_by = fields.DateTime(allow_none=True)
    submitted_at = fields.DateTime(allow_none=True)
    accepted_at = fields.DateTime(allow_none=True)
    arrived_at = fields.DateTime(allow_none=True)
    completed_at = fields.DateTime(allow_none=True)
    closed_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class ReferralSchema(ReferralSummarySchema):
    sides = fields.List(fields.String(), metadata={"description": "applicant, receiver and/or supervisor"})
    allowed_actions = fields.List(fields.String(), metadata={"description": "what the caller's side may do now"})
    slot = fields.Nested(SlotSchema, allow_none=True)
    clinical = fields.Dict(allow_none=True, metadata={"description": "only while the caller's side shares the record"})
    attachments = fields.List(fields.Nested(AttachmentSchema), allow_none=True)


class ImportedReferralSchema(ReferralSchema):
    not_fetched = fields.List(
        fields.String(), metadata={"description": "JSON paths of documents referenced by URL only (not fetched)"}
    )


class ReferralCountsSchema(Schema):
    all = fields.Integer()
    states = fields.Dict(keys=fields.String(), values=fields.Integer())


class ReferralListSchema(Schema):
    items = fields.List(fields.Nested(ReferralSummarySchema))
    total = fields.Integer()
    page = fields.Integer()
    per_page = fields.Integer()
    counts = fields.Nested(ReferralCountsSchema, metadata={"description": "by state, under the other filters"})


class EventSchema(Schema):
    id = fields.Integer()
    action = fields.String()
    action_name = fields.String()
    from_state = fields.String(allow_none=True)
    to_state = fields.String()
    to_state_name = fields.String()
    actor = fields.String()
    member_id = fields.Integer(allow_none=True)
    member_name = fields.String(allow_none=True)
    reason = fields.String()
    at = fields.DateTime()


class EventListSchema(Schema):
    items = fields.List(fields.Nested(EventSchema))


class AttachmentFormSchema(Schema):
    kind = fields.String(required=True, validate=validate.OneOf(tuple(ATTACHMENT_KINDS)))


# -- appointment capacity (号源) ------------------------------------------------------------------------------------


class SlotPublishSchema(Schema):
    department_id = fields.Integer(required=True, strict=True)
    day = fields.Date(required=True)
    half_day = fields.String(required=True, validate=validate.OneOf(tuple(HALF_DAYS)))
    capacity = fields.Integer(required=True, strict=True, validate=validate.Range(min=0, max=999))


class SlotWeekSchema(Schema):
    department_id = fields.Integer(required=True, strict=True)
    from_ = fields.Date(data_key="from", required=True, metadata={"description": "the first of the seven days"})
    capacity = fields.Dict(
        required=True,
        keys=fields.String(validate=validate.OneOf(tuple(HALF_DAYS))),
        values=fields.List(
            fields.Integer(allow_none=True, strict=True, validate=validate.Range(min=0, max=999)),
            validate=validate.Length(equal=7),
        ),
        metadata={"description": '{"am": [Mon … Sun], "pm": [Mon … Sun]}; null leaves that half-day as it is'},
    )


class SlotQuerySchema(Schema):
    department_id = fields.Integer(required=True)
    from_ = fields.Date(data_key="from", load_default=None, metadata={"description": "default: today (China)"})
    to = fields.Date(load_default=None, metadata={"description": "default: a week from `from`; at most 62 days"})


class SlotPlacesSchema(Schema):
    """A published slot's places; who booked them is on the referrals, not here."""

    id = fields.Integer()
    department_id = fields.Integer()
    day = fields.Date()
    half_day = fields.String()
    capacity = fields.Integer()
    free = fields.Integer()


class SlotPlacesListSchema(Schema):
    department_id = fields.Integer()
    from_ = fields.Date(data_key="from", attribute="from")
    to = fields.Date()
    items = fields.List(fields.Nested(SlotPlacesSchema))


# -- ICD-10 diagnosis search ----------------------------------------------------------------------------------------


class Icd10QuerySchema(Schema):
    q = fields.String(
        required=True,
        validate=[validate.Length(min=1, max=50), _not_blank],
        metadata={"description": "a code prefix (i63, I63.9), Chinese (冠心病) or 拼音首字母 (gxy)"},
    )
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=50))


class Icd10ListSchema(Schema):
    items = fields.List(fields.Nested(DiagnosisSchema))


# -- what the new-referral form offers --------------------------------------------------------------------------------


class TargetDepartmentSchema(Schema):
    id = fields.Integer()
    name = fields.String()


class ApplicantDepartmentSchema(TargetDepartmentSchema):
    institution_id = fields.Integer()
    institution_name = fields.String(allow_none=True)


class TargetInstitutionSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    level = fields.String(metadata={"description": "medical_community_lead or member_institution"})
    departments = fields.List(fields.Nested(TargetDepartmentSchema))


class TargetsSchema(Schema):
    applicant_departments = fields.List(fields.Nested(ApplicantDepartmentSchema))
    targets = fields.List(fields.Nested(TargetInstitutionSchema))


# -- FHIR and figures (supervision) -----------------------------------------------------------------------------------


class ReferralFiguresQuerySchema(Schema):
    start = fields.Date(load_default=None, metadata={"description": "first day (China) submitted; default: the 1st"})
    end = fields.Date(load_default=None, metadata={"description": "last day (China) submitted; default: today"})
    node_id = fields.Integer(load_default=None, metadata={"description": "only this node's subtree (in scope)"})


class ReferralNodeFiguresSchema(Schema):
    node_id = fields.Integer()
    name = fields.String()
    level = fields.String()
    parent_id = fields.Integer(allow_none=True)
    path = fields.String()
    up_out = fields.Integer(metadata={"description": "上转人次 sent"})
    up_in = fields.Integer(metadata={"description": "上转人次 received"})
    down_out = fields.Integer(metadata={"description": "下转人次 sent"})
    down_in = fields.Integer(metadata={"description": "下转人次 received"})
    lateral_out = fields.Integer()
    lateral_in = fields.Integer()
    sent = fields.Integer()
    closed = fields.Integer()
    closure_rate = fields.Float(allow_none=True, metadata={"description": "结案率: closed ÷ sent"})
    responded = fields.Integer()
    accepted = fields.Integer()
    accepted_within_sla = fields.Integer()
    timely_acceptance_rate = fields.Float(allow_none=True, metadata={"description": "转诊接收及时率"})
    acceptance_hours_mean = fields.Float(allow_none=True)
    acceptance_hours_median = fields.Float(allow_none=True, metadata={"description": "PostgreSQL only"})
    arrived = fields.Integer()
    arrival_rate = fields.Float(allow_none=True, metadata={"description": "到诊率: arrived ÷ accepted"})
    down_followed_up = fields.Integer()
    down_follow_up_rate = fields.Float(allow_none=True, metadata={"description": "下转后随访率"})


class ReferralFiguresSchema(Schema):
    start = fields.Date()
    end = fields.Date()
    items = fields.List(fields.Nested(ReferralNodeFiguresSchema))


# -- referral chats (the group a receiving department takes its cards in: mini_apps/referral/chats.py) -------------


class ReferralChatInputSchema(Schema):
    conversation_id = fields.String(
        required=True,
        validate=[validate.Length(min=1, max=100), _not_blank],
        metadata={"description": "the group's openConversationId (an existing scene group with the app's robot)"},
    )


class ReferralChatSchema(Schema):
    node_id = fields.Integer()
    node_name = fields.String()
    open_conversation_id = fields.String(allow_none=True, metadata={"description": "null while creation failed"})
    chat_id = fields.String(allow_none=True)
    owner_userid = fields.String(allow_none=True)
    source = fields.String(metadata={"description": "registered (an existing group) or created (by the workbench)"})
    member_count = fields.Integer(allow_none=True, metadata={"description": "created groups: userids put in"})
    created_by = fields.String()
    created_at = fields.DateTime()
    last_synced_at = fields.DateTime(allow_none=True)
    last_error = fields.String(allow_none=True)


class ReferralChatListSchema(Schema):
    items = fields.List(fields.Nested(ReferralChatSchema))

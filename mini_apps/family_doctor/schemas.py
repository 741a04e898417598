"""The family-doctor API contract (marshmallow): what `/api/family-doctor/...` accepts and returns.

Format rules live here (a bad field is a 422 naming it); the ID checksum, the one-year term and everything that
depends on the caller's scope or stored rows live in `service`. ID numbers and phones only ever leave masked.
"""

from __future__ import annotations

import re

from marshmallow import Schema, ValidationError, fields, validate

from mini_apps.family_doctor.models import MEMBER_ROLES, STATES, TAGS

DIVISION = re.compile(r"^\d{6}(\d{6})?$")
PHONE = re.compile(r"^(\+?\d{1,4}-)?\d{3,4}-?\d{7,8}$|^1\d{10}$")


def _not_blank(value: str) -> None:
    if not value.strip():
        raise ValidationError("不能为空")


class TeamInputSchema(Schema):
    institution_id = fields.Integer(
        strict=True,
        required=True,
        metadata={"description": "the institution (or one of its departments; the institution is stored)"},
    )
    name = fields.String(required=True, validate=[validate.Length(min=1, max=100), _not_blank])


class MemberInputSchema(Schema):
    userid = fields.String(required=True, validate=validate.Length(min=1, max=64))
    role = fields.String(
        required=True,
        validate=validate.OneOf(tuple(MEMBER_ROLES), error="角色须为 leader、doctor、nurse 或 public_health"),
    )


class TeamMemberSchema(Schema):
    member_id = fields.Integer()
    userid = fields.String()
    name = fields.String()
    role = fields.String()
    role_name = fields.String()


class TeamSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    institution_id = fields.Integer()
    institution_name = fields.String()
    active = fields.Boolean()
    members = fields.List(fields.Nested(TeamMemberSchema))
    created_at = fields.DateTime()


class TeamListSchema(Schema):
    items = fields.List(fields.Nested(TeamSchema))


class SignSchema(Schema):
    """Sign a resident (created on first signing, found by ID number afterwards) to a team."""

    name = fields.String(required=True, validate=[validate.Length(min=1, max=50), _not_blank])
    id_number = fields.String(
        required=True, validate=validate.Length(min=1, max=18), metadata={"description": "18-digit GB 11643 number"}
    )
    phone = fields.String(
        load_default=None, allow_none=True, validate=validate.Regexp(PHONE, error="联系电话格式不正确")
    )
    address = fields.String(load_default="", validate=validate.Length(max=300))
    division_code = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Regexp(DIVISION, error="行政区划代码须为6位或12位数字"),
    )
    tags = fields.List(
        fields.String(validate=validate.OneOf(tuple(TAGS), error="未知的重点人群代码")),
        load_default=list,
        metadata={"description": "key-population codes: " + ", ".join(f"{k} ({v})" for k, v in TAGS.items())},
    )
    dingtalk_userid = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=64))
    team_id = fields.Integer(strict=True, required=True)
    package = fields.String(load_default="基础包", validate=validate.Length(min=1, max=40))
    start_date = fields.Date(load_default=None, metadata={"description": "default: today"})
    end_date = fields.Date(load_default=None, metadata={"description": "default: one year (start + 1 year − 1 day)"})


class RenewSchema(Schema):
    team_id = fields.Integer(strict=True, load_default=None, metadata={"description": "switch team; default: same"})
    package = fields.String(load_default=None, validate=validate.Length(min=1, max=40))
    start_date = fields.Date(load_default=None, metadata={"description": "default: the day after the old end"})
    end_date = fields.Date(load_default=None)


class TerminateSchema(Schema):
    reason = fields.String(load_default="", validate=validate.Length(max=200))


class ResidentQuerySchema(Schema):
    team_id = fields.Integer(load_default=None)
    tag = fields.String(load_default=None, validate=validate.OneOf(tuple(TAGS), error="未知的重点人群代码"))
    state = fields.String(load_default=None, validate=validate.OneOf(STATES))
    expiring_within = fields.Integer(
        load_default=None,
        validate=validate.Range(min=0, max=366),
        metadata={"description": "active contracts ending within this many days"},
    )
    overdue_follow_up = fields.Boolean(
        load_default=None,
        metadata={"description": "true: with an open follow-up past its due date (on their team); false: without"},
    )
    page = fields.Integer(load_default=1, validate=validate.Range(min=1))
    per_page = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))


class ContractSchema(Schema):
    id = fields.Integer()
    team_id = fields.Integer()
    team_name = fields.String()
    package = fields.String()
    start_date = fields.Date()
    end_date = fields.Date()
    state = fields.String(validate=validate.OneOf(STATES))
    previous_id = fields.Integer(allow_none=True)
    terminated_reason = fields.String(allow_none=True)


class ResidentSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    id_number = fields.String(metadata={"description": "masked: 330***********1234"})
    birth_date = fields.Date()
    age = fields.Integer()
    sex = fields.String(metadata={"description": "M | F"})
    phone = fields.String(allow_none=True, metadata={"description": "masked: 138****5678"})
    address = fields.String()
    division_code = fields.String(allow_none=True)
    tags = fields.List(fields.String())
    dingtalk_userid = fields.String(allow_none=True)
    contract = fields.Nested(ContractSchema, allow_none=True, metadata={"description": "the current contract"})


class ResidentDetailSchema(ResidentSchema):
    contracts = fields.List(fields.Nested(ContractSchema))


class ResidentListItemSchema(ResidentSchema):
    overdue_follow_up = fields.Boolean(metadata={"description": "an open follow-up is past its due date"})


class ResidentCountsSchema(Schema):
    all = fields.Integer(metadata={"description": "residents under the team and tag filters"})
    states = fields.Dict(keys=fields.String(), values=fields.Integer(), metadata={"description": "by shown state"})
    overdue_follow_up = fields.Integer()


class ResidentListSchema(Schema):
    items = fields.List(fields.Nested(ResidentListItemSchema))
    total = fields.Integer()
    page = fields.Integer()
    per_page = fields.Integer()
    counts = fields.Nested(ResidentCountsSchema, metadata={"description": "for filter chips: team and tag filters"})


class ImportQuerySchema(Schema):
    dry_run = fields.Boolean(load_default=False, metadata={"description": "validate and report, write nothing"})


class ImportRejectSchema(Schema):
    row = fields.Integer(metadata={"description": "the row in the file (the header is row 1)"})
    field = fields.String(metadata={"description": "the column header"})
    reason = fields.String()


class ImportReportSchema(Schema):
    dry_run = fields.Boolean()
    committed = fields.Boolean()
    total_rows = fields.Integer()
    accepted_rows = fields.Integer()
    rejected_rows = fields.Integer()
    created_residents = fields.Integer()
    created_contracts = fields.Integer()
    unchanged_rows = fields.Integer()
    rejects = fields.List(fields.Nested(ImportRejectSchema))


# -- figures for supervision, service populations, revealing a resident's identifiers ----------------------------

POPULATION_CATEGORIES = ("all", "key_population", *TAGS)


class FiguresQuerySchema(Schema):
    on = fields.Date(load_default=None, metadata={"description": "the day counted (default: today, China time)"})
    year = fields.Integer(
        load_default=None,
        validate=validate.Range(min=2000, max=2100),
        metadata={"description": "the year of the service populations (default: the year of `on`)"},
    )
    node_id = fields.Integer(load_default=None, metadata={"description": "only this node's subtree (in scope)"})


class IncompleteInstitutionSchema(Schema):
    node_id = fields.Integer()
    name = fields.String()


class NodeFiguresSchema(Schema):
    node_id = fields.Integer()
    name = fields.String()
    level = fields.String()
    parent_id = fields.Integer(allow_none=True)
    path = fields.String()
    signed = fields.Integer(metadata={"description": "residents with a contract in force"})
    signed_by_tag = fields.Dict(keys=fields.String(), values=fields.Integer())
    signed_key_population = fields.Integer(metadata={"description": "residents with any key-population tag"})
    population = fields.Integer(allow_none=True, metadata={"description": "辖区常住人口 reported under the node"})
    population_by_tag = fields.Dict(keys=fields.String(), values=fields.Integer())
    key_population = fields.Integer(allow_none=True)
    coverage = fields.Float(allow_none=True, metadata={"description": "签约服务覆盖率, a ratio (0.42 = 42%)"})
    coverage_by_tag = fields.Dict(keys=fields.String(), values=fields.Float(allow_none=True))
    key_population_coverage = fields.Float(allow_none=True)
    renewal_due = fields.Integer(metadata={"description": "persons whose contract ended in the last 365 days"})
    renewed = fields.Integer()
    renewal_rate = fields.Float(allow_none=True)
    overdue_follow_ups = fields.Integer()
    residents_with_overdue_follow_up = fields.Integer()
    completeness = fields.List(
        fields.Nested(IncompleteInstitutionSchema),
        metadata={"description": "institutions under the node with teams but no population for the year"},
    )


class FiguresSchema(Schema):
    on = fields.Date()
    year = fields.Integer()
    items = fields.List(fields.Nested(NodeFiguresSchema))


class PopulationInputSchema(Schema):
    node_id = fields.Integer(strict=True, required=True, metadata={"description": "a lead hospital or institution"})
    year = fields.Integer(strict=True, required=True, validate=validate.Range(min=2000, max=2100))
    category = fields.String(
        required=True,
        validate=validate.OneOf(POPULATION_CATEGORIES, error="人口类别须为 all、key_population 或重点人群代码"),
        metadata={"description": "all (常住人口), key_population (重点人群去重总数) or a key-population code"},
    )
    population = fields.Integer(strict=True, required=True, validate=validate.Range(min=0, error="人口数不能为负"))


class PopulationSchema(Schema):
    node_id = fields.Integer()
    node_name = fields.String()
    year = fields.Integer()
    category = fields.String()
    category_name = fields.String()
    population = fields.Integer()
    updated_at = fields.DateTime()
    updated_by = fields.String()


class PopulationQuerySchema(Schema):
    year = fields.Integer(load_default=None, validate=validate.Range(min=2000, max=2100))
    node_id = fields.Integer(load_default=None)


class PopulationListSchema(Schema):
    year = fields.Integer()
    items = fields.List(fields.Nested(PopulationSchema))


def _reason(value: str) -> None:
    if not 4 <= len(value.strip()) <= 200:
        raise ValidationError("请填写查看原因（4–200 个字）")


class RevealInputSchema(Schema):
    reason = fields.String(required=True, validate=_reason, metadata={"description": "why (kept in the audit log)"})


class MessageInputSchema(Schema):
    text = fields.String(required=True, metadata={"description": "the message, 1–500 characters"})


class MessageQueuedSchema(Schema):
    resident_id = fields.Integer()
    queued = fields.Boolean()


class RevealSchema(Schema):
    resident_id = fields.Integer()
    id_number = fields.String(metadata={"description": "the full ID number"})
    phone = fields.String(allow_none=True, metadata={"description": "the full phone number"})


class TeamChatSchema(Schema):
    """A team's signed-doctor chat (签约医生群): the DingTalk scene group and who it was last confirmed to hold."""

    team_id = fields.Integer()
    open_conversation_id = fields.String(allow_none=True, metadata={"description": "null until the group exists"})
    chat_id = fields.String(allow_none=True)
    owner_userid = fields.String(allow_none=True)
    staff_count = fields.Integer()
    resident_count = fields.Integer()
    rejected_count = fields.Integer(metadata={"description": "residents' accounts DingTalk refused to add"})
    synced_at = fields.DateTime(allow_none=True)
    last_error = fields.String(allow_none=True)


class TeamChatSyncSchema(Schema):
    team_id = fields.Integer()
    queued = fields.Boolean()


# -- follow-ups (reminders) ------------------------------------------------------------------------------------


class FollowUpSchema(Schema):
    id = fields.Integer()
    resident_id = fields.Integer()
    team_id = fields.Integer()
    kind = fields.String(metadata={"description": "hypertension | diabetes"})
    kind_name = fields.String()
    due_date = fields.Date()
    state = fields.String(metadata={"description": "open | overdue | done"})
    done_on = fields.Date(allow_none=True)
    done_by = fields.String(allow_none=True)
    note = fields.String()
    reminded_at = fields.DateTime(allow_none=True, metadata={"description": "when the resident was reminded"})


class FollowUpListSchema(Schema):
    items = fields.List(fields.Nested(FollowUpSchema))


class FollowUpDoneInputSchema(Schema):
    done_on = fields.Date(load_default=None, metadata={"description": "default: today; not in the future"})
    note = fields.String(load_default="", validate=validate.Length(max=300))


class FollowUpDoneSchema(Schema):
    follow_up = fields.Nested(FollowUpSchema)
    next = fields.Nested(FollowUpSchema, allow_none=True, metadata={"description": "the next one, a quarter later"})

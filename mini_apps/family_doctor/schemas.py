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


class ResidentListSchema(Schema):
    items = fields.List(fields.Nested(ResidentSchema))
    total = fields.Integer()
    page = fields.Integer()
    per_page = fields.Integer()


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

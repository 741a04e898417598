"""The auth API contract (marshmallow)."""

from __future__ import annotations

from datetime import UTC

from marshmallow import Schema, fields, validate

from workbench.auth.principal import GRANTABLE_ROLES

_TOKEN = validate.Length(min=1, max=512)


class CodeSchema(Schema):
    code = fields.String(required=True, validate=_TOKEN, metadata={"description": "dd.requestAuthCode 的免登授权码"})


class OAuthCodeSchema(CodeSchema):
    state = fields.String(
        required=True, validate=_TOKEN, metadata={"description": "/api/auth/oauth/start 给出的 state"}
    )


class OAuthStartArgsSchema(Schema):
    next = fields.String(load_default="/h5/", validate=validate.Regexp(r"^/[^/\\]", error="只能是本站的相对路径"))


class RefreshSchema(Schema):
    refresh_token = fields.String(required=True, validate=_TOKEN)


class TokensSchema(Schema):
    access_token = fields.String()
    refresh_token = fields.String()
    expires_in = fields.Integer(metadata={"description": "seconds the access token lives"})
    token_type = fields.String()


class MePositionSchema(Schema):
    node_id = fields.Integer()
    name = fields.String()
    path = fields.String()
    level = fields.String()
    layer = fields.String()
    is_leader = fields.Boolean()
    unit_id = fields.Integer(allow_none=True)
    unit_name = fields.String(allow_none=True)
    unit_level = fields.String(allow_none=True)
    unit_path = fields.String(allow_none=True)


class MeRoleSchema(Schema):
    code = fields.String()
    name = fields.String()
    node_id = fields.Integer(allow_none=True)
    node_name = fields.String(allow_none=True)
    source = fields.String(metadata={"description": "position | leader | grant"})
    grant_id = fields.Integer(allow_none=True)


class MeMemberSchema(Schema):
    id = fields.Integer()
    corp_id = fields.String()
    userid = fields.String()
    name = fields.String()
    title = fields.String(allow_none=True)
    job_number = fields.String(allow_none=True)
    mobile = fields.String(allow_none=True, metadata={"description": "masked: 138****5678"})


class MeSchema(Schema):
    operator = fields.Boolean()
    member = fields.Nested(MeMemberSchema, allow_none=True)
    positions = fields.List(fields.Nested(MePositionSchema))
    roles = fields.List(fields.Nested(MeRoleSchema))


class GrantInSchema(Schema):
    userid = fields.String(required=True, validate=validate.Length(min=1, max=64))
    role = fields.String(required=True, validate=validate.OneOf(GRANTABLE_ROLES))
    node_id = fields.Integer(required=True, strict=True)
    note = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=200))


class GrantSchema(Schema):
    id = fields.Integer()
    member_id = fields.Integer()
    role = fields.String()
    node_id = fields.Integer()
    note = fields.String(allow_none=True)
    granted_by = fields.String()
    granted_at = fields.DateTime()
    revoked_by = fields.String(allow_none=True)
    revoked_at = fields.DateTime(allow_none=True)


class GrantArgsSchema(Schema):
    node_id = fields.Integer(load_default=None)
    include_revoked = fields.Boolean(load_default=False)


class AuditArgsSchema(Schema):
    actor = fields.String(load_default=None)
    action = fields.String(load_default=None)
    resource_type = fields.String(load_default=None)
    resource_id = fields.String(load_default=None)
    since = fields.AwareDateTime(load_default=None, default_timezone=UTC)
    until = fields.AwareDateTime(load_default=None, default_timezone=UTC)
    page = fields.Integer(load_default=1, validate=validate.Range(min=1))
    page_size = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))


class AuditRecordSchema(Schema):
    id = fields.Integer()
    at = fields.DateTime()
    actor = fields.String()
    actor_member_id = fields.Integer(allow_none=True)
    action = fields.String()
    resource_type = fields.String(allow_none=True)
    resource_id = fields.String(allow_none=True)
    node_id = fields.Integer(allow_none=True)
    outcome = fields.String()
    ip = fields.String(allow_none=True)
    user_agent = fields.String(allow_none=True)
    request_id = fields.String(allow_none=True)
    detail = fields.Dict()


class AuditPageSchema(Schema):
    items = fields.List(fields.Nested(AuditRecordSchema))
    total = fields.Integer()
    page = fields.Integer()
    page_size = fields.Integer()


class SandboxMembersArgsSchema(Schema):
    q = fields.String(load_default="", validate=validate.Length(max=50))
    level = fields.String(load_default=None)
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))


class SandboxCodeSchema(Schema):
    userid = fields.String(required=True, validate=validate.Length(min=1, max=64))
    kind = fields.String(load_default="h5", validate=validate.OneOf(["h5", "oauth"]))

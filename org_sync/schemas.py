"""The org API contract (marshmallow): what `/api/org` accepts and returns, as published in /api/openapi.json."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from org_sync.models import LAYERS, LEVELS


class NodeSchema(Schema):
    id = fields.Integer(metadata={"description": "workbench node id"})
    corp_id = fields.String(metadata={"description": "DingTalk corpId the department comes from"})
    dept_id = fields.Integer(metadata={"description": "DingTalk department id"})
    parent_id = fields.Integer(allow_none=True, metadata={"description": "parent node id"})
    name = fields.String()
    code = fields.String(allow_none=True, metadata={"description": "部门编码"})
    level = fields.String(validate=validate.OneOf(LEVELS))
    layer = fields.String(validate=validate.OneOf(LAYERS))
    level_source = fields.String(metadata={"description": "override | code | name | depth"})
    level_override = fields.String(allow_none=True)
    depth = fields.Integer()
    sort_order = fields.Integer()


class NodeDetailSchema(NodeSchema):
    ancestors = fields.List(fields.Nested(NodeSchema), metadata={"description": "root first"})
    children_count = fields.Integer(metadata={"description": "live sub-departments directly below"})
    members_count = fields.Integer(metadata={"description": "live members directly in this department"})


class NodePageSchema(Schema):
    items = fields.List(fields.Nested(NodeSchema))
    total = fields.Integer()
    page = fields.Integer()
    page_size = fields.Integer()


class PageArgsSchema(Schema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1))
    page_size = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))


class SearchArgsSchema(PageArgsSchema):
    q = fields.String(required=True, validate=validate.Length(min=1, max=100), metadata={"description": "名称片段"})
    root = fields.Integer(load_default=None, metadata={"description": "search only under this node"})
    limit = fields.Integer(validate=validate.Range(min=1, max=200), metadata={"description": "alias of page_size"})


class LevelOverrideSchema(Schema):
    level_override = fields.String(
        required=True,
        allow_none=True,
        validate=validate.OneOf(LEVELS),
        metadata={"description": "the corrected level, or null to return to the automatic classification"},
    )


class PositionSchema(Schema):
    node_id = fields.Integer()
    dept_id = fields.Integer()
    name = fields.String()
    level = fields.String()
    layer = fields.String()
    is_leader = fields.Boolean()
    sort_order = fields.Integer()


class MemberSchema(Schema):
    corp_id = fields.String()
    userid = fields.String()
    unionid = fields.String(allow_none=True)
    name = fields.String()
    title = fields.String(allow_none=True)
    job_number = fields.String(allow_none=True)
    mobile = fields.String(allow_none=True, metadata={"description": "masked: 138****5678"})
    active = fields.Boolean()
    is_admin = fields.Boolean()
    is_boss = fields.Boolean()
    positions = fields.List(fields.Nested(PositionSchema))


class MemberArgsSchema(Schema):
    corp_id = fields.String(load_default=None, metadata={"description": "when the userid exists in several corps"})


class ExportArgsSchema(Schema):
    root = fields.Integer(load_default=None, metadata={"description": "node id; the whole tree when omitted"})


class ExportDepartmentSchema(Schema):
    corp_id = fields.String()
    dept_id = fields.Integer()
    name = fields.String()
    parent_id = fields.Integer(allow_none=True, metadata={"description": "parent DingTalk department id"})
    level = fields.String()


class ExportUserSchema(Schema):
    corp_id = fields.String()
    userid = fields.String()
    name = fields.String()
    title = fields.String(allow_none=True)
    active = fields.Boolean()
    mobile = fields.String(allow_none=True, metadata={"description": "masked"})
    dept_id_list = fields.List(fields.Integer(), metadata={"description": "DingTalk department ids, sorted"})
    leader_dept_ids = fields.List(fields.Integer())


class ExportSchema(Schema):
    root = fields.Integer(allow_none=True)
    departments = fields.List(fields.Nested(ExportDepartmentSchema))
    users = fields.List(fields.Nested(ExportUserSchema))

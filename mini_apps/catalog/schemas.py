"""The catalog API contract (marshmallow): what `/api/workbench/apps` and `/api/catalog/apps` accept and return.

Format rules live here (a bad field is a 422 naming it); rules that depend on the caller's subtree or on the
stored app (owner inside the subtree, regional apps on https) live in `service`.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from marshmallow import Schema, ValidationError, fields, validate

from mini_apps.catalog.models import OWNER_KINDS, STATES
from org_sync.models import LAYERS, LEVELS
from workbench.auth.principal import ROLES

CODE = re.compile(r"^[a-z][a-z0-9_-]{1,39}$")
ICON_NAME = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
# Built-in pages are served by this workbench under /h5/; nothing that could climb out of it or change origin.
BUILTIN_PATH = re.compile(r"^/h5/[A-Za-z0-9_\-./]*(\?[A-Za-z0-9_\-.=&%]*)?$")


def _https_url(value: str) -> bool:
    if any(ch.isspace() for ch in value) or "\\" in value:
        return False
    parts = urlsplit(value)
    return parts.scheme == "https" and bool(parts.hostname) and "@" not in parts.netloc


def validate_entry_url(value: str) -> None:
    if value.startswith("/"):
        if not BUILTIN_PATH.match(value) or "//" in value or ".." in value:
            raise ValidationError("内置应用的入口须为 /h5/ 下的页面路径，例如 /h5/apps/referral/")
    elif not _https_url(value):
        raise ValidationError("入口地址须为 /h5/ 开头的内置页面路径，或 https:// 外部地址")


def validate_icon(value: str) -> None:
    if not (ICON_NAME.match(value) or _https_url(value)):
        raise ValidationError("图标须为内置图标名（小写字母、数字、连字符）或 https:// 图片地址")


def _not_blank(value: str) -> None:
    if not value.strip():
        raise ValidationError("不能为空")


class VisibilitySchema(Schema):
    subtrees = fields.List(
        fields.Integer(strict=True),
        load_default=list,
        validate=validate.Length(max=200),
        metadata={"description": "node ids whose subtrees may see the app; empty = the owner's subtree"},
    )
    levels = fields.List(
        fields.String(validate=validate.OneOf(LEVELS)),
        load_default=list,
        metadata={"description": "a position's level or its unit's level must be one of these; empty = any"},
    )
    layers = fields.List(
        fields.String(validate=validate.OneOf(LAYERS)),
        load_default=list,
        metadata={"description": "administrative | operational | service; empty = any"},
    )
    roles = fields.List(
        fields.String(validate=validate.OneOf(tuple(ROLES))),
        load_default=list,
        metadata={"description": "the member must hold one of these roles there; empty = any"},
    )


class AppInputSchema(Schema):
    """A new app (POST); PATCH takes the same fields, each optional, without `code`."""

    code = fields.String(
        required=True,
        validate=validate.Regexp(CODE, error="应用代码须为 2-40 位小写字母、数字、下划线或连字符，以字母开头"),
    )
    name = fields.String(required=True, validate=[validate.Length(min=1, max=50), _not_blank])
    icon = fields.String(load_default="app", validate=[validate.Length(max=500), validate_icon])
    entry_url = fields.String(required=True, validate=[validate.Length(max=1000), validate_entry_url])
    group = fields.String(
        required=True, validate=validate.Length(min=1, max=32), metadata={"description": "workbench section code"}
    )
    sort_order = fields.Integer(strict=True, load_default=100, validate=validate.Range(min=0, max=100000))
    description = fields.String(load_default="", validate=validate.Length(max=500))
    owner_kind = fields.String(
        load_default="regional",
        validate=validate.OneOf(OWNER_KINDS),
        metadata={"description": "province (省级统建) | regional (地方自建)"},
    )
    owner_node_id = fields.Integer(
        strict=True,
        allow_none=True,
        load_default=None,
        metadata={"description": "the node whose subtree owns a regional app; null for province-built apps"},
    )
    visibility = fields.Nested(VisibilitySchema, load_default=dict)


class AppChangeSchema(AppInputSchema):
    """PATCH: the fields of `AppInputSchema`, each optional, without `code` (use it with partial=True)."""

    class Meta:
        exclude = ("code",)


class AppSummarySchema(Schema):
    code = fields.String()
    name = fields.String()
    icon = fields.String(metadata={"description": "built-in icon name or https URL"})
    entry_url = fields.String()
    description = fields.String()


class WorkbenchGroupSchema(Schema):
    code = fields.String()
    name = fields.String()
    apps = fields.List(fields.Nested(AppSummarySchema))


class WorkbenchSchema(Schema):
    groups = fields.List(fields.Nested(WorkbenchGroupSchema))


class VisibilityOutSchema(Schema):
    subtrees = fields.List(fields.Integer())
    levels = fields.List(fields.String())
    layers = fields.List(fields.String())
    roles = fields.List(fields.String())


class AppSchema(Schema):
    code = fields.String()
    name = fields.String()
    icon = fields.String()
    entry_url = fields.String()
    group = fields.String()
    group_name = fields.String()
    sort_order = fields.Integer()
    description = fields.String()
    owner_kind = fields.String(validate=validate.OneOf(OWNER_KINDS))
    owner_node_id = fields.Integer(allow_none=True)
    owner_node_name = fields.String(allow_none=True)
    visibility = fields.Nested(VisibilityOutSchema)
    state = fields.String(validate=validate.OneOf(STATES))
    withdrawn_at = fields.DateTime(allow_none=True)
    withdrawn_by = fields.String(allow_none=True)
    created_at = fields.DateTime()
    created_by = fields.String()
    updated_at = fields.DateTime()
    updated_by = fields.String()
    can_manage = fields.Boolean(metadata={"description": "false: shown read-only (a province app to a region)"})


class AppListSchema(Schema):
    items = fields.List(fields.Nested(AppSchema))
    can_register_province_apps = fields.Boolean()

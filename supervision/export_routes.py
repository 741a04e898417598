"""`/api/supervision/dashboard` (where the dashboard opens: node, breadcrumbs, children, default periods) and
`/api/supervision/figures/export.xlsx` (a node's figures for a period as an Excel workbook).

Thin: arguments in, `supervision.export` out (scope and rules live there and in `supervision.figures`).
"""

from __future__ import annotations

from flask import Response
from marshmallow import Schema, fields

from supervision import export, figures
from workbench import db
from workbench.api import Blueprint, xlsx_download
from workbench.auth import current_principal, require_role

bp = Blueprint(
    "supervision_export", __name__, url_prefix="/api/supervision", description="监管在线: dashboard and Excel export"
)

ZH = {"required": "必填", "null": "不能为空", "invalid": "格式不正确"}


class DashboardQuerySchema(Schema):
    node_id = fields.Integer(load_default=None, error_messages=ZH, metadata={"description": "default: widest"})


class DashboardNodeSchema(Schema):
    node_id = fields.Integer()
    name = fields.String()
    level = fields.String()
    parent_id = fields.Integer(allow_none=True)


class DashboardPeriodsSchema(Schema):
    month = fields.String()
    quarter = fields.String()
    year = fields.String()


class DashboardSchema(Schema):
    node = fields.Nested(DashboardNodeSchema)
    trail = fields.List(fields.Nested(DashboardNodeSchema), metadata={"description": "breadcrumbs, root first"})
    children = fields.List(fields.Nested(DashboardNodeSchema), metadata={"description": "the node picker"})
    periods = fields.Nested(DashboardPeriodsSchema, metadata={"description": "latest complete period per kind"})


class ExportQuerySchema(Schema):
    node_id = fields.Integer(required=True, error_messages=ZH, metadata={"description": "the org node"})
    period = fields.String(required=True, error_messages=ZH, metadata={"description": "2026-10, 2026-Q3 or 2026"})


@bp.route("/dashboard", methods=["GET"])
@require_role(*figures.READER_ROLES)
@bp.arguments(DashboardQuerySchema, location="query")
@bp.response(200, DashboardSchema)
def dashboard(query: dict) -> dict:
    """Where the dashboard opens: the node (the caller's widest without `node_id`), the breadcrumbs down to it,
    its children, and the latest complete month, quarter and year."""
    return export.home(current_principal(), db.session(), node_id=query["node_id"])


@bp.route("/figures/export.xlsx", methods=["GET"])
@require_role(*figures.READER_ROLES)
@bp.arguments(ExportQuerySchema, location="query")
@bp.doc(
    responses={
        "200": {
            "description": "the workbook",
            "content": {export.XLSX: {"schema": {"type": "string", "format": "binary"}}},
        }
    }
)
def export_xlsx(query: dict) -> Response:
    """The node's and its children's figures for the period (one sheet per dimension) and the units that have not
    reported, as an Excel workbook; audited."""
    body, filename = export.export(current_principal(), db.session(), **query)
    return xlsx_download(body, filename, f"supervision-{query['node_id']}.xlsx")

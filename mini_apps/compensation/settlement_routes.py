"""`/api/compensation/counties/<id>/settlements` and `/api/compensation/settlements/<id>`: settling a county's
month (advance) or year (annual true-up), submitting the drafts for the county's approval, and reading every
revision with its lines, its computation and the excluded units behind each line; the county's settlements of a
period (or one settlement) as an Excel workbook (`settlement_export`).

Thin: arguments in, `mini_apps.compensation.settlement` out. Money and 当量 leave as strings (a JSON float would
round them).
"""

from __future__ import annotations

from flask import Response
from marshmallow import Schema, fields, validate

from mini_apps.compensation import settlement, settlement_export
from mini_apps.compensation.excel import XLSX
from mini_apps.compensation.models import PACKAGES, SETTLEMENT_KINDS, SETTLEMENT_STATES
from workbench import db
from workbench.api import Blueprint, xlsx_download
from workbench.auth import current_principal, login_required, require_role

bp = Blueprint(
    "compensation_settlement",
    __name__,
    url_prefix="/api/compensation",
    description="补偿机制改革: settlement (monthly advance, annual true-up), frozen snapshots, approval",
)

MONEY = {"as_string": True, "places": 2}
FOUR = {"as_string": True, "places": 4}


class SettlementRequestSchema(Schema):
    kind = fields.String(required=True, metadata={"description": ", ".join(SETTLEMENT_KINDS)})
    period = fields.String(
        required=True, validate=validate.Length(min=4, max=7), metadata={"description": "YYYY-MM (advance), YYYY"}
    )


class SettlementQuerySchema(Schema):
    kind = fields.String(metadata={"description": ", ".join(SETTLEMENT_KINDS)})
    period = fields.String(validate=validate.Length(max=7))  # checked by the service, in settling's words


class SettlementSchema(Schema):
    id = fields.Integer()
    institution_id = fields.Integer()
    institution_name = fields.String(allow_none=True)
    county_id = fields.Integer()
    kind = fields.String(metadata={"description": ", ".join(SETTLEMENT_KINDS)})
    period = fields.String()
    revision = fields.Integer()
    state = fields.String(metadata={"description": ", ".join(SETTLEMENT_STATES)})
    state_label = fields.String()
    equivalents = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        metadata={"description": f"TE per package ({', '.join(PACKAGES)})"},
    )
    prices = fields.Dict(keys=fields.String(), values=fields.String(), metadata={"description": "yuan per 当量"})
    coefficient = fields.Decimal(**FOUR)
    purchase_amount = fields.Decimal(**MONEY)
    line_item_amount = fields.Decimal(**MONEY)
    fee_income = fields.Decimal(allow_none=True, **MONEY)
    gap_subsidy = fields.Decimal(allow_none=True, **MONEY)
    advances_paid = fields.Decimal(**MONEY)
    payable = fields.Decimal(**MONEY)
    approval_id = fields.Integer(allow_none=True)
    created_by = fields.String()
    created_by_name = fields.String(allow_none=True)
    created_at = fields.DateTime()
    submitted_at = fields.DateTime(allow_none=True)
    decided_by = fields.String(allow_none=True)
    decided_by_name = fields.String(allow_none=True)
    decided_at = fields.DateTime(allow_none=True)
    reason = fields.String(allow_none=True)


class SettlementLineSchema(Schema):
    item_id = fields.Integer()
    item_code = fields.String()
    package = fields.String()
    quantity = fields.Decimal(**MONEY)
    excluded = fields.Decimal(**MONEY)
    equivalent = fields.Decimal(**FOUR)
    equivalents = fields.Decimal(**FOUR)
    quantity_ids = fields.List(fields.Integer())


class SettlementDetailSchema(SettlementSchema):
    lines = fields.List(fields.Nested(SettlementLineSchema))
    computation = fields.Dict(metadata={"description": "how each figure was computed, in words and numbers"})
    snapshot = fields.Dict(metadata={"description": "every input read, frozen at settlement (decimals as strings)"})


class SettlementListSchema(Schema):
    items = fields.List(fields.Nested(SettlementSchema))


class SubmittedSchema(SettlementListSchema):
    approval_id = fields.Integer()
    approvers = fields.List(fields.String())


class PageQuerySchema(Schema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1))
    page_size = fields.Integer(load_default=100, validate=validate.Range(min=1, max=500))


class ExclusionSchema(Schema):
    id = fields.Integer()
    quantity_id = fields.Integer()
    period = fields.String()
    record_ref = fields.String(allow_none=True)
    units = fields.Decimal(**MONEY)
    rule = fields.String()
    reason = fields.String()


class ExclusionListSchema(Schema):
    settlement_id = fields.Integer()
    item_code = fields.String()
    excluded = fields.Decimal(**MONEY)
    items = fields.List(fields.Nested(ExclusionSchema))
    total = fields.Integer()
    page = fields.Integer()
    page_size = fields.Integer()


@bp.route("/counties/<int:county_id>/settlements", methods=["POST"])
@login_required
@require_role(*settlement.WRITER_ROLES)
@bp.arguments(SettlementRequestSchema)
@bp.response(201, SettlementListSchema)
def settle(body: dict, county_id: int) -> tuple[dict, int]:
    """Draft settlements of every institution of the county with workload in the period, each with its frozen
    snapshot. 409 while an approved or open (draft, submitted) settlement exists, or when an input is missing."""
    return settlement.settle(db.session(), current_principal(), county_id, body["kind"], body["period"]), 201


@bp.route("/counties/<int:county_id>/settlements/submit", methods=["POST"])
@login_required
@require_role(*settlement.WRITER_ROLES)
@bp.arguments(SettlementRequestSchema)
@bp.response(201, SubmittedSchema)
def submit(body: dict, county_id: int) -> tuple[dict, int]:
    """The period's drafts go to the county's administrators and finance officers on one approval card."""
    return settlement.submit(db.session(), current_principal(), county_id, body["kind"], body["period"]), 201


@bp.route("/counties/<int:county_id>/settlements", methods=["GET"])
@login_required
@require_role(*settlement.READER_ROLES)
@bp.arguments(SettlementQuerySchema, location="query")
@bp.response(200, SettlementListSchema)
def list_settlements(query: dict, county_id: int) -> dict:
    """Every revision (state, who, when, reason) the caller may read: the county's administrators and finance
    officers all, an institution's administrator their own."""
    return settlement.list_settlements(db.session(), current_principal(), county_id, **query)


@bp.route("/settlements/<int:settlement_id>", methods=["GET"])
@login_required
@require_role(*settlement.READER_ROLES)
@bp.response(200, SettlementDetailSchema)
def get_settlement(settlement_id: int) -> dict:
    """One settlement with its lines, how each figure was computed and its frozen snapshot."""
    return settlement.get_settlement(db.session(), current_principal(), settlement_id)


@bp.route("/settlements/<int:settlement_id>/lines/<item_code>/exclusions", methods=["GET"])
@login_required
@require_role(*settlement.READER_ROLES)
@bp.arguments(PageQuerySchema, location="query")
@bp.response(200, ExclusionListSchema)
def line_exclusions(query: dict, settlement_id: int, item_code: str) -> dict:
    """The excluded units behind one line (the quantity versions it read), each with its record and reason."""
    return settlement.line_exclusions(db.session(), current_principal(), settlement_id, item_code, **query)


# -- Excel export (settlement_export) -------------------------------------------------------------------------------


class ExportQuerySchema(Schema):
    # Checked by the service (422 naming `kind` / `period`, the same messages as settling), not here.
    kind = fields.String(metadata={"description": "advance（月度预拨）or annual（年度清算）"})
    period = fields.String(metadata={"description": "YYYY-MM (advance), YYYY (annual)"})


XLSX_RESPONSE = {
    "200": {
        "description": "the workbook (sheets 结算汇总表, 计算过程, 项目明细, 说明; see settlement_export)",
        "content": {XLSX: {"schema": {"type": "string", "format": "binary"}}},
    }
}


@bp.route("/counties/<int:county_id>/settlements/export.xlsx", methods=["GET"])
@login_required
@require_role(*settlement.READER_ROLES)
@bp.arguments(ExportQuerySchema, location="query")
@bp.doc(responses=XLSX_RESPONSE)
def export_county(query: dict, county_id: int) -> Response:
    """Every institution's current settlement (approved, else open, else refused awaiting correction) of the
    county, kind and period that the caller may read, as a workbook of values with the computation beside them;
    audited. 422 naming `kind` / `period`; 404 when nothing of the period is settled (no empty workbook)."""
    kind, period = query.get("kind"), query.get("period")
    body, filename = settlement_export.export_county(db.session(), current_principal(), county_id, kind, period)
    safe = "".join(ch for ch in str(period) if ch.isalnum() or ch == "-")
    return xlsx_download(body, filename, f"settlements-{county_id}-{kind}-{safe}.xlsx")


@bp.route("/settlements/<int:settlement_id>/export.xlsx", methods=["GET"])
@login_required
@require_role(*settlement.READER_ROLES)
@bp.doc(responses=XLSX_RESPONSE)
def export_settlement(settlement_id: int) -> Response:
    """One settlement as the same workbook for its institution alone; audited; 404 as `GET /settlements/<id>`."""
    body, filename = settlement_export.export_settlement(db.session(), current_principal(), settlement_id)
    return xlsx_download(body, filename, f"settlement-{settlement_id}.xlsx")

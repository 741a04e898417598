"""`/api/compensation/...`: unit prices (当量单价), coefficient bandings (绩效考核系数分档), assessment scores,
line-item subsidies (专项补助), fee income (医疗服务收入) and county schemes (预拨比例, 差额补助). Thin: arguments in,
`pricing` out; who may do what is in `pricing`'s docstring.

The input schemas check shapes only (unknown fields and wrong types are a 422 naming them); numbers arrive raw
(a JSON number or a numeric string) so that `pricing` can refuse, naming the field, any value with more places than
its column holds instead of rounding it. Money, prices, scores and coefficients leave as exact decimal strings.
"""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from mini_apps.compensation import pricing
from mini_apps.compensation.models import LINE_ITEM_CATEGORIES, PACKAGES, PRICE_METHODS
from workbench import db
from workbench.api import Blueprint
from workbench.auth import current_principal, login_required

bp = Blueprint(
    "compensation_pricing",
    __name__,
    url_prefix="/api/compensation",
    description="补偿机制改革: unit prices, coefficient bandings, assessments, line items, fee income, county schemes",
)

EXACT = {"as_string": True, "allow_none": True}


# -- schemas -----------------------------------------------------------------------------------------------------


class PriceInputSchema(Schema):
    method = fields.String(required=True, validate=validate.OneOf(tuple(PRICE_METHODS)))
    budget = fields.Raw(
        load_default=None, allow_none=True, metadata={"description": "method budget: the year's purchase budget, > 0"}
    )
    price = fields.Raw(
        load_default=None, allow_none=True, metadata={"description": "method fixed: yuan per 当量, > 0, ≤ 4 decimals"}
    )


class PriceSchema(Schema):
    county_id = fields.Integer()
    year = fields.Integer()
    package = fields.String(metadata={"description": " | ".join(PACKAGES)})
    package_label = fields.String()
    method = fields.String()
    method_label = fields.String()
    budget = fields.Decimal(**EXACT)
    price = fields.Decimal(**EXACT)
    set_by = fields.String()
    set_at = fields.DateTime()


class PriceListSchema(Schema):
    county_id = fields.Integer()
    year = fields.Integer()
    items = fields.List(fields.Nested(PriceSchema))
    unset_packages = fields.List(fields.String())


class BandingInputSchema(Schema):
    bands = fields.List(
        fields.Raw(),
        required=True,
        metadata={
            "description": '[{"min": 0, "max": 60, "coefficient": "0.8"}, {"min": 60, "max": 100, "from": "0.9", '
            '"to": "1.2"}] — scores 0–100 (≤ 2 decimals) tiling 0–100 exactly; coefficients 0–2 (≤ 4 decimals); '
            "a boundary score belongs to the upper band, 100 to the last"
        },
    )


class BandingSchema(Schema):
    id = fields.Integer()
    county_id = fields.Integer()
    year = fields.Integer()
    version = fields.Integer()
    is_current = fields.Boolean()
    bands = fields.List(fields.Dict(keys=fields.String(), values=fields.String()))
    set_by = fields.String()
    set_at = fields.DateTime()


class BandingsSchema(Schema):
    county_id = fields.Integer()
    year = fields.Integer()
    current = fields.Nested(BandingSchema, allow_none=True)
    versions = fields.List(fields.Nested(BandingSchema), metadata={"description": "newest first"})


class AssessmentInputSchema(Schema):
    score = fields.Raw(required=True, metadata={"description": "0–100, ≤ 2 decimals"})


class AssessmentSchema(Schema):
    institution_id = fields.Integer()
    institution_name = fields.String()
    year = fields.Integer()
    score = fields.Decimal(**EXACT)
    coefficient = fields.Decimal(
        **EXACT, metadata={"description": "from the county's current banding; null without a score or a banding"}
    )
    banding_version = fields.Integer(allow_none=True)
    set_by = fields.String(allow_none=True)
    set_at = fields.DateTime(allow_none=True)


class AssessmentListSchema(Schema):
    county_id = fields.Integer()
    year = fields.Integer()
    banding_version = fields.Integer(allow_none=True)
    items = fields.List(fields.Nested(AssessmentSchema))


class LineItemInputSchema(Schema):
    period = fields.String(required=True, metadata={"description": "YYYY-MM"})
    category = fields.String(required=True, validate=validate.OneOf(tuple(LINE_ITEM_CATEGORIES)))
    amount = fields.Raw(required=True, metadata={"description": "yuan, > 0, ≤ 2 decimals"})
    note = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=pricing.NOTE_MAX))


class LineItemSchema(Schema):
    id = fields.Integer()
    institution_id = fields.Integer()
    period = fields.String()
    category = fields.String()
    category_label = fields.String()
    amount = fields.Decimal(**EXACT)
    note = fields.String(allow_none=True)
    created_by = fields.String()
    created_at = fields.DateTime()


class PeriodRangeQuerySchema(Schema):
    period_from = fields.String(data_key="from", load_default=None, metadata={"description": "YYYY-MM, inclusive"})
    period_to = fields.String(data_key="to", load_default=None, metadata={"description": "YYYY-MM, inclusive"})


class LineItemListSchema(Schema):
    institution_id = fields.Integer()
    period_from = fields.String(attribute="from", data_key="from", allow_none=True)
    period_to = fields.String(attribute="to", data_key="to", allow_none=True)
    items = fields.List(fields.Nested(LineItemSchema))
    total = fields.Decimal(as_string=True)


class FeeIncomeInputSchema(Schema):
    amount = fields.Raw(required=True, metadata={"description": "yuan, ≥ 0, ≤ 2 decimals"})


class FeeIncomeSchema(Schema):
    institution_id = fields.Integer()
    period = fields.String()
    amount = fields.Decimal(**EXACT)
    set_by = fields.String()
    set_at = fields.DateTime()


class FeeIncomeListSchema(Schema):
    institution_id = fields.Integer()
    period_from = fields.String(attribute="from", data_key="from", allow_none=True)
    period_to = fields.String(attribute="to", data_key="to", allow_none=True)
    items = fields.List(fields.Nested(FeeIncomeSchema))


class SchemeInputSchema(Schema):
    advance_share = fields.Raw(required=True, metadata={"description": "0 < share ≤ 1, ≤ 4 decimals"})
    gap_subsidy = fields.Raw(required=True, metadata={"description": "true | false"})


class SchemeSchema(Schema):
    county_id = fields.Integer()
    year = fields.Integer()
    advance_share = fields.Decimal(as_string=True)
    gap_subsidy = fields.Boolean()
    is_default = fields.Boolean(metadata={"description": "true: never set, the defaults (0.8, no gap subsidy) apply"})
    note = fields.String(allow_none=True)
    set_by = fields.String(allow_none=True)
    set_at = fields.DateTime(allow_none=True)


def _range(query: dict) -> dict:
    return {"from": query.get("period_from"), "to": query.get("period_to")}


# -- unit prices ---------------------------------------------------------------------------------------------------


@bp.route("/counties/<int:county_id>/prices/<int:year>", methods=["GET"])
@login_required
@bp.response(200, PriceListSchema)
def list_prices(county_id: int, year: int) -> dict:
    """The county's unit prices for the year, one per package set (and the packages not yet set)."""
    return pricing.list_prices(db.session(), current_principal(), county_id, year)


@bp.route("/counties/<int:county_id>/prices/<int:year>/<package>", methods=["PUT"])
@login_required
@bp.arguments(PriceInputSchema)
@bp.response(200, PriceSchema)
def put_price(body: dict, county_id: int, year: int, package: str) -> dict:
    """Set a package's price: budget-driven (`budget` > 0, ≤ 2 decimals) or fixed (`price` > 0, ≤ 4 decimals)."""
    return pricing.set_price(db.session(), current_principal(), county_id, year, package, body)


# -- coefficient bandings --------------------------------------------------------------------------------------------


@bp.route("/counties/<int:county_id>/bandings/<int:year>", methods=["GET"])
@login_required
@bp.response(200, BandingsSchema)
def get_bandings(county_id: int, year: int) -> dict:
    """The current banding and every version, newest first."""
    return pricing.get_bandings(db.session(), current_principal(), county_id, year)


@bp.route("/counties/<int:county_id>/bandings/<int:year>", methods=["PUT"])
@login_required
@bp.arguments(BandingInputSchema)
@bp.response(200, BandingSchema)
def put_banding(body: dict, county_id: int, year: int) -> dict:
    """A new version of the banding, made current (the old ones kept); a gap or overlap is a 422 `bands.N.min`."""
    return pricing.set_banding(db.session(), current_principal(), county_id, year, body)


# -- assessments -----------------------------------------------------------------------------------------------------


@bp.route("/counties/<int:county_id>/assessments/<int:year>", methods=["GET"])
@login_required
@bp.response(200, AssessmentListSchema)
def list_assessments(county_id: int, year: int) -> dict:
    """The county's institutions (in the caller's scope) with their score and resulting coefficient."""
    return pricing.list_assessments(db.session(), current_principal(), county_id, year)


@bp.route("/institutions/<int:institution_id>/assessments/<int:year>", methods=["PUT"])
@login_required
@bp.arguments(AssessmentInputSchema)
@bp.response(200, AssessmentSchema)
def put_assessment(body: dict, institution_id: int, year: int) -> dict:
    return pricing.set_assessment(db.session(), current_principal(), institution_id, year, body)


# -- line-item subsidies -------------------------------------------------------------------------------------------


@bp.route("/institutions/<int:institution_id>/line-items", methods=["GET"])
@login_required
@bp.arguments(PeriodRangeQuerySchema, location="query")
@bp.response(200, LineItemListSchema)
def list_line_items(query: dict, institution_id: int) -> dict:
    return pricing.list_line_items(db.session(), current_principal(), institution_id, _range(query))


@bp.route("/institutions/<int:institution_id>/line-items", methods=["POST"])
@login_required
@bp.arguments(LineItemInputSchema)
@bp.response(201, LineItemSchema)
def add_line_item(body: dict, institution_id: int) -> dict:
    return pricing.add_line_item(db.session(), current_principal(), institution_id, body)


@bp.route("/line-items/<int:line_item_id>", methods=["DELETE"])
@login_required
@bp.response(204)
def delete_line_item(line_item_id: int) -> None:
    pricing.delete_line_item(db.session(), current_principal(), line_item_id)


# -- fee income ----------------------------------------------------------------------------------------------------


@bp.route("/institutions/<int:institution_id>/fee-income", methods=["GET"])
@login_required
@bp.arguments(PeriodRangeQuerySchema, location="query")
@bp.response(200, FeeIncomeListSchema)
def list_fee_income(query: dict, institution_id: int) -> dict:
    return pricing.list_fee_income(db.session(), current_principal(), institution_id, _range(query))


@bp.route("/institutions/<int:institution_id>/fee-income/<period>", methods=["PUT"])
@login_required
@bp.arguments(FeeIncomeInputSchema)
@bp.response(200, FeeIncomeSchema)
def put_fee_income(body: dict, institution_id: int, period: str) -> dict:
    return pricing.set_fee_income(db.session(), current_principal(), institution_id, period, body)


# -- county schemes ------------------------------------------------------------------------------------------------


@bp.route("/counties/<int:county_id>/schemes/<int:year>", methods=["GET"])
@login_required
@bp.response(200, SchemeSchema)
def get_scheme(county_id: int, year: int) -> dict:
    """The county's scheme for the year, or the defaults (`is_default`: advance 0.8, no gap subsidy)."""
    return pricing.get_scheme(db.session(), current_principal(), county_id, year)


@bp.route("/counties/<int:county_id>/schemes/<int:year>", methods=["PUT"])
@login_required
@bp.arguments(SchemeInputSchema)
@bp.response(200, SchemeSchema)
def put_scheme(body: dict, county_id: int, year: int) -> dict:
    return pricing.set_scheme(db.session(), current_principal(), county_id, year, body)

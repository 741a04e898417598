"""`/api/compensation/...`: internal distribution (二次分配) — an institution's rules, the distribution of an approved
settlement's performance pool among its staff, confirmation, and each person's own shares. Thin: arguments in,
`distribution` out. Rule numbers arrive raw so that `distribution.check_rule` can refuse, naming the field, a value
with more places than its column holds; money and 当量 leave as exact decimal strings.
"""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from mini_apps.compensation import distribution
from mini_apps.compensation.models import DISTRIBUTION_STATES, PACKAGES
from mini_apps.compensation.settlement import PERIOD_OR_YEAR
from workbench import db
from workbench.api import Blueprint
from workbench.auth import current_principal, login_required

bp = Blueprint(
    "compensation_distribution",
    __name__,
    url_prefix="/api/compensation",
    description="补偿机制改革: internal distribution (二次分配) of approved settlements among staff",
)

MONEY = {"as_string": True, "places": 2}
FOUR = {"as_string": True, "places": 4}


class DistributionRuleInputSchema(Schema):
    pool_share = fields.Raw(required=True, metadata={"description": "0 < share ≤ 1: the settlement's service part"})
    average_share = fields.Raw(load_default=0, metadata={"description": "0 … 1: split equally, the rest by points"})
    default_coefficient = fields.Raw(load_default=1, metadata={"description": "everyone's personal coefficient"})
    coefficient_min = fields.Raw(required=True, metadata={"description": "0 … 10, ≤ 4 decimals"})
    coefficient_max = fields.Raw(required=True, metadata={"description": "≥ coefficient_min"})
    coefficients = fields.List(
        fields.Raw(),
        load_default=list,
        metadata={"description": '[{"member_id": 12, "coefficient": "1.2", "note": "科室负责人"}]'},
    )
    cap_multiple = fields.Raw(load_default=None, allow_none=True, metadata={"description": "1 … 100 × the mean"})
    packages = fields.List(fields.Raw(), load_default=lambda: sorted(PACKAGES))
    note = fields.Raw(load_default=None, allow_none=True)


class DistributionRuleSchema(Schema):
    id = fields.Integer()
    institution_id = fields.Integer()
    version = fields.Integer()
    is_current = fields.Boolean()
    pool_share = fields.Decimal(**FOUR)
    average_share = fields.Decimal(**FOUR)
    default_coefficient = fields.Decimal(**FOUR)
    coefficient_min = fields.Decimal(**FOUR)
    coefficient_max = fields.Decimal(**FOUR)
    coefficients = fields.List(fields.Dict())
    cap_multiple = fields.Decimal(allow_none=True, **MONEY)
    packages = fields.List(fields.String())
    note = fields.String(allow_none=True)
    set_by = fields.String()
    set_by_name = fields.String(allow_none=True)
    set_at = fields.DateTime()


class DistributionRulesSchema(Schema):
    institution_id = fields.Integer()
    institution_name = fields.String()
    current = fields.Nested(DistributionRuleSchema, allow_none=True)
    versions = fields.List(fields.Nested(DistributionRuleSchema))


class DistributionSchema(Schema):
    id = fields.Integer()
    settlement_id = fields.Integer()
    institution_id = fields.Integer()
    period = fields.String()
    revision = fields.Integer()
    state = fields.String(metadata={"description": ", ".join(DISTRIBUTION_STATES)})
    state_label = fields.String()
    rule_id = fields.Integer()
    basis = fields.Decimal(**MONEY)
    pool = fields.Decimal(**MONEY)
    average_amount = fields.Decimal(**MONEY)
    total_points = fields.Decimal(**FOUR)
    point_value = fields.Decimal(as_string=True, places=8)
    created_by = fields.String()
    created_by_name = fields.String(allow_none=True)
    created_at = fields.DateTime()
    confirmed_by = fields.String(allow_none=True)
    confirmed_by_name = fields.String(allow_none=True)
    confirmed_at = fields.DateTime(allow_none=True)


class DistributionShareSchema(Schema):
    member_id = fields.Integer()
    name = fields.String(allow_none=True)
    equivalents = fields.Decimal(**FOUR)
    coefficient = fields.Decimal(**FOUR)
    points = fields.Decimal(**FOUR)
    amount = fields.Decimal(**MONEY)
    capped = fields.Boolean()
    how = fields.String(metadata={"description": "the amount written out: equal part + points × point value"})


class DistributionDetailSchema(DistributionSchema):
    institution_name = fields.String()
    shares = fields.List(fields.Nested(DistributionShareSchema))
    computation = fields.Dict()
    snapshot = fields.Dict()


class DistributionListSchema(Schema):
    items = fields.List(fields.Nested(DistributionSchema))


class MyDistributionShareSchema(DistributionShareSchema):
    distribution_id = fields.Integer()
    institution_name = fields.String()
    period = fields.String()
    kind = fields.String(allow_none=True)
    average_amount = fields.Decimal(**MONEY)
    point_value = fields.Decimal(as_string=True, places=8)


class MyDistributionSharesSchema(Schema):
    items = fields.List(fields.Nested(MyDistributionShareSchema))


class StaffMemberSchema(Schema):
    member_id = fields.Integer()
    name = fields.String()
    title = fields.String(allow_none=True)


class StaffSchema(Schema):
    items = fields.List(fields.Nested(StaffMemberSchema))


class DistributionQuerySchema(Schema):
    period = fields.String(validate=validate.Regexp(PERIOD_OR_YEAR, error="期间应为 YYYY-MM 或 YYYY"))


@bp.route("/institutions/<int:institution_id>/distribution-rules", methods=["GET"])
@login_required
@bp.response(200, DistributionRulesSchema)
def get_rules(institution_id: int) -> dict:
    """The institution's current distribution rule and every earlier version."""
    return distribution.get_rules(db.session(), current_principal(), institution_id)


@bp.route("/institutions/<int:institution_id>/staff", methods=["GET"])
@login_required
@bp.response(200, StaffSchema)
def list_staff(institution_id: int) -> dict:
    """The people working in the institution itself (not in member institutions below a lead hospital)."""
    return distribution.list_staff(db.session(), current_principal(), institution_id)


@bp.route("/institutions/<int:institution_id>/distribution-rules", methods=["PUT"])
@login_required
@bp.arguments(DistributionRuleInputSchema)
@bp.response(200, DistributionRuleSchema)
def put_rule(body: dict, institution_id: int) -> dict:
    """A new version of the rule, set by the institution's administrators; a coefficient outside the range or a
    member who does not work there is a 422 `coefficients.N.…`."""
    return distribution.set_rule(db.session(), current_principal(), institution_id, body)


@bp.route("/settlements/<int:settlement_id>/distributions", methods=["POST"])
@login_required
@bp.response(201, DistributionDetailSchema)
def distribute(settlement_id: int) -> tuple[dict, int]:
    """A draft distribution of the approved settlement's pool by the current rule (an earlier draft superseded)."""
    return distribution.distribute(db.session(), current_principal(), settlement_id), 201


@bp.route("/institutions/<int:institution_id>/distributions", methods=["GET"])
@login_required
@bp.arguments(DistributionQuerySchema, location="query")
@bp.response(200, DistributionListSchema)
def list_distributions(query: dict, institution_id: int) -> dict:
    """Every revision of the institution's distributions."""
    return distribution.list_distributions(db.session(), current_principal(), institution_id, **query)


@bp.route("/distributions/<int:distribution_id>", methods=["GET"])
@login_required
@bp.response(200, DistributionDetailSchema)
def get_distribution(distribution_id: int) -> dict:
    """One distribution with every share, how it was computed and its frozen snapshot."""
    return distribution.get_distribution(db.session(), current_principal(), distribution_id)


@bp.route("/distributions/<int:distribution_id>/confirm", methods=["POST"])
@login_required
@bp.response(200, DistributionDetailSchema)
def confirm(distribution_id: int) -> dict:
    """The draft becomes final; each person gets a work notice with their own share."""
    return distribution.confirm(db.session(), current_principal(), distribution_id)


@bp.route("/my-shares", methods=["GET"])
@login_required
@bp.response(200, MyDistributionSharesSchema)
def my_shares() -> dict:
    """The caller's own shares of confirmed distributions, newest first."""
    return distribution.my_shares(db.session(), current_principal())

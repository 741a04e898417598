"""`/api/supervision/figures...` and `/api/supervision/recompute`: the roll-up read by dashboards (a node with its
children, one indicator's trend, the units that have not reported) and a recomputation on request.

Thin: arguments in, `supervision.figures` out (scope and rules live there).
"""

from __future__ import annotations

from supervision import figures
from supervision import figures_schemas as schemas
from workbench import db
from workbench.api import Blueprint
from workbench.auth import current_principal, require_province_admin, require_role

bp = Blueprint(
    "supervision_figures", __name__, url_prefix="/api/supervision", description="监管在线: figures along the tree"
)


@bp.route("/figures", methods=["GET"])
@require_role(*figures.READER_ROLES)
@bp.arguments(schemas.IndicatorFiguresQuerySchema, location="query")
@bp.response(200, schemas.IndicatorFiguresSchema)
def node_figures(query: dict) -> dict:
    """The node's indicators for the period against their targets, with last period's and last year's values,
    and the same for each child node (drill-down)."""
    return figures.figures(current_principal(), db.session(), **query)


@bp.route("/figures/<code>/trend", methods=["GET"])
@require_role(*figures.READER_ROLES)
@bp.arguments(schemas.IndicatorTrendQuerySchema, location="query")
@bp.response(200, schemas.IndicatorTrendSchema)
def indicator_trend(query: dict, code: str) -> dict:
    """One indicator per period from `from` to `to` at the node (and its children with `children=1`)."""
    return figures.trend(current_principal(), db.session(), code=code, **query)


@bp.route("/figures/<code>/completeness", methods=["GET"])
@require_role(*figures.READER_ROLES)
@bp.arguments(schemas.IndicatorCompletenessQuerySchema, location="query")
@bp.response(200, schemas.IndicatorCompletenessSchema)
def indicator_completeness(query: dict, code: str) -> dict:
    """The reporting units under the node that have not reported the indicator for the period, paged."""
    return figures.completeness(current_principal(), db.session(), code=code, **query)


@bp.route("/recompute", methods=["POST"])
@require_province_admin
@bp.arguments(schemas.RollupRecomputeInputSchema)
@bp.response(202, schemas.RollupRecomputeSchema)
def recompute(body: dict) -> dict:
    """Queue the recomputation of every indicator's roll-up for a period (province administrators, operator)."""
    return figures.request_recompute(current_principal(), db.session(), period=body["period"])

"""`/api/supervision/indicators...`: the indicator catalog (指标库), its edit history and targets.

Thin: arguments in, `supervision.catalog` out (rights, cross-field rules and audit live there). Everyone signed
in reads; province administrators edit the catalog; administrators set targets within their subtree.
"""

from __future__ import annotations

from supervision import catalog, schemas
from workbench.api import Blueprint
from workbench.auth import current_principal, login_required

bp = Blueprint(
    "supervision_catalog", __name__, url_prefix="/api/supervision", description="监管在线: the indicator catalog"
)


@bp.route("/indicators", methods=["GET"])
@login_required
@bp.arguments(schemas.IndicatorQuerySchema, location="query")
@bp.response(200, schemas.IndicatorListSchema)
def list_indicators(query: dict) -> dict:
    """The catalog: national indicators first, then by code; filter by dimension, collection, kind, active, q."""
    return catalog.list_indicators(current_principal(), query)


@bp.route("/indicators", methods=["POST"])
@login_required
@bp.arguments(schemas.IndicatorInputSchema)
@bp.response(201, schemas.IndicatorSchema)
def create_indicator(body: dict) -> dict:
    """A provincial indicator (province administrators)."""
    return catalog.create_indicator(current_principal(), body)


@bp.route("/indicators/<code>", methods=["GET"])
@login_required
@bp.response(200, schemas.IndicatorSchema)
def get_indicator(code: str) -> dict:
    return catalog.get_indicator(current_principal(), code)


@bp.route("/indicators/<code>", methods=["PATCH"])
@login_required
@bp.arguments(schemas.IndicatorChangeSchema)
@bp.response(200, schemas.IndicatorSchema)
def edit_indicator(body: dict, code: str) -> dict:
    """Change fields (not `code`) with a `reason`; `active: false` deactivates. Bumps the version and keeps the
    replaced definition (province administrators)."""
    return catalog.edit_indicator(current_principal(), code, body)


@bp.route("/indicators/<code>/versions", methods=["GET"])
@login_required
@bp.response(200, schemas.IndicatorVersionListSchema)
def list_versions(code: str) -> dict:
    """The definitions the indicator had before, oldest first, with who replaced them and why."""
    return catalog.list_versions(current_principal(), code)


@bp.route("/indicators/<code>/targets", methods=["GET"])
@login_required
@bp.arguments(schemas.TargetQuerySchema, location="query")
@bp.response(200, schemas.TargetListSchema)
def list_targets(query: dict, code: str) -> dict:
    """Targets set on the indicator (optionally of one year); with `node_id` and `year`, the one that applies
    to that node (its own or the nearest ancestor's)."""
    return catalog.list_targets(current_principal(), code, query)


@bp.route("/indicators/<code>/targets", methods=["PUT"])
@login_required
@bp.arguments(schemas.TargetInputSchema)
@bp.response(200, schemas.TargetSchema)
def set_target(body: dict, code: str) -> dict:
    """Set or replace a region's target for a year: a province, city or county node inside the caller's
    administrative subtree."""
    return catalog.set_target(current_principal(), code, body)


@bp.route("/indicators/<code>/targets", methods=["DELETE"])
@login_required
@bp.arguments(schemas.TargetKeySchema, location="query")
@bp.response(204)
def delete_target(query: dict, code: str) -> None:
    """Remove a region's own target for a year (it inherits its ancestor's again)."""
    catalog.delete_target(current_principal(), code, query)

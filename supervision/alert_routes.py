"""`/api/supervision/alert-rules|alert-routes|silences|alerts`: alerting administration and the alert list.

Thin: arguments in, `supervision.alerts` out (rights, cross-field rules and audit live there). Province
administrators keep the rules (a rule is judged across the province); administrators route their subtree's alerts
to a chat and silence them; administrators, supervisors and institution administrators list the alerts in scope.
"""

from __future__ import annotations

from supervision import alert_schemas as schemas
from supervision import alerts
from workbench.api import Blueprint
from workbench.auth import current_principal, login_required

bp = Blueprint(
    "supervision_alerts", __name__, url_prefix="/api/supervision", description="监管在线: alert rules and alerts"
)


@bp.route("/alert-rules", methods=["GET"])
@login_required
@bp.response(200, schemas.RuleListSchema)
def list_rules() -> dict:
    return alerts.list_rules(current_principal())


@bp.route("/alert-rules", methods=["POST"])
@login_required
@bp.arguments(schemas.RuleInputSchema)
@bp.response(201, schemas.RuleSchema)
def create_rule(body: dict) -> dict:
    """A rule on one indicator, judged at the nodes of `levels` after each recomputation (province admins)."""
    return alerts.create_rule(current_principal(), body)


@bp.route("/alert-rules/<int:rule_id>", methods=["GET"])
@login_required
@bp.response(200, schemas.RuleSchema)
def get_rule(rule_id: int) -> dict:
    return alerts.get_rule(current_principal(), rule_id)


@bp.route("/alert-rules/<int:rule_id>", methods=["PATCH"])
@login_required
@bp.arguments(schemas.RuleChangeSchema)
@bp.response(200, schemas.RuleSchema)
def edit_rule(body: dict, rule_id: int) -> dict:
    return alerts.edit_rule(current_principal(), rule_id, body)


@bp.route("/alert-rules/<int:rule_id>", methods=["DELETE"])
@login_required
@bp.response(204)
def delete_rule(rule_id: int) -> None:
    """Deactivate the rule (its alerts stay as history)."""
    alerts.delete_rule(current_principal(), rule_id)


@bp.route("/alert-routes", methods=["GET"])
@login_required
@bp.response(200, schemas.RouteListSchema)
def list_routes() -> dict:
    """The chats set on nodes in the caller's administrative scope (nodes without one inherit the nearest)."""
    return alerts.list_routes(current_principal())


@bp.route("/alert-routes/<int:node_id>", methods=["PUT"])
@login_required
@bp.arguments(schemas.RouteInputSchema)
@bp.response(200, schemas.RouteSchema)
def set_route(body: dict, node_id: int) -> dict:
    """Send the alerts of this node and of its subtree (unless a node below has its own) to a group chat."""
    return alerts.set_route(current_principal(), node_id, body)


@bp.route("/alert-routes/<int:node_id>", methods=["DELETE"])
@login_required
@bp.response(204)
def delete_route(node_id: int) -> None:
    alerts.delete_route(current_principal(), node_id)


@bp.route("/silences", methods=["GET"])
@login_required
@bp.response(200, schemas.SilenceListSchema)
def list_silences() -> dict:
    """Active silences on nodes in scope, and the province-wide ones."""
    return alerts.list_silences(current_principal())


@bp.route("/silences", methods=["POST"])
@login_required
@bp.arguments(schemas.SilenceInputSchema)
@bp.response(201, schemas.SilenceSchema)
def create_silence(body: dict) -> dict:
    """Mute alerts matching the rule, indicator and/or node subtree until `ends_at` (≤ 90 days), with a reason."""
    return alerts.create_silence(current_principal(), body)


@bp.route("/silences/<int:silence_id>", methods=["DELETE"])
@login_required
@bp.response(200, schemas.SilenceSchema)
def expire_silence(silence_id: int) -> dict:
    """End a silence now (it stays on record with `expired_at`)."""
    return alerts.expire_silence(current_principal(), silence_id)


@bp.route("/alerts", methods=["GET"])
@login_required
@bp.arguments(schemas.AlertQuerySchema, location="query")
@bp.response(200, schemas.AlertListSchema)
def list_alerts(query: dict) -> dict:
    """Alerts at nodes in scope, newest first."""
    return alerts.list_alerts(current_principal(), query)

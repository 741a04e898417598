"""`/api/compensation/workload/...`: the feed (a system's API key, as the supervision feed), manual entry with the
county's approval, and reads of current quantities, their versions and excluded units.

Thin: arguments in, `mini_apps.compensation.workload` out. The feed and manual bodies are read raw and parsed with
exact decimals (`supervision.feed.parse_body`), so a quantity is never a float on its way in.
"""

from __future__ import annotations

from flask import Response, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from mini_apps.compensation import workload
from mini_apps.compensation import workload_schemas as schemas
from supervision import feed
from workbench import db
from workbench.api import Blueprint
from workbench.auth import current_principal, login_required, require_role
from workbench.errors import ApiError

bp = Blueprint(
    "compensation_workload_routes",
    __name__,
    url_prefix="/api/compensation/workload",
    description="补偿机制改革: workload intake (feeds, approved manual entry, quality gates, corrections)",
)

MANUAL_BODY = 512 * 1024  # 140 lines are a few kilobytes


def _raw_body(limit: int):
    """The request body as JSON with exact decimals; 413 past `limit` (a chunked body without a length too)."""
    if request.content_length is not None and request.content_length > limit:
        raise ApiError("payload_too_large", "请求体过大，请分批提交", status=413, field="items")
    request.max_content_length = limit
    try:
        raw = request.get_data(cache=False)
    except RequestEntityTooLarge:
        raise ApiError("payload_too_large", "请求体过大，请分批提交", status=413, field="items") from None
    return feed.parse_body(raw)


@bp.route("/feed", methods=["POST"])
@bp.doc(
    requestBody={"content": {"application/json": {"schema": schemas.WorkloadFeedBatchSchema}}},
    responses={"200": {"description": "the same batch again: the original result, nothing changed"}},
)
@bp.response(201, schemas.WorkloadBatchResultSchema)
def post_batch():
    """A batch of workload (`Authorization: Bearer <feed API key>`, the supervision feed's systems), ≤ 5,000
    items, recorded all or nothing. 422 `{"errors": [{"index", "field", "message"}]}` lists every problem; 409
    when the batch_id was used for other content."""
    session = db.session()
    system = feed.authenticate(session, request.headers.get("Authorization"))
    body = _raw_body(feed.MAX_BODY)
    try:
        status, result = workload.post_batch(session, system, body)
    except feed.BatchRejected as rejected:
        session.rollback()
        # The house error envelope, plus the per-item list at the top level where senders look for it.
        reply: Response = jsonify(
            {
                "error": {"code": rejected.code, "message": rejected.message, "field": rejected.field},
                "errors": rejected.errors,
            }
        )
        reply.status_code = 422
        return reply
    return result, status


@bp.route("/manual", methods=["POST"])
@login_required
@require_role(*workload.ENTRY_ROLES)
@bp.doc(requestBody={"content": {"application/json": {"schema": schemas.WorkloadManualInputSchema}}})
@bp.response(201, schemas.WorkloadManualSchema)
def submit_manual():
    """Counts entered by an institution's (or its county's) administrator; they count once one of the county
    bureau's administrators approves the card. 422 `{"error": {..., "errors": [...]}}` names every problem."""
    body = _raw_body(MANUAL_BODY)
    return workload.submit_manual(db.session(), current_principal(), body), 201


@bp.route("/manual/<int:batch_id>", methods=["GET"])
@login_required
@bp.response(200, schemas.WorkloadManualSchema)
def get_manual(batch_id: int) -> dict:
    """A manual entry with its state, approval and (when refused) the reason."""
    return workload.get_manual(db.session(), current_principal(), batch_id)


@bp.route("/", methods=["GET"], strict_slashes=False)
@login_required
@require_role(*workload.READER_ROLES)
@bp.arguments(schemas.WorkloadQuantityQuerySchema, location="query")
@bp.response(200, schemas.WorkloadQuantityListSchema)
def list_quantities(query: dict) -> dict:
    """Current quantities in the caller's scope, with qty_raw, qty_verified and the excluded count."""
    return workload.list_quantities(db.session(), current_principal(), **query)


@bp.route("/quantities/<int:quantity_id>/history", methods=["GET"])
@login_required
@require_role(*workload.READER_ROLES)
@bp.response(200, schemas.WorkloadHistorySchema)
def history(quantity_id: int) -> dict:
    """Every version of the quantity's institution, doctor, month and item, oldest first."""
    return workload.history(db.session(), current_principal(), quantity_id)


@bp.route("/quantities/<int:quantity_id>/exclusions", methods=["GET"])
@login_required
@require_role(*workload.READER_ROLES)
@bp.arguments(schemas.WorkloadPageQuerySchema, location="query")
@bp.response(200, schemas.WorkloadExclusionListSchema)
def exclusions(query: dict, quantity_id: int) -> dict:
    """The units the quality gate excluded from this version, each with its record id and reason."""
    return workload.exclusions(db.session(), current_principal(), quantity_id, **query)

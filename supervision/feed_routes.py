"""`/api/supervision/feed-systems`, `/api/supervision/feed` and `/api/supervision/values`.

Thin: arguments in, `supervision.feed` out. The feed is authenticated by the system's API key, not by a member's
access token: the sender is a machine with no position in the tree.
"""

from __future__ import annotations

from flask import Response, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from supervision import feed, feed_schemas
from workbench import db
from workbench.api import Blueprint
from workbench.auth import current_principal, require_role
from workbench.errors import ApiError

bp = Blueprint(
    "supervision_feed", __name__, url_prefix="/api/supervision", description="监管在线: 统计数据推送与指标数值"
)

NO_STORE = {"Cache-Control": "no-store"}


@bp.route("/feed-systems", methods=["POST"])
@require_role("admin")
@bp.arguments(feed_schemas.FeedSystemInputSchema)
@bp.response(201, feed_schemas.FeedSystemWithKeySchema)
def create_system(body: dict):
    """Register a system for a subtree inside the caller's administration; the reply shows its API key once."""
    return feed.create_system(db.session(), current_principal(), body["name"], body["node_id"]), 201, NO_STORE


@bp.route("/feed-systems", methods=["GET"])
@require_role("admin")
@bp.response(200, feed_schemas.FeedSystemListSchema)
def list_systems() -> dict:
    """The systems of nodes inside the caller's administration (key hints only)."""
    return {"items": feed.list_systems(db.session(), current_principal())}


@bp.route("/feed-systems/<int:system_id>/key", methods=["POST"])
@require_role("admin")
@bp.response(200, feed_schemas.FeedSystemWithKeySchema)
def rotate_key(system_id: int):
    """A new API key, shown once; the old key is refused from now on."""
    return feed.rotate_key(db.session(), current_principal(), system_id), 200, NO_STORE


@bp.route("/feed-systems/<int:system_id>", methods=["PATCH"])
@require_role("admin")
@bp.arguments(feed_schemas.FeedSystemPatchSchema)
@bp.response(200, feed_schemas.FeedSystemSchema)
def update_system(body: dict, system_id: int) -> dict:
    """Switch a system off or on."""
    return feed.set_active(db.session(), current_principal(), system_id, body["active"])


@bp.route("/feed", methods=["POST"])
@bp.doc(
    requestBody={"content": {"application/json": {"schema": feed_schemas.FeedBatchSchema}}},
    responses={"200": {"description": "the same batch again: the original result, nothing changed"}},
)
@bp.response(201, feed_schemas.FeedResultSchema)
def post_batch():
    """A batch of numerators and denominators (`Authorization: Bearer <feed API key>`), ≤ 5,000 items, stored all
    or nothing. 422 `{"errors": [{"index", "field", "message"}]}` lists every problem; 409 when the batch_id was
    used for other content."""
    session = db.session()
    system = feed.authenticate(session, request.headers.get("Authorization"))
    if request.content_length is not None and request.content_length > feed.MAX_BODY:
        raise ApiError("payload_too_large", "请求体过大，请分批推送", status=413, field="items")
    request.max_content_length = feed.MAX_BODY  # a chunked body without a length is cut off too
    try:
        raw = request.get_data(cache=False)
    except RequestEntityTooLarge:
        raise ApiError("payload_too_large", "请求体过大，请分批推送", status=413, field="items") from None
    body = feed.parse_body(raw)
    try:
        status, result = feed.post_batch(session, system, body)
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


@bp.route("/values", methods=["GET"])
@require_role(*feed.READER_ROLES)
@bp.arguments(feed_schemas.ValuesQuerySchema, location="query")
@bp.response(200, feed_schemas.ValueListSchema)
def read_values(query: dict) -> dict:
    """An indicator's current value for a unit in the caller's scope (one period or all); with `history=1` every
    version, with its source and time."""
    return feed.read_values(
        db.session(), current_principal(), query["indicator"], query["unit_id"], query["period"], query["history"]
    )

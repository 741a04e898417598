"""`/api/bot`: delivery state and failures, and approvals, for administrators. Thin: arguments in, `bot.outbox`
and `bot.approvals` out."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint as FlaskBlueprint
from flask import jsonify, request

from bot import approvals, cards, outbox, schemas
from bot.models import BotApproval, OutboxMessage
from workbench.api import Blueprint
from workbench.auth import require_province_admin
from workbench.db import paginate, session
from workbench.dingtalk import get_meter
from workbench.errors import ApiError

bp = Blueprint("bot", __name__, url_prefix="/api/bot", description="消息与卡片: the outbox and its channels")


@bp.route("/outbox", methods=["GET"])
@require_province_admin
@bp.arguments(schemas.OutboxArgsSchema, location="query")
@bp.response(200, schemas.OutboxPageSchema)
def list_outbox(args: dict) -> dict:
    """Outbox rows, newest first, filtered by `state` and `channel`."""
    query = sa.select(OutboxMessage)
    for name in ("state", "channel"):
        if args.get(name):
            query = query.where(getattr(OutboxMessage, name) == args[name])
    page, size = args["page"], args["page_size"]
    items, total = paginate(query.order_by(OutboxMessage.id.desc()), page, size)
    return {"items": items, "total": total, "page": page, "page_size": size}


@bp.route("/outbox/counts", methods=["GET"])
@require_province_admin
@bp.response(200, schemas.OutboxCountsSchema)
def outbox_counts() -> dict:
    """Rows per state, and this month's DingTalk quota use."""
    return {"states": outbox.counts_by_state(), **get_meter().usage()}


@bp.route("/outbox/<int:message_id>", methods=["GET"])
@require_province_admin
@bp.response(200, schemas.OutboxMessageSchema)
def get_outbox_message(message_id: int) -> OutboxMessage:
    row = session().get(OutboxMessage, message_id)
    if row is None:
        raise ApiError("not_found", "消息不存在", status=404)
    return row


@bp.route("/outbox/<int:message_id>/retry", methods=["POST"])
@require_province_admin
@bp.response(200, schemas.OutboxMessageSchema)
def retry_outbox_message(message_id: int) -> OutboxMessage:
    """Queue a failed or held row again."""
    return outbox.retry_message(message_id)


@bp.route("/robots", methods=["POST"])
@require_province_admin
@bp.arguments(schemas.RobotSchema)
@bp.response(201, schemas.RobotSchema)
def put_robot(body: dict):
    """Configure a custom group robot (webhook token and 加签 secret) under a name; the secret is never shown."""
    return outbox.register_robot(body["name"], body["access_token"], body["secret"], body["title"])


@bp.route("/approvals", methods=["GET"])
@require_province_admin
@bp.arguments(schemas.ApprovalArgsSchema, location="query")
@bp.response(200, schemas.ApprovalPageSchema)
def list_approvals(args: dict) -> dict:
    """Approval requests, newest first, filtered by `state`."""
    return approvals.list_approvals(args.get("state"), args["page"], args["page_size"])


@bp.route("/approvals/<int:approval_id>", methods=["GET"])
@require_province_admin
@bp.response(200, schemas.ApprovalSchema)
def get_approval(approval_id: int) -> BotApproval:
    return approvals.get_approval(approval_id)


# DingTalk-facing (not part of the administrators' API): card button clicks, HTTP callback mode (§5.3, §5.4).
callback_bp = FlaskBlueprint("bot_card_callback", __name__)


@callback_bp.route("/bot/card/callback", methods=["POST"])
def card_callback():
    """Verify the signature, apply the click once, answer with the card's data (within DingTalk's 2 seconds)."""
    cards.verify_signature(
        request.headers.get("x-ddpaas-signature-timestamp"), request.headers.get("x-ddpaas-signature")
    )
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict):
        raise ApiError("invalid_callback", "回调内容必须是JSON对象", field="body")
    return jsonify(cards.handle_click(payload))

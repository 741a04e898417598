"""The bot API contract (marshmallow): what `/api/bot` accepts and returns, as published in /api/openapi.json.

Phones are masked on the way out (`330****1234` style); secrets and webhook tokens never leave."""

from __future__ import annotations

import re

from marshmallow import Schema, fields, validate

from bot.models import APPROVAL_MODES, APPROVAL_RESULTS, APPROVAL_STATES, CHANNELS, PRIORITIES, STATES

_MOBILE = re.compile(r"(?<!\d)(1[3-9]\d)\d{4}(\d{4})(?!\d)")


def mask_phones(value: object) -> object:
    """Mask every mainland mobile number inside a (nested) JSON value."""
    if isinstance(value, str):
        return _MOBILE.sub(r"\1****\2", value)
    if isinstance(value, list):
        return [mask_phones(v) for v in value]
    if isinstance(value, dict):
        return {k: mask_phones(v) for k, v in value.items()}
    return value


class MaskedJSON(fields.Raw):
    def _serialize(self, value, attr, obj, **kwargs):
        return mask_phones(value)


class OutboxMessageSchema(Schema):
    id = fields.Integer()
    idempotency_key = fields.String()
    channel = fields.String(validate=validate.OneOf(CHANNELS))
    target = fields.String(metadata={"description": "robot name (robot_webhook) or openConversationId"})
    recipients = fields.List(fields.String(), metadata={"description": "userids (robot_oto, work_notice)"})
    delivered = fields.List(fields.String(), metadata={"description": "recipients DingTalk accepted so far"})
    payload = MaskedJSON(metadata={"description": "the message (phones masked)"})
    priority = fields.Method("priority_name")
    state = fields.String(validate=validate.OneOf(STATES))
    attempts = fields.Integer()
    last_error = fields.String(allow_none=True)
    receipts = MaskedJSON(metadata={"description": "one entry per DingTalk call: uuid, ids, userids"})
    send_result = MaskedJSON(allow_none=True, metadata={"description": "work notices: getsendresult"})
    process_query_key = fields.String(allow_none=True)
    task_id = fields.String(allow_none=True)
    out_track_id = fields.String(allow_none=True)
    instance_id = fields.String(allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    sent_at = fields.DateTime(allow_none=True)

    def priority_name(self, row) -> str:
        return {v: k for k, v in PRIORITIES.items()}.get(row.priority, str(row.priority))


class OutboxPageSchema(Schema):
    items = fields.List(fields.Nested(OutboxMessageSchema))
    total = fields.Integer()
    page = fields.Integer()
    page_size = fields.Integer()


class OutboxArgsSchema(Schema):
    state = fields.String(validate=validate.OneOf(STATES))
    channel = fields.String(validate=validate.OneOf(CHANNELS))
    page = fields.Integer(load_default=1, validate=validate.Range(min=1))
    page_size = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))


class QuotaSchema(Schema):
    used = fields.Integer()
    quota = fields.Integer()
    remaining = fields.Integer()


class OutboxCountsSchema(Schema):
    states = fields.Dict(keys=fields.String(), values=fields.Integer(), metadata={"description": "rows per state"})
    month = fields.String()
    api = fields.Nested(QuotaSchema, metadata={"description": "metered API calls this month"})
    message = fields.Nested(QuotaSchema, metadata={"description": "webhook/stream messages this month"})


class RobotSchema(Schema):
    name = fields.String(required=True, validate=validate.Regexp(r"^[\w.-]{1,64}$"))
    title = fields.String(load_default="", validate=validate.Length(max=128))
    access_token = fields.String(required=True, load_only=True, validate=validate.Length(min=1, max=128))
    secret = fields.String(
        load_default=None, load_only=True, validate=validate.Regexp(r"^SEC\w{1,125}$", error="加签密钥须以 SEC 开头")
    )
    signed = fields.Method("is_signed", dump_only=True)

    def is_signed(self, robot) -> bool:
        return bool(robot.secret)


class ApprovalSchema(Schema):
    id = fields.Integer()
    idempotency_key = fields.String()
    title = fields.String()
    originator_userid = fields.String()
    approvers = fields.List(fields.String(), metadata={"description": "userids, in order"})
    mode = fields.String(validate=validate.OneOf(APPROVAL_MODES))
    form = MaskedJSON(metadata={"description": "[[name, value], …] as shown to approvers (phones masked)"})
    callback = fields.String(metadata={"description": "module:function called once with the result"})
    context = MaskedJSON(metadata={"description": "passed back to the callback (phones masked)"})
    channel = fields.String(metadata={"description": "workflow (DingTalk OA instance) or card (approval cards)"})
    process_code = fields.String(allow_none=True)
    instance_id = fields.String(allow_none=True)
    state = fields.String(validate=validate.OneOf(APPROVAL_STATES))
    result = fields.String(allow_none=True, validate=validate.OneOf(APPROVAL_RESULTS))
    decisions = fields.List(fields.Dict(), metadata={"description": "userid, result, at, via (card|event|read)"})
    attempts = fields.Integer()
    last_error = fields.String(allow_none=True)
    created_at = fields.DateTime()
    started_at = fields.DateTime(allow_none=True)
    checked_at = fields.DateTime(allow_none=True)
    finished_at = fields.DateTime(allow_none=True)
    callback_at = fields.DateTime(allow_none=True, metadata={"description": "when the callback ran (once)"})


class ApprovalPageSchema(Schema):
    items = fields.List(fields.Nested(ApprovalSchema))
    total = fields.Integer()
    page = fields.Integer()
    page_size = fields.Integer()


class ApprovalArgsSchema(Schema):
    state = fields.String(validate=validate.OneOf(APPROVAL_STATES))
    page = fields.Integer(load_default=1, validate=validate.Range(min=1))
    page_size = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))

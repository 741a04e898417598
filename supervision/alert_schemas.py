"""The alerting API contract (marshmallow): rules, routes, silences and the alert list under `/api/supervision`.

Formats live here (a bad field is a 422 naming it); the rules that join fields (a threshold rule needs an
operator, a trend rule a comparison, a monitored indicator has no target gap …), rights and audit live in
`supervision.alerts`, which checks the whole resulting rule, so a PATCH of one field is judged against the rest.
"""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from supervision.alerts import ALERT_LIST_LIMIT, MAX_REPEAT_HOURS, RULE_LEVELS
from supervision.models import ALERT_STATES, COMPARISONS, OPERATORS, RULE_KINDS, SEVERITIES
from supervision.schemas import ZH

ZH_DATE = {**ZH, "invalid": "须为 ISO 8601 时间，如 2026-11-30T18:00:00+08:00", "invalid_awareness": "须带时区"}


def _one_of(choices) -> validate.OneOf:
    return validate.OneOf(tuple(choices), error="取值须为 {choices} 之一")


class RuleChangeSchema(Schema):
    """PATCH: any field of a rule, each optional."""

    indicator = fields.String(validate=validate.Length(min=1, max=32, error="须为指标代码"), error_messages=ZH)
    name = fields.String(validate=validate.Length(min=1, max=200, error="长度须为 1–200 个字符"), error_messages=ZH)
    kind = fields.String(
        validate=_one_of(RULE_KINDS), error_messages=ZH, metadata={"description": "threshold | target_gap | trend"}
    )
    levels = fields.List(
        fields.String(validate=_one_of(RULE_LEVELS), error_messages=ZH),
        validate=validate.Length(min=1, max=len(RULE_LEVELS), error="须选择至少一个层级"),
        error_messages=ZH,
        metadata={"description": 'org levels judged, e.g. ["county_bureau"]'},
    )
    operator = fields.String(
        allow_none=True, validate=_one_of(OPERATORS), error_messages=ZH, metadata={"description": "threshold rules"}
    )
    threshold = fields.Decimal(
        error_messages=ZH,
        metadata={
            "description": "threshold: the limit in the display unit; target_gap: the tolerated gap in the display "
            "unit; trend: the relative change in percent"
        },
    )
    comparison = fields.String(
        allow_none=True,
        validate=_one_of(COMPARISONS),
        error_messages=ZH,
        metadata={"description": "trend rules: previous (环比) | last_year (同比)"},
    )
    min_completeness = fields.Decimal(
        validate=validate.Range(min=0, max=1, error="完整率下限须在 0 到 1 之间"),
        error_messages=ZH,
        metadata={"description": "share of expected units that must have reported for a node to be judged"},
    )
    severity = fields.String(validate=_one_of(SEVERITIES), error_messages=ZH)
    repeat_interval_hours = fields.Integer(
        strict=True,
        validate=validate.Range(min=1, max=MAX_REPEAT_HOURS, error=f"须为 1–{MAX_REPEAT_HOURS} 小时"),
        error_messages=ZH,
    )
    send_resolved = fields.Boolean(error_messages=ZH)
    active = fields.Boolean(error_messages=ZH)


class RuleInputSchema(RuleChangeSchema):
    indicator = fields.String(
        required=True, validate=validate.Length(min=1, max=32, error="须为指标代码"), error_messages=ZH
    )
    name = fields.String(
        required=True, validate=validate.Length(min=1, max=200, error="长度须为 1–200 个字符"), error_messages=ZH
    )
    kind = fields.String(required=True, validate=_one_of(RULE_KINDS), error_messages=ZH)
    levels = fields.List(
        fields.String(validate=_one_of(RULE_LEVELS), error_messages=ZH),
        required=True,
        validate=validate.Length(min=1, max=len(RULE_LEVELS), error="须选择至少一个层级"),
        error_messages=ZH,
    )
    threshold = fields.Decimal(required=True, error_messages=ZH)


class RuleSchema(Schema):
    id = fields.Integer()
    indicator = fields.String()
    indicator_name = fields.String()
    name = fields.String()
    kind = fields.String()
    levels = fields.List(fields.String())
    operator = fields.String(allow_none=True)
    threshold = fields.Float()
    comparison = fields.String(allow_none=True)
    min_completeness = fields.Float()
    severity = fields.String()
    repeat_interval_hours = fields.Integer()
    send_resolved = fields.Boolean()
    active = fields.Boolean()
    created_by = fields.String()
    created_at = fields.DateTime()


class RuleListSchema(Schema):
    items = fields.List(fields.Nested(RuleSchema))


class RouteInputSchema(Schema):
    conversation_id = fields.String(
        required=True,
        validate=validate.Length(min=1, max=128, error="长度须为 1–128 个字符"),
        error_messages=ZH,
        metadata={"description": "openConversationId of the group chat the enterprise robot is in"},
    )
    mention_userids = fields.List(
        fields.String(validate=validate.Length(min=1, max=64, error="须为 userid"), error_messages=ZH),
        load_default=list,
        error_messages=ZH,
        metadata={"description": "people @-ed in every message to this chat (at most 50)"},
    )


class RouteSchema(Schema):
    node_id = fields.Integer()
    node_name = fields.String()
    node_level = fields.String()
    conversation_id = fields.String()
    mention_userids = fields.List(fields.String())
    set_by = fields.String()
    set_at = fields.DateTime()


class RouteListSchema(Schema):
    items = fields.List(fields.Nested(RouteSchema))


class SilenceInputSchema(Schema):
    rule_id = fields.Integer(strict=True, allow_none=True, error_messages=ZH)
    indicator = fields.String(
        allow_none=True, validate=validate.Length(min=1, max=32, error="须为指标代码"), error_messages=ZH
    )
    node_id = fields.Integer(
        strict=True, allow_none=True, error_messages=ZH, metadata={"description": "the subtree muted"}
    )
    starts_at = fields.AwareDateTime(allow_none=True, error_messages=ZH_DATE, metadata={"description": "default now"})
    ends_at = fields.AwareDateTime(
        required=True, error_messages=ZH_DATE, metadata={"description": "in the future, at most 90 days ahead"}
    )
    reason = fields.String(
        required=True, validate=validate.Length(min=1, max=500, error="长度须为 1–500 个字符"), error_messages=ZH
    )


class SilenceSchema(Schema):
    id = fields.Integer()
    rule_id = fields.Integer(allow_none=True)
    indicator = fields.String(allow_none=True)
    node_id = fields.Integer(allow_none=True)
    node_name = fields.String(allow_none=True)
    starts_at = fields.DateTime()
    ends_at = fields.DateTime()
    reason = fields.String()
    created_by = fields.String()
    created_at = fields.DateTime()
    expired_at = fields.DateTime(allow_none=True)


class SilenceListSchema(Schema):
    items = fields.List(fields.Nested(SilenceSchema))


class AlertQuerySchema(Schema):
    state = fields.String(validate=_one_of(ALERT_STATES), error_messages=ZH)
    period = fields.String(
        validate=validate.Length(min=4, max=8, error="统计期格式应为 2026-10、2026-Q3 或 2026"), error_messages=ZH
    )
    node_id = fields.Integer(error_messages=ZH, metadata={"description": "alerts in this node's subtree"})
    limit = fields.Integer(
        validate=validate.Range(min=1, max=ALERT_LIST_LIMIT, error=f"须为 1–{ALERT_LIST_LIMIT}"), error_messages=ZH
    )


class AlertSchema(Schema):
    id = fields.Integer()
    rule_id = fields.Integer()
    rule_name = fields.String()
    kind = fields.String()
    severity = fields.String()
    indicator = fields.String()
    indicator_name = fields.String()
    unit = fields.String()
    node_id = fields.Integer()
    node_name = fields.String()
    period = fields.String()
    state = fields.String()
    value = fields.Float(allow_none=True)
    reference = fields.Float(allow_none=True)
    started_at = fields.DateTime()
    evaluated_at = fields.DateTime()
    resolved_at = fields.DateTime(allow_none=True)
    notified_at = fields.DateTime(allow_none=True)
    resolved_notified_at = fields.DateTime(allow_none=True)
    inhibited_by_id = fields.Integer(allow_none=True)
    silenced_by_id = fields.Integer(allow_none=True)


class AlertListSchema(Schema):
    items = fields.List(fields.Nested(AlertSchema))

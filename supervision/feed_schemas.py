"""The statistics feed's API contract (marshmallow): feed systems, the batch reply and reading values.

The batch itself is not loaded through a schema: marshmallow stops at a shape, while a batch must report every
problem of every item with its index (`supervision.feed` checks it whole). `FeedBatchSchema` documents it.
"""

from __future__ import annotations

from marshmallow import Schema, fields, validate

NUMBER = {"description": "a JSON number ≥ 0 with at most 4 decimals (not a string, bool, NaN or Infinity)"}


class FeedSystemInputSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    node_id = fields.Integer(
        strict=True, required=True, metadata={"description": "the subtree the system may post for (org node id)"}
    )


class FeedSystemPatchSchema(Schema):
    active = fields.Boolean(required=True, metadata={"description": "false: its key is refused from now on"})


class FeedSystemSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    node_id = fields.Integer()
    node_name = fields.String(allow_none=True)
    active = fields.Boolean()
    key_hint = fields.String(metadata={"description": "the key's last 4 characters"})
    created_by = fields.String()
    created_at = fields.DateTime()
    key_rotated_at = fields.DateTime(allow_none=True)


class FeedSystemWithKeySchema(FeedSystemSchema):
    api_key = fields.String(metadata={"description": "shown this once; only its SHA-256 is kept"})


class FeedSystemListSchema(Schema):
    items = fields.List(fields.Nested(FeedSystemSchema))


class FeedUnitSchema(Schema):
    id = fields.Integer(metadata={"description": "org node id"})
    code = fields.String(metadata={"description": "部门编码 (OrgNode.code)"})
    dept_id = fields.Integer(metadata={"description": "DingTalk department id"})


class FeedItemSchema(Schema):
    indicator = fields.String(required=True, metadata={"description": "catalog code, e.g. NCM-07"})
    unit = fields.Nested(FeedUnitSchema, required=True, metadata={"description": "exactly one of id, code, dept_id"})
    period = fields.String(required=True, metadata={"description": "2026-10, 2026-Q3 or 2026 (the indicator's)"})
    numerator = fields.Raw(required=True, metadata=NUMBER)
    denominator = fields.Raw(metadata=NUMBER | {"description": "rates only"})
    verdict = fields.String(metadata={"description": "qualitative indicators only: the assessor's verdict"})


class FeedBatchSchema(Schema):
    """Documentation of the batch body (checked item by item in `supervision.feed`)."""

    batch_id = fields.String(required=True, validate=validate.Length(min=1, max=100))
    items = fields.List(fields.Nested(FeedItemSchema), required=True, validate=validate.Length(min=1, max=5000))


class PreviousValueSchema(Schema):
    source = fields.String()
    submission_id = fields.Integer()
    numerator = fields.Raw()
    denominator = fields.Raw(allow_none=True)
    verdict = fields.String(allow_none=True)
    recorded_at = fields.DateTime()


class CorrectionSchema(Schema):
    indicator = fields.String()
    unit_id = fields.Integer()
    period = fields.String()
    numerator = fields.Raw()
    denominator = fields.Raw(allow_none=True)
    verdict = fields.String(allow_none=True)
    previous = fields.Nested(PreviousValueSchema)


class FeedResultSchema(Schema):
    submission_id = fields.Integer()
    batch_id = fields.String()
    received_at = fields.DateTime()
    items = fields.Integer()
    new = fields.Integer()
    corrected = fields.Integer()
    unchanged = fields.Integer()
    corrections = fields.List(fields.Nested(CorrectionSchema))
    replayed = fields.Boolean(metadata={"description": "true when this batch had been received before"})


class ValuesQuerySchema(Schema):
    indicator = fields.String(required=True, validate=validate.Length(min=1, max=32))
    unit_id = fields.Integer(required=True)
    period = fields.String(load_default=None, validate=validate.Length(max=8))
    history = fields.Boolean(load_default=False, metadata={"description": "every version, not only the current"})


class IndicatorBriefSchema(Schema):
    code = fields.String()
    name = fields.String()
    kind = fields.String()
    unit = fields.String()
    scale = fields.Integer()
    period = fields.String()


class UnitBriefSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    level = fields.String()


class ValueSchema(Schema):
    id = fields.Integer()
    period = fields.String()
    numerator = fields.Raw()
    denominator = fields.Raw(allow_none=True)
    value = fields.Float(allow_none=True, metadata={"description": "in the indicator's display unit"})
    verdict = fields.String(allow_none=True)
    source = fields.String(metadata={"description": "feed:<system id> | auto:<source> | manual"})
    submission_id = fields.Integer()
    is_current = fields.Boolean()
    supersedes_id = fields.Integer(allow_none=True)
    recorded_at = fields.DateTime()


class ValueListSchema(Schema):
    indicator = fields.Nested(IndicatorBriefSchema)
    unit = fields.Nested(UnitBriefSchema)
    items = fields.List(fields.Nested(ValueSchema))

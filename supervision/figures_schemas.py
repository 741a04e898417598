"""The figures API contract (marshmallow): what `/api/supervision/figures...` and `/recompute` accept and return.

Formats live here (a bad field is a 422 naming it); periods are checked against the indicator's period kind, and
nodes against the caller's scope, in `supervision.figures`.
"""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from supervision.figures import MAX_PER_PAGE
from supervision.models import DIMENSIONS

ZH = {"required": "必填", "null": "不能为空", "invalid": "格式不正确"}
CHANGED = "when the figure last changed (a recomputation leaves unchanged figures alone)"
PERIOD = "统计期：月 2026-10、季 2026-Q3 或年 2026"


class IndicatorFiguresQuerySchema(Schema):
    node_id = fields.Integer(required=True, error_messages=ZH, metadata={"description": "the org node"})
    period = fields.String(required=True, error_messages=ZH, metadata={"description": PERIOD})
    dimension = fields.String(
        load_default=None,
        validate=validate.OneOf(tuple(DIMENSIONS), error="未知的指标维度"),
        metadata={"enum": list(DIMENSIONS), "description": "only the indicators of one dimension"},
    )


class IndicatorTrendQuerySchema(Schema):
    node_id = fields.Integer(required=True, error_messages=ZH)
    first = fields.String(required=True, data_key="from", error_messages=ZH, metadata={"description": PERIOD})
    last = fields.String(required=True, data_key="to", error_messages=ZH, metadata={"description": PERIOD})
    children = fields.Boolean(load_default=False, metadata={"description": "also each child node's series"})


class IndicatorCompletenessQuerySchema(Schema):
    node_id = fields.Integer(required=True, error_messages=ZH)
    period = fields.String(required=True, error_messages=ZH, metadata={"description": PERIOD})
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, error="页码须为正整数"))
    per_page = fields.Integer(
        load_default=50, validate=validate.Range(min=1, max=MAX_PER_PAGE, error=f"每页条数须为 1–{MAX_PER_PAGE}")
    )


class RollupRecomputeInputSchema(Schema):
    period = fields.String(required=True, error_messages=ZH, metadata={"description": PERIOD})


class RollupRecomputeSchema(Schema):
    period = fields.String()
    job_id = fields.String()


class FigureIndicatorSchema(Schema):
    code = fields.String()
    national_no = fields.Integer(allow_none=True)
    name = fields.String()
    dimension = fields.String()
    kind = fields.String(metadata={"description": "rate | count | qualitative"})
    unit = fields.String()
    scale = fields.Integer()
    direction = fields.String(metadata={"description": "up | down | monitor"})
    reporting_level = fields.String(metadata={"description": "institution | county"})
    additive = fields.Boolean(metadata={"description": "false: figures at the reporting units only"})


class FigureFields(Schema):
    value = fields.Float(allow_none=True, metadata={"description": "in the display unit (65.2 for 65.2%)"})
    numerator = fields.Float(allow_none=True, metadata={"description": "the sum of the units' numerators"})
    denominator = fields.Float(allow_none=True)
    units_expected = fields.Integer(metadata={"description": "live reporting units at or below the node"})
    units_reported = fields.Integer(metadata={"description": "of those, with a current value"})
    computed_at = fields.DateTime(allow_none=True, metadata={"description": CHANGED})
    target = fields.Float(allow_none=True, metadata={"description": "the effective target of the year"})
    met = fields.Boolean(allow_none=True, metadata={"description": "null: no target, no value, or monitored"})


class IndicatorFigureSchema(FigureIndicatorSchema, FigureFields):
    target_node_id = fields.Integer(allow_none=True, metadata={"description": "the node whose target applies"})
    previous = fields.Float(allow_none=True, metadata={"description": "the value of the period before"})
    last_year = fields.Float(allow_none=True, metadata={"description": "the value of the same period last year"})


class FigureNodeSchema(Schema):
    node_id = fields.Integer()
    name = fields.String()
    level = fields.String()
    parent_id = fields.Integer(allow_none=True)


class IndicatorNodeFiguresSchema(FigureNodeSchema):
    indicators = fields.List(fields.Nested(IndicatorFigureSchema))


class IndicatorFiguresSchema(Schema):
    period = fields.String()
    previous_period = fields.String()
    last_year_period = fields.String()
    dimension = fields.String(allow_none=True)
    node = fields.Nested(IndicatorNodeFiguresSchema)
    children = fields.List(fields.Nested(IndicatorNodeFiguresSchema), metadata={"description": "drill-down"})


class IndicatorTrendPointSchema(FigureFields):
    period = fields.String()


class IndicatorTrendSeriesSchema(FigureNodeSchema):
    points = fields.List(fields.Nested(IndicatorTrendPointSchema))


class IndicatorTrendSchema(Schema):
    indicator = fields.Nested(FigureIndicatorSchema)
    periods = fields.List(fields.String())
    series = fields.List(
        fields.Nested(IndicatorTrendSeriesSchema), metadata={"description": "the node first, then children"}
    )


class IndicatorMissingUnitSchema(FigureNodeSchema):
    parent_name = fields.String(allow_none=True)


class IndicatorCompletenessSchema(Schema):
    code = fields.String()
    period = fields.String()
    node_id = fields.Integer()
    units_expected = fields.Integer()
    units_reported = fields.Integer()
    total = fields.Integer(metadata={"description": "units not reported"})
    page = fields.Integer()
    per_page = fields.Integer()
    items = fields.List(fields.Nested(IndicatorMissingUnitSchema))

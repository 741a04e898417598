"""The supervision catalog API contract (marshmallow): what `/api/supervision/indicators...` accepts and returns.

Formats live here (a bad field is a 422 naming it); the rules that join fields (a rate needs a denominator, a
count is never bounded, "%" means ×100 …) and the caller's rights live in `supervision.catalog`, which checks the
whole definition, so a PATCH of one field is judged against the stored rest.
"""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from supervision.catalog import CODE, SCALES, YEARS
from supervision.models import COLLECTIONS, DIMENSIONS, DIRECTIONS, KINDS, PERIODS, REPORTING_LEVELS

# Chinese messages for the format errors users see (marshmallow's defaults are English).
ZH = {
    "required": "必填",
    "null": "不能为空",
    "invalid": "格式不正确",
    "too_large": "数值过大",
    "special": "须为有限的数字",
    "invalid_utf8": "须为 UTF-8 文本",
}


def _one_of(choices: dict[str, str]) -> validate.OneOf:
    return validate.OneOf(tuple(choices), error="取值须为 {choices} 之一")


def _length(low: int, high: int) -> validate.Length:
    return validate.Length(min=low, max=high, error=f"长度须为 {low}–{high} 个字符")


class IndicatorChangeSchema(Schema):
    """PATCH: any catalog field but `code`, each optional, and why (`reason`, required)."""

    national_no = fields.Integer(
        strict=True,
        allow_none=True,
        validate=validate.Range(min=1, max=99, error="须为 1–99"),
        error_messages=ZH,
        metadata={"description": "number in the 2024 national set (1..14); null for the others"},
    )
    name = fields.String(validate=_length(1, 200), error_messages=ZH)
    dimension = fields.String(validate=_one_of(DIMENSIONS), error_messages=ZH, metadata={"enum": list(DIMENSIONS)})
    kind = fields.String(
        validate=_one_of(KINDS), error_messages=ZH, metadata={"description": "rate | count | qualitative"}
    )
    numerator_definition = fields.String(validate=_length(1, 2000), error_messages=ZH)
    denominator_definition = fields.String(
        allow_none=True, validate=validate.Length(max=2000, error="不能超过 2000 个字符"), error_messages=ZH
    )
    unit = fields.String(
        validate=_length(1, 16), error_messages=ZH, metadata={"description": "%, ‰, 人, 元, 人/万人 …"}
    )
    scale = fields.Integer(
        strict=True,
        validate=validate.OneOf(SCALES, error="倍数须为 1、100、1000 或 10000"),
        error_messages=ZH,
        metadata={"description": "value = numerator ÷ denominator × scale"},
    )
    direction = fields.String(
        validate=_one_of(DIRECTIONS), error_messages=ZH, metadata={"description": "up | down | monitor"}
    )
    period = fields.String(
        validate=_one_of(PERIODS), error_messages=ZH, metadata={"description": "month | quarter | year"}
    )
    collection = fields.String(
        validate=_one_of(COLLECTIONS), error_messages=ZH, metadata={"description": "automatic | manual | mixed"}
    )
    source = fields.String(validate=_length(1, 120), error_messages=ZH, metadata={"description": "数据来源"})
    reporting_level = fields.String(
        validate=_one_of(REPORTING_LEVELS), error_messages=ZH, metadata={"description": "institution | county"}
    )
    bounded = fields.Boolean(error_messages=ZH, metadata={"description": "numerator can never exceed denominator"})
    additive = fields.Boolean(
        error_messages=ZH, metadata={"description": "sums above the reporting unit mean something"}
    )
    automatic_source = fields.String(
        allow_none=True,
        validate=validate.Length(max=48, error="不能超过 48 个字符"),
        error_messages=ZH,
        metadata={"description": "the platform computation that fills it, e.g. family_doctor.coverage"},
    )
    note = fields.String(
        allow_none=True, validate=validate.Length(max=4000, error="不能超过 4000 个字符"), error_messages=ZH
    )
    active = fields.Boolean(error_messages=ZH, metadata={"description": "false: 停用 (kept, not computed or shown)"})
    reason = fields.String(
        required=True, validate=_length(1, 500), error_messages=ZH, metadata={"description": "修改原因"}
    )


class IndicatorInputSchema(IndicatorChangeSchema):
    """POST: a provincial indicator. Unset optional fields take the catalog's defaults (scale 1, institution
    level, bounded unless a count, additive, active)."""

    class Meta:
        exclude = ("reason",)

    code = fields.String(
        required=True,
        validate=validate.Regexp(CODE, error="指标代码须为 2–32 位大写字母、数字或连字符，以字母开头"),
        error_messages=ZH,
    )
    name = fields.String(required=True, validate=_length(1, 200), error_messages=ZH)
    dimension = fields.String(required=True, validate=_one_of(DIMENSIONS), error_messages=ZH)
    kind = fields.String(required=True, validate=_one_of(KINDS), error_messages=ZH)
    numerator_definition = fields.String(required=True, validate=_length(1, 2000), error_messages=ZH)
    unit = fields.String(required=True, validate=_length(1, 16), error_messages=ZH)
    direction = fields.String(required=True, validate=_one_of(DIRECTIONS), error_messages=ZH)
    period = fields.String(required=True, validate=_one_of(PERIODS), error_messages=ZH)
    collection = fields.String(required=True, validate=_one_of(COLLECTIONS), error_messages=ZH)
    source = fields.String(required=True, validate=_length(1, 120), error_messages=ZH)


class IndicatorQuerySchema(Schema):
    dimension = fields.String(validate=_one_of(DIMENSIONS), error_messages=ZH)
    collection = fields.String(validate=_one_of(COLLECTIONS), error_messages=ZH)
    kind = fields.String(validate=_one_of(KINDS), error_messages=ZH)
    active = fields.Boolean(error_messages=ZH)
    q = fields.String(
        validate=validate.Length(max=100, error="不能超过 100 个字符"), metadata={"description": "名称或代码的一部分"}
    )


class IndicatorSchema(Schema):
    id = fields.Integer()
    code = fields.String()
    national_no = fields.Integer(allow_none=True)
    name = fields.String()
    dimension = fields.String()
    dimension_name = fields.String()
    kind = fields.String()
    kind_name = fields.String()
    numerator_definition = fields.String()
    denominator_definition = fields.String(allow_none=True)
    unit = fields.String()
    scale = fields.Integer()
    direction = fields.String()
    direction_name = fields.String()
    period = fields.String()
    period_name = fields.String()
    collection = fields.String()
    collection_name = fields.String()
    source = fields.String()
    reporting_level = fields.String()
    reporting_level_name = fields.String()
    bounded = fields.Boolean()
    additive = fields.Boolean()
    automatic_source = fields.String(allow_none=True)
    note = fields.String(allow_none=True)
    active = fields.Boolean()
    version = fields.Integer()
    updated_at = fields.DateTime()
    updated_by = fields.String()


class IndicatorListSchema(Schema):
    items = fields.List(fields.Nested(IndicatorSchema))
    total = fields.Integer()
    can_edit = fields.Boolean(metadata={"description": "the caller may create and edit indicators"})


class IndicatorVersionSchema(Schema):
    version = fields.Integer()
    definition = fields.Dict(metadata={"description": "every catalog field as it was in that version"})
    valid_until = fields.DateTime()
    changed_by = fields.String(metadata={"description": "who made the edit that replaced it"})
    reason = fields.String()


class IndicatorVersionListSchema(Schema):
    current = fields.Nested(IndicatorSchema)
    items = fields.List(fields.Nested(IndicatorVersionSchema), metadata={"description": "oldest first"})


YEAR = validate.Range(min=YEARS[0], max=YEARS[1], error=f"年度须为 {YEARS[0]}–{YEARS[1]}")


class TargetInputSchema(Schema):
    node_id = fields.Integer(
        strict=True, required=True, error_messages=ZH, metadata={"description": "a province, city or county node"}
    )
    year = fields.Integer(strict=True, required=True, validate=YEAR, error_messages=ZH)
    value = fields.Decimal(
        required=True,
        validate=validate.Range(min=0, error="目标值不能为负数"),
        error_messages=ZH,
        metadata={"description": "in the display unit (65 for 65%); ≤ 100 for % indicators"},
    )


class TargetKeySchema(Schema):
    node_id = fields.Integer(required=True, error_messages=ZH)
    year = fields.Integer(required=True, validate=YEAR, error_messages=ZH)


class TargetQuerySchema(Schema):
    year = fields.Integer(validate=YEAR, error_messages=ZH)
    node_id = fields.Integer(
        error_messages=ZH, metadata={"description": "with year: also answer the target that applies to this node"}
    )


class TargetSchema(Schema):
    indicator_code = fields.String()
    node_id = fields.Integer()
    node_name = fields.String()
    node_level = fields.String()
    year = fields.Integer()
    value = fields.Float()
    unit = fields.String()
    set_by = fields.String()
    set_at = fields.DateTime()


class EffectiveTargetSchema(Schema):
    node_id = fields.Integer()
    value = fields.Float()
    set_on_node_id = fields.Integer()
    set_on_node_name = fields.String(allow_none=True)
    inherited = fields.Boolean(metadata={"description": "taken from an ancestor's target"})


class TargetListSchema(Schema):
    items = fields.List(fields.Nested(TargetSchema))
    effective = fields.Nested(EffectiveTargetSchema, allow_none=True)

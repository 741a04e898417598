"""The compensation API contract (marshmallow) for service items, 当量 tables and institution tiers.

Types are checked here (a bad field is a 422 naming it); codes, rules, bounds, values and scope are checked in
`catalog`, which names `values.N.value` and the like. 当量 and percents leave as strings (exact decimals, never
floats).
"""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate

from mini_apps.compensation.models import PACKAGES, TABLE_STATES


def _not_blank(value: str) -> None:
    if not value.strip():
        raise ValidationError("不能为空")


EXACT = {"as_string": True, "allow_none": True}


# -- service items ----------------------------------------------------------------------------------------------


class ItemInputSchema(Schema):
    code = fields.String(required=True, metadata={"description": "^[A-Z][A-Z0-9_-]{1,31}$"})
    name = fields.String(required=True, validate=[validate.Length(min=1, max=100), _not_blank])
    package = fields.String(required=True, validate=validate.OneOf(tuple(PACKAGES)))
    unit = fields.String(required=True, validate=[validate.Length(min=1, max=20), _not_blank])
    quality_rule = fields.Dict(
        load_default=dict, metadata={"description": '{} or {"required_fields": ["sbp", "dbp"]} (≤ 30 field codes)'}
    )
    note = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=2000))


class ItemPatchSchema(Schema):
    name = fields.String(validate=[validate.Length(min=1, max=100), _not_blank])
    package = fields.String(validate=validate.OneOf(tuple(PACKAGES)))
    unit = fields.String(validate=[validate.Length(min=1, max=20), _not_blank])
    quality_rule = fields.Dict()
    note = fields.String(allow_none=True, validate=validate.Length(max=2000))
    active = fields.Boolean()


class ItemQuerySchema(Schema):
    package = fields.String(load_default=None, validate=validate.OneOf(tuple(PACKAGES)))
    active = fields.Boolean(load_default=None, allow_none=True)
    q = fields.String(load_default=None, validate=validate.Length(max=100))
    page = fields.Integer(load_default=1, validate=validate.Range(min=1))
    per_page = fields.Integer(load_default=200, validate=validate.Range(min=1, max=1000))


class ItemSchema(Schema):
    id = fields.Integer()
    code = fields.String()
    name = fields.String()
    package = fields.String()
    package_label = fields.String()
    unit = fields.String()
    quality_rule = fields.Dict()
    active = fields.Boolean()
    note = fields.String(allow_none=True)
    created_by = fields.String()
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class ItemListSchema(Schema):
    items = fields.List(fields.Nested(ItemSchema))
    total = fields.Integer()
    page = fields.Integer()
    per_page = fields.Integer()


# -- 当量 tables --------------------------------------------------------------------------------------------------


class TableInputSchema(Schema):
    region_node_id = fields.Integer(
        required=True, metadata={"description": "a province_commission (province table) or county_bureau (adjustment)"}
    )
    base_table_id = fields.Integer(
        load_default=None, allow_none=True, metadata={"description": "county adjustments: the published province table"}
    )
    version = fields.String(required=True, validate=[validate.Length(min=1, max=20), _not_blank])
    name = fields.String(required=True, validate=[validate.Length(min=1, max=100), _not_blank])
    valid_from = fields.Date(required=True)
    valid_to = fields.Date(load_default=None, allow_none=True, metadata={"description": "inclusive; empty: open"})
    adjust_min_pct = fields.Raw(
        load_default=None, allow_none=True, metadata={"description": "province tables: -100 < min ≤ 0 (percent)"}
    )
    adjust_max_pct = fields.Raw(
        load_default=None, allow_none=True, metadata={"description": "province tables: 0 ≤ max ≤ 1000 (percent)"}
    )
    note = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=2000))


class TablePatchSchema(Schema):
    version = fields.String(validate=[validate.Length(min=1, max=20), _not_blank])
    name = fields.String(validate=[validate.Length(min=1, max=100), _not_blank])
    valid_from = fields.Date()
    valid_to = fields.Date(allow_none=True)
    adjust_min_pct = fields.Raw()
    adjust_max_pct = fields.Raw()
    note = fields.String(allow_none=True, validate=validate.Length(max=2000))


class TableValuesInputSchema(Schema):
    values = fields.List(
        fields.Raw(),
        required=True,
        metadata={
            "description": '[{"item_code": "A01", "tier": 1 (1..3, default 1), "value": "1.7000" (> 0, ≤ 1000, '
            "≤ 4 decimals)}] — replaces the draft's values"
        },
    )


class TableQuerySchema(Schema):
    region_node_id = fields.Integer(load_default=None)
    state = fields.String(load_default=None, validate=validate.OneOf(tuple(TABLE_STATES)))
    kind = fields.String(load_default=None, validate=validate.OneOf(("province", "county")))
    page = fields.Integer(load_default=1, validate=validate.Range(min=1))
    per_page = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))


class TableSchema(Schema):
    id = fields.Integer()
    kind = fields.String(metadata={"description": "province | county"})
    region_node_id = fields.Integer()
    region_name = fields.String(allow_none=True)
    base_table_id = fields.Integer(allow_none=True)
    version = fields.String()
    name = fields.String()
    valid_from = fields.Date()
    valid_to = fields.Date(allow_none=True)
    state = fields.String()
    state_label = fields.String()
    adjust_min_pct = fields.Decimal(**EXACT)
    adjust_max_pct = fields.Decimal(**EXACT)
    note = fields.String(allow_none=True)
    created_by = fields.String()
    created_at = fields.DateTime()
    published_by = fields.String(allow_none=True)
    published_at = fields.DateTime(allow_none=True)


class TableRowSchema(Schema):
    item_id = fields.Integer()
    item_code = fields.String()
    item_name = fields.String()
    package = fields.String()
    unit = fields.String()
    values = fields.Dict(
        keys=fields.String(), values=fields.Decimal(**EXACT), metadata={"description": '{"1": "1.7000", "2": null}'}
    )
    base_values = fields.Dict(keys=fields.String(), values=fields.Decimal(**EXACT))
    change_pct = fields.Dict(keys=fields.String(), values=fields.Decimal(**EXACT))


class TableDetailSchema(TableSchema):
    rows = fields.List(fields.Nested(TableRowSchema))
    imported = fields.Integer(metadata={"description": "after an import: the values stored"})


class TableListSchema(Schema):
    items = fields.List(fields.Nested(TableSchema))
    total = fields.Integer()
    page = fields.Integer()
    per_page = fields.Integer()


# -- institution tiers --------------------------------------------------------------------------------------------


class TierInputSchema(Schema):
    tier = fields.Integer(required=True, strict=True, validate=validate.OneOf((1, 2, 3)))


class TierQuerySchema(Schema):
    node_id = fields.Integer(load_default=None, metadata={"description": "only institutions under this node"})
    page = fields.Integer(load_default=1, validate=validate.Range(min=1))
    per_page = fields.Integer(load_default=200, validate=validate.Range(min=1, max=1000))


class TierSchema(Schema):
    institution_id = fields.Integer()
    institution_name = fields.String()
    tier = fields.Integer()
    tier_label = fields.String()
    explicit = fields.Boolean(metadata={"description": "false: never set, tier 1 applies"})
    set_by = fields.String(allow_none=True)
    set_at = fields.DateTime(allow_none=True)


class TierListSchema(Schema):
    items = fields.List(fields.Nested(TierSchema))
    total = fields.Integer()
    page = fields.Integer()
    per_page = fields.Integer()

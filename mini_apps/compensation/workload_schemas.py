"""The workload API contract (marshmallow): what `/api/compensation/workload/...` accepts and returns.

The feed and manual-entry bodies are documented here but checked item by item in `workload` (every problem named
by its JSON path, exact decimals: the bodies are parsed with `supervision.feed.parse_body`, never as floats).
Quantities leave as strings with 2 places ("12.50"): a JSON float would round them.
"""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from mini_apps.compensation.models import BATCH_SOURCES, BATCH_STATES, PACKAGES

QTY = {"as_string": True, "places": 2}


# -- feed -------------------------------------------------------------------------------------------------------


class WorkloadFeedRecordSchema(Schema):
    id = fields.String(required=True, metadata={"description": "the source system's record id (≤ 64 characters)"})
    fields_ = fields.Dict(data_key="fields", required=True, metadata={"description": "the record's fields"})


class WorkloadFeedItemSchema(Schema):
    institution = fields.Dict(
        required=True, metadata={"description": '{"id": node id} | {"code": 部门编码} | {"dept_id": DingTalk dept id}'}
    )
    doctor = fields.String(metadata={"description": "DingTalk userid of a member of the institution"})
    period = fields.String(required=True, metadata={"description": "YYYY-MM, not in the future"})
    item = fields.String(required=True, metadata={"description": "service item code"})
    quantity = fields.Decimal(
        metadata={"description": "≥ 0, at most 2 places; items without a quality gate only"}, **QTY
    )
    records = fields.List(
        fields.Nested(WorkloadFeedRecordSchema),
        metadata={"description": "one per unit; items with a quality gate only"},
    )


class WorkloadFeedBatchSchema(Schema):
    batch_id = fields.String(required=True, validate=validate.Length(min=1, max=100))
    items = fields.List(fields.Nested(WorkloadFeedItemSchema), required=True, validate=validate.Length(min=1, max=5000))


class WorkloadCorrectionPreviousSchema(Schema):
    quantity_id = fields.Integer()
    batch_id = fields.Integer()
    qty_raw = fields.Decimal(**QTY)
    qty_verified = fields.Decimal(**QTY)


class WorkloadCorrectionSchema(Schema):
    quantity_id = fields.Integer()
    institution_id = fields.Integer()
    member_id = fields.Integer(allow_none=True)
    period = fields.String()
    item = fields.String()
    version = fields.Integer()
    qty_raw = fields.Decimal(**QTY)
    qty_verified = fields.Decimal(**QTY)
    previous = fields.Nested(WorkloadCorrectionPreviousSchema)


class WorkloadBatchResultSchema(Schema):
    id = fields.Integer()
    batch_id = fields.String(allow_none=True)
    source = fields.String(metadata={"description": ", ".join(BATCH_SOURCES)})
    state = fields.String(metadata={"description": ", ".join(BATCH_STATES)})
    received_at = fields.DateTime()
    items = fields.Integer()
    new = fields.Integer()
    corrected = fields.Integer()
    unchanged = fields.Integer()
    excluded = fields.Integer(metadata={"description": "units the quality gates kept out"})
    corrections = fields.List(fields.Nested(WorkloadCorrectionSchema))
    replayed = fields.Boolean()


# -- manual entry ---------------------------------------------------------------------------------------------


class WorkloadManualLineSchema(Schema):
    item = fields.String(required=True)
    quantity = fields.Decimal(required=True, **QTY)
    doctor = fields.String(allow_none=True)


class WorkloadManualInputSchema(Schema):
    institution_id = fields.Integer(required=True)
    period = fields.String(required=True, metadata={"description": "YYYY-MM"})
    lines = fields.List(
        fields.Nested(WorkloadManualLineSchema), required=True, validate=validate.Length(min=1, max=140)
    )
    note = fields.String(allow_none=True, validate=validate.Length(max=500))


class WorkloadManualApprovalSchema(Schema):
    id = fields.Integer()
    state = fields.String()
    result = fields.String(allow_none=True)
    approvers = fields.List(fields.String())


class WorkloadManualSchema(Schema):
    id = fields.Integer()
    institution_id = fields.Integer()
    period = fields.String()
    state = fields.String(metadata={"description": ", ".join(BATCH_STATES)})
    lines = fields.List(fields.Nested(WorkloadManualLineSchema))
    note = fields.String(allow_none=True)
    submitted_by = fields.String()
    submitted_at = fields.DateTime()
    decided_by = fields.String(allow_none=True)
    decided_at = fields.DateTime(allow_none=True)
    reason = fields.String(allow_none=True, metadata={"description": "why it was refused"})
    approval = fields.Nested(WorkloadManualApprovalSchema, allow_none=True)


# -- reads ------------------------------------------------------------------------------------------------------


class WorkloadQuantityQuerySchema(Schema):
    institution_id = fields.Integer()
    period = fields.String(metadata={"description": "YYYY-MM"})
    item = fields.String(metadata={"description": "service item code"})
    doctor = fields.String(metadata={"description": "DingTalk userid"})
    page = fields.Integer(load_default=1, validate=validate.Range(min=1))
    page_size = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))


class WorkloadPageQuerySchema(Schema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1))
    page_size = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))


class WorkloadDoctorSchema(Schema):
    member_id = fields.Integer()
    userid = fields.String(allow_none=True)
    name = fields.String(allow_none=True)


class WorkloadItemRefSchema(Schema):
    id = fields.Integer()
    code = fields.String()
    name = fields.String()
    unit = fields.String()
    package = fields.String(metadata={"description": ", ".join(PACKAGES)})


class WorkloadQuantitySchema(Schema):
    id = fields.Integer()
    institution_id = fields.Integer()
    institution_name = fields.String()
    doctor = fields.Nested(WorkloadDoctorSchema, allow_none=True)
    period = fields.String()
    item = fields.Nested(WorkloadItemRefSchema)
    qty_raw = fields.Decimal(metadata={"description": "as sent"}, **QTY)
    qty_verified = fields.Decimal(metadata={"description": "what passed the quality gate"}, **QTY)
    excluded = fields.Integer(metadata={"description": "excluded units (records)"})
    version = fields.Integer()
    is_current = fields.Boolean()
    supersedes_id = fields.Integer(allow_none=True)
    batch_id = fields.Integer()
    source = fields.String(metadata={"description": ", ".join(BATCH_SOURCES)})
    recorded_at = fields.DateTime()


class WorkloadQuantityListSchema(Schema):
    items = fields.List(fields.Nested(WorkloadQuantitySchema))
    total = fields.Integer()
    page = fields.Integer()
    page_size = fields.Integer()


class WorkloadHistorySchema(Schema):
    items = fields.List(fields.Nested(WorkloadQuantitySchema))


class WorkloadExclusionSchema(Schema):
    id = fields.Integer()
    record_ref = fields.String(allow_none=True)
    units = fields.Decimal(**QTY)
    rule = fields.String()
    reason = fields.String()


class WorkloadExclusionListSchema(Schema):
    quantity_id = fields.Integer()
    items = fields.List(fields.Nested(WorkloadExclusionSchema))
    total = fields.Integer()
    page = fields.Integer()
    page_size = fields.Integer()

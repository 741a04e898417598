"""Manual reports' API contract (marshmallow).

The report body itself is not loaded through a schema: like a feed batch it must report every problem of every
item with its index (`supervision.reports` checks it whole, reusing the feed's item checks). `ReportInputSchema`
documents it.
"""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from supervision.models import SUBMISSION_STATES

NUMBER = {"description": "a JSON number ≥ 0 with at most 4 decimals (not a string, bool, NaN or Infinity)"}


class ReportItemInputSchema(Schema):
    indicator = fields.String(required=True, metadata={"description": "a manual or mixed indicator's code"})
    numerator = fields.Raw(required=True, metadata=NUMBER)
    denominator = fields.Raw(metadata=NUMBER | {"description": "rates; 1 for a qualitative verdict; none for counts"})
    verdict = fields.String(metadata={"description": "qualitative indicators only: the assessor's words"})


class ReportInputSchema(Schema):
    unit_id = fields.Integer(required=True, metadata={"description": "the reporting institution or county bureau"})
    period = fields.String(required=True, metadata={"description": "2026-10, 2026-Q3 or 2026"})
    items = fields.List(fields.Nested(ReportItemInputSchema), required=True, validate=validate.Length(min=1, max=200))
    note = fields.String(validate=validate.Length(max=500))


class ReportQuerySchema(Schema):
    unit_id = fields.Integer(load_default=None)
    state = fields.String(load_default=None, validate=validate.OneOf(SUBMISSION_STATES))
    period = fields.String(load_default=None)
    page = fields.Integer(load_default=1, validate=validate.Range(min=1))
    page_size = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))


class EvidenceFormSchema(Schema):
    indicator = fields.String(required=True, validate=validate.Length(min=1, max=32))


class EvidenceSchema(Schema):
    id = fields.Integer()
    indicator_id = fields.Integer()
    indicator = fields.String(allow_none=True)
    filename = fields.String()
    content_type = fields.String()
    size = fields.Integer()
    sha256 = fields.String()
    uploaded_by = fields.String()
    uploaded_at = fields.DateTime()


class ReportItemSchema(Schema):
    indicator = fields.String()
    name = fields.String(allow_none=True)
    kind = fields.String(allow_none=True)
    numerator = fields.Float(allow_none=True)
    denominator = fields.Float(allow_none=True)
    verdict = fields.String(allow_none=True)
    evidence_required = fields.Boolean()
    evidence_count = fields.Integer()


class ReportUnitSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    level = fields.String()


class ReportApprovalSchema(Schema):
    id = fields.Integer()
    state = fields.String()
    result = fields.String(allow_none=True)
    channel = fields.String()
    approvers = fields.List(fields.String())
    decisions = fields.List(fields.Dict())


class ReportSchema(Schema):
    id = fields.Integer()
    unit = fields.Nested(ReportUnitSchema)
    period = fields.String()
    state = fields.String(metadata={"description": "pending | accepted | refused"})
    state_name = fields.String(allow_none=True)
    submitted_by = fields.String()
    received_at = fields.DateTime()
    decided_at = fields.DateTime(allow_none=True)
    decision_reason = fields.String(allow_none=True)
    items = fields.List(fields.Nested(ReportItemSchema))
    evidence_missing = fields.List(fields.String(), metadata={"description": "qualitative items without evidence"})
    evidence = fields.List(fields.Nested(EvidenceSchema))
    approval = fields.Nested(ReportApprovalSchema, allow_none=True)


class ReportListSchema(Schema):
    items = fields.List(fields.Nested(ReportSchema))
    total = fields.Integer()
    page = fields.Integer()
    page_size = fields.Integer()

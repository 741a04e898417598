"""The 精密智控 API contract (marshmallow): what `/api/precision-control/...` accepts and returns.

Types and lengths are checked here (a bad field is a 422 naming it); the structure of the task template, deadlines,
escalation, index rule and dates is checked as a whole in `service.validate_campaign`, so a PATCH is checked
against the merged campaign. Roster rows are checked one by one in `roster` (a bad row is reported, not a 422).
Persons leave masked, except to the doctors who work their task (`TaskPersonSchema`).
"""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate

from mini_apps.precision_control.models import CAMPAIGN_STATES, PRIORITIES, SOURCES, TASK_STATES


def _not_blank(value: str) -> None:
    if not value.strip():
        raise ValidationError("不能为空")


# -- campaigns --------------------------------------------------------------------------------------------------


class CampaignInputSchema(Schema):
    name = fields.String(required=True, validate=[validate.Length(min=1, max=200), _not_blank])
    owner_node_id = fields.Integer(
        required=True, metadata={"description": "a province/city/county commission or bureau in the caller's scope"}
    )
    population = fields.String(
        required=True, validate=[validate.Length(min=1, max=2000), _not_blank], metadata={"description": "人群定义"}
    )
    categories = fields.List(fields.String(), load_default=list, metadata={"description": "empty: any category"})
    task_template = fields.Dict(
        required=True,
        metadata={
            "description": '{"kind": contact|visit|test|follow_up|vaccination, "fields": [{"code", "label", '
            '"type": choice|number|text|date|bool, "required", "choices"?, "min"?, "max"?, "positive"?}]}'
        },
    )
    deadline_hours = fields.Dict(required=True, metadata={"description": '{"routine": 72, "urgent": 24}'})
    remind_before_hours = fields.Integer(load_default=12, validate=validate.Range(min=0, max=24 * 30))
    escalation_hours = fields.List(
        fields.Raw(), load_default=lambda: [0, 24, 48], metadata={"description": "institution, community, county"}
    )
    repeat_interval_hours = fields.Integer(load_default=24, validate=validate.Range(min=1, max=24 * 30))
    index_rule = fields.Dict(
        required=True,
        metadata={"description": '{"measure": completion_rate|on_time_rate|overdue_share, "thresholds": [4 up]}'},
    )
    starts_on = fields.Date(required=True)
    ends_on = fields.Date(required=True)
    retention_until = fields.Date(required=True, metadata={"description": "personal data removed after this day"})


class CampaignPatchSchema(Schema):
    name = fields.String(validate=[validate.Length(min=1, max=200), _not_blank])
    population = fields.String(validate=[validate.Length(min=1, max=2000), _not_blank])
    categories = fields.List(fields.String())
    task_template = fields.Dict()
    deadline_hours = fields.Dict()
    remind_before_hours = fields.Integer(validate=validate.Range(min=0, max=24 * 30))
    escalation_hours = fields.List(fields.Raw())
    repeat_interval_hours = fields.Integer(validate=validate.Range(min=1, max=24 * 30))
    index_rule = fields.Dict()
    starts_on = fields.Date()
    ends_on = fields.Date()
    retention_until = fields.Date()
    state = fields.String(validate=validate.OneOf(tuple(CAMPAIGN_STATES)))


class CampaignQuerySchema(Schema):
    state = fields.String(load_default=None, validate=validate.OneOf(tuple(CAMPAIGN_STATES)))
    page = fields.Integer(load_default=1, validate=validate.Range(min=1))
    per_page = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))


class CampaignSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    owner_node_id = fields.Integer()
    owner_name = fields.String(allow_none=True)
    population = fields.String()
    categories = fields.List(fields.String())
    task_template = fields.Dict()
    deadline_hours = fields.Dict()
    remind_before_hours = fields.Integer()
    escalation_hours = fields.List(fields.Integer())
    repeat_interval_hours = fields.Integer()
    index_rule = fields.Dict()
    state = fields.String()
    state_label = fields.String()
    starts_on = fields.Date()
    ends_on = fields.Date()
    retention_until = fields.Date()
    anonymised_at = fields.DateTime(allow_none=True)
    created_by = fields.String()
    created_at = fields.DateTime()
    persons = fields.Integer(metadata={"description": "persons on the roster"})
    dispatch = fields.Dict(metadata={"description": "on activation: what dispatch did with the draft's roster"})


class CampaignListSchema(Schema):
    items = fields.List(fields.Nested(CampaignSchema))
    total = fields.Integer()
    page = fields.Integer()
    per_page = fields.Integer()


# -- roster intake ----------------------------------------------------------------------------------------------


class RosterItemSchema(Schema):
    """One pushed person. Only the types are checked here: each item is then checked as a file row is, and a bad
    one is reported in the import, not refused with the whole push."""

    name = fields.String(load_default="")
    id_number = fields.String(load_default="")
    phone = fields.String(load_default=None, allow_none=True)
    address = fields.String(load_default=None, allow_none=True)
    division_code = fields.String(load_default="")
    category = fields.String(load_default=None, allow_none=True)
    source = fields.String(load_default=None, allow_none=True)
    priority = fields.String(load_default=None, allow_none=True)


class RosterPushSchema(Schema):
    items = fields.List(fields.Nested(RosterItemSchema), required=True, validate=validate.Length(min=1, max=5000))


class FamilyDoctorRosterSchema(Schema):
    tag = fields.String(required=True, metadata={"description": "a key-population code or label (高血压 …)"})
    overdue_follow_up = fields.Boolean(load_default=False, metadata={"description": "only overdue follow-ups"})
    category = fields.String(load_default=None, allow_none=True, metadata={"description": "default: the tag's label"})
    priority = fields.String(load_default="routine", validate=validate.OneOf(tuple(PRIORITIES)))


class RosterRejectSchema(Schema):
    row = fields.Integer(metadata={"description": "the file row (header = 1) or the pushed item (first = 1)"})
    field = fields.String(metadata={"description": "the column key: name, id_number, division_code …"})
    message = fields.String()


class RosterImportSchema(Schema):
    id = fields.Integer()
    campaign_id = fields.Integer()
    source = fields.String(validate=validate.OneOf(tuple(SOURCES)))
    filename = fields.String(allow_none=True)
    sha256 = fields.String(allow_none=True)
    rows = fields.Integer()
    added = fields.Integer()
    duplicates = fields.Integer(metadata={"description": "already on the roster, or earlier in the same file"})
    rejected = fields.Integer()
    created_by = fields.String()
    created_at = fields.DateTime()


class RosterImportReportSchema(RosterImportSchema):
    rejects = fields.List(
        fields.Nested(RosterRejectSchema),
        metadata={"description": "bad rows and within-file duplicates, at most 10,000 (no personal data)"},
    )
    dispatch = fields.Dict(metadata={"description": "what dispatch did with the new persons"})


class RosterImportListSchema(Schema):
    items = fields.List(fields.Nested(RosterImportSchema))
    total = fields.Integer()


# -- service areas, dispatch rules, manual dispatch (issue 9, dispatch increment) --------------------------------

DIVISION = validate.Regexp(r"^\d+$", error="须为数字")


class ServiceAreaInputSchema(Schema):
    division_code = fields.String(
        required=True,
        validate=validate.Regexp(r"^(\d{6}|\d{9}|\d{12})$", error="行政区划代码须为6、9或12位数字"),
        metadata={"description": "行政区划代码: 6 digits a county, 9 a township, 12 a village"},
    )
    node_id = fields.Integer(required=True, strict=True, metadata={"description": "the unit that answers for it"})
    team_id = fields.Integer(load_default=None, allow_none=True, strict=True)


class ServiceAreaBulkSchema(Schema):
    items = fields.List(fields.Nested(ServiceAreaInputSchema), required=True, validate=validate.Length(min=1, max=5000))


class ServiceAreaSchema(Schema):
    id = fields.Integer()
    division_code = fields.String()
    node_id = fields.Integer()
    team_id = fields.Integer(allow_none=True)
    set_by = fields.String()
    set_at = fields.DateTime()


class ServiceAreaSetResultSchema(Schema):
    created = fields.Integer()
    updated = fields.Integer()
    items = fields.List(fields.Nested(ServiceAreaSchema))


class ServiceAreaQuerySchema(Schema):
    prefix = fields.String(load_default=None, validate=[validate.Length(max=12), DIVISION])
    node_id = fields.Integer(load_default=None)
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))
    offset = fields.Integer(load_default=0, validate=validate.Range(min=0))


class ServiceAreaListSchema(Schema):
    total = fields.Integer()
    items = fields.List(fields.Nested(ServiceAreaSchema))


class DispatchRuleInputSchema(Schema):
    division_prefix = fields.String(
        required=True,
        validate=validate.Regexp(r"^(\d{2}|\d{4}|\d{6}|\d{9}|\d{12})$", error="区划前缀须为2、4、6、9或12位数字"),
    )
    node_id = fields.Integer(required=True, strict=True)
    team_id = fields.Integer(load_default=None, allow_none=True, strict=True)
    member_id = fields.Integer(load_default=None, allow_none=True, strict=True, metadata={"description": "点名医生"})


class DispatchRuleSchema(Schema):
    id = fields.Integer()
    campaign_id = fields.Integer()
    division_prefix = fields.String()
    node_id = fields.Integer()
    team_id = fields.Integer(allow_none=True)
    member_id = fields.Integer(allow_none=True)
    created_by = fields.String()


class DispatchRuleListSchema(Schema):
    items = fields.List(fields.Nested(DispatchRuleSchema))


class TaskAssignSchema(Schema):
    node_id = fields.Integer(required=True, strict=True, metadata={"description": "an institution or a department"})
    team_id = fields.Integer(load_default=None, allow_none=True, strict=True)
    member_id = fields.Integer(load_default=None, allow_none=True, strict=True)
    reason = fields.String(required=True, validate=[validate.Length(min=1, max=500), _not_blank])


class TaskRefuseSchema(Schema):
    reason = fields.String(required=True, validate=[validate.Length(min=1, max=500), _not_blank])


class ControlTaskSchema(Schema):
    id = fields.Integer()
    campaign_id = fields.Integer()
    person_id = fields.Integer()
    state = fields.String()
    dispatched_by = fields.String(allow_none=True)
    due_at = fields.DateTime(allow_none=True)
    overdue = fields.Boolean()
    assigned_at = fields.DateTime(allow_none=True)
    accepted_at = fields.DateTime(allow_none=True)
    finished_at = fields.DateTime(allow_none=True)
    result = fields.Dict(allow_none=True)
    positive = fields.Boolean(allow_none=True)
    escalation_level = fields.Integer()
    county_id = fields.Integer(allow_none=True)
    institution_id = fields.Integer(allow_none=True)
    team_id = fields.Integer(allow_none=True)
    member_id = fields.Integer(allow_none=True)


class QueuedTaskSchema(ControlTaskSchema):
    name_masked = fields.String(allow_none=True)
    id_masked = fields.String(allow_none=True)
    phone_masked = fields.String(allow_none=True)
    division_code = fields.String()
    category = fields.String()
    priority = fields.String()


class QueueQuerySchema(Schema):
    county_id = fields.Integer(load_default=None)
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))
    offset = fields.Integer(load_default=0, validate=validate.Range(min=0))


class QueueSchema(Schema):
    total = fields.Integer()
    items = fields.List(fields.Nested(QueuedTaskSchema))


# -- the doctors' tasks -------------------------------------------------------------------------------------------

TASK_FILTERS = (*TASK_STATES, "open", "finished")


class TaskQuerySchema(Schema):
    campaign_id = fields.Integer(load_default=None)
    state = fields.String(load_default=None, validate=validate.OneOf(TASK_FILTERS))
    due = fields.String(load_default=None, validate=validate.OneOf(("overdue", "soon")))
    mine = fields.Boolean(load_default=False, metadata={"description": "only tasks the caller works"})
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))
    offset = fields.Integer(load_default=0, validate=validate.Range(min=0))


class TaskListItemSchema(QueuedTaskSchema):
    campaign_name = fields.String()
    member_name = fields.String(allow_none=True)
    source_note = fields.String(allow_none=True)


class TaskListSchema(Schema):
    total = fields.Integer()
    counts = fields.Dict(
        keys=fields.String(), values=fields.Integer(), metadata={"description": "by state, overdue, soon"}
    )
    items = fields.List(fields.Nested(TaskListItemSchema))


class TaskPersonSchema(Schema):
    name_masked = fields.String(allow_none=True)
    id_masked = fields.String(allow_none=True)
    phone_masked = fields.String(allow_none=True)
    division_code = fields.String()
    category = fields.String()
    priority = fields.String()
    source_note = fields.String(allow_none=True)
    # In the clear only for those who work the task:
    name = fields.String(allow_none=True)
    id_number = fields.String(allow_none=True)
    phone = fields.String(allow_none=True)
    address = fields.String(allow_none=True)


class TaskEventSchema(Schema):
    action = fields.String()
    from_state = fields.String(allow_none=True)
    to_state = fields.String()
    actor = fields.String()
    actor_name = fields.String(allow_none=True)
    reason = fields.String(allow_none=True)
    at = fields.DateTime()


class TaskDetailSchema(ControlTaskSchema):
    campaign_name = fields.String()
    campaign_state = fields.String()
    task_template = fields.Dict()
    member_name = fields.String(allow_none=True)
    may_work = fields.Boolean()
    may_close = fields.Boolean()
    person = fields.Nested(TaskPersonSchema)
    events = fields.List(fields.Nested(TaskEventSchema))


class TaskCompleteSchema(Schema):
    result = fields.Dict(required=True, metadata={"description": "the campaign template's fields by code"})
    note = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=500))


class TaskUnreachableSchema(Schema):
    reason = fields.String(required=True, validate=[validate.Length(min=1, max=500), _not_blank])
    attempts = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=20))


class TaskTransferSchema(Schema):
    reason = fields.String(required=True, validate=[validate.Length(min=1, max=500), _not_blank])
    destination = fields.String(required=True, validate=[validate.Length(min=1, max=200), _not_blank])


class TaskCloseSchema(Schema):
    reason = fields.String(required=True, validate=[validate.Length(min=1, max=500), _not_blank])

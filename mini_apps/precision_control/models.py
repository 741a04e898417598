"""精密智控: targeted-population control (reference/domain.md §3) — a campaign's roster of persons, dispatched to the
institution, family-doctor team or doctor responsible for where each lives, as tasks closed in time.

- `Campaign`: created by a commission or bureau for its subtree; what must be done (task template with its result
  fields), deadlines per priority, escalation, the index rule and its colour thresholds, and when its personal data
  must go (`retention_until`).
- `ServiceArea`: which unit answers for an administrative division (行政区划代码, 6 digits a county, 9 a township,
  12 a village): the standing map dispatch walks, longest code first. `DispatchRule`s of a campaign override it.
- `RosterImport` and `CampaignPerson`: each upload or API push and the persons it brought, deduplicated within the
  campaign by a keyed hash of the ID number; ID number, name, phone and address stored encrypted with masked copies
  for lists (as residents are), removed at the end of retention (`anonymised_at`), when only the aggregate stays.
- `ControlTask` and `ControlTaskEvent`: one task per person (re-assignment moves it, the history keeps every step),
  its state, due time, result and escalation level.
- `ControlNotice`: every grouped message sent (reminders, overdue escalations, the daily index), one per recipient
  chat or person per run — what repeat intervals are measured from.
- `ControlIndexDay`: the index figures of each node of a campaign's tree as they stood at the end of each day (the
  trends); today's figures are computed from the tasks.
"""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.dialects import postgresql

from workbench.db import Model, UTCDateTime, utcnow

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

CAMPAIGN_STATES = {"draft": "草稿", "active": "进行中", "ended": "已结束"}
TASK_KINDS = {"contact": "联系", "visit": "上门", "test": "检测", "follow_up": "随访", "vaccination": "接种"}
PRIORITIES = {"routine": "普通", "urgent": "紧急"}
SOURCES = {"upload": "文件上传", "api": "接口推送", "family_doctor": "家庭医生签约数据"}
TASK_STATES = {
    "queued": "待分派",  # unmatched: in the county's queue for manual assignment
    "assigned": "已分派",
    "accepted": "已接收",
    "in_progress": "处理中",
    "completed": "已完成",
    "unreachable": "无法联系",
    "transferred": "已转出",
    "closed": "已关闭",
}
OPEN_STATES = ("queued", "assigned", "accepted", "in_progress")  # not finished (queued: nobody assigned yet)
WORKING_STATES = ("assigned", "accepted", "in_progress")  # someone has it to do
FINISHED_STATES = ("completed", "unreachable", "transferred", "closed")
COLOURS = ("red", "orange", "yellow", "blue", "green")  # 五色图, worst first


class Campaign(Model):
    __tablename__ = "control_campaigns"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    name: orm.Mapped[str] = orm.mapped_column(sa.String(200))
    owner_node_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("org_nodes.id"), index=True)  # its subtree
    population: orm.Mapped[str] = orm.mapped_column(sa.Text)  # who is on the roster, in words (人群定义)
    categories: orm.Mapped[list] = orm.mapped_column(JSON, default=list)  # allowed roster categories (empty: any)
    # {"kind": "follow_up", "fields": [{"code", "label", "type": "choice|number|text|date|bool", "required",
    #   "choices"?, "min"?, "max"?, "positive"?: value meaning a positive finding}]}
    task_template: orm.Mapped[dict] = orm.mapped_column(JSON)
    deadline_hours: orm.Mapped[dict] = orm.mapped_column(JSON)  # {"routine": 72, "urgent": 24}
    remind_before_hours: orm.Mapped[int] = orm.mapped_column(default=12)
    # Overdue escalation: hours overdue before each level is told — institution, medical community, county.
    escalation_hours: orm.Mapped[list] = orm.mapped_column(JSON, default=lambda: [0, 24, 48])
    repeat_interval_hours: orm.Mapped[int] = orm.mapped_column(default=24)
    # {"measure": "completion_rate|on_time_rate|overdue_share", "thresholds": [red<, orange<, yellow<, blue<]}
    index_rule: orm.Mapped[dict] = orm.mapped_column(JSON)
    state: orm.Mapped[str] = orm.mapped_column(sa.String(8), default="draft")
    starts_on: orm.Mapped[date] = orm.mapped_column(sa.Date)
    ends_on: orm.Mapped[date] = orm.mapped_column(sa.Date)
    retention_until: orm.Mapped[date] = orm.mapped_column(sa.Date)
    anonymised_at: orm.Mapped[datetime | None] = orm.mapped_column(UTCDateTime())
    created_by: orm.Mapped[str] = orm.mapped_column(sa.String(140))
    created_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow)


class ServiceArea(Model):
    """The unit (a county bureau, an institution, a family-doctor team's institution) that answers for a division."""

    __tablename__ = "control_service_areas"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    division_code: orm.Mapped[str] = orm.mapped_column(sa.String(12), unique=True)
    node_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("org_nodes.id"), index=True)
    team_id: orm.Mapped[int | None] = orm.mapped_column(sa.ForeignKey("family_doctor_teams.id"))
    set_by: orm.Mapped[str] = orm.mapped_column(sa.String(140))
    set_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class DispatchRule(Model):
    """A campaign's own routing for a division prefix (to a unit, a team or a named doctor), before the areas."""

    __tablename__ = "control_dispatch_rules"
    __table_args__ = (sa.UniqueConstraint("campaign_id", "division_prefix"),)

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    campaign_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("control_campaigns.id"))
    division_prefix: orm.Mapped[str] = orm.mapped_column(sa.String(12))
    node_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("org_nodes.id"))
    team_id: orm.Mapped[int | None] = orm.mapped_column(sa.ForeignKey("family_doctor_teams.id"))
    member_id: orm.Mapped[int | None] = orm.mapped_column(sa.ForeignKey("org_members.id"))
    created_by: orm.Mapped[str] = orm.mapped_column(sa.String(140))


class RosterImport(Model):
    """One upload, API push or platform-built roster, with its per-row report."""

    __tablename__ = "control_roster_imports"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    campaign_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("control_campaigns.id"), index=True)
    source: orm.Mapped[str] = orm.mapped_column(sa.String(16))  # SOURCES
    filename: orm.Mapped[str | None] = orm.mapped_column(sa.String(200))
    sha256: orm.Mapped[str | None] = orm.mapped_column(sa.String(64))
    rows: orm.Mapped[int] = orm.mapped_column(default=0)
    added: orm.Mapped[int] = orm.mapped_column(default=0)
    duplicates: orm.Mapped[int] = orm.mapped_column(default=0)  # already on the roster (or twice in the file)
    rejected: orm.Mapped[int] = orm.mapped_column(default=0)
    rejects: orm.Mapped[list] = orm.mapped_column(JSON, default=list)  # [{"row", "field", "message"}], no PI
    created_by: orm.Mapped[str] = orm.mapped_column(sa.String(140))
    created_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow)


class CampaignPerson(Model):
    __tablename__ = "control_persons"
    __table_args__ = (sa.UniqueConstraint("campaign_id", "id_hash"),)

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    campaign_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("control_campaigns.id"))
    import_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("control_roster_imports.id"), index=True)
    # Identifying data: encrypted (workbench.privacy), nulled at the end of retention.
    id_hash: orm.Mapped[str] = orm.mapped_column(sa.String(64))
    id_cipher: orm.Mapped[str | None] = orm.mapped_column(sa.String(200))
    name_cipher: orm.Mapped[str | None] = orm.mapped_column(sa.String(200))
    phone_cipher: orm.Mapped[str | None] = orm.mapped_column(sa.String(200))
    address_cipher: orm.Mapped[str | None] = orm.mapped_column(sa.String(600))
    # Masked copies for lists; also cleared at the end of retention (a masked name and a birth year still narrow
    # a person down in a village).
    name_masked: orm.Mapped[str | None] = orm.mapped_column(sa.String(50))
    id_masked: orm.Mapped[str | None] = orm.mapped_column(sa.String(24))
    phone_masked: orm.Mapped[str | None] = orm.mapped_column(sa.String(24))
    # What the aggregate figures need stays: where (division), what (category), how urgent.
    division_code: orm.Mapped[str] = orm.mapped_column(sa.String(12), index=True)
    category: orm.Mapped[str] = orm.mapped_column(sa.String(40))
    priority: orm.Mapped[str] = orm.mapped_column(sa.String(8), default="routine")  # PRIORITIES
    source_note: orm.Mapped[str | None] = orm.mapped_column(sa.String(100))  # 来源: 发热门诊, 协查 …
    resident_id: orm.Mapped[int | None] = orm.mapped_column(sa.ForeignKey("family_doctor_residents.id"))
    created_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow)


class ControlTask(Model):
    __tablename__ = "control_tasks"
    __table_args__ = (
        sa.Index("ix_control_tasks_campaign_state", "campaign_id", "state"),
        sa.Index("ix_control_tasks_institution_state", "institution_id", "state"),
        sa.Index("ix_control_tasks_state_due", "state", "due_at"),  # reminders and escalation scan open tasks by due
    )

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    # No foreign keys on campaign_id, county_id and institution_id (migration 0021): the campaign is the person's
    # (dispatch copies it from the person's row, whose own key holds), and the nodes come from org_nodes rows,
    # which are never deleted, only marked `deleted_at`, so those checks could not fail; they were half of the
    # foreign-key cost of dispatching a roster (bench/precision_control.py).
    campaign_id: orm.Mapped[int] = orm.mapped_column()
    person_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("control_persons.id"), unique=True)
    state: orm.Mapped[str] = orm.mapped_column(sa.String(12), default="queued")  # TASK_STATES
    county_id: orm.Mapped[int | None] = orm.mapped_column(index=True)
    institution_id: orm.Mapped[int | None] = orm.mapped_column()
    team_id: orm.Mapped[int | None] = orm.mapped_column(sa.ForeignKey("family_doctor_teams.id"), index=True)
    member_id: orm.Mapped[int | None] = orm.mapped_column(sa.ForeignKey("org_members.id"), index=True)
    dispatched_by: orm.Mapped[str | None] = orm.mapped_column(sa.String(24))  # rule | area | family_doctor | manual
    due_at: orm.Mapped[datetime | None] = orm.mapped_column(UTCDateTime())
    assigned_at: orm.Mapped[datetime | None] = orm.mapped_column(UTCDateTime())
    accepted_at: orm.Mapped[datetime | None] = orm.mapped_column(UTCDateTime())
    finished_at: orm.Mapped[datetime | None] = orm.mapped_column(UTCDateTime())
    result: orm.Mapped[dict | None] = orm.mapped_column(JSON)
    positive: orm.Mapped[bool | None] = orm.mapped_column()
    reminded_at: orm.Mapped[datetime | None] = orm.mapped_column(UTCDateTime())
    escalation_level: orm.Mapped[int] = orm.mapped_column(default=0)  # 0 none, 1 institution, 2 community, 3 county
    escalated_at: orm.Mapped[datetime | None] = orm.mapped_column(UTCDateTime())
    updated_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class ControlTaskEvent(Model):
    """Every step of a task: dispatch, accept, refuse with a reason, re-assign, result, escalation."""

    __tablename__ = "control_task_events"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    # No foreign key (migration 0021): every event is inserted for a task row just read or selected (dispatch,
    # manual steps, escalation), and tasks are never deleted — retention anonymises them in place — so an event
    # cannot be orphaned; the check was 40% of the events' insert at dispatch.
    task_id: orm.Mapped[int] = orm.mapped_column(index=True)
    action: orm.Mapped[str] = orm.mapped_column(sa.String(24))
    from_state: orm.Mapped[str | None] = orm.mapped_column(sa.String(12))
    to_state: orm.Mapped[str] = orm.mapped_column(sa.String(12))
    actor: orm.Mapped[str] = orm.mapped_column(sa.String(140))
    reason: orm.Mapped[str | None] = orm.mapped_column(sa.String(500))
    detail: orm.Mapped[dict] = orm.mapped_column(JSON, default=dict)  # where it went (node, team, member)
    at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow)


NOTICE_KINDS = {"reminder": "到期提醒", "escalation": "逾期督办", "daily_index": "每日指数"}


class ControlNotice(Model):
    """One grouped message: to a chat (`conversation_id`) or a person (`userid`), about `task_count` tasks."""

    __tablename__ = "control_notices"
    __table_args__ = (sa.Index("ix_control_notices_lookup", "campaign_id", "kind", "node_id", "level"),)

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    campaign_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("control_campaigns.id"))
    kind: orm.Mapped[str] = orm.mapped_column(sa.String(12))  # NOTICE_KINDS
    node_id: orm.Mapped[int | None] = orm.mapped_column(sa.ForeignKey("org_nodes.id"))  # whose level was told
    level: orm.Mapped[int] = orm.mapped_column(default=0)  # escalation level (1 institution, 2 community, 3 county)
    conversation_id: orm.Mapped[str | None] = orm.mapped_column(sa.String(128))
    userid: orm.Mapped[str | None] = orm.mapped_column(sa.String(64))
    task_count: orm.Mapped[int] = orm.mapped_column(default=0)
    day: orm.Mapped[date | None] = orm.mapped_column(sa.Date)  # the daily index's day (China time)
    message_key: orm.Mapped[str] = orm.mapped_column(sa.String(160), unique=True)  # the outbox idempotency key
    sent_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow)


class ControlIndexDay(Model):
    """A node's index figures for a campaign at the end of a day (China time). No foreign key to the tasks: these
    outlive the persons (retention) by design."""

    __tablename__ = "control_index_days"
    __table_args__ = (sa.UniqueConstraint("campaign_id", "node_id", "day"),)

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    campaign_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("control_campaigns.id"))
    node_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("org_nodes.id"), index=True)
    day: orm.Mapped[date] = orm.mapped_column(sa.Date)
    tasks: orm.Mapped[int] = orm.mapped_column(default=0)  # dispatched to the subtree (queued ones count at county)
    finished: orm.Mapped[int] = orm.mapped_column(default=0)  # completed, unreachable, transferred or closed
    completed: orm.Mapped[int] = orm.mapped_column(default=0)
    excluded: orm.Mapped[int] = orm.mapped_column(default=0)  # closed or transferred: out of completion's denominator
    on_time: orm.Mapped[int] = orm.mapped_column(default=0)  # finished by their due time
    overdue: orm.Mapped[int] = orm.mapped_column(default=0)  # open past their due time
    positive: orm.Mapped[int] = orm.mapped_column(default=0)
    colour: orm.Mapped[str | None] = orm.mapped_column(sa.String(8))  # COLOURS

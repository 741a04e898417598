"""Campaigns of 精密智控 (reference/domain.md §3.2): created by a commission or bureau for its subtree, validated as
a whole (task template, deadlines, escalation, index rule, dates), listed and read within scope, moved
draft → active → ended. Every write and every read of one campaign is audited.

Who may do what:
- create, edit, change state, take in a roster: an `admin` whose subtree holds the campaign's owner node (the
  owner is a province, city or county commission/bureau node);
- read: anyone with a role whose subtree holds the owner node, or lies beneath it (a county's admins and doctors
  see the province's campaigns that reach them).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from mini_apps.precision_control import cards, dispatch
from mini_apps.precision_control.models import (
    CAMPAIGN_STATES,
    PRIORITIES,
    TASK_KINDS,
    Campaign,
    CampaignPerson,
    ControlTask,
    RosterImport,
)
from org_sync.models import OrgNode, path_ids
from workbench import audit, db
from workbench.auth.principal import ADMINISTRATIVE_LEVELS, Principal
from workbench.db import utcnow
from workbench.errors import ApiError

log = logging.getLogger(__name__)

FIELD_TYPES = ("choice", "number", "text", "date", "bool")
MEASURES = ("completion_rate", "on_time_rate", "overdue_share")
FIELD_CODE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
MAX_FIELDS = 30
DISPATCH_ID_LIMIT = 10_000
# Allowed state moves; anything else is a 409 naming the allowed ones.
TRANSITIONS = {"draft": ("active",), "active": ("ended",), "ended": ()}
# Fields that may still change once a campaign runs (what the roster and its tasks were built on may not).
ACTIVE_EDITABLE = {
    "name",
    "population",
    "deadline_hours",
    "remind_before_hours",
    "escalation_hours",
    "repeat_interval_hours",
    "index_rule",
    "ends_on",
    "retention_until",
}
EDITABLE = ACTIVE_EDITABLE | {"categories", "task_template", "starts_on"}


def _invalid(field: str, message: str) -> ApiError:
    return ApiError("validation_error", message, status=422, field=field)


# -- validation (plain functions: the route, the PATCH merge and tests share them) ------------------------------


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def validate_template(template: Any) -> dict[str, Any]:
    """The task template, normalised: `{"kind", "fields": [...]}`; a 422 naming the first bad field otherwise."""
    if not isinstance(template, Mapping):
        raise _invalid("task_template", "任务模板格式不正确")
    kind = template.get("kind")
    if kind not in TASK_KINDS:
        raise _invalid("task_template.kind", f"任务类型须为：{'、'.join(TASK_KINDS)}")
    raw_fields = template.get("fields", [])
    if not isinstance(raw_fields, list):
        raise _invalid("task_template.fields", "结果字段须为列表")
    if len(raw_fields) > MAX_FIELDS:
        raise _invalid("task_template.fields", f"结果字段最多 {MAX_FIELDS} 个")
    seen: set[str] = set()
    out = []
    for i, spec in enumerate(raw_fields):
        where = f"task_template.fields.{i}"
        if not isinstance(spec, Mapping):
            raise _invalid(where, "结果字段格式不正确")
        code = spec.get("code")
        if not isinstance(code, str) or not FIELD_CODE.match(code):
            raise _invalid(f"{where}.code", "字段代码须以小写字母开头，仅含小写字母、数字和下划线，最多40个字符")
        if code in seen:
            raise _invalid(f"{where}.code", f"字段代码“{code}”重复")
        seen.add(code)
        label = spec.get("label")
        if not isinstance(label, str) or not label.strip() or len(label) > 50:
            raise _invalid(f"{where}.label", "字段名称不能为空，最多50个字")
        kind_ = spec.get("type")
        if kind_ not in FIELD_TYPES:
            raise _invalid(f"{where}.type", f"字段类型须为：{'、'.join(FIELD_TYPES)}")
        required = spec.get("required", False)
        if not isinstance(required, bool):
            raise _invalid(f"{where}.required", "是否必填须为 true 或 false")
        field = {"code": code, "label": label.strip(), "type": kind_, "required": required}
        if kind_ == "choice":
            choices = spec.get("choices")
            if (
                not isinstance(choices, list)
                or not choices
                or not all(isinstance(c, str) and c.strip() and len(c) <= 50 for c in choices)
                or len(set(choices)) != len(choices)
            ):
                raise _invalid(f"{where}.choices", "选择型字段须给出不重复、非空的选项")
            field["choices"] = list(choices)
        elif "choices" in spec and spec["choices"] is not None:
            raise _invalid(f"{where}.choices", "只有选择型字段可以设置选项")
        for bound in ("min", "max"):
            if spec.get(bound) is None:
                continue
            if kind_ != "number":
                raise _invalid(f"{where}.{bound}", "只有数值型字段可以设置上下限")
            if not _number(spec[bound]):
                raise _invalid(f"{where}.{bound}", "上下限须为数值")
            field[bound] = spec[bound]
        if "min" in field and "max" in field and field["min"] > field["max"]:
            raise _invalid(f"{where}.max", "上限不能小于下限")
        if spec.get("positive") is not None:
            field["positive"] = _positive(spec["positive"], field, f"{where}.positive")
        out.append(field)
    return {"kind": kind, "fields": out}


def _positive(value: Any, field: Mapping[str, Any], where: str) -> Any:
    """The value meaning a positive finding: one choice (or several), a bool, or a number (at or above it)."""
    kind = field["type"]
    if kind == "choice":
        values = value if isinstance(value, list) else [value]
        if not values or any(v not in field["choices"] for v in values):
            raise _invalid(where, "阳性取值须为该字段的选项之一")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise _invalid(where, "是/否字段的阳性取值须为 true 或 false")
        return value
    if kind == "number":
        if not _number(value):
            raise _invalid(where, "数值字段的阳性取值须为数值（大于等于该值为阳性）")
        return value
    raise _invalid(where, "文本和日期字段不能设置阳性取值")


def validate_deadlines(hours: Any) -> dict[str, int]:
    if not isinstance(hours, Mapping) or set(hours) != set(PRIORITIES):
        raise _invalid("deadline_hours", f"须为每个优先级（{'、'.join(PRIORITIES)}）给出完成时限（小时）")
    for priority in PRIORITIES:
        value = hours[priority]
        if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= 24 * 365:
            raise _invalid(f"deadline_hours.{priority}", "完成时限须为大于0的整数小时")
    return {priority: hours[priority] for priority in PRIORITIES}


def validate_escalation(hours: Any) -> list[int]:
    """Three levels (institution, medical community, county), hours overdue, strictly increasing from 0 up."""
    if not isinstance(hours, list) or len(hours) != 3:
        raise _invalid("escalation_hours", "逐级上报须给出3个时间（机构、医共体、县），单位小时")
    previous = -1
    for i, value in enumerate(hours):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise _invalid(f"escalation_hours.{i}", "逐级上报时间须为不小于0的整数小时")
        if value <= previous:
            raise _invalid(f"escalation_hours.{i}", "逐级上报时间须逐级递增")
        previous = value
    return list(hours)


def validate_index_rule(rule: Any) -> dict[str, Any]:
    if not isinstance(rule, Mapping):
        raise _invalid("index_rule", "指数规则格式不正确")
    if rule.get("measure") not in MEASURES:
        raise _invalid("index_rule.measure", f"指数口径须为：{'、'.join(MEASURES)}")
    thresholds = rule.get("thresholds")
    if not isinstance(thresholds, list) or len(thresholds) != 4:
        raise _invalid("index_rule.thresholds", "须给出4个阈值（红、橙、黄、蓝的分界）")
    previous = -1.0
    for i, value in enumerate(thresholds):
        if not _number(value) or not 0 <= value <= 100:
            raise _invalid(f"index_rule.thresholds.{i}", "阈值须为0到100之间的数值")
        if value <= previous:
            raise _invalid(f"index_rule.thresholds.{i}", "阈值须逐个递增")
        previous = value
    return {"measure": rule["measure"], "thresholds": list(thresholds)}


def validate_categories(categories: Any) -> list[str]:
    if not isinstance(categories, list) or not all(isinstance(c, str) and c.strip() for c in categories):
        raise _invalid("categories", "人员类别须为非空文字的列表")
    if any(len(c.strip()) > 40 for c in categories):
        raise _invalid("categories", "人员类别最多40个字")
    cleaned = [c.strip() for c in categories]
    if len(set(cleaned)) != len(cleaned):
        raise _invalid("categories", "人员类别重复")
    return cleaned


def validate_dates(starts_on: date, ends_on: date, retention_until: date) -> None:
    if ends_on < starts_on:
        raise _invalid("ends_on", "结束日期不能早于开始日期")
    if retention_until < ends_on:
        raise _invalid("retention_until", "个人信息保留期限不能早于结束日期")


def validate_campaign(data: Mapping[str, Any]) -> dict[str, Any]:
    """The structured parts of a campaign checked and normalised (the marshmallow schema did the types)."""
    out = dict(data)
    out["task_template"] = validate_template(data["task_template"])
    out["deadline_hours"] = validate_deadlines(data["deadline_hours"])
    out["escalation_hours"] = validate_escalation(data["escalation_hours"])
    out["index_rule"] = validate_index_rule(data["index_rule"])
    out["categories"] = validate_categories(data.get("categories") or [])
    validate_dates(data["starts_on"], data["ends_on"], data["retention_until"])
    return out


# -- scope ------------------------------------------------------------------------------------------------------


def _not_found(campaign_id: Any) -> ApiError:
    return ApiError("not_found", f"专项任务 {campaign_id} 不存在", status=404)


def _ancestor_ids(paths: tuple[str, ...]) -> set[int]:
    """Every node on the way down to the roots of the caller's subtrees (materialised paths "/1/5/9/")."""
    return {node_id for path in paths for node_id in path_ids(path)}


def visible_clause(principal: Principal) -> sa.ColumnElement[bool]:
    """Campaigns the principal may read: owned inside its subtrees, or above them (reaching down to them)."""
    scope = principal.scope()
    if scope.everything:
        return sa.true()
    ancestors = _ancestor_ids(scope.paths)
    inside = scope.nodes(Campaign.owner_node_id)
    return sa.or_(inside, Campaign.owner_node_id.in_(ancestors)) if ancestors else inside


def visible_campaign(principal: Principal, session: orm.Session, campaign_id: int) -> Campaign:
    """The campaign if the principal may read it; the same 404 as a campaign that does not exist otherwise."""
    campaign = session.scalar(sa.select(Campaign).where(Campaign.id == campaign_id, visible_clause(principal)))
    if campaign is None:
        raise _not_found(campaign_id)
    return campaign


def managed_campaign(principal: Principal, session: orm.Session, campaign_id: int) -> tuple[Campaign, OrgNode]:
    """The campaign and its owner node if the principal administers the owner's subtree: 404 if it may not even
    read it, 403 if it only reads it."""
    campaign = visible_campaign(principal, session, campaign_id)
    owner = session.get(OrgNode, campaign.owner_node_id)
    if owner is None or not principal.scope("admin").covers_path(owner.path):
        raise ApiError("forbidden", "只有该专项任务所属单位的管理员可以操作", status=403)
    return campaign, owner


def _owner_node(principal: Principal, session: orm.Session, node_id: int) -> OrgNode:
    node = session.get(OrgNode, node_id)
    if node is None or node.deleted_at is not None or not principal.scope("admin").covers_path(node.path):
        raise ApiError("not_found", "组织节点不存在或不在您的管理范围内", status=404, field="owner_node_id")
    if node.level not in ADMINISTRATIVE_LEVELS:
        raise _invalid("owner_node_id", "专项任务须由省、市卫健委或县卫健局创建")
    return node


# -- views ------------------------------------------------------------------------------------------------------


def campaign_view(campaign: Campaign, owner_name: str | None = None) -> dict[str, Any]:
    return {
        "id": campaign.id,
        "name": campaign.name,
        "owner_node_id": campaign.owner_node_id,
        "owner_name": owner_name,
        "population": campaign.population,
        "categories": campaign.categories or [],
        "task_template": campaign.task_template,
        "deadline_hours": campaign.deadline_hours,
        "remind_before_hours": campaign.remind_before_hours,
        "escalation_hours": campaign.escalation_hours,
        "repeat_interval_hours": campaign.repeat_interval_hours,
        "index_rule": campaign.index_rule,
        "state": campaign.state,
        "state_label": CAMPAIGN_STATES[campaign.state],
        "starts_on": campaign.starts_on,
        "ends_on": campaign.ends_on,
        "retention_until": campaign.retention_until,
        "anonymised_at": campaign.anonymised_at,
        "created_by": campaign.created_by,
        "created_at": campaign.created_at,
    }


def _counts(session: orm.Session, campaign_ids: list[int]) -> dict[int, int]:
    if not campaign_ids:
        return {}
    rows = session.execute(
        sa.select(CampaignPerson.campaign_id, sa.func.count())
        .where(CampaignPerson.campaign_id.in_(campaign_ids))
        .group_by(CampaignPerson.campaign_id)
    )
    return dict(rows.all())


# -- operations -------------------------------------------------------------------------------------------------


def create_campaign(
    principal: Principal, data: Mapping[str, Any], session: orm.Session | None = None
) -> dict[str, Any]:
    """A draft campaign owned by a commission/bureau node in the caller's admin scope."""
    session = session or db.session()
    owner = _owner_node(principal, session, data["owner_node_id"])
    values = validate_campaign(data)
    campaign = Campaign(
        name=values["name"].strip(),
        owner_node_id=owner.id,
        population=values["population"].strip(),
        categories=values["categories"],
        task_template=values["task_template"],
        deadline_hours=values["deadline_hours"],
        remind_before_hours=values.get("remind_before_hours", 12),
        escalation_hours=values["escalation_hours"],
        repeat_interval_hours=values.get("repeat_interval_hours", 24),
        index_rule=values["index_rule"],
        state="draft",
        starts_on=values["starts_on"],
        ends_on=values["ends_on"],
        retention_until=values["retention_until"],
        created_by=principal.actor,
    )
    session.add(campaign)
    session.flush()
    audit.record(
        principal,
        "control.campaign.create",
        resource_type="control_campaign",
        resource_id=campaign.id,
        node_id=owner.id,
        detail={"name": campaign.name},
        session=session,
    )
    session.commit()
    return {**campaign_view(campaign, owner.name), "persons": 0}


def list_campaigns(
    principal: Principal, filters: Mapping[str, Any], session: orm.Session | None = None
) -> dict[str, Any]:
    """Campaigns the caller may read, newest first, paged, with roster sizes."""
    session = session or db.session()
    stmt = (
        sa.select(Campaign, OrgNode.name)
        .join(OrgNode, OrgNode.id == Campaign.owner_node_id)
        .where(visible_clause(principal))
    )
    if filters.get("state"):
        stmt = stmt.where(Campaign.state == filters["state"])
    page, per_page = filters.get("page", 1), filters.get("per_page", 50)
    rows, total = db.paginate(stmt.order_by(Campaign.id.desc()), page, per_page, rows=True, db_session=session)
    counts = _counts(session, [campaign.id for campaign, _ in rows])
    items = [{**campaign_view(c, name), "persons": counts.get(c.id, 0)} for c, name in rows]
    return {"items": items, "total": total, "page": page, "per_page": per_page}


def get_campaign(principal: Principal, campaign_id: int, session: orm.Session | None = None) -> dict[str, Any]:
    session = session or db.session()
    campaign = visible_campaign(principal, session, campaign_id)
    owner = session.get(OrgNode, campaign.owner_node_id)
    audit.record(
        principal,
        "control.campaign.read",
        resource_type="control_campaign",
        resource_id=campaign.id,
        node_id=campaign.owner_node_id,
        session=session,
    )
    session.commit()
    return {
        **campaign_view(campaign, owner.name if owner else None),
        "persons": _counts(session, [campaign.id]).get(campaign.id, 0),
    }


def update_campaign(
    principal: Principal, campaign_id: int, data: Mapping[str, Any], session: orm.Session | None = None
) -> dict[str, Any]:
    """Edit (a draft: everything; an active campaign: its deadlines, escalation, index, end and retention) and/or
    move its state. Activating dispatches the roster taken in while it was a draft."""
    session = session or db.session()
    campaign, owner = managed_campaign(principal, session, campaign_id)
    changes = {key: value for key, value in data.items() if key in EDITABLE}
    target = data.get("state")
    if campaign.state == "ended" and (changes or target not in (None, "ended")):
        raise ApiError("conflict", "专项任务已结束，不能再修改", status=409, field="state")
    if campaign.state == "active" and (locked := sorted(set(changes) - ACTIVE_EDITABLE)):
        raise ApiError("conflict", "专项任务进行中，不能修改该项", status=409, field=locked[0])
    if target is not None and target != campaign.state and target not in TRANSITIONS[campaign.state]:
        allowed = "、".join(CAMPAIGN_STATES[s] for s in TRANSITIONS[campaign.state]) or "无"
        raise ApiError(
            "conflict",
            f"专项任务不能从“{CAMPAIGN_STATES[campaign.state]}”改为“{CAMPAIGN_STATES[target]}”（可改为：{allowed}）",
            status=409,
            field="state",
        )
    merged = {key: getattr(campaign, key) for key in EDITABLE} | changes
    values = validate_campaign(merged)
    for key in changes:
        value = values[key]
        setattr(campaign, key, value.strip() if isinstance(value, str) else value)
    activated = target == "active" and campaign.state == "draft"
    if target is not None:
        campaign.state = target
    audit.record(
        principal,
        "control.campaign.update",
        resource_type="control_campaign",
        resource_id=campaign.id,
        node_id=campaign.owner_node_id,
        detail={"fields": sorted(changes), "state": campaign.state},
        session=session,
    )
    session.commit()
    result = {}
    if activated:
        result = dispatch_new(session, campaign, None)
    view = {**campaign_view(campaign, owner.name), "persons": _counts(session, [campaign.id]).get(campaign.id, 0)}
    if result:
        view["dispatch"] = result
    return view


def dispatch_new(session: orm.Session, campaign: Campaign, person_ids: list[int] | None) -> dict[str, Any]:
    """Hand persons to the dispatch engine (`dispatch.dispatch_persons`), committed.
    Only an active campaign dispatches: a draft's roster waits for activation. A failing dispatch does not undo
    the roster already committed; the persons stay undispatched and the next activation or import picks them up
    (the engine creates tasks only for persons without one)."""
    if campaign.state != "active" or person_ids == []:
        return {}
    # A big import is dispatched as "every person without a task" (the engine's anti-join) instead of a huge IN
    # list; that also picks up persons a failed earlier dispatch left behind.
    if person_ids is not None and len(person_ids) > DISPATCH_ID_LIMIT:
        person_ids = None
    now = utcnow()
    try:
        result = dispatch.dispatch_persons(session, campaign, person_ids, now=now)
        if result["created"] > dispatch.ANALYZE_ABOVE and session.get_bind().dialect.name == "postgresql":
            # Thousands of fresh tasks without planner statistics: the announcement's query would nested-loop
            # (35 s for 20,000 tasks; 0.2 s once analysed).
            session.execute(sa.text("ANALYZE control_tasks"))
        # Tell whoever got tasks (cards, or one summary notice per recipient for many) in the same transaction: the
        # tasks this dispatch created are exactly those assigned at its `now` (a concurrent one has its own).
        cards.send_assignment_notices(
            session,
            sa.select(ControlTask.id).where(
                ControlTask.campaign_id == campaign.id,
                ControlTask.state == "assigned",
                ControlTask.assigned_at == sa.literal(now, ControlTask.assigned_at.type),
            ),
        )
        session.commit()
    except Exception:
        session.rollback()
        log.exception("precision-control dispatch failed after an import", extra={"rows": len(person_ids or [])})
        return {"failed": True}
    return result or {}


def import_view(row: RosterImport) -> dict[str, Any]:
    return {
        "id": row.id,
        "campaign_id": row.campaign_id,
        "source": row.source,
        "filename": row.filename,
        "sha256": row.sha256,
        "rows": row.rows,
        "added": row.added,
        "duplicates": row.duplicates,
        "rejected": row.rejected,
        "created_by": row.created_by,
        "created_at": row.created_at,
    }

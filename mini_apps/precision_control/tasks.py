"""The doctors' side of a task (任务处置): their list, one task with its person, and the steps that close it.

assigned → accepted → in_progress → completed | unreachable | transferred; closed by the administrators from any
open state. `transferred` means the person has left the campaign's area (moved to another province, say) and was
handed over outside it — terminal here; a task for someone elsewhere *inside* the area goes back to the county
queue instead (`dispatch.refuse_task`) and the county re-assigns it.

Who works a task (`may_work`): the named doctor; with no doctor yet, any member of its family-doctor team; with no
team either, anyone of its institution. Accepting claims it (the acceptor becomes its doctor). Only the task's own
doctor sees the person in the clear — the team or institution see an unclaimed task masked until one of them accepts
it; institution administrators and the administrators above see it masked. Every view of a
task is audited. Each step is a conditional UPDATE on the state it was read in, so a card click racing the H5 page
(or a double click) moves the task once and the loser gets a 409.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from mini_apps.family_doctor.models import TeamMember
from mini_apps.precision_control.dispatch import _task, task_view
from mini_apps.precision_control.models import (
    FINISHED_STATES,
    OPEN_STATES,
    WORKING_STATES,
    Campaign,
    CampaignPerson,
    ControlTask,
    ControlTaskEvent,
)
from org_sync.models import OrgMember, OrgNode
from workbench import audit, privacy
from workbench.auth.principal import Principal, actor_names
from workbench.db import utcnow
from workbench.errors import ApiError

MAX_TEXT = 500
MAX_NOTE = 500
MAX_ATTEMPTS = 20


def _invalid(field: str, message: str) -> ApiError:
    return ApiError("invalid", message, status=422, field=field)


def _not_found() -> ApiError:
    return ApiError("not_found", "任务不存在", status=404)


# -- who ---------------------------------------------------------------------------------------------------------


def _team_ids(session: orm.Session, principal: Principal) -> list[int]:
    if principal.member_id is None:
        return []
    return list(session.scalars(sa.select(TeamMember.team_id).where(TeamMember.member_id == principal.member_id)))


def _workable(principal: Principal, team_ids: list[int]) -> sa.ColumnElement[bool]:
    """Tasks this member works: theirs; their teams' unclaimed ones; their institutions' with no team or doctor."""
    if principal.member_id is None:
        return sa.false()
    unclaimed = ControlTask.member_id.is_(None)
    return sa.or_(
        ControlTask.member_id == principal.member_id,
        sa.and_(unclaimed, ControlTask.team_id.in_(team_ids or [-1])),
        sa.and_(
            unclaimed,
            ControlTask.team_id.is_(None),
            ControlTask.institution_id.in_(principal.institution_ids() or (-1,)),
        ),
    )


def _overseen(principal: Principal) -> sa.ColumnElement[bool]:
    """Tasks of institutions an institution administrator or an administrator above holds (seen masked)."""
    return principal.scope("admin", "institution_admin").nodes(ControlTask.institution_id)


def may_work(session: orm.Session, principal: Principal, task: ControlTask) -> bool:
    if principal.member_id is None or task.state not in WORKING_STATES:
        return False
    if task.member_id is not None:
        return task.member_id == principal.member_id
    if task.team_id is not None:
        return task.team_id in _team_ids(session, principal)
    return task.institution_id in principal.institution_ids()


def _may_oversee(session: orm.Session, principal: Principal, task: ControlTask) -> bool:
    node_id = task.institution_id or task.county_id
    path = session.scalar(sa.select(OrgNode.path).where(OrgNode.id == node_id)) if node_id else None
    return path is not None and principal.scope("admin", "institution_admin").covers_path(path)


def _may_close(session: orm.Session, principal: Principal, task: ControlTask, campaign: Campaign) -> bool:
    """The administrators of the task's county (who hold its queue) or of the campaign's owner."""
    scope = principal.scope("admin")
    paths = session.scalars(
        sa.select(OrgNode.path).where(OrgNode.id.in_([n for n in (task.county_id, campaign.owner_node_id) if n]))
    ).all()
    return any(scope.covers_path(path) for path in paths)


# -- the result form ---------------------------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_positive(spec: Mapping[str, Any], value: Any) -> bool:
    marker = spec["positive"]
    if spec["type"] == "choice":
        return value in (marker if isinstance(marker, list) else [marker])
    if spec["type"] == "number":
        return value >= marker
    return value == marker


def check_result(template: Mapping[str, Any], result: Any) -> tuple[dict[str, Any], bool | None]:
    """The result form checked against the campaign's template: (the clean values, whether the finding is
    positive — None when the template defines no positive value). 422 naming `result.<code>`."""
    if not isinstance(result, Mapping):
        raise _invalid("result", "处置结果格式不正确")
    specs = {spec["code"]: spec for spec in template.get("fields", [])}
    for code in result:
        if code not in specs:
            raise _invalid(f"result.{code}", "该任务没有这个结果字段")
    clean: dict[str, Any] = {}
    positive: bool | None = None
    for code, spec in specs.items():
        where, label = f"result.{code}", spec["label"]
        value = result.get(code)
        if isinstance(value, str):
            value = value.strip()
        if value is None or value == "":
            if spec.get("required"):
                raise _invalid(where, f"请填写“{label}”")
            continue
        kind = spec["type"]
        if kind == "choice" and value not in spec["choices"]:
            raise _invalid(where, f"“{label}”须为：{'、'.join(spec['choices'])}")
        if kind == "number":
            if not _is_number(value):
                raise _invalid(where, f"“{label}”须为数值")
            if spec.get("min") is not None and value < spec["min"]:
                raise _invalid(where, f"“{label}”不能小于 {spec['min']}")
            if spec.get("max") is not None and value > spec["max"]:
                raise _invalid(where, f"“{label}”不能大于 {spec['max']}")
        if kind == "text" and (not isinstance(value, str) or len(value) > MAX_TEXT):
            raise _invalid(where, f"“{label}”须为文字，最多{MAX_TEXT}字")
        if kind == "date":
            try:
                day = date.fromisoformat(value) if isinstance(value, str) else None
            except ValueError:
                day = None
            if day is None:
                raise _invalid(where, f"“{label}”须为日期（YYYY-MM-DD）")
            value = day.isoformat()
        if kind == "bool" and not isinstance(value, bool):
            raise _invalid(where, f"“{label}”须为是或否")
        clean[code] = value
        if "positive" in spec:
            positive = bool(positive) or _is_positive(spec, value)
    if positive is None and any("positive" in spec for spec in specs.values()):
        positive = False
    return clean, positive


def _text(data: Mapping[str, Any], key: str, label: str, *, required: bool, limit: int = MAX_NOTE) -> str | None:
    value = data.get(key)
    value = value.strip() if isinstance(value, str) else value
    if value in (None, ""):
        if required:
            raise _invalid(key, f"请填写{label}")
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise _invalid(key, f"{label}须为文字，最多{limit}字")
    return value


# -- views -------------------------------------------------------------------------------------------------------


def _person_masked(person: CampaignPerson) -> dict[str, Any]:
    return {
        "name_masked": person.name_masked,
        "id_masked": person.id_masked,
        "phone_masked": person.phone_masked,
        "division_code": person.division_code,
        "category": person.category,
        "priority": person.priority,
        "source_note": person.source_note,
    }


def _person_clear(person: CampaignPerson) -> dict[str, Any]:
    ring = privacy.keyring()
    return {
        "name": privacy.decrypt_field(person.name_cipher, ring, context="control.name"),
        "id_number": privacy.decrypt_field(person.id_cipher, ring, context="control.id_number"),
        "phone": privacy.decrypt_field(person.phone_cipher, ring, context="control.phone"),
        "address": privacy.decrypt_field(person.address_cipher, ring, context="control.address"),
    }


# -- the list ----------------------------------------------------------------------------------------------------


def _soon_cutoff(session: orm.Session, visible: sa.ColumnElement[bool], now: datetime) -> sa.ColumnElement:
    """The due time before which a task counts as 即将到期: `now` + its campaign's reminder hours (a CASE over the
    few campaigns in view, so the database needs no interval arithmetic that differs between backends)."""
    campaigns = session.execute(
        sa.select(Campaign.id, Campaign.remind_before_hours).where(
            Campaign.id.in_(sa.select(ControlTask.campaign_id).where(visible).distinct())
        )
    ).all()
    column_type = ControlTask.due_at.type
    if not campaigns:
        return sa.literal(now, column_type)
    return sa.case(
        *((ControlTask.campaign_id == cid, sa.literal(now + timedelta(hours=h), column_type)) for cid, h in campaigns),
        else_=sa.literal(now, column_type),
    )


def list_tasks(session: orm.Session, principal: Principal, query: Mapping[str, Any]) -> dict[str, Any]:
    """The caller's tasks (and, unless `mine`, the tasks of the institutions they oversee), masked, with counts by
    state and of overdue and soon-due ones. Audited (a list of persons is a read of personal data)."""
    now = utcnow()
    workable = _workable(principal, _team_ids(session, principal))
    visible = workable if query.get("mine") else sa.or_(workable, _overseen(principal))
    visible = sa.and_(
        visible, ControlTask.campaign_id.in_(sa.select(Campaign.id).where(Campaign.anonymised_at.is_(None)))
    )
    if query.get("campaign_id") is not None:
        visible = sa.and_(visible, ControlTask.campaign_id == query["campaign_id"])
    soon = _soon_cutoff(session, visible, now)
    is_open = ControlTask.state.in_(OPEN_STATES)
    overdue = sa.and_(is_open, ControlTask.due_at < now)
    due_soon = sa.and_(is_open, ControlTask.due_at >= now, ControlTask.due_at <= soon)

    counts: dict[str, int] = dict.fromkeys(("overdue", "soon"), 0)
    for state, n, n_overdue, n_soon in session.execute(
        sa.select(
            ControlTask.state,
            sa.func.count(),
            sa.func.sum(sa.case((overdue, 1), else_=0)),
            sa.func.sum(sa.case((due_soon, 1), else_=0)),
        )
        .where(visible)
        .group_by(ControlTask.state)
    ):
        counts[state] = n
        counts["overdue"] += int(n_overdue or 0)
        counts["soon"] += int(n_soon or 0)

    where = [visible]
    state = query.get("state")
    if state == "open":
        where.append(is_open)
    elif state == "finished":
        where.append(ControlTask.state.in_(FINISHED_STATES))
    elif state:
        where.append(ControlTask.state == state)
    if query.get("due") == "overdue":
        where.append(overdue)
    elif query.get("due") == "soon":
        where.append(due_soon)
    total = session.scalar(sa.select(sa.func.count()).select_from(ControlTask).where(*where))
    rows = session.execute(
        sa.select(ControlTask, CampaignPerson, Campaign.name, OrgMember.name)
        .join(CampaignPerson, CampaignPerson.id == ControlTask.person_id)
        .join(Campaign, Campaign.id == ControlTask.campaign_id)
        .outerjoin(OrgMember, OrgMember.id == ControlTask.member_id)
        .where(*where)
        .order_by(ControlTask.due_at, ControlTask.id)
        .limit(query.get("limit", 50))
        .offset(query.get("offset", 0))
    ).all()
    items = [
        {**task_view(task, now), **_person_masked(person), "campaign_name": campaign_name, "member_name": member}
        for task, person, campaign_name, member in rows
    ]
    audit.record(
        principal,
        "precision_control.tasks.read",
        resource_type="control_task",
        detail={"rows": len(items), "total": total, "state": state, "due": query.get("due")},
    )
    return {"total": total, "counts": counts, "items": items}


# -- one task ----------------------------------------------------------------------------------------------------


def get_task(session: orm.Session, principal: Principal, task_id: int) -> dict[str, Any]:
    """One task with its campaign's form, its history and its person — in the clear only for those who work it."""
    task = _task(session, task_id, lock=False)
    campaign = session.get(Campaign, task.campaign_id)
    works = may_work(session, principal, task)
    # A finished task stays readable by whoever finished it (their own record of the visit).
    worked = task.member_id is not None and task.member_id == principal.member_id
    if not (
        works or worked or _may_oversee(session, principal, task) or _may_close(session, principal, task, campaign)
    ):
        raise _not_found()
    person = session.get(CampaignPerson, task.person_id)
    # In the clear for the task's own doctor only (the issue: "masked everywhere but the assigned doctor's task
    # view"); a team's or an institution's unclaimed task shows its person once someone accepts it.
    clear = worked and campaign.anonymised_at is None
    events = session.scalars(
        sa.select(ControlTaskEvent).where(ControlTaskEvent.task_id == task.id).order_by(ControlTaskEvent.id)
    ).all()
    member_name = session.scalar(sa.select(OrgMember.name).where(OrgMember.id == task.member_id))
    names = actor_names(session, {event.actor for event in events})
    audit.record(
        principal,
        "precision_control.person.read",
        resource_type="control_task",
        resource_id=task.id,
        node_id=task.institution_id or task.county_id,
        detail={"campaign_id": task.campaign_id, "person_id": task.person_id, "clear": clear},
    )
    return {
        **task_view(task),
        "campaign_name": campaign.name,
        "campaign_state": campaign.state,
        "task_template": campaign.task_template,
        "member_name": member_name,
        "may_work": works and campaign.state == "active",
        "may_close": task.state in OPEN_STATES and _may_close(session, principal, task, campaign),
        "person": {**_person_masked(person), **(_person_clear(person) if clear else {})},
        "events": [
            {
                "action": event.action,
                "from_state": event.from_state,
                "to_state": event.to_state,
                "actor": event.actor,
                "actor_name": names.get(event.actor),
                "reason": event.reason,
                "at": event.at,
            }
            for event in events
        ],
    }


# -- the steps ---------------------------------------------------------------------------------------------------


def _step(
    session: orm.Session,
    principal: Principal,
    task: ControlTask,
    action: str,
    allowed_from: tuple[str, ...],
    to_state: str,
    values: dict[str, Any],
    *,
    reason: str | None = None,
    detail: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Move the task from the state it was read in, if nobody moved it meanwhile; record the event; audit."""
    if task.state not in allowed_from:
        raise ApiError("conflict", "该任务当前状态不能执行此操作", status=409, state=task.state)
    from_state, now = task.state, utcnow()
    if to_state in FINISHED_STATES:
        values["finished_at"] = now
    moved = session.execute(
        sa.update(ControlTask)
        .where(ControlTask.id == task.id, ControlTask.state == from_state)
        .values(state=to_state, updated_at=now, **values)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not moved:
        session.rollback()
        raise ApiError("conflict", "任务已被他人处理", status=409)
    session.add(
        ControlTaskEvent(
            task_id=task.id,
            action=action,
            from_state=from_state,
            to_state=to_state,
            actor=principal.actor,
            reason=reason,
            detail=detail or {},
            at=now,
        )
    )
    audit.record(
        principal,
        f"precision_control.task.{action}",
        resource_type="control_task",
        resource_id=task.id,
        node_id=task.institution_id or task.county_id,
        detail={"campaign_id": task.campaign_id, "from_state": from_state},
        session=session,
    )
    session.commit()
    session.refresh(task)
    return task_view(task)


def _workable_task(session: orm.Session, principal: Principal, task_id: int) -> tuple[ControlTask, Campaign]:
    """The task for one of its workers; 404 for anyone who may not even see it, 403 for those who see it only."""
    task = _task(session, task_id)
    campaign = session.get(Campaign, task.campaign_id)
    if not may_work(session, principal, task):
        worked = task.member_id is not None and task.member_id == principal.member_id
        if worked or _may_oversee(session, principal, task) or _may_close(session, principal, task, campaign):
            if task.state not in WORKING_STATES:
                raise ApiError("conflict", "该任务当前状态不能执行此操作", status=409, state=task.state)
            raise ApiError("forbidden", "只有承接该任务的医生可以处置", status=403)
        raise _not_found()
    if campaign.state != "active":
        raise ApiError("conflict", "专项任务不在进行中", status=409, state=campaign.state)
    return task, campaign


def accept_task(session: orm.Session, principal: Principal, task_id: int) -> dict[str, Any]:
    """接收: the doctor takes the task on (and claims it when it was their team's or institution's)."""
    task, _ = _workable_task(session, principal, task_id)
    values = {"accepted_at": utcnow(), "member_id": task.member_id or principal.member_id}
    return _step(session, principal, task, "accept", ("assigned",), "accepted", values)


def start_task(session: orm.Session, principal: Principal, task_id: int) -> dict[str, Any]:
    """开始处置: accepting on the way when the doctor starts straight away."""
    task, _ = _workable_task(session, principal, task_id)
    values: dict[str, Any] = {"member_id": task.member_id or principal.member_id}
    if task.accepted_at is None:
        values["accepted_at"] = utcnow()
    return _step(session, principal, task, "start", ("assigned", "accepted"), "in_progress", values)


def complete_task(session: orm.Session, principal: Principal, task_id: int, data: Mapping[str, Any]) -> dict[str, Any]:
    """提交结果: the result form, checked against the campaign's template; `positive` from its positive values."""
    task, campaign = _workable_task(session, principal, task_id)
    result, positive = check_result(campaign.task_template, data.get("result"))
    note = _text(data, "note", "备注", required=False)
    values: dict[str, Any] = {
        "result": result,
        "positive": positive,
        "member_id": task.member_id or principal.member_id,
    }
    if task.accepted_at is None:
        values["accepted_at"] = utcnow()
    return _step(session, principal, task, "complete", WORKING_STATES, "completed", values, reason=note)


def mark_unreachable(
    session: orm.Session, principal: Principal, task_id: int, data: Mapping[str, Any]
) -> dict[str, Any]:
    """无法联系: after `attempts` tries (1–20), with what was tried."""
    task, _ = _workable_task(session, principal, task_id)
    reason = _text(data, "reason", "原因", required=True)
    attempts = data.get("attempts")
    if not isinstance(attempts, int) or isinstance(attempts, bool) or not 1 <= attempts <= MAX_ATTEMPTS:
        raise _invalid("attempts", f"联系次数须为1到{MAX_ATTEMPTS}之间的整数")
    values = {"member_id": task.member_id or principal.member_id}
    return _step(
        session, principal, task, "unreachable", WORKING_STATES, "unreachable", values,
        reason=reason, detail={"attempts": attempts},
    )  # fmt: skip


def transfer_task(session: orm.Session, principal: Principal, task_id: int, data: Mapping[str, Any]) -> dict[str, Any]:
    """转出: the person has left the campaign's area; where to (free text: 外省、外市 and the receiving unit)."""
    task, _ = _workable_task(session, principal, task_id)
    reason = _text(data, "reason", "原因", required=True)
    destination = _text(data, "destination", "转往地", required=True, limit=200)
    values = {"member_id": task.member_id or principal.member_id}
    return _step(
        session, principal, task, "transfer", WORKING_STATES, "transferred", values,
        reason=reason, detail={"destination": destination},
    )  # fmt: skip


def close_task(session: orm.Session, principal: Principal, task_id: int, data: Mapping[str, Any]) -> dict[str, Any]:
    """关闭: the county's or the campaign's administrators close an open task (duplicate, deceased, out of scope)."""
    task = _task(session, task_id)
    campaign = session.get(Campaign, task.campaign_id)
    if not _may_close(session, principal, task, campaign):
        if may_work(session, principal, task) or _may_oversee(session, principal, task):
            raise ApiError("forbidden", "只有县级或专项任务的管理员可以关闭任务", status=403)
        raise _not_found()
    if campaign.anonymised_at is not None:
        raise ApiError("conflict", "专项任务的个人信息已按期删除，任务不能再处置", status=409)
    reason = _text(data, "reason", "原因", required=True)
    return _step(session, principal, task, "close", OPEN_STATES, "closed", {}, reason=reason)

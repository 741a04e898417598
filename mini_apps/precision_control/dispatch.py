"""Dispatch (分派): every person of a campaign becomes exactly one task, routed to who answers for them.

The order, first match wins (issue 9):

1. a resident with a current family-doctor contract (`is_current`, stored `active`, not past its end, team active,
   its institution inside the campaign owner's subtree) goes to that team, its institution and the county above it
   (`dispatched_by = family_doctor`);
2. the campaign's `DispatchRule` with the longest division prefix that starts the person's code (`rule`);
3. the `ServiceArea` with the longest code that starts the person's code, 12 → 9 → 6 digits (`area`);
4. otherwise the task is `queued`: in the queue of the county one of whose areas shares the person's 6-digit
   county code, or with no county at all (the campaign owner's queue).

A rule or area whose node lies at or above a county bureau (no institution at or above it) also queues the task,
in that county. The institution of a node is the nearest medical-community lead or member institution at or above
it; its county is the county bureau at or above it.

Set-based on purpose: a campaign of 100,000 persons is dispatched by a constant number of statements (an
INSERT … SELECT for the tasks, one for their events, one to count), whatever the number of persons. Prefixes are
matched by equality on `substr(code, 1, n)` for the few lengths codes have (2, 4, 6, 9, 12: GB/T 2260 province,
city, county; township; village), so every match is an index or hash join, never a LIKE per pair. The unique
`person_id` of tasks plus ON CONFLICT DO NOTHING means two dispatches racing over the same persons neither fail
nor assign anyone twice: the loser simply adds nothing.

Manual steps live here too: a county administrator assigns or re-assigns a task (`assign_task`), the assigned
institution refuses it back to the county queue with a reason (`refuse_task`), and the county reads its queue
(`county_queue`). Every step is a `ControlTaskEvent` with who, from which state, why and where to.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.dialects import postgresql, sqlite

from mini_apps.family_doctor.models import Contract, FamilyDoctorTeam, TeamMember
from mini_apps.precision_control import cards
from mini_apps.precision_control.models import (
    OPEN_STATES,
    Campaign,
    CampaignPerson,
    ControlTask,
    ControlTaskEvent,
    DispatchRule,
    ServiceArea,
)
from org_sync.models import OrgMember, OrgMembership, OrgNode, path_ids
from workbench import audit
from workbench.auth.principal import INSTITUTION_LEVELS, Principal
from workbench.db import utcnow
from workbench.errors import ApiError

log = logging.getLogger(__name__)

RULE_PREFIX_LENGTHS = (12, 9, 6, 4, 2)  # longest first: the first that matches wins
AREA_CODE_LENGTHS = (12, 9, 6)
# States from which a county may (re-)assign a task, and from which the institution may refuse it.
ASSIGNABLE_STATES = ("queued", "assigned", "accepted")
REFUSABLE_STATES = ("assigned", "accepted")
SYSTEM_ACTOR = "system:dispatch"
ANALYZE_ABOVE = 1000  # persons in one dispatch beyond which fresh statistics pay for themselves


# -- the node map: institution and county of every node a route can point at ------------------------------------


def _node_map(targets: sa.Select) -> sa.CTE:
    """`node_map(node_id, institution_id, county_id)` for the live nodes among `targets` (a select of node ids):
    the nearest institution and county bureau at or above each. Correlated per target node, of which there are
    as many as rules, areas and teams (hundreds), never per person."""
    node = orm.aliased(OrgNode, name="target")
    inst = orm.aliased(OrgNode, name="inst")
    county = orm.aliased(OrgNode, name="county")
    # Paths are digits and slashes: LIKE needs no escaping.
    nearest_institution = (
        sa.select(inst.id)
        .where(inst.level.in_(INSTITUTION_LEVELS), node.path.like(inst.path + "%"))
        .order_by(inst.depth.desc())
        .limit(1)
        .scalar_subquery()
    )
    nearest_county = (
        sa.select(county.id)
        .where(county.level == "county_bureau", node.path.like(county.path + "%"))
        .order_by(county.depth.desc())
        .limit(1)
        .scalar_subquery()
    )
    return (
        sa.select(
            node.id.label("node_id"),
            nearest_institution.label("institution_id"),
            nearest_county.label("county_id"),
        )
        .where(node.id.in_(targets), node.deleted_at.is_(None))
        .cte("node_map")
    )


def _first(pairs: list[tuple[sa.ColumnElement, sa.ColumnElement]]) -> sa.ColumnElement:
    """The value of the first matched candidate: CASE WHEN m1 THEN v1 WHEN m2 THEN v2 … END."""
    return sa.case(*pairs, else_=sa.null())


def _prefix(code: sa.ColumnElement, length: int) -> sa.ColumnElement:
    """The first `length` characters, with inline constants: PostgreSQL only sees a GROUP BY expression as the one
    selected when they are the same text, which bound parameters ($1 vs $3) are not."""
    return sa.func.substr(code, sa.literal_column("1"), sa.literal_column(str(int(length))))


def _insert(session: orm.Session, table: sa.Table):
    """The dialect's INSERT, so ON CONFLICT DO NOTHING is available on both backends."""
    return (postgresql if session.get_bind().dialect.name == "postgresql" else sqlite).insert(table)


def _json_object(session: orm.Session, values: dict[str, sa.ColumnElement]) -> sa.ColumnElement:
    """A JSON object built in SQL; keys inline (code-defined identifiers), so PostgreSQL needs no parameter type."""
    name = "jsonb_build_object" if session.get_bind().dialect.name == "postgresql" else "json_object"
    pairs = [part for key, value in values.items() for part in (sa.literal_column(f"'{key}'"), value)]
    return getattr(sa.func, name)(*pairs)


def dispatch_persons(
    session: orm.Session,
    campaign: Campaign,
    person_ids: list[int] | None = None,
    *,
    actor: str = SYSTEM_ACTOR,
    now: datetime | None = None,
) -> dict:
    """Create the task of every person of `campaign` (or of `person_ids` among them) that has none yet.

    Returns {"created": tasks this call added, "persons": persons considered, "assigned", "queued",
    "unassigned_county": queued with no county, "by": {family_doctor|rule|area|queue: n}} — the counts after
    the call over the persons considered (a concurrent dispatch's tasks included). Flushes, does not commit."""
    session.flush()
    now = now or utcnow()  # the tasks this call creates carry it as `assigned_at` (the caller may announce them)
    today = now.date()
    if person_ids is not None and not person_ids:
        return {"created": 0, "persons": 0, "assigned": 0, "queued": 0, "unassigned_county": 0, "by": {}}

    if session.get_bind().dialect.name == "postgresql" and (person_ids is None or len(person_ids) > ANALYZE_ABOVE):
        # A roster just taken in has no planner statistics yet: PostgreSQL then believes the table holds a row or
        # two and joins 100,000 persons to the areas by nested loops (30 s for 100,000 instead of 5). ANALYZE samples a
        # bounded number of rows, may run inside the transaction, and leaves the plan all hash joins.
        session.execute(sa.text("ANALYZE control_persons"))
    persons = sa.select(CampaignPerson.id).where(CampaignPerson.campaign_id == campaign.id)
    if person_ids is not None:
        persons = persons.where(CampaignPerson.id.in_(person_ids))

    # (a) current family-doctor contracts: at most one per resident (a partial unique index), so no duplicates.
    # Only teams inside the campaign owner's subtree: a county's campaign must not hand a resident who signed with
    # a team across the county line to a unit the county neither sees nor answers for (rules and areas decide).
    owner_path = sa.select(OrgNode.path).where(OrgNode.id == campaign.owner_node_id).scalar_subquery()
    team_node = orm.aliased(OrgNode, name="team_node")
    fd = (
        sa.select(
            Contract.resident_id.label("resident_id"),
            Contract.team_id.label("team_id"),
            FamilyDoctorTeam.institution_id.label("node_id"),
        )
        .join(FamilyDoctorTeam, FamilyDoctorTeam.id == Contract.team_id)
        .join(team_node, team_node.id == FamilyDoctorTeam.institution_id)
        .where(
            Contract.is_current.is_(True),
            Contract.status == "active",
            Contract.end_date >= today,
            FamilyDoctorTeam.active.is_(True),
            team_node.path.startswith(owner_path),
        )
        .subquery("fd")
    )
    targets = sa.union(
        sa.select(ServiceArea.node_id),
        sa.select(DispatchRule.node_id).where(DispatchRule.campaign_id == campaign.id),
        sa.select(FamilyDoctorTeam.institution_id),
    )
    node_map = _node_map(targets)
    live_rules = sa.select(DispatchRule).where(
        DispatchRule.campaign_id == campaign.id, DispatchRule.node_id.in_(sa.select(node_map.c.node_id))
    )
    live_areas = sa.select(ServiceArea).where(ServiceArea.node_id.in_(sa.select(node_map.c.node_id)))

    p = orm.aliased(CampaignPerson, name="p")
    code = p.division_code
    query = sa.select(p.id, p.priority).select_from(p).outerjoin(fd, fd.c.resident_id == p.resident_id)
    rule_joins = []
    for length in RULE_PREFIX_LENGTHS:
        r = live_rules.subquery(f"r{length}")
        query = query.outerjoin(r, r.c.division_prefix == _prefix(code, length))
        rule_joins.append(r)
    area_joins = []
    for length in AREA_CODE_LENGTHS:
        a = live_areas.subquery(f"a{length}")
        query = query.outerjoin(a, a.c.division_code == _prefix(code, length))
        area_joins.append(a)
    # (d) the county of any area within the person's 6-digit county code.
    county_codes = (
        sa.select(
            _prefix(ServiceArea.division_code, 6).label("code6"),
            sa.func.min(node_map.c.county_id).label("county_id"),
        )
        .join(node_map, node_map.c.node_id == ServiceArea.node_id)
        .where(node_map.c.county_id.is_not(None))
        .group_by(_prefix(ServiceArea.division_code, 6))
        .subquery("county_codes")
    )
    query = query.outerjoin(county_codes, county_codes.c.code6 == _prefix(code, 6))

    # The route each person takes, first match wins: (matched?, node, team, member, how).
    routes = [(fd.c.team_id.is_not(None), fd.c.node_id, fd.c.team_id, sa.null(), "family_doctor")]
    routes += [(r.c.id.is_not(None), r.c.node_id, r.c.team_id, r.c.member_id, "rule") for r in rule_joins]
    routes += [(a.c.id.is_not(None), a.c.node_id, a.c.team_id, sa.null(), "area") for a in area_joins]
    node = _first([(matched, node_id) for matched, node_id, _, _, _ in routes])
    team = _first([(matched, team_id) for matched, _, team_id, _, _ in routes])
    member = _first([(matched, member_id) for matched, _, _, member_id, _ in routes])
    how = _first([(matched, sa.literal(name)) for matched, _, _, _, name in routes])
    routed = (
        query.add_columns(
            node.label("node_id"),
            team.label("team_id"),
            member.label("member_id"),
            how.label("how"),
            county_codes.c.county_id.label("fallback_county_id"),
        )
        .where(
            p.campaign_id == campaign.id,
            p.id.in_(persons),
            ~sa.exists().where(ControlTask.person_id == p.id),
        )
        .subquery("routed")
    )
    nm = node_map
    institution = nm.c.institution_id
    assigned = institution.is_not(None)
    due_cases = [
        (routed.c.priority == priority, sa.literal(now + timedelta(hours=float(hours)), ControlTask.due_at.type))
        for priority, hours in sorted((campaign.deadline_hours or {}).items())
    ]
    routine_hours = float((campaign.deadline_hours or {}).get("routine", 72))
    due = sa.case(*due_cases, else_=sa.literal(now + timedelta(hours=routine_hours), ControlTask.due_at.type))
    stamp = sa.literal(now, ControlTask.updated_at.type)
    select_tasks = (
        sa.select(
            sa.literal(campaign.id).label("campaign_id"),
            routed.c.id.label("person_id"),
            sa.case((assigned, "assigned"), else_="queued").label("state"),
            sa.func.coalesce(nm.c.county_id, routed.c.fallback_county_id).label("county_id"),
            institution.label("institution_id"),
            sa.case((assigned, routed.c.team_id), else_=sa.null()).label("team_id"),
            sa.case((assigned, routed.c.member_id), else_=sa.null()).label("member_id"),
            sa.case((assigned, routed.c.how), else_=sa.null()).label("dispatched_by"),
            due.label("due_at"),
            sa.case((assigned, stamp), else_=sa.null()).label("assigned_at"),
            sa.literal(0).label("escalation_level"),
            stamp.label("updated_at"),
        )
        .select_from(routed)
        .outerjoin(nm, nm.c.node_id == routed.c.node_id)
    )
    columns = [c.name for c in select_tasks.selected_columns]
    insert_tasks = (
        _insert(session, ControlTask.__table__)
        .from_select(columns, select_tasks)
        .on_conflict_do_nothing(index_elements=["person_id"])
        .returning(ControlTask.__table__.c.id)
    )
    # Counted by RETURNING: neither driver reports a rowcount for an INSERT … SELECT here (SQLite's none for a
    # statement opening with a CTE, psycopg's none through this path), and the ids are this call's tasks alone.
    created = len(session.execute(insert_tasks).all())

    # One dispatch event per new task: the tasks of these persons that have no event yet. A concurrent dispatch
    # commits its tasks and events together, so what it created already has its events.
    t = orm.aliased(ControlTask, name="t")
    how_event = sa.case(
        (t.dispatched_by.is_not(None), t.dispatched_by),
        (t.county_id.is_not(None), "county_queue"),
        else_="unmatched",
    )
    select_events = sa.select(
        t.id,
        sa.literal("dispatch"),
        sa.null(),
        t.state,
        sa.literal(actor),
        sa.null(),
        _json_object(
            session,
            {
                "by": how_event,
                "county_id": t.county_id,
                "institution_id": t.institution_id,
                "team_id": t.team_id,
                "member_id": t.member_id,
            },
        ),
        stamp,
    ).where(
        t.campaign_id == campaign.id,
        t.person_id.in_(persons),
        ~sa.exists().where(ControlTaskEvent.task_id == t.id),
    )
    session.execute(
        sa.insert(ControlTaskEvent.__table__).from_select(
            ["task_id", "action", "from_state", "to_state", "actor", "reason", "detail", "at"], select_events
        )
    )

    counts = session.execute(
        sa.select(
            ControlTask.state,
            ControlTask.dispatched_by,
            ControlTask.county_id.is_(None).label("no_county"),
            sa.func.count(),
        )
        .where(ControlTask.campaign_id == campaign.id, ControlTask.person_id.in_(persons))
        .group_by(ControlTask.state, ControlTask.dispatched_by, ControlTask.county_id.is_(None))
    ).all()
    result: dict = {"created": created, "persons": 0, "assigned": 0, "queued": 0, "unassigned_county": 0, "by": {}}
    for state, by, no_county, n in counts:
        result["persons"] += n
        if state == "queued":
            result["queued"] += n
            result["unassigned_county"] += n if no_county else 0
        else:
            result["assigned"] += n
        key = by or "queue"
        result["by"][key] = result["by"].get(key, 0) + n
    log.info("campaign dispatched", extra={"rows": created, "result": "ok"})
    return result


# -- manual steps ---------------------------------------------------------------------------------------------


def _task(session: orm.Session, task_id: int, *, lock: bool = True) -> ControlTask:
    stmt = sa.select(ControlTask).where(ControlTask.id == task_id)
    task = session.scalar(stmt.with_for_update() if lock else stmt)
    if task is None:
        raise ApiError("not_found", "任务不存在", status=404)
    return task


def _queue_owner_path(session: orm.Session, task: ControlTask) -> str | None:
    """The path of the node whose queue holds the task: its county, or with none the campaign's owner."""
    node_id = task.county_id
    if node_id is None:
        node_id = session.scalar(sa.select(Campaign.owner_node_id).where(Campaign.id == task.campaign_id))
    return session.scalar(sa.select(OrgNode.path).where(OrgNode.id == node_id))


def _may_assign(session: orm.Session, principal: Principal, task: ControlTask) -> bool:
    path = _queue_owner_path(session, task)
    return path is not None and principal.scope("admin").covers_path(path)


def _institution_of(session: orm.Session, node: OrgNode) -> OrgNode | None:
    ids = path_ids(node.path)
    chain = session.scalars(sa.select(OrgNode).where(OrgNode.id.in_(ids), OrgNode.level.in_(INSTITUTION_LEVELS))).all()
    return max(chain, key=lambda n: n.depth, default=None)


def _county_of(session: orm.Session, node: OrgNode) -> OrgNode | None:
    ids = path_ids(node.path)
    chain = session.scalars(sa.select(OrgNode).where(OrgNode.id.in_(ids), OrgNode.level == "county_bureau")).all()
    return max(chain, key=lambda n: n.depth, default=None)


def resolve_target(
    session: orm.Session,
    principal: Principal,
    node_id: int,
    team_id: int | None,
    member_id: int | None,
    *,
    field_prefix: str = "",
    require_institution: bool = True,
) -> tuple[OrgNode, OrgNode | None, FamilyDoctorTeam | None, OrgMember | None]:
    """Check a route target inside the caller's admin scope: the node (live), its institution (required unless
    `require_institution` is false), a team of that institution, a member working there. Returns
    (node, institution, team, member); 422 naming the field when one does not fit."""
    node = session.get(OrgNode, node_id)
    if node is None or node.deleted_at is not None or not principal.scope("admin").covers_path(node.path):
        raise ApiError("invalid", "组织节点不存在或不在管理范围内", status=422, field=f"{field_prefix}node_id")
    institution = _institution_of(session, node)
    if institution is None and (require_institution or team_id is not None or member_id is not None):
        raise ApiError("invalid", "须为医疗机构或其下属科室", status=422, field=f"{field_prefix}node_id")
    team = None
    if team_id is not None:
        team = session.get(FamilyDoctorTeam, team_id)
        if team is None or not team.active or team.institution_id != institution.id:
            raise ApiError("invalid", "家庭医生团队不属于该机构或已停用", status=422, field=f"{field_prefix}team_id")
    member = None
    if member_id is not None:
        member = session.get(OrgMember, member_id)
        works_there = member is not None and session.scalar(
            sa.select(sa.func.count())
            .select_from(OrgMembership)
            .join(OrgNode, OrgNode.id == OrgMembership.node_id)
            .where(OrgMembership.member_id == member_id, OrgNode.path.startswith(institution.path))
        )
        if not works_there or member.deleted_at is not None or not member.active:
            raise ApiError("invalid", "该人员不在该机构", status=422, field=f"{field_prefix}member_id")
        if team is not None and not session.get(TeamMember, (team.id, member.id)):
            raise ApiError("invalid", "该人员不在该家庭医生团队", status=422, field=f"{field_prefix}member_id")
    return node, institution, team, member


def _reason(reason: str | None) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ApiError("invalid", "请填写原因", status=422, field="reason")
    if len(reason) > 500:
        raise ApiError("invalid", "原因不能超过500字", status=422, field="reason")
    return reason


def _where(task: ControlTask) -> dict:
    return {
        "county_id": task.county_id,
        "institution_id": task.institution_id,
        "team_id": task.team_id,
        "member_id": task.member_id,
    }


def task_view(task: ControlTask, now: datetime | None = None) -> dict:
    now = now or utcnow()
    return {
        "id": task.id,
        "campaign_id": task.campaign_id,
        "person_id": task.person_id,
        "state": task.state,
        "dispatched_by": task.dispatched_by,
        "due_at": task.due_at,
        "overdue": task.state in OPEN_STATES and task.due_at is not None and task.due_at < now,
        "assigned_at": task.assigned_at,
        "accepted_at": task.accepted_at,
        "finished_at": task.finished_at,
        "result": task.result,
        "positive": task.positive,
        "escalation_level": task.escalation_level,
        **_where(task),
    }


def _restart_follow_up(task: ControlTask) -> None:
    """Whoever holds a task now is reminded and escalated to afresh (the level is worked out again from how long it
    has been overdue, so a long-overdue task reaches the new holder's levels at the next run)."""
    task.reminded_at = task.escalated_at = None
    task.escalation_level = 0


def assign_task(session: orm.Session, principal: Principal, task_id: int, data: dict) -> dict:
    """A county administrator assigns a queued task, or re-assigns an assigned one, to an institution (a team, a
    doctor). 404 outside the queue-holder's scope, 409 past the assignable states, 422 on a bad target/reason."""
    task = _task(session, task_id)
    if not _may_assign(session, principal, task):
        raise ApiError("not_found", "任务不存在", status=404)
    reason = _reason(data.get("reason"))
    if task.state not in ASSIGNABLE_STATES:
        raise ApiError("conflict", "该任务当前状态不能分派", status=409, state=task.state)
    node, institution, team, member = resolve_target(
        session, principal, data["node_id"], data.get("team_id"), data.get("member_id")
    )
    county = _county_of(session, institution)
    before, from_state = _where(task), task.state
    now = utcnow()
    task.state = "assigned"
    task.institution_id = institution.id
    task.county_id = county.id if county is not None else task.county_id
    task.team_id = team.id if team else None
    task.member_id = member.id if member else None
    task.dispatched_by = "manual"
    task.assigned_at, task.accepted_at = now, None
    _restart_follow_up(task)
    action = "assign" if from_state == "queued" else "reassign"
    session.add(
        ControlTaskEvent(
            task_id=task.id,
            action=action,
            from_state=from_state,
            to_state="assigned",
            actor=principal.actor,
            reason=reason,
            detail={"from": before, "to": _where(task), "node_id": node.id},
            at=now,
        )
    )
    session.flush()
    cards.send_task_card(session, task)
    audit.record(
        principal,
        f"precision_control.task.{action}",
        resource_type="control_task",
        resource_id=task.id,
        node_id=institution.id,
        detail={"campaign_id": task.campaign_id, "from_state": from_state},
        session=session,
    )
    session.commit()
    return task_view(task)


def refuse_task(session: orm.Session, principal: Principal, task_id: int, data: dict) -> dict:
    """The assigned institution's member sends the task back to the county queue, with a reason."""
    task = _task(session, task_id)
    works_there = task.institution_id is not None and task.institution_id in principal.institution_ids()
    if not works_there and not principal.operator:
        if _may_assign(session, principal, task):
            raise ApiError("forbidden", "只有承接机构的人员可以退回任务", status=403)
        raise ApiError("not_found", "任务不存在", status=404)
    reason = _reason(data.get("reason"))
    if task.state not in REFUSABLE_STATES:
        raise ApiError("conflict", "该任务当前状态不能退回", status=409, state=task.state)
    before, from_state = _where(task), task.state
    now = utcnow()
    task.state = "queued"
    task.institution_id = task.team_id = task.member_id = None
    task.dispatched_by = None
    task.assigned_at = task.accepted_at = None
    _restart_follow_up(task)
    session.add(
        ControlTaskEvent(
            task_id=task.id,
            action="refuse",
            from_state=from_state,
            to_state="queued",
            actor=principal.actor,
            reason=reason,
            detail={"from": before, "to": _where(task)},
            at=now,
        )
    )
    audit.record(
        principal,
        "precision_control.task.refuse",
        resource_type="control_task",
        resource_id=task.id,
        node_id=before["institution_id"],
        detail={"campaign_id": task.campaign_id},
        session=session,
    )
    session.commit()
    return task_view(task)


def county_queue(session: orm.Session, principal: Principal, campaign_id: int, query: dict) -> dict:
    """The queued tasks of a campaign the caller's admin scope holds: its counties' queues, and the campaign
    owner's (no county) when the scope covers the owner. Masked persons only; audited."""
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise ApiError("not_found", "专项任务不存在", status=404)
    scope = principal.scope("admin")
    owner_path = session.scalar(sa.select(OrgNode.path).where(OrgNode.id == campaign.owner_node_id))
    holders = [ControlTask.county_id.in_(scope.node_ids())] if not scope.everything else [sa.true()]
    if owner_path is not None and scope.covers_path(owner_path):
        holders.append(ControlTask.county_id.is_(None))
    if not scope.everything and not scope.paths:
        raise ApiError("not_found", "专项任务不存在", status=404)
    where = [ControlTask.campaign_id == campaign.id, ControlTask.state == "queued", sa.or_(*holders)]
    if query.get("county_id") is not None:
        where.append(ControlTask.county_id == query["county_id"])
    total = session.scalar(sa.select(sa.func.count()).select_from(ControlTask).where(*where))
    rows = session.execute(
        sa.select(ControlTask, CampaignPerson)
        .join(CampaignPerson, CampaignPerson.id == ControlTask.person_id)
        .where(*where)
        .order_by(ControlTask.due_at, ControlTask.id)
        .limit(query.get("limit", 50))
        .offset(query.get("offset", 0))
    ).all()
    items = [
        {
            **task_view(task),
            "name_masked": person.name_masked,
            "id_masked": person.id_masked,
            "phone_masked": person.phone_masked,
            "division_code": person.division_code,
            "category": person.category,
            "priority": person.priority,
        }
        for task, person in rows
    ]
    audit.record(
        principal,
        "precision_control.queue.read",
        resource_type="control_campaign",
        resource_id=campaign.id,
        detail={"rows": len(items), "total": total},
    )
    return {"total": total, "items": items}


def task_events(session: orm.Session, task_id: int) -> list[ControlTaskEvent]:
    """The history of a task, oldest first (for tests and the task view)."""
    return list(
        session.scalars(
            sa.select(ControlTaskEvent).where(ControlTaskEvent.task_id == task_id).order_by(ControlTaskEvent.id)
        )
    )

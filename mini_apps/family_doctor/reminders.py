"""Chronic-disease follow-ups (随访) and the reminders the bot sends residents: follow-ups due, contracts expiring.

Follow-ups. Residents tagged hypertension or diabetes whose current contract is in force (stored `active`, not
past its end; a renewal signed ahead of time counts, so cover does not lapse between the two contracts) have
exactly one open follow-up per disease, on their current team. Hypertension and type-2 diabetes are followed up
quarterly (基本公卫规范, domain.md §5.4):
- the first is due 3 months after the contract starts; when that day has passed (a resident signed before the
  workbench tracked follow-ups) it is due the day it is scheduled — an "overdue" from before anyone could see
  it would only make noise;
- the next is due 3 months after the last one was done (`complete_follow_up` schedules it at once).
A resident who moves to another team takes their open follow-ups along (the new team now owes them); done ones
stay with the team that did them.

Reminders (daily, `run_daily`): an open follow-up due within 7 days or overdue, and a current active contract
ending within 30 days, each tell the resident once through `notices.notify_resident` (a card in the team's chat
visible to them and the team, or a one-to-one robot message); `FollowUp.reminded_at` and
`Contract.renewal_reminded_at` are set in the same transaction as the queued message. A resident nobody can reach
(no DingTalk account) is looked at again the next day. Rows are read in batches and each resident's reminder
commits on its own, so one failure only skips that resident (who is tried again the next day).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement

from mini_apps.family_doctor import notices, service
from mini_apps.family_doctor.models import (
    FOLLOW_UP_KINDS,
    TAGS,
    Contract,
    FamilyDoctorTeam,
    FollowUp,
    Resident,
)
from workbench import audit, db
from workbench.auth.principal import Principal
from workbench.db import utcnow
from workbench.errors import ApiError

log = logging.getLogger(__name__)

QUARTER = 3  # months between follow-ups
FOLLOW_UP_NOTICE_DAYS = 7
RENEWAL_NOTICE_DAYS = 30
BATCH = 200
DAILY_SECONDS = 86400
DAILY_OFFSET = 3600  # 01:00 UTC = 09:00 China time: reminders arrive in the morning, not at night


# -- dates --------------------------------------------------------------------------------------------------------


def add_months(day: date, months: int) -> date:
    """Calendar months later (or earlier), the last day of a shorter month when the day does not exist in it:
    2026-11-30 + 3 → 2027-02-28. The same rule as `add_months_sql`."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    month += 1
    last = (date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)).day
    return date(year, month, min(day.day, last))


class _AddMonths(FunctionElement):
    type = sa.Date()
    inherit_cache = True


def add_months_sql(day: Any, months: int) -> _AddMonths:
    """`add_months` in SQL, clamped to the month's end the same way on both backends. `months` is a constant,
    rendered into the statement (as literal text, so it is part of the statement's cache key)."""
    return _AddMonths(day, sa.literal_column(str(int(months))))


@compiles(_AddMonths, "postgresql")
def _add_months_pg(element: _AddMonths, compiler: Any, **kw: Any) -> str:
    day, months = list(element.clauses)
    return f"CAST(({compiler.process(day, **kw)}) + make_interval(months => {months.name}) AS DATE)"


@compiles(_AddMonths, "sqlite")
def _add_months_sqlite(element: _AddMonths, compiler: Any, **kw: Any) -> str:
    # SQLite's '+N months' overflows (11-30 + 3 months = 03-02); the last day of the target month caps it.
    day_clause, months_clause = list(element.clauses)
    day, months = compiler.process(day_clause, **kw), int(months_clause.name)
    return f"min(date({day}, '{months:+d} months'), date({day}, 'start of month', '{months + 1:+d} months', '-1 day'))"


def _cn_date(day: date, on: date) -> str:
    return f"{day.month}月{day.day}日" if day.year == on.year else f"{day.year}年{day.month}月{day.day}日"


def _in_force(on: date) -> sa.ColumnElement[bool]:
    return sa.and_(Contract.is_current.is_(True), Contract.status == "active", Contract.end_date >= on)


# -- scheduling ---------------------------------------------------------------------------------------------------


def _insert(session: orm.Session):
    return (postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert)(FollowUp.__table__)


def schedule_follow_ups(on: date | None = None) -> int:
    """Move open follow-ups to the resident's current team, and give every eligible resident their open one per
    disease (set-based; see the module docstring). Returns how many were created."""
    on = on or service.today()
    session = db.session()
    current_team = (
        sa.select(Contract.team_id).where(Contract.resident_id == FollowUp.resident_id, _in_force(on)).scalar_subquery()
    )
    session.execute(
        sa.update(FollowUp)
        .where(
            FollowUp.done_on.is_(None),
            sa.select(Contract.id)
            .where(Contract.resident_id == FollowUp.resident_id, _in_force(on), Contract.team_id != FollowUp.team_id)
            .exists(),
        )
        .values(team_id=current_team)
        .execution_options(synchronize_session=False)
    )
    created = 0
    now = utcnow()
    for kind in FOLLOW_UP_KINDS:
        done = orm.aliased(FollowUp)
        last_done = (
            sa.select(sa.func.max(done.done_on))
            .where(done.resident_id == Resident.id, done.kind == kind, done.done_on.is_not(None))
            .scalar_subquery()
        )
        base = sa.func.coalesce(add_months_sql(last_done, QUARTER), add_months_sql(Contract.start_date, QUARTER))
        due = sa.case((base < on, sa.literal(on, sa.Date)), else_=base)
        open_one = orm.aliased(FollowUp)
        candidates = (
            sa.select(
                Resident.id,
                Contract.team_id,
                sa.literal(kind, sa.String),
                due,
                sa.literal("", sa.String),
                sa.literal(now, FollowUp.created_at.type),
            )
            .join(Contract, sa.and_(Contract.resident_id == Resident.id, _in_force(on)))
            .where(
                Resident.tags.contains(f",{kind},", autoescape=True),
                ~sa.select(open_one.id)
                .where(open_one.resident_id == Resident.id, open_one.kind == kind, open_one.done_on.is_(None))
                .exists(),
            )
        )
        insert = (
            _insert(session)
            .from_select(["resident_id", "team_id", "kind", "due_date", "note", "created_at"], candidates)
            # A due date some old follow-up already has (possible only with hand-edited data) must not stop the
            # statement for everyone else.
            .on_conflict_do_nothing()
            # Counted from RETURNING: psycopg reports no rowcount for INSERT … SELECT through SQLAlchemy.
            .returning(FollowUp.__table__.c.id)
        )
        created += len(session.execute(insert).all())
    session.commit()
    if created:
        log.info("follow-ups scheduled", extra={"rows": created})
    return created


# -- reminders ----------------------------------------------------------------------------------------------------


def _remind(session: orm.Session, query: sa.Select, key: sa.ColumnElement[int], send) -> dict[str, int]:
    """Run `send(row)` for every row of `query` (in batches by `key`), committing each with its mark one resident
    at a time: a failure rolls back that resident only. (Not savepoints in one batch: pysqlite's SAVEPOINT opens
    SQLite's transaction itself, whose read snapshot then cannot be upgraded to a write while a delivery job
    writes.) `send` returns whether the resident was reached."""
    totals = {"sent": 0, "failed": 0}
    cursor = 0
    while rows := session.execute(query.where(key > cursor).order_by(key).limit(BATCH)).all():
        cursor = rows[-1].id
        for row in rows:
            try:
                totals["sent"] += bool(send(row))
                session.commit()
            except Exception:
                session.rollback()
                totals["failed"] += 1
                log.exception("reminder failed", extra={"job": "family_doctor.reminders"})
    return totals


def remind_follow_ups(on: date | None = None) -> dict[str, int]:
    """Tell residents once about a follow-up due within 7 days (or overdue)."""
    on = on or service.today()
    session = db.session()
    query = (
        sa.select(FollowUp.id, FollowUp.resident_id, FollowUp.kind, FollowUp.due_date)
        .join(Contract, sa.and_(Contract.resident_id == FollowUp.resident_id, _in_force(on)))
        .join(Resident, Resident.id == FollowUp.resident_id)
        .where(
            FollowUp.done_on.is_(None),
            FollowUp.reminded_at.is_(None),
            FollowUp.due_date <= on + timedelta(days=FOLLOW_UP_NOTICE_DAYS),
            FollowUp.team_id == Contract.team_id,
            Resident.dingtalk_userid.is_not(None),
        )
    )

    def send(row) -> bool:
        disease = TAGS[row.kind]
        when = _cn_date(row.due_date, on)
        line = (
            f"您的{disease}季度随访已于{when}到期，请尽快联系家庭医生团队预约"
            if row.due_date < on
            else f"您的{disease}季度随访将于{when}到期，请联系家庭医生团队预约"
        )
        reach = notices.notify_resident(
            session, row.resident_id, title="随访提醒", lines=[line], key=f"family_doctor:follow_up:{row.id}:reminder"
        )
        if reach == "unreachable":
            return False
        session.execute(sa.update(FollowUp).where(FollowUp.id == row.id).values(reminded_at=utcnow()))
        return True

    return _remind(session, query, FollowUp.id, send)


def remind_renewals(on: date | None = None) -> dict[str, int]:
    """Tell residents once that their contract ends within 30 days."""
    on = on or service.today()
    session = db.session()
    query = (
        sa.select(Contract.id, Contract.resident_id, Contract.end_date, FamilyDoctorTeam.name.label("team_name"))
        .join(FamilyDoctorTeam, FamilyDoctorTeam.id == Contract.team_id)
        .join(Resident, Resident.id == Contract.resident_id)
        .where(
            _in_force(on),
            Contract.end_date <= on + timedelta(days=RENEWAL_NOTICE_DAYS),
            Contract.renewal_reminded_at.is_(None),
            Resident.dingtalk_userid.is_not(None),
        )
    )

    def send(row) -> bool:
        reach = notices.notify_resident(
            session,
            row.resident_id,
            title="家庭医生签约即将到期",
            lines=[
                f"您与{row.team_name}的家庭医生签约将于{_cn_date(row.end_date, on)}到期",
                "请联系家庭医生团队办理续约，续约后服务不中断",
            ],
            key=f"family_doctor:contract:{row.id}:renewal",
        )
        if reach == "unreachable":
            return False
        session.execute(sa.update(Contract).where(Contract.id == row.id).values(renewal_reminded_at=utcnow()))
        return True

    return _remind(session, query, Contract.id, send)


def run_daily(on: date | None = None) -> dict[str, Any]:
    """The daily job: schedule follow-ups, then send the reminders that are due."""
    on = on or service.today()
    return {
        "scheduled": schedule_follow_ups(on),
        "follow_up_reminders": remind_follow_ups(on),
        "renewal_reminders": remind_renewals(on),
    }


# -- the follow-up API --------------------------------------------------------------------------------------------


def _follow_up_view(row: FollowUp, on: date) -> dict[str, Any]:
    state = "done" if row.done_on else ("overdue" if row.due_date < on else "open")
    return {
        "id": row.id,
        "resident_id": row.resident_id,
        "team_id": row.team_id,
        "kind": row.kind,
        "kind_name": FOLLOW_UP_KINDS[row.kind],
        "due_date": row.due_date,
        "state": state,
        "done_on": row.done_on,
        "done_by": row.done_by,
        "note": row.note,
        "reminded_at": row.reminded_at,
    }


def _visible_resident(principal: Principal, session: orm.Session, resident_id: int) -> tuple[Contract, int]:
    """The resident's current contract and its team's institution, when their team is in the caller's scope."""
    row = session.execute(
        sa.select(Contract, FamilyDoctorTeam.institution_id)
        .join(FamilyDoctorTeam, FamilyDoctorTeam.id == Contract.team_id)
        .where(
            Contract.resident_id == resident_id,
            Contract.is_current.is_(True),
            Contract.team_id.in_(service.visible_team_ids(principal)),
        )
    ).first()
    if row is None:
        raise ApiError("not_found", f"居民 {resident_id} 不存在", status=404)
    return row[0], row[1]


def list_follow_ups(principal: Principal, resident_id: int, session: orm.Session | None = None) -> dict[str, Any]:
    """A resident's follow-ups, open first then the latest done; scoped and audited like `service.get_resident`."""
    session = session or db.session()
    _, institution_id = _visible_resident(principal, session, resident_id)
    rows = session.scalars(
        sa.select(FollowUp)
        .where(FollowUp.resident_id == resident_id)
        .order_by(FollowUp.done_on.is_not(None), FollowUp.due_date.desc(), FollowUp.id.desc())
    ).all()
    audit.record(
        principal,
        "resident.follow_ups.read",
        resource_type="resident",
        resource_id=resident_id,
        node_id=institution_id,
        detail={"count": len(rows)},
    )
    on = service.today()
    return {"items": [_follow_up_view(row, on) for row in rows]}


def earliest_done_on(due: date) -> date:
    """A follow-up done this early would have its successor due on or before its own due date: a quarter's
    follow-up cannot be done in the quarter before."""
    day = add_months(due, -QUARTER)
    while add_months(day, QUARTER) <= due:
        day += timedelta(days=1)
    return day


def complete_follow_up(
    principal: Principal, follow_up_id: int, data: Mapping[str, Any], session: orm.Session | None = None
) -> dict[str, Any]:
    """Mark an open follow-up done (by a member of the resident's current team, or an admin above it) and
    schedule the next one a quarter later."""
    session = session or db.session()
    follow_up = session.get(FollowUp, follow_up_id)
    if follow_up is None:
        raise ApiError("not_found", f"随访 {follow_up_id} 不存在", status=404)
    try:
        contract, institution_id = _visible_resident(principal, session, follow_up.resident_id)
    except ApiError:
        raise ApiError("not_found", f"随访 {follow_up_id} 不存在", status=404) from None
    if follow_up.done_on is not None:
        raise ApiError("invalid_state", "该随访已完成", status=409)
    on = service.today()
    done_on: date = data.get("done_on") or on
    if done_on > on:
        raise ApiError("validation_error", "随访日期不能晚于今天", status=422, field="done_on")
    earliest = earliest_done_on(follow_up.due_date)
    if done_on < earliest:
        raise ApiError(
            "validation_error", f"随访日期不得早于 {earliest.isoformat()}（上一季度）", status=422, field="done_on"
        )
    follow_up.done_on = done_on
    follow_up.done_by = principal.actor
    follow_up.note = (data.get("note") or "").strip()
    follow_up.team_id = contract.team_id  # whoever did it now is the resident's team
    follow_up_next = None
    resident = session.get(Resident, follow_up.resident_id)
    still_due = contract.status == "active" and f",{follow_up.kind}," in (resident.tags if resident else "")
    another_open = session.scalar(
        sa.select(FollowUp.id).where(
            FollowUp.resident_id == follow_up.resident_id,
            FollowUp.kind == follow_up.kind,
            FollowUp.done_on.is_(None),
            FollowUp.id != follow_up.id,
        )
    )
    if still_due and another_open is None:
        follow_up_next = FollowUp(
            resident_id=follow_up.resident_id,
            team_id=contract.team_id,
            kind=follow_up.kind,
            due_date=add_months(done_on, QUARTER),
            note="",
        )
        session.add(follow_up_next)
    session.flush()
    audit.record(
        principal,
        "resident.follow_up.done",
        resource_type="resident",
        resource_id=follow_up.resident_id,
        node_id=institution_id,
        detail={
            "follow_up_id": follow_up.id,
            "kind": follow_up.kind,
            "next_id": follow_up_next.id if follow_up_next else None,
        },
        session=session,
    )
    session.commit()
    return {
        "follow_up": _follow_up_view(follow_up, on),
        "next": _follow_up_view(follow_up_next, on) if follow_up_next else None,
    }

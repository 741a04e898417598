"""Appointment capacity (号源): target departments publish how many referred patients they take per day and
half-day; accepting a referral books one place.

Booking and publishing are each one conditional UPDATE, so concurrent coordinators never overbook: a booking only
counts while `booked < capacity`, and a new capacity only applies while it is not below what is already booked
(the table's check constraint backs both). Who booked a place is on the referral (`Referral.slot_id`), never on
the slot, so anyone who may refer there can see the free places without seeing patients.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.dialects import postgresql, sqlite

from mini_apps.referral.models import HALF_DAYS, ReferralSlot
from org_sync.models import OrgNode
from workbench import audit, db
from workbench.auth.principal import INSTITUTION_LEVELS, Principal
from workbench.db import utcnow
from workbench.errors import ApiError

CHINA = ZoneInfo("Asia/Shanghai")
PUBLISHERS = ("institution_admin", "referral_coordinator")
MAX_CAPACITY = 999
DEFAULT_DAYS = 7  # what the list shows without `to`: the coming week
MAX_DAYS = 62


def today() -> date:
    """Slots are calendar days in China."""
    return datetime.now(CHINA).date()


# -- booking ------------------------------------------------------------------------------------------------------


def book(session: orm.Session, department_id: int, day: date, half_day: str) -> ReferralSlot:
    """Take one place of the department's slot in the caller's transaction (the caller commits).

    409 `slot_full` when every place is taken, 409 `no_capacity` when the department published none then."""
    if half_day not in HALF_DAYS:
        raise ApiError("validation_error", f"half_day 只能是 {', '.join(HALF_DAYS)}", status=422, field="slot")
    where = (
        ReferralSlot.department_id == department_id,
        ReferralSlot.day == day,
        ReferralSlot.half_day == half_day,
    )
    slot = session.scalars(
        sa.update(ReferralSlot)
        .where(*where, ReferralSlot.booked < ReferralSlot.capacity)
        .values(booked=ReferralSlot.booked + 1, updated_at=utcnow())
        .returning(ReferralSlot),
        execution_options={"populate_existing": True, "synchronize_session": False},
    ).one_or_none()
    if slot is not None:
        return slot
    capacity = session.scalar(sa.select(ReferralSlot.capacity).where(*where))
    when = f"{day.isoformat()}{HALF_DAYS[half_day]}"
    if not capacity:
        raise ApiError("no_capacity", f"该科室{when}未发布号源", status=409, field="slot")
    raise ApiError("slot_full", f"该科室{when}的号源已约满", status=409, field="slot")


def release(session: orm.Session, slot_id: int) -> None:
    """Give one place back (a cancelled appointment), in the caller's transaction. Never below zero."""
    session.execute(
        sa.update(ReferralSlot)
        .where(ReferralSlot.id == slot_id, ReferralSlot.booked > 0)
        .values(booked=ReferralSlot.booked - 1, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )


# -- publishing and reading ---------------------------------------------------------------------------------------


def _department(session: orm.Session, department_id: int) -> OrgNode | None:
    """A live department inside an institution (where referred patients are seen), else None."""
    node = session.get(OrgNode, department_id)
    if node is None or node.deleted_at is not None or node.level != "internal_department":
        return None
    ancestors = [int(part) for part in node.path.strip("/").split("/") if part]
    inside = session.scalar(
        sa.select(sa.func.count())
        .select_from(OrgNode)
        .where(OrgNode.id.in_(ancestors), OrgNode.level.in_(INSTITUTION_LEVELS))
    )
    return node if inside else None


def _not_found(department_id: int) -> ApiError:
    return ApiError("not_found", f"科室 {department_id} 不存在", status=404, field="department_id")


def _view(slot: ReferralSlot) -> dict[str, Any]:
    return {
        "id": slot.id,
        "department_id": slot.department_id,
        "day": slot.day,
        "half_day": slot.half_day,
        "capacity": slot.capacity,
        "free": max(slot.capacity - slot.booked, 0),
    }


def _insert(session: orm.Session):
    return (postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert)(ReferralSlot)


def _publisher_department(session: orm.Session, principal: Principal, department_id: int) -> OrgNode:
    department = _department(session, department_id)
    if department is None or not principal.scope(*PUBLISHERS).covers_path(department.path):
        raise _not_found(department_id)
    return department


def _put(
    session: orm.Session, principal: Principal, department: OrgNode, day: date, half_day: str, capacity: int
) -> ReferralSlot:
    """Create or change one slot in the caller's transaction; 409 naming `capacity` below what is booked."""
    now = utcnow()
    inserted = session.scalar(
        _insert(session)
        .values(
            department_id=department.id,
            day=day,
            half_day=half_day,
            capacity=capacity,
            booked=0,
            updated_by=principal.actor,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["department_id", "day", "half_day"])
        .returning(ReferralSlot.id)
    )
    where = (ReferralSlot.department_id == department.id, ReferralSlot.day == day, ReferralSlot.half_day == half_day)
    if inserted is None:
        # Not below what is booked, checked in the same statement that changes it (a booking may land meanwhile).
        changed = session.execute(
            sa.update(ReferralSlot)
            .where(*where, ReferralSlot.booked <= capacity)
            .values(capacity=capacity, updated_by=principal.actor, updated_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount
        if not changed:
            booked = session.scalar(sa.select(ReferralSlot.booked).where(*where))
            session.rollback()
            when = f"{day.isoformat()}{HALF_DAYS[half_day]}"
            raise ApiError(
                "conflict",
                f"{when}已预约 {booked} 个，号源数不能少于已预约数",
                status=409,
                field="capacity",
                booked=booked,
                day=day.isoformat(),
                half_day=half_day,
            )
    slot = session.scalars(sa.select(ReferralSlot).where(*where), execution_options={"populate_existing": True}).one()
    audit.record(
        principal,
        "referral.slot.publish",
        resource_type="referral_slot",
        resource_id=slot.id,
        node_id=department.id,
        detail={"day": day.isoformat(), "half_day": half_day, "capacity": capacity},
        session=session,
    )
    return slot


def publish(
    principal: Principal, data: Mapping[str, Any], session: orm.Session | None = None, on: date | None = None
) -> dict[str, Any]:
    """Set a department's capacity for one day and half-day (creating the slot the first time); commits.

    Only the department's institution admins and referral coordinators may; a capacity below the places already
    booked is refused (409 naming `capacity`), as is a day already past (422 naming `day`)."""
    session = session or db.session()
    department = _publisher_department(session, principal, data["department_id"])
    if data["day"] < (on or today()):
        raise ApiError("validation_error", "不能发布已过去日期的号源", status=422, field="day")
    slot = _put(session, principal, department, data["day"], data["half_day"], data["capacity"])
    session.commit()
    return _view(slot)


def publish_week(
    principal: Principal, data: Mapping[str, Any], session: orm.Session | None = None, on: date | None = None
) -> dict[str, Any]:
    """A week's pattern at once: `capacity` = {"am": [Mon … Sun], "pm": [Mon … Sun]} (null leaves that half-day as
    it is) for the seven days from `from`. All or nothing, with the rules of `publish`."""
    session = session or db.session()
    department = _publisher_department(session, principal, data["department_id"])
    start = data["from_"]
    if start < (on or today()):
        raise ApiError("validation_error", "不能发布已过去日期的号源", status=422, field="from")
    placed = []
    for offset in range(7):
        day = start + timedelta(days=offset)
        for half_day, week in data["capacity"].items():
            capacity = week[day.weekday()]
            if capacity is not None:
                placed.append(_put(session, principal, department, day, half_day, capacity))
    session.commit()
    return {
        "department_id": department.id,
        "from": start,
        "to": start + timedelta(days=6),
        "items": [_view(slot) for slot in sorted(placed, key=lambda slot: (slot.day, slot.half_day))],
    }


def list_slots(
    principal: Principal,
    department_id: int,
    start: date | None = None,
    end: date | None = None,
    session: orm.Session | None = None,
) -> dict[str, Any]:
    """The department's published slots from `start` (today) to `end` (a week on), with their free places."""
    session = session or db.session()
    if _department(session, department_id) is None:
        raise _not_found(department_id)
    start = start or today()
    end = end or start + timedelta(days=DEFAULT_DAYS - 1)
    if end < start:
        raise ApiError("validation_error", "to 不能早于 from", status=422, field="to")
    if (end - start).days >= MAX_DAYS:
        raise ApiError("validation_error", f"一次最多查询 {MAX_DAYS} 天", status=422, field="to")
    slots = session.scalars(
        sa.select(ReferralSlot)
        .where(ReferralSlot.department_id == department_id, ReferralSlot.day.between(start, end))
        .order_by(ReferralSlot.day, ReferralSlot.half_day)
    )
    return {"department_id": department_id, "from": start, "to": end, "items": [_view(slot) for slot in slots]}

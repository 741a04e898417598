"""Referral clocks (reference/domain.md §4.3): how long the side a referral waits on has to answer, and the jobs
that remind at half time, escalate to the medical community's referral office at the deadline (expiring a
referral nobody accepted) and mark booked patients who did not come as no-shows (telling the referring doctor).
Each job selects what is due in one statement, then handles each referral in its own transaction, claiming it
with a conditional UPDATE (or the state change itself), so a re-run or a second scheduler does nothing more.

The spans come from the `REFERRAL_SLA` setting (config/settings.py): routine/urgent/green acceptance of an up or
lateral referral, `down_ack` for the grassroots side to accept a down-referral, `first_follow_up` from receiving
a down-referred patient to the first rehabilitation follow-up.
"""

from __future__ import annotations

import logging
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask import current_app, has_app_context
from sqlalchemy import orm

from bot import messages, outbox
from config.settings import REFERRAL_SLA_DEFAULTS
from mini_apps.family_doctor.models import Contract, FamilyDoctorTeam, TeamMember
from mini_apps.referral import states
from mini_apps.referral.models import HALF_DAYS, PRIORITIES, Referral, ReferralSlot
from org_sync.models import OrgMember, OrgMembership, OrgNode
from workbench import audit, db
from workbench.auth.models import RoleGrant
from workbench.auth.principal import INSTITUTION_LEVELS
from workbench.db import utcnow
from workbench.errors import ApiError
from workbench.privacy import mask_name

log = logging.getLogger(__name__)


def _sla() -> dict[str, timedelta]:
    # Outside an app (a script, a unit test of the table) the defaults apply.
    if has_app_context():
        return current_app.config["SETTINGS"].referral_sla
    return REFERRAL_SLA_DEFAULTS


def sla_span(direction: str, priority: str, state: str) -> timedelta | None:
    """How long `state` may last before the waiting side is escalated, or None when it has no clock."""
    sla = _sla()
    if state == "submitted":
        if direction == "down":
            return sla["down_ack"]
        return sla.get(priority, sla["routine"])
    if state == "received_patient" and direction == "down":
        return sla["first_follow_up"]
    return None


def deadline_for(direction: str, priority: str, state: str, now: datetime) -> datetime | None:
    """The `respond_by` of a referral entering `state` at `now`; None when that state has no clock."""
    span = sla_span(direction, priority, state)
    return None if span is None else now + span


# -- the jobs -----------------------------------------------------------------------------------------------------

TIMER_SECONDS = 60
RECIPIENTS_LIMIT = 100  # a work notice's userid list; a department bigger than this gets its first hundred
HALF_DAY_ENDS = {"am": time(12), "pm": time(18)}  # China time: a booked patient not seen by then did not come
CLOCKED = ("submitted", "received_patient")
CHINA = ZoneInfo("Asia/Shanghai")


def run_timers(now: datetime | None = None) -> dict[str, int]:
    """The periodic job (every minute): reminders, escalations and expiries, no-shows. Returns the counts."""
    now = now or utcnow()
    return {
        "reminded": send_reminders(now),
        "escalated": escalate_overdue(now),
        "no_show": mark_no_shows(now),
    }


def _clocks() -> list[tuple[sa.ColumnElement[bool], timedelta]]:
    """(which referrals, their span) for every clock, so one statement can compare each row with its own span."""
    sla = _sla()
    up = Referral.direction != "down"
    clocks = [
        (sa.and_(Referral.state == "submitted", up, Referral.priority == priority), sla[priority])
        for priority in PRIORITIES
    ]
    unknown = sa.and_(Referral.state == "submitted", up, Referral.priority.not_in(list(PRIORITIES)))
    clocks.append((unknown, sla["routine"]))
    clocks.append((sa.and_(Referral.state == "submitted", Referral.direction == "down"), sla["down_ack"]))
    clocks.append((sa.and_(Referral.state == "received_patient", Referral.direction == "down"), sla["first_follow_up"]))
    return clocks


def send_reminders(now: datetime) -> int:
    """Referrals past half their span and not yet reminded: a work notice to the side they wait on."""
    session = db.session()
    # Half time has come when respond_by - span/2 <= now, i.e. respond_by <= now + span/2 for the row's span.
    halfway = sa.or_(*(sa.and_(rows, Referral.respond_by <= now + span / 2) for rows, span in _clocks()))
    due = session.execute(
        sa.select(Referral.id, Referral.state, Referral.respond_by)
        .where(
            Referral.respond_by.is_not(None),
            Referral.respond_by > now,  # past the deadline it is escalated instead
            Referral.reminded_at.is_(None),
            Referral.escalated_at.is_(None),
            halfway,
        )
        .order_by(Referral.respond_by, Referral.id)
    ).all()
    done = 0
    for referral_id, state, respond_by in due:
        try:
            claimed = session.execute(
                sa.update(Referral)
                .where(
                    Referral.id == referral_id,
                    Referral.state == state,
                    Referral.respond_by == respond_by,
                    Referral.reminded_at.is_(None),
                )
                .values(reminded_at=now)
                .execution_options(synchronize_session=False)
            ).rowcount
            if claimed:
                referral = session.get(Referral, referral_id, populate_existing=True)
                _notify(session, referral, "remind", receiving_side(session, referral), state, respond_by)
                audit.record(
                    None,
                    "referral.timer.remind",
                    resource_type="referral",
                    resource_id=referral_id,
                    node_id=referral.target_institution_id,
                    detail={"state": state},
                    session=session,
                )
            session.commit()
            done += bool(claimed)
        except Exception:
            session.rollback()
            log.exception("referral reminder failed", extra={"result": {"referral_id": referral_id}})
    return done


def escalate_overdue(now: datetime) -> int:
    """Referrals past their deadline and not yet escalated: a work notice to the medical community's referral
    office, and a referral nobody accepted expires (the SYSTEM action `expire`)."""
    from mini_apps.referral import service

    session = db.session()
    due = session.execute(
        sa.select(Referral.id, Referral.state, Referral.respond_by)
        .where(
            Referral.respond_by.is_not(None),
            Referral.respond_by <= now,
            Referral.escalated_at.is_(None),
            Referral.state.in_(CLOCKED),
        )
        .order_by(Referral.respond_by, Referral.id)
    ).all()
    done = 0
    for referral_id, state, respond_by in due:
        try:
            referral = session.get(Referral, referral_id, populate_existing=True)
            if referral is None or referral.state != state or referral.escalated_at is not None:
                session.rollback()
                continue
            if state == "submitted":
                # The conditional UPDATE inside makes a concurrent accept win or lose cleanly (409 → skipped).
                service.apply_transition(
                    session, referral, "expire", actor="system", member_id=None, side=states.SYSTEM, now=now
                )
                referral.escalated_at = now  # after the transition, which clears it on a state change
                claimed = 1
            else:
                claimed = session.execute(
                    sa.update(Referral)
                    .where(Referral.id == referral_id, Referral.state == state, Referral.escalated_at.is_(None))
                    .values(escalated_at=now)
                    .execution_options(synchronize_session=False)
                ).rowcount
                session.refresh(referral)
            if claimed:
                _notify(session, referral, "escalate", referral_office(session, referral), state, respond_by)
                audit.record(
                    None,
                    "referral.timer.escalate",
                    resource_type="referral",
                    resource_id=referral_id,
                    node_id=referral.target_institution_id,
                    detail={"state": state},
                    session=session,
                )
            session.commit()
            done += bool(claimed)
        except ApiError as exc:
            session.rollback()  # someone acted on it meanwhile: nothing is overdue any more
            log.info("referral escalation skipped: %s", exc.code, extra={"result": {"referral_id": referral_id}})
        except Exception:
            session.rollback()
            log.exception("referral escalation failed", extra={"result": {"referral_id": referral_id}})
    return done


def _half_days_over(now: datetime) -> sa.ColumnElement[bool]:
    """Slots whose half-day has ended by `now` (China time)."""
    local = now.astimezone(CHINA)
    ended_today = [half for half, end in HALF_DAY_ENDS.items() if local.time() >= end]
    clause = ReferralSlot.day < local.date()
    if ended_today:
        clause = sa.or_(clause, sa.and_(ReferralSlot.day == local.date(), ReferralSlot.half_day.in_(ended_today)))
    return clause


def mark_no_shows(now: datetime) -> int:
    """Scheduled referrals whose slot's half-day is over without an arrival become no-shows (SYSTEM `no_show`);
    the place stays consumed."""
    from mini_apps.referral import service

    session = db.session()
    due = session.scalars(
        sa.select(Referral.id)
        .join(ReferralSlot, ReferralSlot.id == Referral.slot_id)
        .where(Referral.state == "scheduled", _half_days_over(now))
        .order_by(ReferralSlot.day, Referral.id)
    ).all()
    done = 0
    for referral_id in due:
        try:
            referral = session.get(Referral, referral_id, populate_existing=True)
            if referral is None or referral.state != "scheduled":
                session.rollback()
                continue
            service.apply_transition(
                session, referral, "no_show", actor="system", member_id=None, side=states.SYSTEM, now=now
            )
            _tell_applicant_no_show(session, referral)
            session.commit()
            done += 1
        except ApiError as exc:
            session.rollback()  # arrived or cancelled meanwhile
            log.info("referral no-show skipped: %s", exc.code, extra={"result": {"referral_id": referral_id}})
        except Exception:
            session.rollback()
            log.exception("referral no-show failed", extra={"result": {"referral_id": referral_id}})
    return done


def _tell_applicant_no_show(session: orm.Session, referral: Referral) -> None:
    """The referring doctor learns the patient missed the appointment, to book again or close the referral."""
    to = _userids(session, sa.select(OrgMember.id).where(OrgMember.id == referral.applicant_member_id))
    slot = session.get(ReferralSlot, referral.slot_id)
    if not to or slot is None:
        return
    lines = [
        f"转诊单号：{referral.referral_no or f'#{referral.id}'}",
        f"患者：{mask_name(referral.patient_name)}",
        f"预约 {slot.day.isoformat()}{HALF_DAYS.get(slot.half_day, slot.half_day)} 未到诊，可重新预约或结案",
    ]
    outbox.enqueue_message(
        "work_notice",
        messages.notice(title="转诊患者爽约", lines=lines),
        idempotency_key=f"referral:{referral.id}:no_show:{slot.id}",
        to=to,
        db=session,
    )


# -- who is told --------------------------------------------------------------------------------------------------


def _userids(session: orm.Session, member_ids: sa.Select | sa.CompoundSelect) -> list[str]:
    """Userids of live, active members among `member_ids`, in a stable order."""
    return list(
        session.scalars(
            sa.select(OrgMember.userid)
            .where(OrgMember.id.in_(member_ids), OrgMember.deleted_at.is_(None), OrgMember.active.is_(True))
            .order_by(OrgMember.id)
            .limit(RECIPIENTS_LIMIT)
        )
    )


def _live_grants(role: str, node_ids: sa.ColumnElement[bool]) -> sa.Select:
    return (
        sa.select(RoleGrant.member_id)
        .join(OrgNode, OrgNode.id == RoleGrant.node_id)
        .where(RoleGrant.role == role, RoleGrant.revoked_at.is_(None), OrgNode.deleted_at.is_(None), node_ids)
    )


def _leaders(node_id: int) -> sa.Select:
    return sa.select(OrgMembership.member_id).where(OrgMembership.node_id == node_id, OrgMembership.is_leader)


def receiving_side(session: orm.Session, referral: Referral) -> list[str]:
    """Who answers for the receiving side: the target doctor, the target department's members, the patient's
    family-doctor team when it belongs to the target institution (a down-referral comes home to them), and the
    referral coordinators granted on the target institution or on an administrative node above it (a county's
    referral office) — not those of another institution whose subtree holds it (the lead hospital's coordinators
    do not answer for its member institutions); else the institution's leaders."""
    institution = session.get(OrgNode, referral.target_institution_id)
    chain = [int(part) for part in institution.path.strip("/").split("/") if part] if institution else []
    grant_nodes = session.scalars(
        sa.select(OrgNode.id).where(
            OrgNode.id.in_(chain or [-1]),
            sa.or_(OrgNode.id == referral.target_institution_id, OrgNode.level.not_in(INSTITUTION_LEVELS)),
        )
    ).all()
    member_ids = [_live_grants("referral_coordinator", RoleGrant.node_id.in_(grant_nodes or [-1]))]
    if referral.target_department_id is not None:
        member_ids.append(
            sa.select(OrgMembership.member_id).where(OrgMembership.node_id == referral.target_department_id)
        )
    if referral.target_member_id is not None:
        member_ids.append(sa.select(OrgMember.id).where(OrgMember.id == referral.target_member_id))
    if referral.resident_id is not None:
        member_ids.append(
            sa.select(TeamMember.member_id)
            .join(Contract, sa.and_(Contract.team_id == TeamMember.team_id, Contract.is_current))
            .join(FamilyDoctorTeam, FamilyDoctorTeam.id == TeamMember.team_id)
            .where(
                Contract.resident_id == referral.resident_id,
                FamilyDoctorTeam.institution_id == referral.target_institution_id,
            )
        )
    found = _userids(session, sa.union(*member_ids))
    return found or _userids(session, _leaders(referral.target_institution_id))


def community_lead(session: orm.Session, institution_id: int) -> OrgNode | None:
    """The medical_community_lead node at or above the institution."""
    institution = session.get(OrgNode, institution_id)
    if institution is None:
        return None
    chain = [int(part) for part in institution.path.strip("/").split("/") if part]
    return session.scalars(
        sa.select(OrgNode).where(OrgNode.id.in_(chain), OrgNode.level == "medical_community_lead")
    ).first()


def referral_office(session: orm.Session, referral: Referral) -> list[str]:
    """The medical community's referral office (转诊办): referral coordinators granted on the community's lead
    hospital; else its institution admins and leaders."""
    lead = community_lead(session, referral.target_institution_id)
    if lead is None:
        return _userids(session, _leaders(referral.target_institution_id))
    office = _userids(session, _live_grants("referral_coordinator", RoleGrant.node_id == lead.id))
    return office or _userids(
        session, sa.union(_live_grants("institution_admin", RoleGrant.node_id == lead.id), _leaders(lead.id))
    )


# -- the messages -------------------------------------------------------------------------------------------------

_WAITING = {
    "submitted": "接收",
    "received_patient": "首次康复随访",
}


def _local(at: datetime) -> str:
    return at.astimezone(CHINA).strftime("%Y-%m-%d %H:%M")


def _notify(session: orm.Session, referral: Referral, kind: str, to: list[str], state: str, deadline: datetime) -> None:
    """One work notice about the clock of `state` that ends at `deadline` (masked patient name at most, no ID
    number or diagnosis), keyed so a re-run never sends it twice."""
    if not to:
        log.warning("referral timer: nobody to tell", extra={"result": {"referral_id": referral.id, "kind": kind}})
        return
    number = referral.referral_no or f"#{referral.id}"
    waiting = _WAITING.get(state, states.STATES.get(state, state))
    lines = [
        f"转诊单号：{number}（{states.DIRECTIONS.get(referral.direction, referral.direction)}，"
        f"{PRIORITIES.get(referral.priority, referral.priority)}）",
        f"患者：{mask_name(referral.patient_name)}",
    ]
    if kind == "remind":
        title = f"转诊待{waiting}提醒"
        lines.append(f"请于 {_local(deadline)} 前处理（已过半时限）")
    else:
        title = f"转诊超时未{waiting}"
        lines.append(f"时限 {_local(deadline)} 已过，请转诊办协调")
        if referral.state == "expired":
            lines.append("该转诊已标记为超时未接收，申请方可修改后重新提交")
    outbox.enqueue_message(
        "work_notice",
        messages.notice(title=title, lines=lines),
        idempotency_key=f"referral:{referral.id}:{kind}:{state}:{deadline:%Y%m%d%H%M%S}",
        to=to,
        db=session,
    )

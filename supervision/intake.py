"""Automatic intake (平台自动采集): indicator values computed from the platform's own data — family-doctor signing
and two-way referral — per reporting unit and period, recorded through `values.record(..., automatic=True)` so a
feed's or a manual report's value for the same key is never written over.

Each figure is the unit's OWN facts, never a subtree sum: the roll-up (supervision/rollup.py) sums units up the
tree, so a lead hospital's value must not already contain its member institutions' (the figure modules of the apps,
`mini_apps/family_doctor/figures.py` and `mini_apps/referral/figures.py`, give subtree sums per node; the queries
here are theirs grouped by unit instead of by ancestor, with the same rules — tests/supervision/test_intake.py
checks that the per-unit values summed over every subtree equal those modules' figures).

A period is counted as of its last day, or today while it is still running (`as_of`):
- family doctor (domain.md §5.3), attributed to the institution of the team:
  - `coverage`: residents signed on that day (a resident once, at the in-force contract that started last) ÷ the
    unit's `ServicePopulation` "all" of the period's year; no population (or 0), no value;
  - `key_population_coverage`: signed residents with any key-population tag ÷ the unit's "key_population";
  - `renewal_rate`: renewed ÷ due (the person's last non-terminated contract ended in the year up to that day);
  - `overdue_follow_ups` (a count, 逾期未随访人数): residents with a follow-up due before that day and still open
    at its end (a resident once per institution; one overdue at two institutions counts at both, so the sum above
    them can exceed the figure module's deduplicated count); every institution with a family-doctor team gets a
    value, 0 included.
- referral (domain.md §4.6), referrals submitted in the period (China days):
  - `up_out`, `down_out` (counts) at the applicant institution; every live institution gets one, 0 included (the
    platform is the record of referrals: no referral is a true 0, not a missing report);
  - `closure`: closed ÷ sent, at the applicant institution;
  - `timely_acceptance`: accepted within the SLA ÷ responded; `arrival`: arrived ÷ accepted;
    `down_follow_up`: down-referrals received that reached rehab follow-up ÷ down-referrals received — all at the
    target institution.
Rates give a value only where their denominator is positive.

`run_intake(session, period)` records every active automatic indicator of the period's kind (one submission per
source key; a run that changes nothing leaves no submission behind), commits, then schedules the period's
roll-up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from mini_apps.family_doctor import figures as fd_figures
from mini_apps.family_doctor.models import TAGS, Contract, FamilyDoctorTeam, FollowUp, Resident, ServicePopulation
from mini_apps.family_doctor.service import CHINA, today
from mini_apps.referral import figures as ref_figures
from mini_apps.referral.models import Referral, ReferralEvent
from org_sync.models import OrgNode
from supervision.models import Indicator, IndicatorSubmission
from supervision.periods import Period
from supervision.values import ValueRow, record
from workbench import audit
from workbench.auth.principal import INSTITUTION_LEVELS
from workbench.db import utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UnitFigure:
    """One reporting unit's own numerator and denominator (None for a count)."""

    unit_id: int
    numerator: Decimal
    denominator: Decimal | None = None


def as_of(period: Period, on: date | None = None) -> date:
    """The day a period's figures are counted on: its last day, or `on` (today) while it is still running."""
    on = on or today()
    return min(period.end - timedelta(days=1), on)


def _rates(rows: Iterable[tuple[int, Any, Any]]) -> list[UnitFigure]:
    """Rate figures from (unit, numerator, denominator), dropping units without a positive denominator."""
    return [
        UnitFigure(int(unit), Decimal(int(num or 0)), Decimal(int(den)))
        for unit, num, den in rows
        if den is not None and int(den) > 0
    ]


def _counts(counted: Iterable[tuple[int, Any]], zero_units: Iterable[int]) -> list[UnitFigure]:
    """Count figures: the counted units, and 0 for each of `zero_units` without a count."""
    found = {int(unit): int(n or 0) for unit, n in counted}
    for unit in zero_units:
        found.setdefault(int(unit), 0)
    return [UnitFigure(unit, Decimal(n)) for unit, n in sorted(found.items())]


def _live_institutions(session: orm.Session) -> list[int]:
    live = sa.select(OrgNode.id).where(OrgNode.level.in_(INSTITUTION_LEVELS), OrgNode.deleted_at.is_(None))
    return list(session.scalars(live))


# -- family doctor ---------------------------------------------------------------------------------------------------


def _signed_ranked(on: date) -> sa.Subquery:
    """Contracts in force on `on`, ranked per resident (rank 1: the one that started last), with the team's
    institution: the same rule as `fd_figures._add_signed`."""
    next_day = datetime.combine(on + timedelta(days=1), time(), CHINA)
    in_force = sa.and_(
        Contract.start_date <= on,
        Contract.end_date >= on,
        sa.or_(Contract.status != "terminated", Contract.terminated_at >= next_day),
    )
    return (
        sa.select(
            Contract.resident_id,
            FamilyDoctorTeam.institution_id.label("unit_id"),
            Resident.tags,
            sa.func.row_number()
            .over(partition_by=Contract.resident_id, order_by=(Contract.start_date.desc(), Contract.id.desc()))
            .label("rank"),
        )
        .join(FamilyDoctorTeam, FamilyDoctorTeam.id == Contract.team_id)
        .join(Resident, Resident.id == Contract.resident_id)
        .where(in_force)
        .subquery()
    )


def _coverage(session: orm.Session, period: Period, *, key_population: bool) -> list[UnitFigure]:
    on = as_of(period)
    ranked = _signed_ranked(on)
    if key_population:
        tags = ranked.c.tags
        any_tag = sa.or_(*(tags.contains(f",{tag},", autoescape=True) for tag in TAGS))
        signed = sa.func.sum(sa.case((any_tag, 1), else_=0))
        category = fd_figures.KEY_POPULATION
    else:
        signed = sa.func.count()
        category = fd_figures.ALL
    counted = (
        sa.select(ranked.c.unit_id, signed.label("signed"))
        .where(ranked.c.rank == 1)
        .group_by(ranked.c.unit_id)
        .subquery()
    )
    # Driven by the population rows: no population, no value.
    stmt = (
        sa.select(ServicePopulation.node_id, sa.func.coalesce(counted.c.signed, 0), ServicePopulation.population)
        .outerjoin(counted, counted.c.unit_id == ServicePopulation.node_id)
        .where(ServicePopulation.year == period.year, ServicePopulation.category == category)
    )
    return _rates(session.execute(stmt))


def family_doctor_coverage(session: orm.Session, period: Period) -> list[UnitFigure]:
    return _coverage(session, period, key_population=False)


def family_doctor_key_population_coverage(session: orm.Session, period: Period) -> list[UnitFigure]:
    return _coverage(session, period, key_population=True)


def family_doctor_renewal_rate(session: orm.Session, period: Period) -> list[UnitFigure]:
    """The rule of `fd_figures._add_renewals`, per unit."""
    ranked, renewed = fd_figures.renewal_cycles(as_of(period))
    stmt = (
        sa.select(ranked.c.unit_id, sa.func.sum(sa.case((renewed, 1), else_=0)), sa.func.count())
        .where(ranked.c.rank == 1)
        .group_by(ranked.c.unit_id)
    )
    return _rates(session.execute(stmt))


def family_doctor_overdue_follow_ups(session: orm.Session, period: Period) -> list[UnitFigure]:
    """Residents with a follow-up due before the period's day and not done by its end (for today: still open),
    at the institution of the follow-up's team; 0 for every other institution with a team."""
    on = as_of(period)
    counted = session.execute(
        sa.select(FamilyDoctorTeam.institution_id, sa.func.count(sa.distinct(FollowUp.resident_id)))
        .join(FamilyDoctorTeam, FamilyDoctorTeam.id == FollowUp.team_id)
        .where(FollowUp.due_date < on, sa.or_(FollowUp.done_on.is_(None), FollowUp.done_on > on))
        .group_by(FamilyDoctorTeam.institution_id)
    ).all()
    with_teams = session.scalars(sa.select(FamilyDoctorTeam.institution_id).distinct()).all()
    return _counts(counted, with_teams)


# -- referral --------------------------------------------------------------------------------------------------------


def _submitted_in(period: Period) -> sa.ColumnElement[bool]:
    """Referrals submitted in the period's China days up to `as_of` (drafts have no submission time)."""
    since = datetime.combine(period.start, time(), CHINA)
    until = datetime.combine(as_of(period) + timedelta(days=1), time(), CHINA)
    return sa.and_(Referral.submitted_at >= since, Referral.submitted_at < until)


def _count(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
    return sa.func.coalesce(sa.func.sum(sa.case((condition, 1), else_=0)), 0)


def _sent(session: orm.Session, period: Period, direction: str) -> list[UnitFigure]:
    counted = session.execute(
        sa.select(Referral.applicant_institution_id, sa.func.count())
        .where(_submitted_in(period), Referral.direction == direction)
        .group_by(Referral.applicant_institution_id)
    ).all()
    return _counts(counted, _live_institutions(session))


def referral_up_out(session: orm.Session, period: Period) -> list[UnitFigure]:
    return _sent(session, period, "up")


def referral_down_out(session: orm.Session, period: Period) -> list[UnitFigure]:
    return _sent(session, period, "down")


def referral_closure(session: orm.Session, period: Period) -> list[UnitFigure]:
    stmt = (
        sa.select(Referral.applicant_institution_id, _count(Referral.closed_at.is_not(None)), sa.func.count())
        .where(_submitted_in(period))
        .group_by(Referral.applicant_institution_id)
    )
    return _rates(session.execute(stmt))


def _received(session: orm.Session, period: Period, numerator: Any, denominator: Any) -> list[UnitFigure]:
    stmt = (
        sa.select(Referral.target_institution_id, numerator, denominator)
        .where(_submitted_in(period))
        .group_by(Referral.target_institution_id)
    )
    return _rates(session.execute(stmt))


def referral_timely_acceptance(session: orm.Session, period: Period) -> list[UnitFigure]:
    """Accepted within the SLA span of the referral's direction and priority ÷ responded (accepted, or rejected at
    least once): the rule of `ref_figures.referral_figures`, with its SLA settings."""
    in_time = ref_figures.accepted_in_time(session.get_bind().dialect.name)
    accepted = Referral.accepted_at.is_not(None)
    rejected = sa.select(ReferralEvent.id).where(
        ReferralEvent.referral_id == Referral.id, ReferralEvent.action == "reject"
    )
    return _received(session, period, _count(sa.and_(accepted, in_time)), _count(sa.or_(accepted, rejected.exists())))


def referral_arrival(session: orm.Session, period: Period) -> list[UnitFigure]:
    return _received(
        session, period, _count(Referral.arrived_at.is_not(None)), _count(Referral.accepted_at.is_not(None))
    )


def referral_down_follow_up(session: orm.Session, period: Period) -> list[UnitFigure]:
    followed = sa.select(ReferralEvent.id).where(
        ReferralEvent.referral_id == Referral.id, ReferralEvent.to_state == "rehab_follow_up"
    )
    down = Referral.direction == "down"
    return _received(session, period, _count(sa.and_(down, followed.exists())), _count(down))


AUTOMATIC: dict[str, Callable[[orm.Session, Period], list[UnitFigure]]] = {
    "family_doctor.coverage": family_doctor_coverage,
    "family_doctor.key_population_coverage": family_doctor_key_population_coverage,
    "family_doctor.renewal_rate": family_doctor_renewal_rate,
    "family_doctor.overdue_follow_ups": family_doctor_overdue_follow_ups,
    "referral.up_out": referral_up_out,
    "referral.down_out": referral_down_out,
    "referral.timely_acceptance": referral_timely_acceptance,
    "referral.arrival": referral_arrival,
    "referral.closure": referral_closure,
    "referral.down_follow_up": referral_down_follow_up,
}


# -- recording -------------------------------------------------------------------------------------------------------


def _schedule_rollup(periods: Sequence[Period]) -> bool:
    """Queue the roll-up of `periods` (supervision/rollup.py); False where that module is not there yet."""
    try:
        from supervision import rollup
    except ImportError:
        log.warning("supervision.rollup is missing: roll-up not scheduled after intake", extra={"result": "skipped"})
        return False
    rollup.schedule_recompute(list(periods))
    return True


def run_intake(
    session: orm.Session, period: Period, keys: Iterable[str] | None = None, *, schedule: bool = True
) -> dict[str, Any]:
    """Record the automatic values of `period` for every active indicator of its kind whose `automatic_source` is
    in AUTOMATIC (limited to `keys` when given); commit; then schedule the period's roll-up. Returns what each
    source key did."""
    if period.start > today():
        # Nothing has happened in it yet: as_of() would count today's state into a future period.
        return {"period": period.code, "sources": {}, "changed": 0, "rollup_scheduled": False}
    wanted = set(AUTOMATIC) if keys is None else set(keys) & set(AUTOMATIC)
    indicators = session.scalars(
        sa.select(Indicator)
        .where(Indicator.active, Indicator.period == period.kind, Indicator.automatic_source.in_(sorted(wanted)))
        .order_by(Indicator.id)
    ).all()
    by_key: dict[str, list[Indicator]] = {}
    for indicator in indicators:
        by_key.setdefault(indicator.automatic_source, []).append(indicator)

    sources: dict[str, dict[str, Any]] = {}
    stamp = utcnow().isoformat()
    for key, listed in sorted(by_key.items()):
        figures = AUTOMATIC[key](session, period)
        rows = [
            ValueRow(indicator.id, figure.unit_id, period, figure.numerator, figure.denominator)
            for indicator in listed
            for figure in figures
        ]
        submission = IndicatorSubmission(
            kind="automatic",
            source=f"auto:{key}",
            batch_key=f"{period.code}@{stamp}",
            submitted_by="system",
            state="accepted",
        )
        result = record(session, submission, rows, automatic=True)
        summary = {
            "indicators": [indicator.code for indicator in listed],
            "units": len(figures),
            "new": result.new,
            "corrected": result.corrected,
            "unchanged": result.unchanged,
            "kept": result.kept,
        }
        if result.changed:
            audit.record(
                None,
                "supervision.intake",
                resource_type="indicator_submission",
                resource_id=submission.id,
                detail={"period": period.code, "source": submission.source, **summary},
                session=session,
            )
        else:
            # Nothing new: an empty submission every night per key would only be noise.
            session.delete(submission)
            session.flush()
        sources[key] = summary
    session.commit()

    scheduled = bool(by_key) and schedule and _schedule_rollup([period])
    changed = sum(item["new"] + item["corrected"] for item in sources.values())
    log.info("automatic intake %s", period.code, extra={"result": "ok", "rows": changed})
    return {"period": period.code, "sources": sources, "changed": changed, "rollup_scheduled": scheduled}

"""Automatic intake on both backends: family-doctor contracts and referrals in a lead hospital and the member
institution under it (plus a sibling member institution), `run_intake` for a past month and year, the stored
per-unit values against counts made by hand, no double counting at the lead hospital (its value is its own facts;
summed over its subtree they equal the apps' figure modules), a feed's value kept, corrections versioned, and a
second run that records nothing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from mini_apps.family_doctor import figures as fd_figures
from mini_apps.family_doctor import service as fd_service
from mini_apps.family_doctor.models import Contract, FamilyDoctorTeam, FollowUp, Resident, ServicePopulation
from mini_apps.referral import figures as ref_figures
from mini_apps.referral import states
from mini_apps.referral.models import Referral
from mini_apps.referral.service import apply_transition
from org_sync.models import OrgNode
from supervision import intake, jobs
from supervision.models import Indicator, IndicatorRollup, IndicatorSubmission, IndicatorValue
from supervision.periods import parse
from supervision.values import ValueRow, record
from tests.conftest import run_jobs
from tests.referral.conftest import (
    ReferralWorld,
    ref_world,  # noqa: F401  (the referral tests' fixture, used here)
    up_payload,
)
from workbench import db
from workbench.audit import AuditRecord

CHINA = fd_service.CHINA
MONTH = parse("2025-10")
YEAR = parse("2025")
YEAR_END = date(2025, 12, 31)

# (code, automatic_source, kind, period)
CATALOG = [
    ("T-FD-COV", "family_doctor.coverage", "rate", "year"),
    ("T-FD-KEY", "family_doctor.key_population_coverage", "rate", "year"),
    ("T-FD-RENEW", "family_doctor.renewal_rate", "rate", "year"),
    ("T-FD-OVERDUE", "family_doctor.overdue_follow_ups", "count", "month"),
    ("T-REF-UP", "referral.up_out", "count", "month"),
    ("T-REF-DOWN", "referral.down_out", "count", "month"),
    ("T-REF-TIMELY", "referral.timely_acceptance", "rate", "month"),
    ("T-REF-ARRIVAL", "referral.arrival", "rate", "month"),
    ("T-REF-CLOSURE", "referral.closure", "rate", "month"),
    ("T-REF-DOWNFU", "referral.down_follow_up", "rate", "month"),
]


@dataclass
class Units:
    county: int
    lead: int  # the lead hospital: the member institution `a` is under it
    a: int
    b: int  # a sibling member institution under the same lead: signs residents, reports no population
    indicators: dict[str, int]  # automatic_source → the test indicator's id


def _catalog(session) -> dict[str, int]:
    """The active indicator of each automatic key: the seeded catalog's (migration 0013), else one made here."""
    found = dict(
        session.execute(
            sa.select(Indicator.automatic_source, Indicator.id).where(
                Indicator.active, Indicator.automatic_source.is_not(None)
            )
        ).all()
    )
    for code, key, kind, period in CATALOG:
        indicator = session.get(Indicator, found[key]) if key in found else None
        if indicator is None:
            indicator = Indicator(
                code=code,
                name=f"测试 {key}",
                dimension=key.split(".")[0],
                kind=kind,
                numerator_definition="-",
                denominator_definition=None if kind == "count" else "-",
                unit="%" if kind == "rate" else "人次",
                scale=100 if kind == "rate" else 1,
                direction="up",
                period=period,
                collection="automatic",
                source="平台",
                reporting_level="institution",
                automatic_source=key,
            )
            session.add(indicator)
            session.flush()
        assert (indicator.kind, indicator.period, indicator.reporting_level) == (kind, period, "institution")
        found[key] = indicator.id
    return {key: found[key] for _code, key, _kind, _period in CATALOG}


def _china(day: date, hour: float = 0) -> datetime:
    return datetime.combine(day, time(), CHINA) + timedelta(hours=hour)


def _resident(session, n: int, *tags: str) -> Resident:
    resident = Resident(
        name="测试居民",
        id_hash=f"intake-{n}",
        id_cipher="-",
        id_masked="-",
        birth_date=date(1950, 1, 1),
        sex="F",
        tags=fd_service.tags_column(list(tags)),
        created_by="test",
    )
    session.add(resident)
    session.flush()
    return resident


def _contract(session, resident, team: int, start: date, end: date, status: str = "active", **over) -> Contract:
    contract = Contract(
        resident_id=resident.id,
        team_id=team,
        package="基础包",
        start_date=start,
        end_date=end,
        status=status,
        created_by="test",
        **over,
    )
    session.add(contract)
    session.flush()
    return contract


def _family_doctor(session, units: Units) -> None:
    """Contracts of 2025, counted on 2025-12-31 (the year's value), and follow-ups for October 2025."""
    teams = {}
    for unit in (units.lead, units.a, units.b):
        team = FamilyDoctorTeam(institution_id=unit, name=f"团队{unit}", created_by="test")
        session.add(team)
        session.flush()
        teams[unit] = team.id
    ta, tl, tb = teams[units.a], teams[units.lead], teams[units.b]
    y25 = date(2025, 1, 1)
    # A: signed on 12-31 are r1 (key), r2, r7 (overlapping switch from B, counted once at A, key).
    r1 = _resident(session, 1, "elderly", "hypertension")
    _contract(session, r1, ta, y25, YEAR_END)  # ends on the day: due for renewal, not renewed
    r2 = _resident(session, 2)
    _contract(session, r2, ta, date(2025, 6, 1), date(2026, 5, 31))
    r3 = _resident(session, 3, "diabetes")  # terminated before the day: neither signed nor due
    _contract(session, r3, ta, y25, YEAR_END, "terminated", terminated_at=_china(date(2025, 10, 1), 9))
    r7 = _resident(session, 7, "child")
    old = _contract(session, r7, tb, y25, YEAR_END, "renewed", is_current=False)  # B: due and renewed
    _contract(session, r7, ta, date(2025, 12, 1), date(2026, 11, 30), previous_id=old.id)
    # The lead hospital's own team: r4 (key) and r5 signed; r8's contract ended in the window, not renewed.
    r4 = _resident(session, 4, "hypertension")
    _contract(session, r4, tl, y25, date(2026, 3, 31))
    r5 = _resident(session, 5)
    _contract(session, r5, tl, y25, date(2026, 3, 31))
    r8 = _resident(session, 8)
    _contract(session, r8, tl, date(2024, 1, 1), date(2024, 12, 31), "expired", is_current=False)
    # B: r6 signed (B has no population: no coverage value).
    r6 = _resident(session, 6, "elderly")
    _contract(session, r6, tb, y25, YEAR_END)
    for unit, category, population in (
        (units.a, "all", 100),
        (units.a, "key_population", 10),
        (units.lead, "all", 50),
        (units.lead, "key_population", 4),
    ):
        session.add(
            ServicePopulation(node_id=unit, year=2025, category=category, population=population, updated_by="test")
        )
    # Follow-ups, counted at the end of 2025-10-31.
    for resident, team, due, done in (
        (r1, ta, date(2025, 9, 1), None),  # overdue
        (r1, ta, date(2025, 8, 1), None),  # overdue as well: r1 counts once
        (r2, ta, date(2025, 9, 15), date(2025, 11, 5)),  # done after the month: overdue at its end
        (r2, ta, date(2025, 10, 1), date(2025, 10, 20)),  # done in time
        (r4, tl, date(2025, 10, 30), None),  # overdue at the lead hospital
        (r5, tl, date(2025, 10, 31), None),  # due on the last day: not yet overdue
        (r6, tb, date(2025, 11, 2), None),  # due after the month
    ):
        session.add(FollowUp(resident_id=resident.id, team_id=team, kind="hypertension", due_date=due, done_on=done))


def _create(client, headers, body) -> int:
    reply = client.post("/api/referrals", json=body, headers=headers)
    assert reply.status_code == 201, reply.get_json()
    return reply.get_json()["id"]


def _drive(session, referral_id: int, submitted: datetime, steps: list[tuple[str, str, float]]) -> None:
    referral = session.get(Referral, referral_id)
    referral.submitted_at = submitted
    for action, side, hours in steps:
        apply_transition(
            session,
            referral,
            action,
            actor="test",
            member_id=None,
            side=side,
            reason="无床位" if action == "reject" else "",
            now=submitted + timedelta(hours=hours),
        )
    session.flush()


def _down(w: ReferralWorld, parent: int) -> dict:
    return {
        "direction": "down",
        "mode": "outpatient",
        "priority": "routine",
        "applicant_department_id": w.hospital_department_id,
        "target_institution_id": w.grassroots_institution_id,
        "reason_code": "rehab_chronic",
        "parent_id": parent,
        "consent": True,
        "submit": True,
        "primary_diagnosis": {"code": "I10"},
    }


def _referrals(app, client, w: ReferralWorld) -> dict[str, int]:
    """Five up-referrals A → lead hospital and two down-referrals back, submitted 2025-10-10 09:00 China; one
    more up-referral submitted 2025-11-01 00:30 China (the next month: not counted)."""
    up = [_create(client, w.doctor.headers, up_payload(w, submit=True)) for _ in range(4)]
    urgent = _create(client, w.doctor.headers, up_payload(w, submit=True, priority="urgent"))
    november = _create(client, w.doctor.headers, up_payload(w, submit=True))
    _create(client, w.doctor.headers, up_payload(w))  # a draft never counts
    base = _china(date(2025, 10, 10), 9)
    a, r = states.APPLICANT, states.RECEIVER
    with app.app_context():
        session = db.session()
        _drive(session, up[0], base, [("accept", r, 2), ("arrive", r, 3), ("complete", r, 5), ("close", a, 6)])
        _drive(session, up[1], base, [("accept", r, 30)])  # accepted late (routine: 24 h)
        _drive(session, up[2], base, [("reject", r, 1)])  # responded, not accepted
        _drive(session, up[3], base, [])  # no answer
        _drive(session, urgent, base, [("accept", r, 3)])  # urgent: 2 h, so late
        _drive(session, november, _china(date(2025, 11, 1), 0.5), [])
        session.commit()
    # Down-referrals of the treated patient (the up-referral must be treated first).
    downs = [_create(client, w.receiver.headers, _down(w, up[0])) for _ in range(2)]
    with app.app_context():
        session = db.session()
        _drive(session, downs[0], base, [("accept", r, 1), ("receive_patient", r, 20), ("start_follow_up", r, 40)])
        _drive(session, downs[1], base, [("accept", r, 1)])
        session.commit()
    return {"up3": up[3], "down1": downs[1]}


@pytest.fixture
def units(tree_app, tree_client, ref_world: ReferralWorld) -> Units:  # noqa: F811
    w = ref_world
    with tree_app.app_context():
        session = db.session()
        a = session.get(OrgNode, w.grassroots_institution_id)
        lead = session.get(OrgNode, w.hospital_id)
        assert lead.level == "medical_community_lead" and a.level == "member_institution"
        assert a.path.startswith(lead.path) and a.id != lead.id, "the member institution is under the lead hospital"
        b = session.scalar(
            sa.select(OrgNode.id)
            .where(
                OrgNode.path.startswith(lead.path),
                OrgNode.level == "member_institution",
                OrgNode.id != a.id,
                OrgNode.deleted_at.is_(None),
            )
            .order_by(OrgNode.id)
        )
        assert b is not None
        found = Units(county=lead.parent_id, lead=lead.id, a=a.id, b=b, indicators=_catalog(session))
        _family_doctor(session, found)
        session.commit()
    return found


def _current(session, indicator_id: int, period: str) -> dict[int, tuple]:
    rows = session.execute(
        sa.select(
            IndicatorValue.unit_id, IndicatorValue.numerator, IndicatorValue.denominator, IndicatorValue.source
        ).where(IndicatorValue.indicator_id == indicator_id, IndicatorValue.period == period, IndicatorValue.is_current)
    )
    return {unit: (int(num), None if den is None else int(den), source) for unit, num, den, source in rows}


def _pairs(values: dict[int, tuple]) -> dict[int, tuple]:
    return {unit: (num, den) for unit, (num, den, _source) in values.items()}


def _subtree_sum(session, values: dict[int, tuple], root: int) -> tuple[int, int]:
    path = session.get(OrgNode, root).path
    inside = set(session.scalars(sa.select(OrgNode.id).where(OrgNode.path.startswith(path))))
    picked = [v for unit, v in values.items() if unit in inside]
    return sum(v[0] for v in picked), sum(v[1] or 0 for v in picked)


def test_referral_values_per_unit_without_double_counting(tree_app, tree_client, ref_world, units):  # noqa: F811
    _referrals(tree_app, tree_client, ref_world)
    ids = units.indicators
    with tree_app.app_context():
        session = db.session()
        result = intake.run_intake(session, MONTH)
        assert result["period"] == "2025-10" and result["rollup_scheduled"]
        assert set(result["sources"]) == {key for _code, key, _kind, kind in CATALOG if kind == "month"}

        up = _current(session, ids["referral.up_out"], "2025-10")
        down = _current(session, ids["referral.down_out"], "2025-10")
        # Counts by hand: A sent the five up-referrals, the lead hospital the two down-referrals; the lead
        # hospital's own up_out is 0, not the 5 of its subtree.
        assert up[units.a] == (5, None, "auto:referral.up_out")
        assert up[units.lead][:2] == (0, None) and up[units.b][:2] == (0, None)
        assert down[units.lead][:2] == (2, None) and down[units.a][:2] == (0, None)
        live = session.scalar(
            sa.select(sa.func.count())
            .select_from(OrgNode)
            .where(OrgNode.level.in_(("medical_community_lead", "member_institution")), OrgNode.deleted_at.is_(None))
        )
        assert len(up) == live, "every live institution has its count, 0 included"

        closure = _pairs(_current(session, ids["referral.closure"], "2025-10"))
        timely = _pairs(_current(session, ids["referral.timely_acceptance"], "2025-10"))
        arrival = _pairs(_current(session, ids["referral.arrival"], "2025-10"))
        follow = _pairs(_current(session, ids["referral.down_follow_up"], "2025-10"))
        assert closure == {units.a: (1, 5), units.lead: (0, 2)}  # at the applicant
        # At the target: the hospital responded to 4 up-referrals (3 accepted, 1 refused), 1 within its SLA;
        # A accepted both down-referrals within theirs.
        assert timely == {units.lead: (1, 4), units.a: (2, 2)}
        assert arrival == {units.lead: (1, 3), units.a: (1, 2)}
        assert follow == {units.a: (1, 2)}  # the hospital received no down-referral: no value

        # Summed over any subtree, the units' own values are the referral module's figures for that node: the
        # roll-up cannot count the member institution twice.
        module = {
            f.node_id: f for f in ref_figures.referral_figures(session, start=date(2025, 10, 1), end=date(2025, 10, 31))
        }
        for node in (units.lead, units.county, units.a):
            f = module[node]
            assert _subtree_sum(session, up, node)[0] == f.up_out
            assert _subtree_sum(session, down, node)[0] == f.down_out
            assert _subtree_sum(session, closure, node) == (f.closed, f.sent)
            assert _subtree_sum(session, timely, node) == (f.accepted_within_sla, f.responded)
            assert _subtree_sum(session, arrival, node) == (f.arrived, f.accepted)
            assert _subtree_sum(session, follow, node) == (f.down_followed_up, f.down_in)
        assert module[units.lead].up_out == 5 and module[units.lead].responded == 6

    # The roll-up intake scheduled: the lead hospital's figure is its subtree's, counted once.
    run_jobs(tree_app)
    with tree_app.app_context():
        session = db.session()
        rolled = {
            (row.indicator_id, row.node_id): row
            for row in session.scalars(sa.select(IndicatorRollup).where(IndicatorRollup.period == "2025-10"))
        }
        for node in (units.lead, units.county):
            assert int(rolled[ids["referral.up_out"], node].numerator) == 5
            assert int(rolled[ids["referral.down_out"], node].numerator) == 2
            timely = rolled[ids["referral.timely_acceptance"], node]
            assert (int(timely.numerator), int(timely.denominator)) == (3, 6)
            assert float(timely.value) == pytest.approx(50.0)
        assert int(rolled[ids["referral.up_out"], units.a].numerator) == 5


def test_family_doctor_values_per_unit(tree_app, units: Units):
    ids = units.indicators
    with tree_app.app_context():
        session = db.session()
        result = intake.run_intake(session, YEAR, schedule=False)
        assert set(result["sources"]) >= {"family_doctor.coverage", "family_doctor.renewal_rate"}
        assert "referral.up_out" not in result["sources"]  # a monthly indicator is not computed for a year

        coverage = _pairs(_current(session, ids["family_doctor.coverage"], "2025"))
        key = _pairs(_current(session, ids["family_doctor.key_population_coverage"], "2025"))
        renewal = _pairs(_current(session, ids["family_doctor.renewal_rate"], "2025"))
        # A: r1, r2, r7 signed on 2025-12-31 (r7 once, at A); the lead hospital: r4, r5; B has no population.
        assert coverage == {units.a: (3, 100), units.lead: (2, 50)}
        assert key == {units.a: (2, 10), units.lead: (1, 4)}
        # Due: r1 at A (not renewed), r6 (not renewed) and r7 (renewed at A) at B, r8 at the lead hospital (not
        # renewed).
        assert renewal == {units.a: (0, 1), units.b: (1, 2), units.lead: (0, 1)}

        module = {f.node_id: f for f in fd_figures.signing_figures(session, on=YEAR_END, year=2025)}
        for node in (units.lead, units.county):
            assert _subtree_sum(session, renewal, node) == (module[node].renewed, module[node].renewal_due)
            # The module counts B's signed residents too (it has no population): the units with a population
            # are exactly the module's population.
            assert _subtree_sum(session, coverage, node)[1] == module[node].population
            assert _subtree_sum(session, coverage, node)[0] == module[node].signed - module[units.b].signed

        result = intake.run_intake(session, MONTH, keys=["family_doctor.overdue_follow_ups"], schedule=False)
        assert set(result["sources"]) == {"family_doctor.overdue_follow_ups"}
        overdue = _pairs(_current(session, ids["family_doctor.overdue_follow_ups"], "2025-10"))
        # Residents at the end of 2025-10-31: r1 (twice) and r2 (done only in November) at A, r4 at the lead
        # hospital; B has a team and nothing overdue.
        assert overdue == {units.a: (2, None), units.lead: (1, None), units.b: (0, None)}


def test_feed_value_kept_corrections_versioned_second_run_records_nothing(
    tree_app,
    tree_client,
    ref_world,  # noqa: F811
    units: Units,
):
    made = _referrals(tree_app, tree_client, ref_world)
    ids = units.indicators
    with tree_app.app_context():
        session = db.session()
        # A hospital system posted A's up-referrals for the month before intake ran.
        feed = IndicatorSubmission(kind="feed", source="feed:test", batch_key="2025-10#1", submitted_by="test-his")
        record(session, feed, [ValueRow(ids["referral.up_out"], units.a, MONTH, Decimal(7), None)])
        session.commit()

        first = intake.run_intake(session, MONTH, schedule=False)
        assert first["sources"]["referral.up_out"]["kept"] == 1
        up = _current(session, ids["referral.up_out"], "2025-10")
        assert up[units.a] == (7, None, "feed:test"), "the feed's value is not written over by the platform's"
        audits = session.scalar(
            sa.select(sa.func.count()).select_from(AuditRecord).where(AuditRecord.action == "supervision.intake")
        )
        assert audits >= 6

        values = session.scalar(sa.select(sa.func.count()).select_from(IndicatorValue))
        submissions = session.scalar(sa.select(sa.func.count()).select_from(IndicatorSubmission))
        second = intake.run_intake(session, MONTH, schedule=False)
        assert second["changed"] == 0
        assert all(item["new"] == item["corrected"] == 0 for item in second["sources"].values())
        assert second["sources"]["referral.up_out"]["kept"] == 1
        assert session.scalar(sa.select(sa.func.count()).select_from(IndicatorValue)) == values
        assert session.scalar(sa.select(sa.func.count()).select_from(IndicatorSubmission)) == submissions

        # A late event: the hospital answers the fourth up-referral after the month ended; the timeliness of
        # October changes and is versioned (the old row kept, pointing back), nothing else.
        referral = session.get(Referral, made["up3"])
        apply_transition(
            session,
            referral,
            "accept",
            actor="test",
            member_id=None,
            side=states.RECEIVER,
            now=_china(date(2025, 11, 3), 9),
        )
        session.commit()
        third = intake.run_intake(session, MONTH, schedule=False)
        assert third["sources"]["referral.timely_acceptance"]["corrected"] == 1
        assert third["sources"]["referral.arrival"]["corrected"] == 1
        assert third["changed"] == 2
        timely = _current(session, ids["referral.timely_acceptance"], "2025-10")
        assert timely[units.lead][:2] == (1, 5)
        history = session.scalars(
            sa.select(IndicatorValue)
            .where(
                IndicatorValue.indicator_id == ids["referral.timely_acceptance"],
                IndicatorValue.unit_id == units.lead,
                IndicatorValue.period == "2025-10",
            )
            .order_by(IndicatorValue.id)
        ).all()
        assert [(v.is_current, int(v.denominator)) for v in history] == [(False, 4), (True, 5)]
        assert history[1].supersedes_id == history[0].id


def test_future_period_records_nothing(tree_app, units: Units):
    with tree_app.app_context():
        session = db.session()
        values = session.scalar(sa.select(sa.func.count()).select_from(IndicatorValue))
        future = parse(f"{fd_service.today().year + 1}")
        assert intake.run_intake(session, future)["sources"] == {}
        assert session.scalar(sa.select(sa.func.count()).select_from(IndicatorValue)) == values


def test_nightly_periods_and_job(tree_app, units: Units):
    january = ["2025-12", "2025-Q4", "2025", "2026-01", "2026-Q1", "2026"]
    assert [p.code for p in jobs.nightly_periods(date(2026, 1, 5))] == january
    november = ["2026-10", "2026-Q3", "2025", "2026-11", "2026-Q4", "2026"]
    assert [p.code for p in jobs.nightly_periods(date(2026, 11, 24))] == november
    with tree_app.app_context():
        done = jobs.nightly_intake(on=date(2026, 1, 5))
        assert set(done["periods"]) == set(january)
        session = db.session()
        coverage = _pairs(_current(session, units.indicators["family_doctor.coverage"], "2025"))
        assert coverage == {units.a: (3, 100), units.lead: (2, 50)}
    queue = tree_app.extensions["workbench.queue"]  # supervision.init_app registered both
    job = queue.periodic["supervision.nightly_intake"]
    assert (job.seconds, job.offset, job.func) == (86400, 17 * 3600 + 1800, "supervision.jobs.nightly_intake")
    repeats = queue.periodic["supervision.alert_repeats"]
    assert (repeats.seconds, repeats.func) == (3600, "supervision.alerts.repeat_job")

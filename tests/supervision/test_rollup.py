"""The roll-up on both backends: synthetic values for every institution and county bureau of the sandbox's small
province, some units missing; every node's figure checked against an independent computation that walks the
sandbox's truth (parents and levels as generated, not the stored paths); corrections, idempotence, non-additive
indicators, partial recomputation, deleted units, and the queued job."""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import Decimal

import pytest
import sqlalchemy as sa

from org_sync.models import OrgNode
from supervision import rollup
from supervision.models import Indicator, IndicatorRollup, IndicatorSubmission
from supervision.periods import PeriodError, parse
from supervision.values import ValueRow, record
from tests.conftest import run_jobs
from tests.support.tree import Tree
from workbench import db
from workbench.db import utcnow

PERIOD = "2026-05"
REPORTED_LEVELS = ("province_commission", "city_commission", "county_bureau")
INSTITUTIONS = ("medical_community_lead", "member_institution")
PLACES = Decimal("0.0001")
# The test indicators: one of each kind and reporting level, a non-additive one, and two that a month skips.
SPECS: dict[str, dict] = {
    "T-RATE": {},
    "T-COUNT": {"kind": "count", "unit": "人", "scale": 1, "denominator_definition": None},
    "T-QUAL": {"kind": "qualitative", "dimension": "close_knit", "collection": "manual"},
    "T-COUNTY": {"reporting_level": "county", "scale": 1000, "unit": "‰"},
    "T-NONADD": {"additive": False, "direction": "down"},
    "T-QUARTER": {"period": "quarter"},
    "T-OFF": {"active": False},
}


def make_indicator(session, code: str, **overrides) -> Indicator:
    fields = {
        "code": code,
        "name": f"测试指标 {code}",
        "dimension": "division_of_labour",
        "kind": "rate",
        "numerator_definition": "分子",
        "denominator_definition": "分母",
        "unit": "%",
        "scale": 100,
        "direction": "up",
        "period": "month",
        "collection": "automatic",
        "source": "测试",
        "reporting_level": "institution",
        "bounded": True,
        "additive": True,
        "active": True,
    }
    indicator = Indicator(**(fields | overrides))
    session.add(indicator)
    session.flush()
    return indicator


def store(session, rows: list[ValueRow], key: str) -> None:
    submission = IndicatorSubmission(kind="feed", source="test", batch_key=key, submitted_by="test")
    record(session, submission, rows)
    session.commit()


@dataclass
class Province:
    t: Tree
    node_of: dict[int, int]  # dept id -> node id
    indicators: dict[str, Indicator]
    values: dict[tuple[str, int], tuple[Decimal, Decimal | None]]  # (code, dept id) -> current numerator, denominator

    def units(self, level: str) -> list[int]:
        """Dept ids of the truth's reporting units of an indicator's reporting level."""
        wanted = INSTITUTIONS if level == "institution" else ("county_bureau",)
        return [d for d in self.t.depts if self.t.level(d) in wanted]


def _amount(rng: random.Random, low: int, high: int) -> Decimal:
    # Quarters are exact in binary floating point, so SQLite's REAL sums equal the Decimal sums exactly.
    return Decimal(rng.randint(low * 4, high * 4)) / 4


@pytest.fixture
def province(tree_app, tree) -> Province:
    t = Tree(tree)
    rng = random.Random(8)
    with tree_app.app_context():
        session = db.session()
        node_of = dict(session.execute(sa.select(OrgNode.dept_id, OrgNode.id)).all())
        indicators = {code: make_indicator(session, code, **overrides) for code, overrides in SPECS.items()}
        province = Province(t, node_of, indicators, {})
        rows = []
        for code, indicator in indicators.items():
            for n, dept in enumerate(province.units(indicator.reporting_level)):
                if rng.random() < 0.2:  # about a fifth do not report
                    continue
                if indicator.kind == "count":
                    numerator, denominator = _amount(rng, 0, 500), None
                elif indicator.kind == "qualitative":
                    numerator, denominator = Decimal(rng.randint(0, 1)), Decimal(1)
                else:
                    denominator = _amount(rng, 0, 900) if n % 7 else Decimal(0)  # some zero denominators
                    numerator = min(_amount(rng, 0, 900), denominator)
                period = parse("2026-Q2") if indicator.period == "quarter" else parse(PERIOD)
                rows.append(ValueRow(indicator.id, node_of[dept], period, numerator, denominator))
                province.values[(code, dept)] = (numerator, denominator)
        # Another month's values must not leak into this one.
        other = parse("2026-04")
        rows += [
            ValueRow(indicators["T-RATE"].id, node_of[dept], other, Decimal(999), Decimal(999))
            for dept in province.units("institution")
        ]
        store(session, rows, "initial")
    return province


def expected_rollup(p: Province, code: str, deleted: frozenset[int] = frozenset()) -> dict[int, dict]:
    """Every node's figure computed from the truth: walk each unit's ancestors, sum its numbers into each."""
    indicator = p.indicators[code]
    units = p.units(indicator.reporting_level)
    live = [d for d in p.t.depts if p.t.level(d) in REPORTED_LEVELS + INSTITUTIONS and d not in deleted]
    found: dict[int, dict] = {}
    if not indicator.additive:
        for dept in units:
            if dept in deleted:
                continue
            numbers = p.values.get((code, dept))
            found[p.node_of[dept]] = {
                "numerator": numbers[0] if numbers else None,
                "denominator": numbers[1] if numbers else None,
                "units_expected": 1,
                "units_reported": int(numbers is not None),
            }
    else:
        for dept in units:
            numbers = p.values.get((code, dept))
            for above in p.t.ancestors(dept):
                if above not in live:
                    continue
                item = found.setdefault(
                    p.node_of[above], {"numerator": None, "denominator": None, "units_expected": 0, "units_reported": 0}
                )
                if dept not in deleted:
                    item["units_expected"] += 1
                    item["units_reported"] += int(numbers is not None)
                if numbers is not None:
                    item["numerator"] = (item["numerator"] or 0) + numbers[0]
                    if numbers[1] is not None:
                        item["denominator"] = (item["denominator"] or 0) + numbers[1]
    for item in found.values():
        numerator, denominator = item["numerator"], item["denominator"]
        if indicator.kind == "count":
            item["value"] = numerator
        elif numerator is None or not denominator:
            item["value"] = None
        else:
            item["value"] = (numerator * indicator.scale / denominator).quantize(PLACES)
    return found


def stored_rollup(session, indicator_id: int, period: str = PERIOD) -> dict[int, dict]:
    rows = session.scalars(
        sa.select(IndicatorRollup).where(IndicatorRollup.indicator_id == indicator_id, IndicatorRollup.period == period)
    )
    return {
        row.node_id: {
            "numerator": row.numerator,
            "denominator": row.denominator,
            "value": row.value,
            "units_expected": row.units_expected,
            "units_reported": row.units_reported,
        }
        for row in rows
    }


def assert_matches(stored: dict[int, dict], expected: dict[int, dict]) -> None:
    assert set(stored) == set(expected)
    for node, want in expected.items():
        got = stored[node]
        assert (got["units_expected"], got["units_reported"]) == (want["units_expected"], want["units_reported"]), node
        for key in ("numerator", "denominator"):
            assert (None if got[key] is None else Decimal(got[key])) == want[key], (node, key)
        if want["value"] is None:
            assert got["value"] is None, node
        else:
            # Rounded to the column's 4 places on both sides; a half may round either way.
            assert abs(Decimal(got["value"]) - want["value"]) <= PLACES, (node, got["value"], want["value"])


def test_every_node_matches_an_independent_computation(tree_app, province):
    with tree_app.app_context():
        session = db.session()
        result = rollup.recompute(session, PERIOD)
        # Every active monthly indicator (the seeded catalog's too), not the quarterly or the inactive one.
        monthly = session.scalars(sa.select(Indicator.id).where(Indicator.active, Indicator.period == "month")).all()
        assert result["period"] == PERIOD and result["indicators"] == len(monthly)
        for code in ("T-RATE", "T-COUNT", "T-QUAL", "T-COUNTY", "T-NONADD"):
            assert_matches(stored_rollup(session, province.indicators[code].id), expected_rollup(province, code))
        assert result["rows"] == session.scalar(
            sa.select(sa.func.count()).select_from(IndicatorRollup).where(IndicatorRollup.period == PERIOD)
        )
        # The quarterly and the inactive indicator get nothing for a month.
        for code in ("T-QUARTER", "T-OFF"):
            assert stored_rollup(session, province.indicators[code].id) == {}

        # Sanity of the truth walk itself: the province holds every institution, a county its own.
        t = province.t
        root = next(d for d in t.depts if t.level(d) == "province_commission")
        top = stored_rollup(session, province.indicators["T-RATE"].id)[province.node_of[root]]
        assert top["units_expected"] == len(province.units("institution"))
        assert 0 < top["units_reported"] < top["units_expected"]
        county_rows = stored_rollup(session, province.indicators["T-COUNTY"].id)
        institution_nodes = {province.node_of[d] for d in province.units("institution")}
        assert not institution_nodes & set(county_rows)  # no county-wide figure at an institution


def test_a_county_rate_is_sum_over_sum_not_a_mean_of_rates(tree_app, province):
    """Two institutions with very different sizes: the county's rate follows the big one."""
    with tree_app.app_context():
        session = db.session()
        t = province.t
        county = next(c for c in t.counties() if len(t.institutions_under(c)) >= 2)
        units = t.institutions_under(county)
        indicator = province.indicators["T-RATE"]
        period = parse(PERIOD)
        rows = [ValueRow(indicator.id, province.node_of[units[0]], period, Decimal(1), Decimal(1))]
        rows += [ValueRow(indicator.id, province.node_of[d], period, Decimal(0), Decimal(99)) for d in units[1:2]]
        rows += [ValueRow(indicator.id, province.node_of[d], period, Decimal(0), Decimal(0)) for d in units[2:]]
        store(session, rows, "sizes")
        rollup.recompute(session, PERIOD)
        figure = stored_rollup(session, indicator.id)[province.node_of[county]]
        assert Decimal(figure["value"]) == Decimal("1.0000")  # 1 ÷ 100, not (100% + 0%) ÷ 2
        assert figure["units_reported"] == figure["units_expected"] == len(units)


def test_corrections_change_the_next_recompute_and_recompute_is_idempotent(tree_app, province):
    with tree_app.app_context():
        session = db.session()
        rollup.recompute(session, PERIOD)
        indicator = province.indicators["T-RATE"]
        first = stored_rollup(session, indicator.id)
        stamps = dict(
            session.execute(
                sa.select(IndicatorRollup.node_id, IndicatorRollup.computed_at).where(
                    IndicatorRollup.indicator_id == indicator.id, IndicatorRollup.period == PERIOD
                )
            ).all()
        )
        again = rollup.recompute(session, PERIOD)
        assert stored_rollup(session, indicator.id) == first
        assert again["removed"] == 0
        session.expire_all()

        # A correction of one reporting unit and a first report of a missing one.
        units = province.units("institution")
        corrected = next(d for d in units if ("T-RATE", d) in province.values)
        missing = next(d for d in units if ("T-RATE", d) not in province.values)
        period = parse(PERIOD)
        store(
            session,
            [
                ValueRow(indicator.id, province.node_of[corrected], period, Decimal("10.25"), Decimal("20.5")),
                ValueRow(indicator.id, province.node_of[missing], period, Decimal(3), Decimal(4)),
            ],
            "correction",
        )
        province.values[("T-RATE", corrected)] = (Decimal("10.25"), Decimal("20.5"))
        province.values[("T-RATE", missing)] = (Decimal(3), Decimal(4))
        # Until recomputed, readers see the old figures.
        assert stored_rollup(session, indicator.id) == first
        rollup.recompute(session, PERIOD)
        session.expire_all()
        after = stored_rollup(session, indicator.id)
        assert_matches(after, expected_rollup(province, "T-RATE"))
        county = province.node_of[province.t.county_of(missing)]
        assert after[county]["units_reported"] == first[county]["units_reported"] + 1
        # Only the figures that changed were rewritten: the corrected units and the nodes above them.
        touched = {province.node_of[d] for unit in (corrected, missing) for d in province.t.ancestors(unit)} & set(
            after
        )
        now = dict(
            session.execute(
                sa.select(IndicatorRollup.node_id, IndicatorRollup.computed_at).where(
                    IndicatorRollup.indicator_id == indicator.id, IndicatorRollup.period == PERIOD
                )
            ).all()
        )
        assert {node for node in now if now[node] != stamps[node]} == touched


def test_partial_recompute_leaves_other_indicators_alone(tree_app, province):
    with tree_app.app_context():
        session = db.session()
        rollup.recompute(session, PERIOD)
        count = province.indicators["T-COUNT"]
        rate = province.indicators["T-RATE"]
        before = stored_rollup(session, count.id)
        dept = next(d for d in province.units("institution") if ("T-RATE", d) in province.values)
        for code in ("T-RATE", "T-COUNT"):
            store(
                session,
                [ValueRow(province.indicators[code].id, province.node_of[dept], parse(PERIOD), Decimal(7), Decimal(8))],
                f"partial-{code}",
            )
        province.values[("T-RATE", dept)] = (Decimal(7), Decimal(8))
        result = rollup.recompute(session, PERIOD, [rate.id])
        assert result["indicators"] == 1
        assert_matches(stored_rollup(session, rate.id), expected_rollup(province, "T-RATE"))
        assert stored_rollup(session, count.id) == before  # not recomputed: still the old figure


def test_deleted_units_still_count_where_they_were_but_are_not_expected(tree_app, province):
    with tree_app.app_context():
        session = db.session()
        dept = next(
            d
            for d in province.units("institution")
            if province.t.level(d) == "member_institution" and ("T-RATE", d) in province.values
        )
        node = session.get(OrgNode, province.node_of[dept])
        node.deleted_at = utcnow()
        session.commit()
        rollup.recompute(session, PERIOD)
        for code in ("T-RATE", "T-NONADD"):
            assert_matches(
                stored_rollup(session, province.indicators[code].id),
                expected_rollup(province, code, deleted=frozenset({dept})),
            )


def test_figures_that_should_no_longer_exist_go(tree_app, province):
    """After a recomputation, an indicator made inactive and a node deleted lose their rows on the next one."""
    with tree_app.app_context():
        session = db.session()
        rollup.recompute(session, PERIOD)
        dept = next(d for d in province.units("institution") if province.t.level(d) == "member_institution")
        node = session.get(OrgNode, province.node_of[dept])
        node.deleted_at = utcnow()
        session.get(Indicator, province.indicators["T-COUNT"].id).active = False
        session.commit()
        result = rollup.recompute(session, PERIOD)
        assert stored_rollup(session, province.indicators["T-COUNT"].id) == {}
        assert result["removed"] >= len(expected_rollup(province, "T-COUNT"))
        for code in ("T-RATE", "T-QUAL", "T-NONADD"):
            assert_matches(
                stored_rollup(session, province.indicators[code].id),
                expected_rollup(province, code, deleted=frozenset({dept})),
            )


def test_values_at_units_of_another_level_are_not_summed(tree_app, province):
    """An institution indicator's value stored at a county bureau would count twice on the way up."""
    with tree_app.app_context():
        session = db.session()
        county = province.t.counties()[0]
        indicator = province.indicators["T-COUNT"]
        store(
            session,
            [ValueRow(indicator.id, province.node_of[county], parse(PERIOD), Decimal(100000), None)],
            "wrong-level",
        )
        rollup.recompute(session, PERIOD)
        assert_matches(stored_rollup(session, indicator.id), expected_rollup(province, "T-COUNT"))


def test_the_queued_job_recomputes_each_period_once(tree_app, province):
    with tree_app.app_context():
        session = db.session()
        ids = rollup.schedule_recompute([PERIOD, "2026-04", PERIOD])
        assert ids == [f"supervision-recompute-{PERIOD}", "supervision-recompute-2026-04"]
    run_jobs(tree_app)
    with tree_app.app_context():
        session = db.session()
        assert_matches(stored_rollup(session, province.indicators["T-RATE"].id), expected_rollup(province, "T-RATE"))
        april = stored_rollup(session, province.indicators["T-RATE"].id, "2026-04")
        root = next(d for d in province.t.depts if province.t.level(d) == "province_commission")
        everything = april[province.node_of[root]]
        assert everything["units_reported"] == everything["units_expected"]
        assert Decimal(everything["value"]) == Decimal(100)


def test_bad_periods_are_refused_before_anything_happens(tree_app, province):
    with tree_app.app_context():
        session = db.session()
        with pytest.raises(PeriodError):
            rollup.recompute(session, "2026-13")
        with pytest.raises(PeriodError):
            rollup.schedule_recompute([PERIOD, "May"])
        assert session.scalar(sa.select(sa.func.count()).select_from(IndicatorRollup)) == 0

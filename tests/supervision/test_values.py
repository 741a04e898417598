"""`values.record`, the one path values are stored by: new, unchanged, corrected (versioned, the old row kept),
automatic values yielding to reported ones, and one current row per key on PostgreSQL and SQLite alike."""

from __future__ import annotations

from decimal import Decimal

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from org_sync.models import OrgNode
from supervision import values
from supervision.models import Indicator, IndicatorSubmission, IndicatorValue
from supervision.periods import parse
from workbench import db

INSTITUTION_LEVELS = ("medical_community_lead", "member_institution")


def indicator_for_tests(session, code: str, **overrides) -> Indicator:
    """A catalog row for tests (codes start with "T-", so they never meet the seeded catalog): got or created."""
    assert code.startswith("T-")
    row = session.scalar(sa.select(Indicator).where(Indicator.code == code))
    if row is None:
        fields = {
            "code": code,
            "name": f"测试指标 {code}",
            "dimension": "outpatient",
            "kind": "rate",
            "numerator_definition": "分子",
            "denominator_definition": "分母",
            "unit": "%",
            "scale": 100,
            "direction": "up",
            "period": "month",
            "collection": "mixed",
            "source": "测试",
            "reporting_level": "institution",
            "bounded": True,
        } | overrides
        if fields["kind"] == "count":
            fields |= {"denominator_definition": None, "unit": "人次", "scale": 1}
        row = Indicator(**fields)
        session.add(row)
        session.flush()
    return row


def _submission(session, source: str, key: str, kind: str = "feed") -> IndicatorSubmission:
    row = IndicatorSubmission(kind=kind, source=source, batch_key=key, submitted_by="test")
    session.add(row)
    session.flush()
    return row


def _units(session, n: int = 2) -> list[int]:
    return list(
        session.scalars(
            sa.select(OrgNode.id)
            .where(OrgNode.level.in_(INSTITUTION_LEVELS), OrgNode.deleted_at.is_(None))
            .order_by(OrgNode.id)
            .limit(n)
        )
    )


def _rows(session, indicator_id: int, unit_id: int, period: str) -> list[IndicatorValue]:
    return list(
        session.scalars(
            sa.select(IndicatorValue)
            .where(
                IndicatorValue.indicator_id == indicator_id,
                IndicatorValue.unit_id == unit_id,
                IndicatorValue.period == period,
            )
            .order_by(IndicatorValue.id)
        )
    )


def test_new_unchanged_and_corrected(tree_app):
    with tree_app.app_context():
        session = db.session()
        rate = indicator_for_tests(session, "T-RATE")
        count = indicator_for_tests(session, "T-COUNT", kind="count", bounded=False)
        unit_a, unit_b = _units(session)
        october = parse("2025-10")

        first = _submission(session, "feed:1", "b1")
        done = values.record(
            session,
            first,
            [
                values.ValueRow(rate.id, unit_a, october, Decimal(30), Decimal(40)),
                values.ValueRow(rate.id, unit_b, october, Decimal(10), Decimal(20)),
                values.ValueRow(count.id, unit_a, october, Decimal(1200), None),
            ],
        )
        session.commit()
        assert (done.new, done.corrected, done.unchanged, done.changed) == (3, 0, 0, 3)
        assert (first.items, first.changed) == (3, 3)

        second = _submission(session, "feed:1", "b2")
        done = values.record(
            session,
            second,
            [
                # Equal figures in another spelling are the same value.
                values.ValueRow(rate.id, unit_a, october, Decimal("30.0000"), Decimal(40)),
                values.ValueRow(rate.id, unit_b, october, Decimal(12), Decimal(20)),
                values.ValueRow(count.id, unit_a, october, Decimal(1200), None),
            ],
        )
        session.commit()
        assert (done.new, done.corrected, done.unchanged) == (0, 1, 2)
        assert (second.items, second.changed) == (3, 1)
        [correction] = done.corrections
        assert correction["unit_id"] == unit_b and correction["period"] == "2025-10"
        assert correction["previous"]["source"] == "feed:1"
        assert (correction["previous"]["numerator"], correction["previous"]["denominator"]) == (10.0, 20.0)

        old, new = _rows(session, rate.id, unit_b, "2025-10")
        assert (old.is_current, old.numerator, old.submission_id) == (False, Decimal(10), first.id)
        assert (new.is_current, new.numerator, new.supersedes_id, new.submission_id) == (
            True,
            Decimal(12),
            old.id,
            second.id,
        )
        # The unchanged keys kept their single row.
        assert len(_rows(session, rate.id, unit_a, "2025-10")) == 1
        assert len(_rows(session, count.id, unit_a, "2025-10")) == 1


def test_a_changed_verdict_is_a_correction(tree_app):
    with tree_app.app_context():
        session = db.session()
        qualitative = indicator_for_tests(session, "T-QUAL", kind="qualitative", scale=1, unit="分", period="year")
        [unit] = _units(session, 1)
        year = parse("2025")
        values.record(
            session,
            _submission(session, "manual", "m1", "manual"),
            [values.ValueRow(qualitative.id, unit, year, Decimal(1), Decimal(1), "达标：有制度并已实施")],
        )
        done = values.record(
            session,
            _submission(session, "manual", "m2", "manual"),
            [values.ValueRow(qualitative.id, unit, year, Decimal(1), Decimal(1), "达标：制度已修订")],
        )
        session.commit()
        assert (done.corrected, done.unchanged) == (1, 0)
        assert [row.verdict for row in _rows(session, qualitative.id, unit, "2025")] == [
            "达标：有制度并已实施",
            "达标：制度已修订",
        ]


def test_automatic_values_yield_to_reported_ones(tree_app):
    with tree_app.app_context():
        session = db.session()
        rate = indicator_for_tests(session, "T-AUTO")
        unit_a, unit_b = _units(session)
        month = parse("2025-09")
        values.record(
            session,
            _submission(session, "feed:7", "f1"),
            [values.ValueRow(rate.id, unit_a, month, Decimal(5), Decimal(10))],
        )
        values.record(
            session,
            _submission(session, "auto:test", "a1", "automatic"),
            [values.ValueRow(rate.id, unit_b, month, Decimal(1), Decimal(10))],
            automatic=True,
        )
        session.commit()

        done = values.record(
            session,
            _submission(session, "auto:test", "a2", "automatic"),
            [
                values.ValueRow(rate.id, unit_a, month, Decimal(9), Decimal(10)),  # the feed's stands
                values.ValueRow(rate.id, unit_b, month, Decimal(2), Decimal(10)),  # its own earlier figure does not
            ],
            automatic=True,
        )
        session.commit()
        assert (done.kept, done.corrected, done.new, done.unchanged) == (1, 1, 0, 0)
        [fed] = _rows(session, rate.id, unit_a, "2025-09")
        assert (fed.numerator, fed.source, fed.is_current) == (Decimal(5), "feed:7", True)
        assert [(r.numerator, r.is_current) for r in _rows(session, rate.id, unit_b, "2025-09")] == [
            (Decimal(1), False),
            (Decimal(2), True),
        ]

        # A feed value does replace an automatic one (as a versioned correction).
        done = values.record(
            session,
            _submission(session, "feed:7", "f2"),
            [values.ValueRow(rate.id, unit_b, month, Decimal(3), Decimal(10))],
        )
        session.commit()
        assert done.corrected == 1
        assert done.corrections[0]["previous"]["source"] == "auto:test"


def test_one_current_row_per_key(tree_app):
    """The partial unique index holds on both backends: a second current row for a key is refused, while the
    versions record keeps (retired rows) are any number."""
    with tree_app.app_context():
        session = db.session()
        rate = indicator_for_tests(session, "T-UNIQUE")
        [unit] = _units(session, 1)
        month = parse("2025-08")
        for numerator in (1, 2, 3, 4):
            values.record(
                session,
                _submission(session, "feed:1", f"u{numerator}"),
                [values.ValueRow(rate.id, unit, month, Decimal(numerator), Decimal(10))],
            )
        session.commit()
        rows = _rows(session, rate.id, unit, "2025-08")
        assert [row.is_current for row in rows] == [False, False, False, True]
        assert [row.supersedes_id for row in rows] == [None, rows[0].id, rows[1].id, rows[2].id]

        current = rows[-1]
        session.add(
            IndicatorValue(
                indicator_id=rate.id,
                unit_id=unit,
                period="2025-08",
                period_start=month.start,
                numerator=Decimal(5),
                denominator=Decimal(10),
                source="feed:1",
                submission_id=current.submission_id,
                is_current=True,
            )
        )
        with pytest.raises(IntegrityError):
            session.flush()
        session.rollback()
        assert len(_rows(session, rate.id, unit, "2025-08")) == 4


def test_nothing_to_record(tree_app):
    with tree_app.app_context():
        session = db.session()
        submission = _submission(session, "feed:1", "empty")
        done = values.record(session, submission, [])
        assert (done.new, done.corrected, done.unchanged, done.kept) == (0, 0, 0, 0)
        assert (submission.items, submission.changed) == (0, 0)

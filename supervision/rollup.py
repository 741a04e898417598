"""Recomputing the roll-up of one period: every indicator's figure at every node of the tree, set-based.

A node's figure is the sum of the current values' numerators and denominators of the reporting units at or below
it (a county's rate is sum(numerators) ÷ sum(denominators) × scale, never the mean of its institutions' rates),
with how many of the units expected to report did:

- the reporting units of an indicator are the units of its `reporting_level`: lead hospitals and member
  institutions for "institution", county bureaus for "county". Only their values are summed (a value stored at
  a unit of another level would otherwise count twice on the way up). Values of deleted units still count where
  they were (the facts happened), but a deleted unit is no longer expected;
- `units_expected` counts the live reporting units at or below the node, `units_reported` those of them with a
  current value;
- nodes get a row for an indicator only where a reporting unit lies at or below them: an institution has no row
  for a county-wide indicator;
- non-additive indicators (a life-table probability) get rows at their reporting units only: sums mean nothing
  above them;
- `value` is numerator ÷ denominator × scale for rates and qualitative indicators (None when the denominator is
  missing or 0), the numerator for counts; None without any value.

`recompute` is a constant number of statements whatever the size of the tree (the figures computed into a
temporary table by two INSERT … SELECT, then a delete of the rows that should no longer exist and one upsert of
the new and changed figures), in one transaction, so readers see the old roll-up or the new one, never half of
each. A figure that did not change keeps its row, `computed_at` included: `computed_at` says when the figure last
changed. The ancestors of each unit come from walking `parent_id` (see `_pairs`), not from
`org_sync.rollup.anchor()`'s path-prefix join, for speed; org sync keeps both in step.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from flask import current_app
from sqlalchemy import orm
from sqlalchemy.dialects import postgresql, sqlite

from org_sync import rollup as tree_rollup
from org_sync.models import OrgNode
from supervision.models import AMOUNT, Indicator, IndicatorRollup, IndicatorValue
from supervision.periods import Period, parse
from workbench import db
from workbench.db import UTCDateTime, utcnow

log = logging.getLogger(__name__)

# Which org levels report an indicator of each reporting level.
UNIT_LEVELS: dict[str, tuple[str, ...]] = {
    "institution": ("medical_community_lead", "member_institution"),
    "county": ("county_bureau",),
}


def unit_levels(reporting_level: str) -> tuple[str, ...]:
    """The org levels of the units that report an indicator of `reporting_level`."""
    return UNIT_LEVELS[reporting_level]


def _reporting_level(level: sa.ColumnElement[str]) -> sa.ColumnElement[str]:
    """The reporting level an org level reports for (NULL for the others), as a CASE: a derived table of literals
    would cost a join whose size the planner cannot estimate."""
    return sa.case(*((level.in_(levels), reporting) for reporting, levels in UNIT_LEVELS.items()))


def _arithmetic(session: orm.Session, expr: sa.ColumnElement) -> sa.ColumnElement:
    """`expr` ready for division. SQLite stores a whole-valued NUMERIC as an INTEGER and divides integers
    integrally (12 × 100 / 35 = 34); SQLAlchemy's true-division rendering happens to prevent that today, the cast
    says so outright. PostgreSQL's numeric division is exact, so it is left alone there."""
    if session.get_bind().dialect.name == "sqlite":
        return sa.cast(expr, sa.Float)
    return expr


def _value(session: orm.Session, kind: sa.ColumnElement, scale: sa.ColumnElement, numerator, denominator):
    """The figure in the display unit: numerator for counts, else numerator × scale ÷ denominator (None at 0)."""
    rate = _arithmetic(session, numerator) * scale / sa.func.nullif(_arithmetic(session, denominator), 0)
    return sa.case((kind == "count", numerator), else_=rate)


def selected_indicators(period: Period, indicator_ids: list[int] | None = None) -> sa.Select:
    """The ids of the active indicators reported per `period`'s kind (of `indicator_ids` when given)."""
    stmt = sa.select(Indicator.id).where(Indicator.active.is_(True), Indicator.period == period.kind)
    if indicator_ids is not None:
        stmt = stmt.where(Indicator.id.in_(indicator_ids))
    return stmt


def recompute(
    session: orm.Session, period: str, indicator_ids: list[int] | None = None, *, commit: bool = True
) -> dict[str, Any]:
    """Replace the roll-up of `period` (of `indicator_ids`, else of every indicator) with one computed from the
    current values. Commits (with whatever the caller had pending, e.g. the values it just recorded) unless
    `commit` is False. Raises `periods.PeriodError` for a malformed period."""
    started = time.perf_counter()
    found = parse(period)
    computed_at = sa.literal(utcnow(), UTCDateTime())
    # A few hundred at most: read once, so the statements below take a plain list.
    wanted = list(session.scalars(selected_indicators(found, indicator_ids)))
    if session.get_bind().dialect.name == "postgresql":
        # Two recomputations of one period at once (a job and an intake run) would each delete what they see and
        # insert the same keys: the second waits for the first instead. SQLite serialises writers anyway.
        session.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(f"supervision-rollup:{found.code}"))))

    # The new figures go to a temporary table first; then, in the same transaction, rows that should no longer
    # exist go (indicators since made inactive or moved to another period kind, nodes since deleted), new ones
    # are inserted and changed ones updated. An unchanged figure is left alone: most recomputations (nightly
    # intake, a feed's correction) change a few figures.
    session.execute(sa.text(f"DROP TABLE IF EXISTS {STAGING.name}"))
    STAGING.create(session.connection())
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres:
        # The aggregate over a province's period spills to disk at the default 4 MB (bench/supervision.py); and on
        # tables not yet analysed (right after a tree import) the planner took its joins for one row each and
        # nested-looped ~60,000 × 60,000 rows for minutes: these statements are set-wide, hash joins are right.
        session.execute(sa.text("SET LOCAL work_mem = '64MB'"))
        session.execute(sa.text("SET LOCAL enable_nestloop = off"))
    rows = 0
    if wanted:
        for select in (_additive(session, found, wanted, computed_at), _per_unit(session, found, wanted, computed_at)):
            session.execute(sa.insert(STAGING).from_select(_COLUMNS, select))
        if postgres:
            # Autovacuum never sees a temporary table: without statistics the anti-join below was planned as a
            # nested loop over ~460,000 rows and ran for minutes.
            session.execute(sa.text(f"ANALYZE {STAGING.name}"))
        rows = session.scalar(sa.select(sa.func.count()).select_from(STAGING)) or 0
    if postgres:
        # Back to the session's settings for the rest of the caller's transaction (commit=False).
        session.execute(sa.text("RESET work_mem"))
        session.execute(sa.text("RESET enable_nestloop"))
    stale = sa.delete(IndicatorRollup).where(
        IndicatorRollup.period == found.code,
        ~sa.exists().where(
            STAGING.c.indicator_id == IndicatorRollup.indicator_id, STAGING.c.node_id == IndicatorRollup.node_id
        ),
    )
    if indicator_ids is not None:
        stale = stale.where(IndicatorRollup.indicator_id.in_(indicator_ids))
    removed = session.execute(stale).rowcount or 0
    if rows:
        session.execute(_upsert(session))
    session.execute(sa.text(f"DROP TABLE {STAGING.name}"))
    if commit:
        session.commit()
    else:
        session.flush()
    result = {
        "period": found.code,
        "indicators": len(wanted),
        "rows": rows,
        "removed": removed,
        "duration_ms": round((time.perf_counter() - started) * 1000, 1),
    }
    log.info("supervision roll-up recomputed for %s", found.code, extra={"rows": rows, "result": result})
    return result


_COLUMNS = [
    "indicator_id",
    "node_id",
    "period",
    "numerator",
    "denominator",
    "value",
    "units_expected",
    "units_reported",
    "computed_at",
]


_FIGURES = ["numerator", "denominator", "value", "units_expected", "units_reported"]

# Where a recomputation stages its figures (a temporary table: per connection, gone with the transaction).
STAGING = sa.Table(
    "supervision_rollup_staging",
    sa.MetaData(),
    sa.Column("indicator_id", sa.Integer, nullable=False),
    sa.Column("node_id", sa.Integer, nullable=False),
    sa.Column("period", sa.String(8), nullable=False),
    sa.Column("numerator", AMOUNT),
    sa.Column("denominator", AMOUNT),
    sa.Column("value", AMOUNT),
    sa.Column("units_expected", sa.Integer, nullable=False),
    sa.Column("units_reported", sa.Integer, nullable=False),
    sa.Column("computed_at", UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint("indicator_id", "node_id"),  # the anti-join and the upsert look rows up by it
    prefixes=["TEMPORARY"],
    postgresql_on_commit="DROP",
)


def _upsert(session: orm.Session) -> sa.Insert:
    """INSERT the staged figures, updating a key's row only where a figure differs (ON CONFLICT … WHERE)."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    # SQLite needs a WHERE in the SELECT of an upsert, or it reads ON CONFLICT as a join constraint.
    stmt = insert(IndicatorRollup).from_select(_COLUMNS, sa.select(*(STAGING.c[c] for c in _COLUMNS)).where(sa.true()))
    changed = sa.or_(*(getattr(IndicatorRollup, c).is_distinct_from(stmt.excluded[c]) for c in _FIGURES))
    return stmt.on_conflict_do_update(
        index_elements=["indicator_id", "node_id", "period"],
        set_={c: stmt.excluded[c] for c in [*_FIGURES, "computed_at"]},
        where=changed,
    )


MAX_DEPTH = 32  # a guard against a parent cycle in damaged data: the tree has five levels and a few below


def _pairs() -> sa.CTE:
    """`pairs(node_id, unit_id, reporting_level, unit_live)`: every reporting unit (deleted ones included) with itself
    and each node above it, by walking `parent_id` up (a recursive CTE). Equivalent to `org_sync.rollup.anchor()`,
    whose materialised-path prefix join is a nested loop of every node against every unit (1,560 × 1,548 LIKE
    comparisons on a province, a third of a recomputation); the walk is one primary-key probe per unit and
    level. Callers keep the live nodes of `REPORTED_LEVELS`."""
    levels = [level for group in UNIT_LEVELS.values() for level in group]
    pairs = (
        sa.select(
            OrgNode.id.label("node_id"),
            OrgNode.id.label("unit_id"),
            _reporting_level(OrgNode.level).label("reporting_level"),
            sa.case((OrgNode.deleted_at.is_(None), 1), else_=0).label("unit_live"),
            sa.literal(0).label("depth"),
        )
        .where(OrgNode.level.in_(levels))
        .cte("anchor", recursive=True)
    )
    step = orm.aliased(OrgNode, name="step")
    return pairs.union_all(
        sa.select(step.parent_id, pairs.c.unit_id, pairs.c.reporting_level, pairs.c.unit_live, pairs.c.depth + 1)
        .join(step, step.id == pairs.c.node_id)
        .where(step.parent_id.is_not(None), pairs.c.depth < MAX_DEPTH)
    )


def _additive(session: orm.Session, period: Period, wanted: list[int], computed_at) -> sa.Select:
    """The figures of the additive indicators at every live node above (and at) their reporting units."""
    # Two small aggregates joined at the end, rather than pairs × indicators left-joined to the values and grouped:
    # how many units each node expects depends on the reporting level only (a few thousand rows), and the sums
    # need only the values there are. The planner misjudges the wide join (hundreds of thousands of rows
    # estimated at hundreds) and probes the values index once per row.
    pairs = _pairs()
    node = orm.aliased(OrgNode, name="node")
    at_live_nodes = sa.and_(node.deleted_at.is_(None), node.level.in_(tree_rollup.REPORTED_LEVELS))
    expected = (
        sa.select(
            pairs.c.node_id,
            pairs.c.reporting_level,
            sa.func.sum(pairs.c.unit_live).label("units_expected"),
        )
        .join(node, node.id == pairs.c.node_id)
        .where(at_live_nodes)
        .group_by(pairs.c.node_id, pairs.c.reporting_level)
        .subquery("expected")
    )
    # The period's values, read once through the period index and then hash-joined to the pairs. Materialised on
    # PostgreSQL: inlined, the planner probes the index once per (node, unit) pair instead.
    value = orm.aliased(IndicatorValue, name="v")
    reported = orm.aliased(Indicator, name="reported")
    period_values = (
        sa.select(
            value.indicator_id,
            value.unit_id,
            value.numerator,
            value.denominator,
            reported.reporting_level,
        )
        .join(reported, reported.id == value.indicator_id)
        .where(value.period == period.code, value.is_current.is_(True), value.indicator_id.in_(wanted))
        .cte("period_values")
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )
    sums = (
        sa.select(
            period_values.c.indicator_id,
            pairs.c.node_id,
            sa.func.sum(period_values.c.numerator).label("numerator"),
            sa.func.sum(period_values.c.denominator).label("denominator"),
            sa.func.sum(pairs.c.unit_live).label("units_reported"),
        )
        .select_from(period_values)
        # Only values of units of the indicator's own reporting level count.
        .join(
            pairs,
            sa.and_(
                pairs.c.unit_id == period_values.c.unit_id,
                pairs.c.reporting_level == period_values.c.reporting_level,
            ),
        )
        .group_by(period_values.c.indicator_id, pairs.c.node_id)
        .subquery("sums")
    )
    return (
        sa.select(
            Indicator.id,
            expected.c.node_id,
            sa.literal(period.code, sa.String),
            sums.c.numerator,
            sums.c.denominator,
            _value(session, Indicator.kind, Indicator.scale, sums.c.numerator, sums.c.denominator),
            expected.c.units_expected,
            sa.func.coalesce(sums.c.units_reported, 0),
            computed_at,
        )
        .select_from(expected)
        .join(Indicator, Indicator.reporting_level == expected.c.reporting_level)
        .outerjoin(sums, sa.and_(sums.c.indicator_id == Indicator.id, sums.c.node_id == expected.c.node_id))
        .where(Indicator.id.in_(wanted), Indicator.additive.is_(True))
    )


def _per_unit(session: orm.Session, period: Period, wanted: list[int], computed_at) -> sa.Select:
    """The figures of the non-additive indicators at their live reporting units only."""
    value = orm.aliased(IndicatorValue, name="v")
    return (
        sa.select(
            Indicator.id,
            OrgNode.id,
            sa.literal(period.code, sa.String),
            value.numerator,
            value.denominator,
            _value(session, Indicator.kind, Indicator.scale, value.numerator, value.denominator),
            sa.literal(1),
            sa.case((value.id.is_not(None), 1), else_=0),
            computed_at,
        )
        .select_from(OrgNode)
        .join(Indicator, Indicator.reporting_level == _reporting_level(OrgNode.level))
        .outerjoin(
            value,
            sa.and_(
                value.indicator_id == Indicator.id,
                value.unit_id == OrgNode.id,
                value.period == period.code,
                value.is_current.is_(True),
            ),
        )
        .where(
            Indicator.id.in_(wanted),
            Indicator.additive.is_(False),
            OrgNode.level.in_([level for group in UNIT_LEVELS.values() for level in group]),
            OrgNode.deleted_at.is_(None),
        )
    )


# -- jobs --------------------------------------------------------------------------------------------------------


def recompute_job(period: str) -> dict[str, Any]:
    """The queued recomputation of one period (every indicator), then the period's alert rules are evaluated
    against the new figures (a job of its own, retried on its own; named by path: alerts read the catalog, which
    schedules recomputations)."""
    session = db.session()
    try:
        result = recompute(session, period)
    except Exception:
        session.rollback()
        raise
    current_app.extensions["workbench.queue"].enqueue(
        "supervision.alerts.evaluate_and_notify", period, job_id=f"supervision-alerts-{period}"
    )
    return result


def job_id(period: str) -> str:
    return f"supervision-recompute-{period}"


def schedule_recompute(periods: Sequence[str | Period]) -> list[str]:
    """Queue one recomputation per distinct period (codes or `Period`s; idempotent while one is pending); returns
    the job ids. Raises `periods.PeriodError` for a malformed period, before queueing anything."""
    codes = list(dict.fromkeys(period.code if isinstance(period, Period) else parse(period).code for period in periods))
    queue = current_app.extensions["workbench.queue"]
    return [queue.enqueue(recompute_job, code, job_id=job_id(code)) for code in codes]

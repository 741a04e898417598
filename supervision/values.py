"""Recording indicator values, the one path every source takes (feed batches, automatic intake, approved manual
reports): a value equal to the current one changes nothing (a re-post is not counted twice), a different one
retires the current row and adds a new one pointing back to it (a correction is versioned, never overwritten)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy import orm

from supervision.models import IndicatorSubmission, IndicatorValue
from supervision.periods import Period
from workbench.db import utcnow

_PLACES = Decimal("0.0001")  # the columns' scale: compare what would be stored


def _stored(amount: Decimal | None) -> Decimal | None:
    return None if amount is None else Decimal(amount).quantize(_PLACES)


@dataclass(frozen=True)
class ValueRow:
    indicator_id: int
    unit_id: int
    period: Period
    numerator: Decimal
    denominator: Decimal | None
    verdict: str | None = None

    @property
    def key(self) -> tuple[int, int, str]:
        return self.indicator_id, self.unit_id, self.period.code


@dataclass
class Recorded:
    new: int = 0
    corrected: int = 0
    unchanged: int = 0
    kept: int = 0  # automatic values not written over a feed's or a manual report's
    corrections: list[dict] = field(default_factory=list)  # key, previous source and figures, for the reply

    @property
    def changed(self) -> int:
        return self.new + self.corrected


def current_values(session: orm.Session, keys: Iterable[tuple[int, int, str]]) -> dict[tuple, IndicatorValue]:
    """The current rows for the (indicator_id, unit_id, period) keys, by key."""
    keys = set(keys)
    if not keys:
        return {}
    indicators = {key[0] for key in keys}
    units = {key[1] for key in keys}
    periods = {key[2] for key in keys}
    rows = session.scalars(
        sa.select(IndicatorValue).where(
            IndicatorValue.is_current,
            IndicatorValue.period.in_(periods),
            IndicatorValue.indicator_id.in_(indicators),
            IndicatorValue.unit_id.in_(units),
        )
    )
    return {
        (row.indicator_id, row.unit_id, row.period): row
        for row in rows
        if (row.indicator_id, row.unit_id, row.period) in keys
    }


def record(
    session: orm.Session, submission: IndicatorSubmission, rows: list[ValueRow], *, automatic: bool = False
) -> Recorded:
    """Store `rows` under `submission` (flushed, not committed: the caller's transaction decides). Keys must be
    unique within `rows`. With `automatic`, a key whose current value came from a feed or a manual report is left
    alone: the platform's own figure only fills what nobody reported."""
    if submission.id is None:
        session.add(submission)
        session.flush()
    result = Recorded()
    existing = current_values(session, (row.key for row in rows))
    retire: list[int] = []
    inserts: list[dict] = []
    for row in rows:
        numerator, denominator = _stored(row.numerator), _stored(row.denominator)
        old = existing.get(row.key)
        if old is not None:
            if automatic and not old.source.startswith("auto:"):
                result.kept += 1
                continue
            same = (
                _stored(old.numerator) == numerator
                and _stored(old.denominator) == denominator
                and (old.verdict or None) == (row.verdict or None)
            )
            if same:
                result.unchanged += 1
                continue
            retire.append(old.id)
            result.corrected += 1
            result.corrections.append(
                {
                    "indicator_id": row.indicator_id,
                    "unit_id": row.unit_id,
                    "period": row.period.code,
                    "previous": {
                        "source": old.source,
                        "numerator": float(old.numerator),
                        "denominator": None if old.denominator is None else float(old.denominator),
                        "recorded_at": old.recorded_at.isoformat(),
                    },
                }
            )
        else:
            result.new += 1
        inserts.append(
            {
                "indicator_id": row.indicator_id,
                "unit_id": row.unit_id,
                "period": row.period.code,
                "period_start": row.period.start,
                "numerator": numerator,
                "denominator": denominator,
                "verdict": row.verdict,
                "source": submission.source,
                "submission_id": submission.id,
                "is_current": True,
                "supersedes_id": old.id if old is not None else None,
                "recorded_at": utcnow(),
            }
        )
    if retire:
        # Retire before inserting: one current row per key is a unique index.
        session.execute(sa.update(IndicatorValue).where(IndicatorValue.id.in_(retire)).values(is_current=False))
    if inserts:
        # render_nulls: one executemany for rows with and without a denominator, not one INSERT per change of shape.
        session.execute(sa.insert(IndicatorValue).execution_options(render_nulls=True), inserts)
    submission.items = (submission.items or 0) + len(rows)
    submission.changed = (submission.changed or 0) + result.changed
    session.flush()
    return result

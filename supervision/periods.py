"""Reporting periods: month "2026-10", quarter "2026-Q3", year "2026" (the strings stored with every value)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
_QUARTER = re.compile(r"^(\d{4})-Q([1-4])$")
_YEAR = re.compile(r"^(\d{4})$")


class PeriodError(ValueError):
    """A period string that is malformed or not of the kind asked for; the message is user-facing (Chinese)."""


@dataclass(frozen=True, order=True)
class Period:
    start: date
    kind: str  # month | quarter | year
    code: str

    @property
    def end(self) -> date:
        """The first day after the period."""
        months = {"month": 1, "quarter": 3, "year": 12}[self.kind]
        index = self.start.year * 12 + self.start.month - 1 + months
        return date(index // 12, index % 12 + 1, 1)

    @property
    def year(self) -> int:
        return self.start.year

    def previous(self) -> Period:
        """The period of the same kind just before (last month, last quarter, last year)."""
        months = {"month": 1, "quarter": 3, "year": 12}[self.kind]
        index = self.start.year * 12 + self.start.month - 1 - months
        return period_of(date(index // 12, index % 12 + 1, 1), self.kind)

    def same_period_last_year(self) -> Period:
        return period_of(self.start.replace(year=self.start.year - 1), self.kind)


def parse(text: str, kind: str | None = None) -> Period:
    """The period `text` names; with `kind`, it must be of that kind (an indicator's period)."""
    text = (text or "").strip()
    if match := _MONTH.match(text):
        found = Period(date(int(match[1]), int(match[2]), 1), "month", text)
    elif match := _QUARTER.match(text):
        found = Period(date(int(match[1]), 3 * int(match[2]) - 2, 1), "quarter", text)
    elif match := _YEAR.match(text):
        found = Period(date(int(match[1]), 1, 1), "year", text)
    else:
        raise PeriodError("统计期格式应为 2026-10（月）、2026-Q3（季）或 2026（年）")
    if found.year < 2000:
        raise PeriodError("统计期不能早于 2000 年")
    if kind is not None and found.kind != kind:
        raise PeriodError(
            f"该指标按{ {'month': '月', 'quarter': '季', 'year': '年'}[kind] }统计，统计期应为{_EXAMPLE[kind]}"
        )
    return found


_EXAMPLE = {"month": "2026-10 这样的月份", "quarter": "2026-Q3 这样的季度", "year": "2026 这样的年份"}


def period_of(day: date, kind: str) -> Period:
    """The period of `kind` containing `day`."""
    if kind == "month":
        return Period(date(day.year, day.month, 1), "month", f"{day.year}-{day.month:02d}")
    if kind == "quarter":
        quarter = (day.month - 1) // 3 + 1
        return Period(date(day.year, 3 * quarter - 2, 1), "quarter", f"{day.year}-Q{quarter}")
    if kind == "year":
        return Period(date(day.year, 1, 1), "year", str(day.year))
    raise ValueError(f"unknown period kind {kind!r}")


def last_complete(today: date, kind: str) -> Period:
    """The latest period of `kind` that has ended by `today` (what nightly intake computes)."""
    return period_of(today, kind).previous()


def between(first: Period, last: Period) -> list[Period]:
    """The periods of `first`'s kind from `first` to `last`, inclusive (a trend's x axis)."""
    found, current = [], period_of(last.start, first.kind)
    while current >= first:
        found.append(current)
        current = current.previous()
    return found[::-1]

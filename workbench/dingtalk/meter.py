"""The monthly quota meter: how many metered DingTalk calls and messages this org has used this month.

A standard-edition org gets 5,000 metered API calls and 3,000 Webhook&Stream messages a calendar month, and
tokens, free-login and contacts are free (reference/dingtalk.md §8.4). The bot reads `usage()` to batch and to
warn before the org runs dry. Counts live in the database, incremented atomically by an upsert in a short
transaction of their own, so they survive restarts and every process adds to the same row. Only successful calls
are recorded: DingTalk does not count failed or throttled ones either.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.dialects import postgresql, sqlite

from workbench.db import Model, utcnow

Kind = Literal["api", "message"]
BILLING_TZ = ZoneInfo("Asia/Shanghai")  # DingTalk bills Chinese calendar months

# Which calls count against which quota, by path prefix; the first match wins. The billing doc meters
# "everything else" (robot sends, work notifications, cards, approvals, scene groups…), so unlisted paths count
# as "api": over-counting warns early, under-counting would let the org run out unwarned.
_FREE = (
    "/gettoken",
    "/v1.0/oauth2/",  # tokens, jsapi tickets
    "/topapi/v2/user/",  # contacts, incl. free-login getuserinfo
    "/topapi/v2/department/",
    "/topapi/user/",
    "/topapi/department/",  # legacy contacts
    "/user/",
    "/department/",
    "/v1.0/contact/",
)
_MESSAGE = ("/robot/send",)  # the custom-robot webhook counts as a Webhook&Stream message


def metered_kind(api: str) -> Kind | None:
    """The quota `api` (a request path) counts against, or None if DingTalk does not meter it."""
    if api.startswith(_MESSAGE):
        return "message"
    if api.startswith(_FREE):
        return None
    return "api"


def billing_month(now: datetime | None = None) -> str:
    """The billing month ("2026-11") of `now` (default: the current time) in China Standard Time."""
    return (now or utcnow()).astimezone(BILLING_TZ).strftime("%Y-%m")


class QuotaUsage(Model):
    """Metered calls used in one billing month, per quota kind."""

    __tablename__ = "dingtalk_quota_usage"

    month: orm.Mapped[str] = orm.mapped_column(sa.String(7), primary_key=True)
    kind: orm.Mapped[str] = orm.mapped_column(sa.String(16), primary_key=True)
    count: orm.Mapped[int] = orm.mapped_column(sa.Integer, nullable=False, default=0)


class QuotaMeter:
    """Counts successful metered calls per month and reports them against the configured quotas."""

    def __init__(self, engine: sa.Engine, api_quota: int, message_quota: int) -> None:
        self._engine = engine
        self._quotas: dict[str, int] = {"api": api_quota, "message": message_quota}
        dialects = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}
        if engine.dialect.name not in dialects:
            raise ValueError(f"QuotaMeter supports SQLite and PostgreSQL, not {engine.dialect.name}")
        self._insert = dialects[engine.dialect.name]

    def record(self, kind: Kind, n: int = 1) -> None:
        """Add `n` successful metered calls of `kind` to the current month."""
        if kind not in self._quotas:
            raise ValueError(f"unknown quota kind {kind!r}")
        table = QuotaUsage.__table__
        stmt = self._insert(table).values(month=billing_month(), kind=kind, count=n)
        stmt = stmt.on_conflict_do_update(
            index_elements=[table.c.month, table.c.kind], set_={"count": table.c.count + n}
        )
        with self._engine.begin() as conn:
            conn.execute(stmt)

    def usage(self, month: str | None = None) -> dict:
        """Usage of `month` (default: this month):
        `{"month": "2026-11", "api": {"used", "quota", "remaining"}, "message": {...}}`."""
        month = month or billing_month()
        table = QuotaUsage.__table__
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(table.c.kind, table.c.count).where(table.c.month == month))
            used = {kind: count for kind, count in rows}
        report: dict = {"month": month}
        for kind, quota in self._quotas.items():
            count = used.get(kind, 0)
            report[kind] = {"used": count, "quota": quota, "remaining": max(0, quota - count)}
        return report

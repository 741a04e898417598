"""Referral figures for supervision (domain.md §4.6), per institution and rolled up every level of the tree.

The referrals counted are those submitted in [start, end] (China days; drafts never count). Each figure is
attributed to one side, so a referral between two institutions of one county counts once in each measure there:
- **out** (the applicant institution): up-, down- and lateral referrals sent; `closed` of those sent (结案率 =
  closed ÷ sent: the applicant owns the case until it is closed).
- **in** (the target institution): up-, down- and lateral referrals received; `responded` (accepted, or rejected at
  least once) and `accepted_within_sla` (submitted → accepted within the REFERRAL_SLA span of its direction and
  priority): 转诊接收及时率 = accepted within SLA ÷ responded; acceptance time in hours (mean everywhere, the
  median on PostgreSQL, None on SQLite, which has no percentile); 到诊率 = arrived ÷ accepted (a down-referred
  patient "arrives" when the grassroots side receives them); down-referral follow-up rate = down-referrals
  received that reached 康复随访 (rehab_follow_up, whether or not closed since) ÷ down-referrals received.
Every node's figures are aggregated over its whole subtree in the same grouped query (the family-doctor figures'
roll-up pairing), so a county's rate is sum(numerators) ÷ sum(denominators), never a mean of rates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from flask import current_app, has_app_context
from sqlalchemy import orm

from config.settings import REFERRAL_SLA_DEFAULTS
from mini_apps.family_doctor.service import CHINA, today
from mini_apps.referral.models import Referral, ReferralEvent
from org_sync import rollup
from org_sync.models import OrgNode
from workbench import db
from workbench.auth.principal import Principal
from workbench.errors import ApiError

READER_ROLES = ("admin", "supervisor", "institution_admin")
MAX_DAYS = 366 * 3


@dataclass
class ReferralFigures:
    node_id: int
    name: str
    level: str
    parent_id: int | None
    path: str
    up_out: int = 0
    up_in: int = 0
    down_out: int = 0
    down_in: int = 0
    lateral_out: int = 0
    lateral_in: int = 0
    sent: int = 0
    closed: int = 0
    closure_rate: float | None = None
    responded: int = 0
    accepted: int = 0
    accepted_within_sla: int = 0
    timely_acceptance_rate: float | None = None
    acceptance_hours_mean: float | None = None
    acceptance_hours_median: float | None = None
    arrived: int = 0
    arrival_rate: float | None = None
    down_followed_up: int = 0
    down_follow_up_rate: float | None = None


def _rate(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _sla() -> dict[str, timedelta]:
    if has_app_context():
        return current_app.config["SETTINGS"].referral_sla
    return REFERRAL_SLA_DEFAULTS


def _seconds(dialect: str, later: Any, earlier: Any) -> sa.ColumnElement[float]:
    if dialect == "postgresql":
        return sa.func.extract("epoch", later - earlier)
    return (sa.func.julianday(later) - sa.func.julianday(earlier)) * 86400.0


def accepted_in_time(dialect: str) -> sa.ColumnElement[bool]:
    """Submitted → accepted within the REFERRAL_SLA span of the referral's direction and priority (shared with
    supervision's per-unit intake)."""
    sla = _sla()
    span = sa.case(
        (Referral.direction == "down", sla["down_ack"].total_seconds()),
        *((Referral.priority == p, sla[p].total_seconds()) for p in ("routine", "urgent", "green") if p in sla),
        else_=sla["routine"].total_seconds(),
    )
    return _seconds(dialect, Referral.accepted_at, Referral.submitted_at) <= span


def _count(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
    return sa.func.coalesce(sa.func.sum(sa.case((condition, 1), else_=0)), 0)


def referral_figures(
    session: orm.Session, *, start: date, end: date, root_ids: Sequence[int] | None = None
) -> list[ReferralFigures]:
    """Figures of every live node (institutions and the administrative levels above them) with a referral sent or
    received under it in the period — limited to the subtrees of `root_ids` when given, the roots always listed —
    ordered by path (parents first)."""
    anchor = rollup.anchor(session, root_ids)
    if anchor is None:
        return []
    since = datetime.combine(start, time(), CHINA)
    until = datetime.combine(end + timedelta(days=1), time(), CHINA)
    period = sa.and_(Referral.submitted_at >= since, Referral.submitted_at < until)
    units = sa.union(
        sa.select(Referral.applicant_institution_id.label("unit_id")).where(period),
        sa.select(Referral.target_institution_id.label("unit_id")).where(period),
    ).subquery()
    wanted = OrgNode.id.in_(sa.select(anchor.c.node_id).where(anchor.c.unit_id.in_(sa.select(units.c.unit_id))))
    if root_ids is not None:
        wanted = sa.or_(wanted, OrgNode.id.in_(sa.select(anchor.c.node_id).where(anchor.c.node_id.in_(root_ids))))
    rows = session.execute(
        sa.select(OrgNode.id, OrgNode.name, OrgNode.level, OrgNode.parent_id, OrgNode.path)
        .where(wanted, OrgNode.deleted_at.is_(None))
        .order_by(OrgNode.path)
    ).all()
    figures = {row.id: ReferralFigures(row.id, row.name, row.level, row.parent_id, row.path) for row in rows}
    if not figures:
        return []
    listed = anchor.c.node_id.in_(list(figures))

    # Sent: attributed to the applicant institution.
    out = session.execute(
        sa.select(
            anchor.c.node_id,
            _count(Referral.direction == "up"),
            _count(Referral.direction == "down"),
            _count(Referral.direction == "lateral"),
            sa.func.count(),
            _count(Referral.closed_at.is_not(None)),
        )
        .select_from(Referral)
        .join(anchor, anchor.c.unit_id == Referral.applicant_institution_id)
        .where(period, listed)
        .group_by(anchor.c.node_id)
    )
    for node_id, up, down, lateral, sent, closed in out:
        item = figures[node_id]
        item.up_out, item.down_out, item.lateral_out, item.sent, item.closed = up, down, lateral, sent, closed

    # Received: attributed to the target institution.
    dialect = session.get_bind().dialect.name
    waited = _seconds(dialect, Referral.accepted_at, Referral.submitted_at)
    in_time = accepted_in_time(dialect)
    accepted = Referral.accepted_at.is_not(None)
    rejected = sa.select(ReferralEvent.id).where(
        ReferralEvent.referral_id == Referral.id, ReferralEvent.action == "reject"
    )
    followed = sa.select(ReferralEvent.id).where(
        ReferralEvent.referral_id == Referral.id, ReferralEvent.to_state == "rehab_follow_up"
    )
    hours = sa.case((accepted, waited / 3600.0))
    columns = [
        _count(Referral.direction == "up"),
        _count(Referral.direction == "down"),
        _count(Referral.direction == "lateral"),
        _count(sa.or_(accepted, rejected.exists())),
        _count(accepted),
        _count(sa.and_(accepted, in_time)),
        sa.func.avg(hours),
        _count(Referral.arrived_at.is_not(None)),
        _count(sa.and_(Referral.direction == "down", followed.exists())),
    ]
    if dialect == "postgresql":
        columns.append(sa.func.percentile_cont(0.5).within_group(hours))
    else:
        columns.append(sa.null())
    received = session.execute(
        sa.select(anchor.c.node_id, *columns)
        .select_from(Referral)
        .join(anchor, anchor.c.unit_id == Referral.target_institution_id)
        .where(period, listed)
        .group_by(anchor.c.node_id)
    )
    for node_id, up, down, lateral, responded, n_accepted, timely, mean, arrived, followed_up, median in received:
        item = figures[node_id]
        item.up_in, item.down_in, item.lateral_in = up, down, lateral
        item.responded, item.accepted, item.accepted_within_sla = responded, n_accepted, timely
        item.acceptance_hours_mean = None if mean is None else round(float(mean), 2)
        item.acceptance_hours_median = None if median is None else round(float(median), 2)
        item.arrived, item.down_followed_up = arrived, followed_up

    for item in figures.values():
        item.closure_rate = _rate(item.closed, item.sent)
        item.timely_acceptance_rate = _rate(item.accepted_within_sla, item.responded)
        item.arrival_rate = _rate(item.arrived, item.accepted)
        item.down_follow_up_rate = _rate(item.down_followed_up, item.down_in)
    return list(figures.values())


def _roots(principal: Principal, session: orm.Session, node_id: int | None) -> list[int] | None:
    """The subtrees the caller may read: the node asked for (404 outside the scope), else the whole scope."""
    scope = principal.scope(*READER_ROLES)
    if node_id is not None:
        node = session.get(OrgNode, node_id)
        if node is None or node.deleted_at is not None or not scope.covers_path(node.path):
            raise ApiError("not_found", f"组织节点 {node_id} 不存在", status=404, field="node_id")
        return [node.id]
    if scope.everything:
        return None
    return [int(path.strip("/").split("/")[-1]) for path in scope.paths]


def figures_view(principal: Principal, query: Mapping[str, Any], session: orm.Session | None = None) -> dict:
    """The API's answer for admins, supervisors and institution admins within their scope (aggregates only: no
    patient data, so not audited as a read). Default period: the current month to today (China)."""
    session = session or db.session()
    end = query.get("end") or today()
    start = query.get("start") or end.replace(day=1)
    if start > end:
        raise ApiError("validation_error", "开始日期不能晚于结束日期", status=422, field="start")
    if (end - start).days > MAX_DAYS:
        raise ApiError("validation_error", "统计区间不能超过三年", status=422, field="start")
    roots = _roots(principal, session, query.get("node_id"))
    items = [] if roots == [] else referral_figures(session, start=start, end=end, root_ids=roots)
    return {"start": start, "end": end, "items": [asdict(item) for item in items]}

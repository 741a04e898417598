"""What the dashboards read: a node's indicators for a period against their targets, drilled down to its children,
the units that have not reported, and one indicator's trend over periods.

Everything is read from the roll-up (`supervision/rollup.py`), except completeness, which lists the units without
a current value as stored now (a value that just arrived is no longer missing, even before the next
recomputation). Aggregates only: no personal data leaves here, so reads are not audited. Readers are
administrators and supervisors of a subtree and institution administrators of their institution; a node outside
the caller's scope is the same 404 as one that does not exist.

Which indicators a node shows: those of the period's kind (a month shows the monthly ones) whose reporting
units can lie at or below it: a county-wide indicator (reported by county bureaus) is not shown at an
institution.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy import orm

from org_sync.models import OrgNode
from org_sync.rollup import REPORTED_LEVELS
from supervision import catalog, rollup
from supervision.models import DIMENSIONS, Indicator, IndicatorRollup, IndicatorValue
from supervision.periods import Period, PeriodError, between, parse
from workbench import audit
from workbench.auth.principal import ADMINISTRATIVE_LEVELS, Principal
from workbench.errors import ApiError

READER_ROLES = ("admin", "supervisor", "institution_admin")
MAX_TREND_PERIODS = 120  # ten years of months: a chart's worth
MAX_PER_PAGE = 200
CHINA = ZoneInfo("Asia/Shanghai")


# -- arguments ---------------------------------------------------------------------------------------------------


def _invalid(field: str, message: str) -> ApiError:
    return ApiError("validation_error", message, status=422, field=field)


def _period(text: Any, field: str = "period", kind: str | None = None) -> Period:
    if not isinstance(text, str):
        raise _invalid(field, "请填写统计期")
    try:
        return parse(text, kind)
    except PeriodError as exc:
        raise _invalid(field, str(exc)) from None


def readable_node(principal: Principal, session: orm.Session, node_id: Any) -> OrgNode:
    """The live node of `REPORTED_LEVELS` the caller may read figures of: 404 outside the scope (as if it did not
    exist), 422 for a node that has no figures (an internal department)."""
    node = session.get(OrgNode, node_id) if isinstance(node_id, int) and not isinstance(node_id, bool) else None
    if node is None or node.deleted_at is not None or not principal.scope(*READER_ROLES).covers_path(node.path):
        raise ApiError("not_found", f"组织节点 {node_id} 不存在", status=404, field="node_id")
    if node.level not in REPORTED_LEVELS:
        raise _invalid("node_id", "科室没有指标数据，请选择卫健委、卫健局或医疗机构")
    return node


def _indicator(session: orm.Session, code: Any) -> Indicator:
    indicator = session.scalar(sa.select(Indicator).where(Indicator.code == code)) if isinstance(code, str) else None
    if indicator is None:
        raise ApiError("not_found", f"指标 {code} 不存在", status=404, field="code")
    return indicator


def applies(indicator: Indicator, level: str) -> bool:
    """Whether a node of `level` can have reporting units of `indicator` at or below it."""
    if indicator.reporting_level == "county":
        return level in ADMINISTRATIVE_LEVELS
    return True


def _children(session: orm.Session, node: OrgNode) -> list[OrgNode]:
    """The live children that have figures (not internal departments), in DingTalk's order: one query."""
    return list(
        session.scalars(
            sa.select(OrgNode)
            .where(OrgNode.parent_id == node.id, OrgNode.deleted_at.is_(None), OrgNode.level.in_(REPORTED_LEVELS))
            .order_by(OrgNode.sort_order, OrgNode.id)
        )
    )


def _number(amount: Decimal | None) -> float | None:
    return None if amount is None else float(amount)


def met(direction: str, value: Decimal | None, target: Decimal | None) -> bool | None:
    """Whether `value` meets `target`: up ≥, down ≤; no verdict for monitored indicators or without either."""
    if value is None or target is None or direction == "monitor":
        return None
    return value >= target if direction == "up" else value <= target


def _node_view(node: OrgNode) -> dict[str, Any]:
    return {"node_id": node.id, "name": node.name, "level": node.level, "parent_id": node.parent_id}


def _indicator_view(indicator: Indicator) -> dict[str, Any]:
    return {
        "code": indicator.code,
        "national_no": indicator.national_no,
        "name": indicator.name,
        "dimension": indicator.dimension,
        "kind": indicator.kind,
        "unit": indicator.unit,
        "scale": indicator.scale,
        "direction": indicator.direction,
        "reporting_level": indicator.reporting_level,
        "additive": indicator.additive,
    }


def _figure(row: IndicatorRollup | None) -> dict[str, Any]:
    if row is None:
        return {
            "value": None,
            "numerator": None,
            "denominator": None,
            "units_expected": 0,
            "units_reported": 0,
            "computed_at": None,
        }
    return {
        "value": _number(row.value),
        "numerator": _number(row.numerator),
        "denominator": _number(row.denominator),
        "units_expected": row.units_expected,
        "units_reported": row.units_reported,
        "computed_at": row.computed_at,
    }


def _rollups(
    session: orm.Session, indicator_ids: Sequence[int], node_ids: Sequence[int], periods: Sequence[str]
) -> dict[tuple[int, int, str], IndicatorRollup]:
    if not indicator_ids or not node_ids:
        return {}
    rows = session.scalars(
        sa.select(IndicatorRollup).where(
            IndicatorRollup.indicator_id.in_(indicator_ids),
            IndicatorRollup.node_id.in_(node_ids),
            IndicatorRollup.period.in_(periods),
        )
    )
    return {(row.indicator_id, row.node_id, row.period): row for row in rows}


# -- a node and its children -------------------------------------------------------------------------------------


def figures(
    principal: Principal,
    session: orm.Session,
    *,
    node_id: Any,
    period: Any,
    dimension: str | None = None,
) -> dict[str, Any]:
    """The node's indicators for the period (those of one dimension when given), each with its figure, target,
    verdict, last period's and last year's value; and the same for each child."""
    node = readable_node(principal, session, node_id)
    found = _period(period)
    if dimension is not None and dimension not in DIMENSIONS:
        raise _invalid("dimension", "未知的指标维度")
    stmt = sa.select(Indicator).where(Indicator.active.is_(True), Indicator.period == found.kind)
    if dimension is not None:
        stmt = stmt.where(Indicator.dimension == dimension)
    # National indicators first, in their official order, then the operational ones by code.
    indicators = list(
        session.scalars(stmt.order_by(Indicator.national_no.is_(None), Indicator.national_no, Indicator.code))
    )
    children = _children(session, node)
    nodes = [node, *children]
    previous, last_year = found.previous(), found.same_period_last_year()
    ids = [indicator.id for indicator in indicators]
    rows = _rollups(session, ids, [n.id for n in nodes], [found.code, previous.code, last_year.code])
    targets = catalog.effective_targets(session, ids, [n.id for n in nodes], found.year)

    def items(of: OrgNode) -> list[dict[str, Any]]:
        found_items = []
        for indicator in indicators:
            if not applies(indicator, of.level):
                continue
            row = rows.get((indicator.id, of.id, found.code))
            target = targets.get((indicator.id, of.id))
            before = rows.get((indicator.id, of.id, previous.code))
            year_ago = rows.get((indicator.id, of.id, last_year.code))
            found_items.append(
                _indicator_view(indicator)
                | _figure(row)
                | {
                    "target": _number(target.value) if target else None,
                    "target_node_id": target.node_id_set_on if target else None,
                    "met": met(indicator.direction, row.value if row else None, target.value if target else None),
                    "previous": _number(before.value) if before else None,
                    "last_year": _number(year_ago.value) if year_ago else None,
                }
            )
        return found_items

    return {
        "period": found.code,
        "previous_period": previous.code,
        "last_year_period": last_year.code,
        "dimension": dimension,
        "node": _node_view(node) | {"indicators": items(node)},
        "children": [_node_view(child) | {"indicators": items(child)} for child in children],
    }


# -- completeness ------------------------------------------------------------------------------------------------


def completeness(
    principal: Principal,
    session: orm.Session,
    *,
    code: Any,
    node_id: Any,
    period: Any,
    page: int = 1,
    per_page: int = 50,
) -> dict[str, Any]:
    """The live reporting units of the indicator at or below the node without a current value for the period,
    by path (a county's institutions together), paged; with how many are expected and have reported."""
    node = readable_node(principal, session, node_id)
    indicator = _indicator(session, code)
    found = _period(period, kind=indicator.period)
    if not isinstance(page, int) or page < 1:
        raise _invalid("page", "页码须为正整数")
    if not isinstance(per_page, int) or not 1 <= per_page <= MAX_PER_PAGE:
        raise _invalid("per_page", f"每页条数须为 1–{MAX_PER_PAGE}")
    reported = (
        sa.select(IndicatorValue.id)
        .where(
            IndicatorValue.indicator_id == indicator.id,
            IndicatorValue.unit_id == OrgNode.id,
            IndicatorValue.period == found.code,
            IndicatorValue.is_current.is_(True),
        )
        .exists()
    )
    units = sa.and_(
        OrgNode.path.startswith(node.path, autoescape=True),
        OrgNode.level.in_(rollup.unit_levels(indicator.reporting_level)),
        OrgNode.deleted_at.is_(None),
    )
    expected, done = session.execute(
        sa.select(sa.func.count(), sa.func.count(sa.case((reported, 1)))).select_from(OrgNode).where(units)
    ).one()
    parent = orm.aliased(OrgNode, name="parent")
    rows = session.execute(
        sa.select(OrgNode.id, OrgNode.name, OrgNode.level, OrgNode.parent_id, parent.name)
        .outerjoin(parent, parent.id == OrgNode.parent_id)
        .where(units, ~reported)
        .order_by(OrgNode.path)
        .limit(per_page)
        .offset((page - 1) * per_page)
    ).all()
    return {
        "code": indicator.code,
        "period": found.code,
        "node_id": node.id,
        "units_expected": expected,
        "units_reported": done,
        "total": expected - done,
        "page": page,
        "per_page": per_page,
        "items": [
            {"node_id": unit_id, "name": name, "level": level, "parent_id": parent_id, "parent_name": parent_name}
            for unit_id, name, level, parent_id, parent_name in rows
        ],
    }


# -- trend -------------------------------------------------------------------------------------------------------


def trend(
    principal: Principal,
    session: orm.Session,
    *,
    code: Any,
    node_id: Any,
    first: Any,
    last: Any,
    children: bool = False,
) -> dict[str, Any]:
    """One indicator's figure per period from `first` to `last` (inclusive) at the node, and at each child with
    `children`, with the target of each period's year and the verdict."""
    node = readable_node(principal, session, node_id)
    indicator = _indicator(session, code)
    start = _period(first, "from", kind=indicator.period)
    end = _period(last, "to", kind=indicator.period)
    if start > end:
        raise _invalid("from", "起始统计期不能晚于结束统计期")
    periods = between(start, end)
    if len(periods) > MAX_TREND_PERIODS:
        raise _invalid("to", f"一次最多查询 {MAX_TREND_PERIODS} 个统计期")
    if not applies(indicator, node.level):
        raise _invalid("node_id", "该指标按县（市、区）统计，机构没有该指标")
    nodes = [node]
    if children:
        nodes += [child for child in _children(session, node) if applies(indicator, child.level)]
    node_ids = [n.id for n in nodes]
    rows = _rollups(session, [indicator.id], node_ids, [p.code for p in periods])
    # Targets are per year: one look-up per year of the range (ten at most).
    targets = {
        year: catalog.effective_targets(session, [indicator.id], node_ids, year)
        for year in sorted({p.year for p in periods})
    }
    series = []
    for of in nodes:
        points = []
        for p in periods:
            row = rows.get((indicator.id, of.id, p.code))
            target = targets[p.year].get((indicator.id, of.id))
            points.append(
                {"period": p.code}
                | _figure(row)
                | {
                    "target": _number(target.value) if target else None,
                    "met": met(indicator.direction, row.value if row else None, target.value if target else None),
                }
            )
        series.append(_node_view(of) | {"points": points})
    return {
        "indicator": _indicator_view(indicator),
        "periods": [p.code for p in periods],
        "series": series,
    }


# -- recomputation on request ------------------------------------------------------------------------------------


def request_recompute(principal: Principal, session: orm.Session, *, period: Any) -> dict[str, Any]:
    """Queue the recomputation of a period (a province administrator or the operator; the route checks): a
    period that has not begun yet has nothing to compute."""
    found = _period(period)
    if found.start > datetime.now(CHINA).date():
        raise _invalid("period", "统计期尚未开始")
    (job,) = rollup.schedule_recompute([found.code])
    audit.record(principal, "supervision.recompute", resource_type="indicator_period", resource_id=found.code)
    return {"period": found.code, "job_id": job}

"""Alert rules on the roll-up, with Alertmanager's semantics (reference/peers.md §A2), into the units' group chats.

Evaluation (`evaluate_period`, after each recomputation of a period) judges every active rule at the nodes of its
levels whose figure is complete enough, and keeps one `Alert` per fingerprint (rule, node, period):

- a breach opens the alert (`firing`); the breach gone resolves it (`resolved_at`); a node that cannot be judged
  (too few units reported, no target, no comparison value) leaves its alert as it was: missing data is not a
  recovery, and not a breach either (Redash's `unknown`);
- inhibition: a firing alert of an indicator at a node holds back firing alerts of the same indicator below it
  (`inhibited_by_id`, the nearest firing ancestor): the county hears about the county, not about each of its
  township hospitals as well;
- silences: an active silence matching the rule, the indicator and/or the node's subtree mutes the alert
  (`silenced_by_id`); they are re-read when notifying, so a silence set or lifted between the two counts.

Notification (`notify`) sends what is due to the chat of the nearest `AlertRoute` at or above each alert's node:
ONE markdown message per (route, period, firing|resolved) with a line per alert, the route's people @-ed in the
text (DingTalk pings from markdown only then) and a link to the dashboard; an alert notified before is sent again
only after its rule's `repeat_interval_hours`; a resolved alert that was announced gets one resolved notice (if
the rule says so). Messages go through the outbox in the caller's transaction, so the alert's `notified_at` and
the queued message commit together or not at all; a group too long for one message is split, still grouped.

The administration functions (rules, routes, silences, the alert list) take the principal and the session, check
rights and input (422 naming the field) and audit their writes; `supervision/alert_routes.py` is their HTTP face.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from bot import messages, outbox
from org_sync.models import OrgMember, OrgNode, path_ids
from supervision.catalog import effective_targets, is_province_admin
from supervision.models import (
    COMPARISONS,
    OPERATORS,
    RULE_KINDS,
    SEVERITIES,
    Alert,
    AlertNotification,
    AlertRoute,
    AlertRule,
    AlertSilence,
    Indicator,
    IndicatorRollup,
)
from supervision.periods import Period, PeriodError, parse
from workbench import audit, db
from workbench.auth.principal import ADMINISTRATIVE_LEVELS, INSTITUTION_LEVELS, Principal
from workbench.db import utcnow
from workbench.errors import ApiError
from workbench.h5 import public_url

log = logging.getLogger(__name__)

RULE_LEVELS = ADMINISTRATIVE_LEVELS + INSTITUTION_LEVELS  # the nodes a rule can judge (not internal departments)
# DingTalk refuses markdown above 20,000 bytes (errcode 460101); the outbox is stricter for group robots. Keep a
# margin for the @mentions `messages.markdown` appends.
MESSAGE_BYTES = min(20_000, outbox.MESSAGE_LIMITS["robot_group"]) - 1_000
MAX_SILENCE = timedelta(days=90)
MAX_REPEAT_HOURS = 24 * 30
SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}


def _period(period: Period | str) -> Period:
    return period if isinstance(period, Period) else parse(period)


# -- evaluation -------------------------------------------------------------------------------------------------


def _breach(rule: AlertRule, direction: str, value: Decimal, reference: Decimal | None) -> bool | None:
    """The verdict of one rule on one figure: True (breach), False (fine) or None (cannot be judged)."""
    if rule.kind == "threshold":
        threshold = rule.threshold
        return {
            "<": value < threshold,
            "<=": value <= threshold,
            ">": value > threshold,
            ">=": value >= threshold,
        }.get(rule.operator or "")
    if reference is None:
        return None
    if rule.kind == "target_gap":
        if direction == "up":
            return value < reference - rule.threshold
        if direction == "down":
            return value > reference + rule.threshold
        return None  # a monitored indicator has no bad side of its target
    if rule.kind == "trend":
        if reference == 0:
            return None  # a relative change from nothing is undefined
        change = (value - reference) / abs(reference) * 100
        if direction == "up":
            return change < -rule.threshold
        if direction == "down":
            return change > rule.threshold
        return abs(change) > rule.threshold
    return None


def _comparison_period(period: Period, comparison: str | None) -> Period:
    return period.same_period_last_year() if comparison == "last_year" else period.previous()


def evaluate_period(session: orm.Session, period: Period | str, now: datetime | None = None) -> dict[str, int]:
    """Judge every active rule on the period's roll-up and open, update or resolve its alerts; then recompute
    inhibition and silences for the period. Does not commit (the caller's transaction holds it with the roll-up).

    A constant number of queries whatever the size of the tree: the rules, the figures at their levels, the
    comparison figures, the targets (`catalog.effective_targets`), the existing alerts, then one read of the
    period's alerts for inhibition and silences."""
    period, now = _period(period), now or utcnow()
    rules = session.execute(
        sa.select(AlertRule, Indicator.direction)
        .join(Indicator, Indicator.id == AlertRule.indicator_id)
        .where(
            AlertRule.active.is_(True),
            sa.exists().where(
                IndicatorRollup.indicator_id == AlertRule.indicator_id, IndicatorRollup.period == period.code
            ),
        )
        .order_by(AlertRule.id)
    ).all()
    counts = {"rules": len(rules), "judged": 0, "new": 0, "firing": 0, "resolved": 0, "inhibited": 0, "silenced": 0}
    if not rules:
        return counts
    indicator_ids = {rule.indicator_id for rule, _ in rules}
    levels = {level for rule, _ in rules for level in rule.levels}
    figures = session.execute(
        sa.select(
            IndicatorRollup.indicator_id,
            IndicatorRollup.node_id,
            IndicatorRollup.value,
            IndicatorRollup.units_expected,
            IndicatorRollup.units_reported,
            OrgNode.level,
        )
        .join(OrgNode, OrgNode.id == IndicatorRollup.node_id)
        .where(
            IndicatorRollup.period == period.code,
            IndicatorRollup.indicator_id.in_(indicator_ids),
            OrgNode.level.in_(levels),
            OrgNode.deleted_at.is_(None),
        )
    ).all()
    by_indicator: dict[int, list] = defaultdict(list)
    for row in figures:
        by_indicator[row.indicator_id].append(row)

    earlier = _comparison_values(session, period, [rule for rule, _ in rules], indicator_ids, levels)
    target_indicators = {rule.indicator_id for rule, _ in rules if rule.kind == "target_gap"}
    targets = effective_targets(
        session,
        target_indicators,
        {row.node_id for row in figures if row.indicator_id in target_indicators},
        period.year,
    )
    existing = {
        (alert.rule_id, alert.node_id): alert
        for alert in session.scalars(
            sa.select(Alert).where(Alert.period == period.code, Alert.rule_id.in_([rule.id for rule, _ in rules]))
        )
    }

    for rule, direction in rules:
        compared = _comparison_period(period, rule.comparison).code
        for row in by_indicator.get(rule.indicator_id, ()):
            if row.level not in rule.levels or row.value is None or row.units_expected <= 0:
                continue
            if Decimal(row.units_reported) / Decimal(row.units_expected) < rule.min_completeness:
                continue
            if rule.kind == "threshold":
                reference = rule.threshold
            elif rule.kind == "target_gap":
                target = targets.get((rule.indicator_id, row.node_id))
                reference = target.value if target else None
            else:
                reference = earlier.get((rule.indicator_id, row.node_id, compared))
            verdict = _breach(rule, direction, row.value, reference)
            if verdict is None:
                continue
            counts["judged"] += 1
            alert = existing.get((rule.id, row.node_id))
            if verdict:
                if alert is None:
                    alert = Alert(rule_id=rule.id, node_id=row.node_id, period=period.code, started_at=now)
                    session.add(alert)
                    existing[(rule.id, row.node_id)] = alert
                    counts["new"] += 1
                elif alert.state == "resolved":
                    # A new firing episode on the same fingerprint: announced afresh, resolved afresh.
                    alert.started_at, alert.resolved_at = now, None
                    alert.notified_at = alert.resolved_notified_at = None
                    counts["new"] += 1
                alert.state, alert.value, alert.reference, alert.evaluated_at = "firing", row.value, reference, now
            elif alert is not None:
                if alert.state == "firing":
                    alert.state, alert.resolved_at = "resolved", now
                    counts["resolved"] += 1
                alert.value, alert.reference, alert.evaluated_at = row.value, reference, now
    session.flush()

    period_alerts = _period_alerts(session, period.code, indicator_ids)
    _inhibit(period_alerts)
    _silence(session, period_alerts, now)
    counts["firing"] = sum(1 for a in period_alerts if a.alert.state == "firing")
    counts["inhibited"] = sum(1 for a in period_alerts if a.alert.inhibited_by_id is not None)
    counts["silenced"] = sum(1 for a in period_alerts if a.alert.silenced_by_id is not None)
    session.flush()
    log.info("alerts evaluated for %s", period.code, extra={"result": counts})
    return counts


def _comparison_values(
    session: orm.Session, period: Period, rules: Sequence[AlertRule], indicator_ids: set[int], levels: set[str]
) -> dict[tuple[int, int, str], Decimal]:
    """The earlier figures trend rules compare with: (indicator, node, period code) -> value."""
    wanted = {_comparison_period(period, rule.comparison).code for rule in rules if rule.kind == "trend"}
    if not wanted:
        return {}
    trend_indicators = {rule.indicator_id for rule in rules if rule.kind == "trend"} & indicator_ids
    return {
        (row.indicator_id, row.node_id, row.period): row.value
        for row in session.execute(
            sa.select(
                IndicatorRollup.indicator_id, IndicatorRollup.node_id, IndicatorRollup.period, IndicatorRollup.value
            )
            .join(OrgNode, OrgNode.id == IndicatorRollup.node_id)
            .where(
                IndicatorRollup.period.in_(wanted),
                IndicatorRollup.indicator_id.in_(trend_indicators),
                IndicatorRollup.value.is_not(None),
                OrgNode.level.in_(levels),
            )
        )
    }


@dataclass
class _Row:
    """An alert with what deciding about it needs: its rule, indicator and node."""

    alert: Alert
    rule: AlertRule
    indicator: Indicator
    node_name: str
    path: str


def _period_alerts(session: orm.Session, code: str, indicator_ids: Iterable[int] | None = None) -> list[_Row]:
    query = (
        sa.select(Alert, AlertRule, Indicator, OrgNode.name, OrgNode.path)
        .join(AlertRule, AlertRule.id == Alert.rule_id)
        .join(Indicator, Indicator.id == AlertRule.indicator_id)
        .join(OrgNode, OrgNode.id == Alert.node_id)
        .where(Alert.period == code)
        .order_by(Alert.id)
    )
    if indicator_ids is not None:
        query = query.where(AlertRule.indicator_id.in_(set(indicator_ids)))
    return [_Row(*row) for row in session.execute(query)]


def _inhibit(rows: Sequence[_Row]) -> None:
    """Firing alerts below a firing alert of the same indicator (any rule) are held back by the nearest one.

    As in Alertmanager, an inhibiting alert need not be notified itself (it may be silenced or inhibited): a
    county whose chat muted the county alert has decided about the county, its institutions included."""
    firing: dict[tuple[int, int], int] = {}
    for row in rows:
        if row.alert.state == "firing":
            firing.setdefault((row.rule.indicator_id, row.alert.node_id), row.alert.id)
    for row in rows:
        inhibitor = None
        if row.alert.state == "firing":
            for ancestor in reversed(path_ids(row.path)[:-1]):
                inhibitor = firing.get((row.rule.indicator_id, ancestor))
                if inhibitor is not None:
                    break
        if row.alert.inhibited_by_id != inhibitor:
            row.alert.inhibited_by_id = inhibitor


def _silence(session: orm.Session, rows: Sequence[_Row], now: datetime) -> None:
    """Mark each alert with the first active silence matching it (or none)."""
    silences = session.execute(
        sa.select(AlertSilence, OrgNode.path)
        .outerjoin(OrgNode, OrgNode.id == AlertSilence.node_id)
        .where(AlertSilence.starts_at <= now, AlertSilence.ends_at > now, AlertSilence.expired_at.is_(None))
        .order_by(AlertSilence.id)
    ).all()
    for row in rows:
        match = next(
            (
                silence.id
                for silence, path in silences
                if (silence.rule_id is None or silence.rule_id == row.rule.id)
                and (silence.indicator_id is None or silence.indicator_id == row.rule.indicator_id)
                and (silence.node_id is None or (path is not None and row.path.startswith(path)))
            ),
            None,
        )
        if row.alert.silenced_by_id != match:
            row.alert.silenced_by_id = match


# -- notification -----------------------------------------------------------------------------------------------


def _due(row: _Row, now: datetime) -> str | None:
    """'firing' or 'resolved' when the alert should be in this round's messages, else None."""
    alert, rule = row.alert, row.rule
    if not rule.active or alert.silenced_by_id is not None:
        return None
    if alert.state == "firing":
        if alert.inhibited_by_id is not None:
            return None
        if alert.notified_at is None or now >= alert.notified_at + timedelta(hours=rule.repeat_interval_hours):
            return "firing"
        return None
    # Only an alert someone was told about gets a resolved notice, and only once.
    if rule.send_resolved and alert.notified_at is not None and alert.resolved_notified_at is None:
        return "resolved"
    return None


def routes_by_node(session: orm.Session) -> dict[int, AlertRoute]:
    """Every alert route by its node (a few hundred at most: one per unit that set its own chat)."""
    return {route.node_id: route for route in session.scalars(sa.select(AlertRoute))}


def route_for(path: str, routes: Mapping[int, AlertRoute]) -> AlertRoute | None:
    """The nearest route at or above the node of `path` (routes inherit down the tree)."""
    for node_id in reversed(path_ids(path)):
        route = routes.get(node_id)
        if route is not None:
            return route
    return None


def notify(session: orm.Session, period: Period | str, now: datetime | None = None) -> dict[str, int]:
    """Queue the grouped messages due for the period's alerts (see the module docstring). Does not commit: the
    queued messages and the alerts' `notified_at` commit together with the caller's transaction."""
    period, now = _period(period), now or utcnow()
    rows = _period_alerts(session, period.code)
    _silence(session, rows, now)
    counts = {"messages": 0, "alerts": 0, "unrouted": 0}
    due = [(row, kind) for row in rows if (kind := _due(row, now))]
    if not due:
        return counts
    routes = routes_by_node(session)
    groups: dict[tuple[int, str], list[_Row]] = defaultdict(list)
    for row, kind in due:
        route = route_for(row.path, routes)
        if route is None:
            counts["unrouted"] += 1
            continue
        groups[(route.node_id, kind)].append(row)
    if counts["unrouted"]:
        log.warning(
            "alerts of %s have no route at or above their node; not sent",
            period.code,
            extra={"rows": counts["unrouted"], "action": "alert_unrouted"},
        )
    for (route_node_id, kind), members in sorted(groups.items()):
        route = routes[route_node_id]
        members.sort(key=lambda r: (SEVERITY_ORDER.get(r.rule.severity, 9), r.path, r.rule.id))
        for message, chunk in _messages(route, period, kind, members, now):
            ids = [r.alert.id for r in chunk]
            key = _idempotency_key(route, period, kind, now, ids)
            try:
                row = outbox.enqueue_message(
                    "robot_group", message, idempotency_key=key, target=route.conversation_id, db=session
                )
            except ApiError as exc:
                # One broken destination must not hold back the others (Redash's per-subscription try).
                log.warning("alert message refused by the outbox", extra={"code": exc.code, "rows": len(ids)})
                continue
            session.flush()
            session.add(
                AlertNotification(
                    route_node_id=route.node_id,
                    conversation_id=route.conversation_id,
                    period=period.code,
                    kind=kind,
                    alert_ids=ids,
                    outbox_id=row.id if row is not None else None,
                    sent_at=now,
                )
            )
            for r in chunk:
                if kind == "firing":
                    r.alert.notified_at = now
                else:
                    r.alert.resolved_notified_at = now
            counts["messages"] += 1
            counts["alerts"] += len(ids)
    session.flush()
    log.info("alert notifications queued for %s", period.code, extra={"result": counts})
    return counts


def notify_pending(session: orm.Session, now: datetime | None = None) -> dict[str, dict[str, int]]:
    """`notify` for every period with an alert that may be due (repeats come due without a recomputation)."""
    codes = session.scalars(
        sa.select(Alert.period)
        .where(
            sa.or_(
                Alert.state == "firing",
                sa.and_(Alert.notified_at.is_not(None), Alert.resolved_notified_at.is_(None)),
            )
        )
        .distinct()
        .order_by(Alert.period)
    ).all()
    return {code: notify(session, code, now) for code in codes}


def _idempotency_key(route: AlertRoute, period: Period, kind: str, now: datetime, alert_ids: Sequence[int]) -> str:
    """Stable for one group's message at one send time: a retried notify of the same round queues nothing new."""
    digest = hashlib.sha256(",".join(map(str, alert_ids)).encode()).hexdigest()[:16]
    return f"alerts:{route.node_id}:{period.code}:{kind}:{now:%Y%m%dT%H%M%S}:{digest}"


def _number(value: Decimal | None) -> str:
    if value is None:
        return "—"
    text = f"{Decimal(value):.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _with_unit(value: Decimal | None, unit: str) -> str:
    return f"{_number(value)}{unit}" if unit in ("%", "‰") else f"{_number(value)} {unit}"


def _line(row: _Row, kind: str) -> str:
    """One alert: unit, indicator, value against its reference, severity."""
    alert, rule, indicator = row.alert, row.rule, row.indicator
    value = _with_unit(alert.value, indicator.unit)
    if rule.kind == "threshold":
        against = f"阈值 {rule.operator} {_with_unit(rule.threshold, indicator.unit)}"
    elif rule.kind == "target_gap":
        gap = None if alert.value is None or alert.reference is None else alert.value - alert.reference
        against = f"目标 {_with_unit(alert.reference, indicator.unit)}，差 {_number(gap)}"
    else:
        label = COMPARISONS.get(rule.comparison or "previous", "环比")
        change = None
        if alert.value is not None and alert.reference:
            change = (alert.value - alert.reference) / abs(alert.reference) * 100
        against = f"{label}：比较期 {_with_unit(alert.reference, indicator.unit)}，变化 {_number(change)}%"
    if kind == "resolved":
        return f"- {messages.LEVELS['resolved']} **{row.node_name}** {indicator.name}：{value}（{against}）"
    repeat = "（持续告警）" if alert.notified_at is not None else ""
    badge = messages.LEVELS.get(rule.severity, rule.severity)
    return f"- {badge} **{row.node_name}** {indicator.name}：{value}（{against}）{repeat}"


def _messages(
    route: AlertRoute, period: Period, kind: str, rows: Sequence[_Row], now: datetime
) -> list[tuple[dict, list[_Row]]]:
    """The group's message(s): one, or several when the lines do not fit the size limit, numbered (1/n)."""
    link = public_url(f"/h5/apps/supervision/?node_id={route.node_id}&period={period.code}")
    footer = ["", f"[查看监管看板]({link})"]
    mention_bytes = sum(len(f" @{u}".encode()) for u in route.mention_userids or []) + 2
    budget = MESSAGE_BYTES - mention_bytes - len("\n".join(footer).encode()) - 200  # 200: the header
    chunks: list[list[tuple[_Row, str]]] = [[]]
    used = 0
    for row in rows:
        line = _line(row, kind)
        size = len(line.encode()) + 1
        if chunks[-1] and used + size > budget:
            chunks.append([])
            used = 0
        chunks[-1].append((row, line))
        used += size
    worst = min((SEVERITY_ORDER.get(r.rule.severity, 9) for r in rows), default=1)
    level = "resolved" if kind == "resolved" else next(s for s, o in SEVERITY_ORDER.items() if o == worst)
    badge = messages.LEVELS[level]
    what = "指标已恢复" if kind == "resolved" else "指标告警"
    built = []
    for index, chunk in enumerate(chunks, start=1):
        part = f"（{index}/{len(chunks)}）" if len(chunks) > 1 else ""
        title = f"{badge} 监管{what} {period.code} 共{len(rows)}条{part}"
        header = [f"### {title}", f"**统计期**：{period.code}　**发送时间**：{now:%Y-%m-%d %H:%M} UTC", ""]
        text = "\n".join(header + [line for _, line in chunk] + footer)
        message = messages.markdown(title, text, at_userids=route.mention_userids or [])
        built.append((message, [row for row, _ in chunk]))
    return built


# -- jobs -------------------------------------------------------------------------------------------------------


def evaluate_and_notify(period: str) -> dict[str, Any]:
    """A job: evaluate the period and queue what is due, in one transaction (the lead runs it after recompute)."""
    session = db.session()
    try:
        evaluated = evaluate_period(session, period)
        notified = notify(session, period)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return {"period": period, "evaluated": evaluated, "notified": notified}


def repeat_job() -> dict[str, Any]:
    """A periodic job (hourly is enough: repeat intervals are in hours): repeats and late notices of every
    period, including those a silence held back until it ended."""
    session = db.session()
    try:
        done = notify_pending(session)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return {"periods": done}


# -- administration ---------------------------------------------------------------------------------------------


def _invalid(field: str, message: str) -> ApiError:
    return ApiError("validation_error", message, status=422, field=field)


def _require_admin(principal: Principal) -> None:
    if not principal.has_role("admin"):
        raise ApiError("forbidden", "只有卫生健康行政部门管理员可以管理告警", status=403)


def _require_province_admin(principal: Principal, session: orm.Session) -> None:
    # Rules have no region: one rule is judged across the whole province, so only the province sets them.
    if not is_province_admin(principal, session):
        raise ApiError("forbidden", "告警规则作用于全省，只有省级卫生健康委管理员可以维护", status=403)


def _decimal(value: Any, field: str) -> Decimal:
    if isinstance(value, bool):
        raise _invalid(field, "须为数字")
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise _invalid(field, "须为数字") from None
    if not number.is_finite():
        raise _invalid(field, "须为有限的数字")
    return number


def rule_view(rule: AlertRule, indicator: Indicator) -> dict[str, Any]:
    return {
        "id": rule.id,
        "indicator": indicator.code,
        "indicator_name": indicator.name,
        "name": rule.name,
        "kind": rule.kind,
        "levels": list(rule.levels),
        "operator": rule.operator,
        "threshold": rule.threshold,
        "comparison": rule.comparison,
        "min_completeness": rule.min_completeness,
        "severity": rule.severity,
        "repeat_interval_hours": rule.repeat_interval_hours,
        "send_resolved": rule.send_resolved,
        "active": rule.active,
        "created_by": rule.created_by,
        "created_at": rule.created_at,
    }


def _indicator_by_code(session: orm.Session, code: Any, field: str = "indicator") -> Indicator:
    indicator = session.scalar(sa.select(Indicator).where(Indicator.code == code)) if isinstance(code, str) else None
    if indicator is None:
        raise _invalid(field, f"指标 {code} 不存在")
    return indicator


def _check_rule(data: Mapping[str, Any], indicator: Indicator) -> dict[str, Any]:
    """The whole rule's cross-field checks (formats are the schema's); returns the cleaned fields."""
    kind = data.get("kind")
    if kind not in RULE_KINDS:
        raise _invalid("kind", f"规则类型须为 {', '.join(RULE_KINDS)} 之一")
    levels = data.get("levels")
    if not isinstance(levels, list) or not levels or any(level not in RULE_LEVELS for level in levels):
        raise _invalid("levels", f"层级须为非空列表，取值为 {', '.join(RULE_LEVELS)}")
    name = (data.get("name") or "").strip() if isinstance(data.get("name"), str) else ""
    if not name or len(name) > 200:
        raise _invalid("name", "规则名称必填，不超过 200 个字符")
    threshold = _decimal(data.get("threshold", 0), "threshold")
    operator, comparison = data.get("operator"), data.get("comparison")
    if kind == "threshold":
        if operator not in OPERATORS:
            raise _invalid("operator", f"阈值规则须给出比较符 {' '.join(OPERATORS)}")
        comparison = None
    else:
        operator = None
        if threshold < 0:
            raise _invalid("threshold", "未达目标与趋势规则的阈值不能为负")
    if kind == "trend":
        if comparison not in COMPARISONS:
            raise _invalid("comparison", "趋势规则须选择 previous（环比）或 last_year（同比）")
        if threshold <= 0:
            raise _invalid("threshold", "趋势规则的阈值（变化百分比）须大于 0")
    elif kind == "target_gap":
        comparison = None
        if indicator.direction == "monitor":
            raise _invalid("kind", "监测类指标没有好坏方向，不能设未达目标规则")
    if abs(threshold) >= Decimal("1e15"):
        raise _invalid("threshold", "数值过大")
    completeness = _decimal(data.get("min_completeness", Decimal("0.8")), "min_completeness")
    if not Decimal(0) <= completeness <= Decimal(1):
        raise _invalid("min_completeness", "完整率下限须在 0 到 1 之间")
    severity = data.get("severity", "warning")
    if severity not in SEVERITIES:
        raise _invalid("severity", f"级别须为 {', '.join(SEVERITIES)} 之一")
    repeat = data.get("repeat_interval_hours", 24)
    if isinstance(repeat, bool) or not isinstance(repeat, int) or not 1 <= repeat <= MAX_REPEAT_HOURS:
        raise _invalid("repeat_interval_hours", f"重复提醒间隔须为 1–{MAX_REPEAT_HOURS} 小时的整数")
    send_resolved = data.get("send_resolved", True)
    if not isinstance(send_resolved, bool):
        raise _invalid("send_resolved", "须为 true 或 false")
    active = data.get("active", True)
    if not isinstance(active, bool):
        raise _invalid("active", "须为 true 或 false")
    return {
        "indicator_id": indicator.id,
        "name": name,
        "kind": kind,
        "levels": list(dict.fromkeys(levels)),
        "operator": operator,
        "threshold": threshold,
        "comparison": comparison,
        "min_completeness": completeness,
        "severity": severity,
        "repeat_interval_hours": repeat,
        "send_resolved": send_resolved,
        "active": active,
    }


def list_rules(principal: Principal, session: orm.Session | None = None) -> dict[str, Any]:
    session = session or db.session()
    _require_admin(principal)
    rows = session.execute(
        sa.select(AlertRule, Indicator).join(Indicator, Indicator.id == AlertRule.indicator_id).order_by(AlertRule.id)
    ).all()
    return {"items": [rule_view(rule, indicator) for rule, indicator in rows]}


def _rule(session: orm.Session, rule_id: int) -> tuple[AlertRule, Indicator]:
    row = session.execute(
        sa.select(AlertRule, Indicator)
        .join(Indicator, Indicator.id == AlertRule.indicator_id)
        .where(AlertRule.id == rule_id)
    ).first()
    if row is None:
        raise ApiError("not_found", f"告警规则 {rule_id} 不存在", status=404)
    return row[0], row[1]


def get_rule(principal: Principal, rule_id: int, session: orm.Session | None = None) -> dict[str, Any]:
    session = session or db.session()
    _require_admin(principal)
    return rule_view(*_rule(session, rule_id))


def create_rule(principal: Principal, data: Mapping[str, Any], session: orm.Session | None = None) -> dict[str, Any]:
    session = session or db.session()
    _require_province_admin(principal, session)
    indicator = _indicator_by_code(session, data.get("indicator"))
    rule = AlertRule(**_check_rule(data, indicator), created_by=principal.actor)
    session.add(rule)
    session.flush()
    audit.record(
        principal, "alert_rule.create", resource_type="alert_rule", resource_id=rule.id,
        detail={"indicator": indicator.code, "kind": rule.kind, "levels": rule.levels}, session=session,
    )  # fmt: skip
    session.commit()
    return rule_view(rule, indicator)


def edit_rule(
    principal: Principal, rule_id: int, data: Mapping[str, Any], session: orm.Session | None = None
) -> dict[str, Any]:
    """Change fields of a rule; the whole resulting rule is checked (a PATCH of one field against the rest)."""
    session = session or db.session()
    _require_province_admin(principal, session)
    rule, indicator = _rule(session, rule_id)
    current = rule_view(rule, indicator)
    merged = {**current, **data}
    if "indicator" in data:
        indicator = _indicator_by_code(session, data["indicator"])
    cleaned = _check_rule(merged, indicator)
    changed = sorted(k for k, v in cleaned.items() if getattr(rule, k) != v)
    for key in changed:
        setattr(rule, key, cleaned[key])
    audit.record(
        principal, "alert_rule.edit", resource_type="alert_rule", resource_id=rule.id,
        detail={"changed": changed}, session=session,
    )  # fmt: skip
    session.commit()
    return rule_view(rule, indicator)


def delete_rule(principal: Principal, rule_id: int, session: orm.Session | None = None) -> None:
    """Deactivate a rule: its alerts stay as history, nothing more is judged or sent for it."""
    session = session or db.session()
    _require_province_admin(principal, session)
    rule, _ = _rule(session, rule_id)
    rule.active = False
    audit.record(principal, "alert_rule.deactivate", resource_type="alert_rule", resource_id=rule.id, session=session)
    session.commit()


# routes


def _node_in_scope(principal: Principal, session: orm.Session, node_id: Any, field: str = "node_id") -> OrgNode:
    if isinstance(node_id, bool) or not isinstance(node_id, int):
        raise _invalid(field, "须为组织节点编号（整数）")
    node = session.get(OrgNode, node_id)
    if node is None or node.deleted_at is not None:
        raise ApiError("not_found", f"组织节点 {node_id} 不存在", status=404, field=field)
    if not principal.scope("admin").covers_path(node.path):
        raise ApiError("forbidden", "只能管理本级或下级单位的告警", status=403, field=field)
    return node


def route_view(route: AlertRoute, node: OrgNode) -> dict[str, Any]:
    return {
        "node_id": node.id,
        "node_name": node.name,
        "node_level": node.level,
        "conversation_id": route.conversation_id,
        "mention_userids": list(route.mention_userids or []),
        "set_by": route.set_by,
        "set_at": route.set_at,
    }


def set_route(
    principal: Principal, node_id: int, data: Mapping[str, Any], session: orm.Session | None = None
) -> dict[str, Any]:
    """The chat a node's alerts (and its subtree's, unless they have their own) go to, and whom to @."""
    session = session or db.session()
    _require_admin(principal)
    node = _node_in_scope(principal, session, node_id)
    conversation = data.get("conversation_id")
    if not isinstance(conversation, str) or not conversation.strip() or len(conversation.strip()) > 128:
        raise _invalid("conversation_id", "群会话 openConversationId 必填，不超过 128 个字符")
    mentions = data.get("mention_userids", [])
    if not isinstance(mentions, list) or not all(isinstance(u, str) and 0 < len(u) <= 64 for u in mentions):
        raise _invalid("mention_userids", "须为 userid 列表")
    mentions = list(dict.fromkeys(mentions))
    if len(mentions) > messages.MAX_MENTIONS:
        raise _invalid("mention_userids", f"最多 @ {messages.MAX_MENTIONS} 人")
    if mentions:
        known = set(
            session.scalars(
                sa.select(OrgMember.userid).where(OrgMember.userid.in_(mentions), OrgMember.deleted_at.is_(None))
            )
        )
        unknown = [u for u in mentions if u not in known]
        if unknown:
            raise _invalid("mention_userids", f"通讯录中没有这些人员：{', '.join(unknown[:5])}")
    route = session.scalar(sa.select(AlertRoute).where(AlertRoute.node_id == node.id))
    if route is None:
        route = AlertRoute(node_id=node.id, conversation_id="", mention_userids=[], set_by=principal.actor)
        session.add(route)
    route.conversation_id, route.mention_userids, route.set_by = conversation.strip(), mentions, principal.actor
    route.set_at = utcnow()
    session.flush()
    audit.record(
        principal, "alert_route.set", resource_type="alert_route", resource_id=route.id, node_id=node.id,
        detail={"mentions": len(mentions)}, session=session,
    )  # fmt: skip
    session.commit()
    return route_view(route, node)


def list_routes(principal: Principal, session: orm.Session | None = None) -> dict[str, Any]:
    session = session or db.session()
    _require_admin(principal)
    rows = session.execute(
        sa.select(AlertRoute, OrgNode)
        .join(OrgNode, OrgNode.id == AlertRoute.node_id)
        .where(principal.scope("admin").subtree(OrgNode.path))
        .order_by(OrgNode.path)
    ).all()
    return {"items": [route_view(route, node) for route, node in rows]}


def delete_route(principal: Principal, node_id: int, session: orm.Session | None = None) -> None:
    """Remove a node's own route: its alerts go to the nearest ancestor's chat again."""
    session = session or db.session()
    _require_admin(principal)
    node = _node_in_scope(principal, session, node_id)
    route = session.scalar(sa.select(AlertRoute).where(AlertRoute.node_id == node.id))
    if route is None:
        raise ApiError("not_found", "该节点没有自己的告警群", status=404)
    session.delete(route)
    audit.record(principal, "alert_route.delete", resource_type="alert_route", node_id=node.id, session=session)
    session.commit()


# silences


def silence_view(silence: AlertSilence, node_name: str | None, indicator_code: str | None) -> dict[str, Any]:
    return {
        "id": silence.id,
        "rule_id": silence.rule_id,
        "indicator": indicator_code,
        "node_id": silence.node_id,
        "node_name": node_name,
        "starts_at": silence.starts_at,
        "ends_at": silence.ends_at,
        "reason": silence.reason,
        "created_by": silence.created_by,
        "created_at": silence.created_at,
        "expired_at": silence.expired_at,
    }


def create_silence(
    principal: Principal, data: Mapping[str, Any], session: orm.Session | None = None, now: datetime | None = None
) -> dict[str, Any]:
    """Mute matching alerts until `ends_at` (≤ 90 days), with a reason. A silence without a node mutes the
    whole province, so only a province administrator may set one."""
    session, now = session or db.session(), now or utcnow()
    _require_admin(principal)
    reason = data.get("reason")
    if not isinstance(reason, str) or not reason.strip() or len(reason.strip()) > 500:
        raise _invalid("reason", "静默原因必填，不超过 500 个字符")
    ends_at = data.get("ends_at")
    if not isinstance(ends_at, datetime) or ends_at.tzinfo is None:
        raise _invalid("ends_at", "结束时间须为带时区的时间")
    starts_at = data.get("starts_at") or now
    if not isinstance(starts_at, datetime) or starts_at.tzinfo is None:
        raise _invalid("starts_at", "开始时间须为带时区的时间")
    if ends_at <= now or ends_at <= starts_at:
        raise _invalid("ends_at", "结束时间须晚于现在和开始时间")
    if ends_at - now > MAX_SILENCE:
        raise _invalid("ends_at", "静默最长 90 天")
    rule_id, code, node_id = data.get("rule_id"), data.get("indicator"), data.get("node_id")
    if rule_id is None and code is None and node_id is None:
        raise _invalid("rule_id", "须至少指定规则、指标或组织节点之一")
    indicator = _indicator_by_code(session, code) if code is not None else None
    if rule_id is not None and (
        isinstance(rule_id, bool) or not isinstance(rule_id, int) or session.get(AlertRule, rule_id) is None
    ):
        raise _invalid("rule_id", f"告警规则 {rule_id} 不存在")
    node = None
    if node_id is not None:
        node = _node_in_scope(principal, session, node_id)
    elif not is_province_admin(principal, session):
        raise ApiError(
            "forbidden", "不指定组织节点的静默作用于全省，只有省级管理员可以设置", status=403, field="node_id"
        )
    silence = AlertSilence(
        rule_id=rule_id,
        indicator_id=indicator.id if indicator else None,
        node_id=node.id if node else None,
        starts_at=starts_at,
        ends_at=ends_at,
        reason=reason.strip(),
        created_by=principal.actor,
        created_at=now,
    )
    session.add(silence)
    session.flush()
    audit.record(
        principal, "alert_silence.create", resource_type="alert_silence", resource_id=silence.id,
        node_id=silence.node_id, detail={"ends_at": ends_at.isoformat(), "reason": silence.reason}, session=session,
    )  # fmt: skip
    session.commit()
    return silence_view(silence, node.name if node else None, indicator.code if indicator else None)


def expire_silence(
    principal: Principal, silence_id: int, session: orm.Session | None = None, now: datetime | None = None
) -> dict[str, Any]:
    session, now = session or db.session(), now or utcnow()
    _require_admin(principal)
    silence = session.get(AlertSilence, silence_id)
    if silence is None:
        raise ApiError("not_found", f"静默 {silence_id} 不存在", status=404)
    node = session.get(OrgNode, silence.node_id) if silence.node_id else None
    allowed = (
        principal.scope("admin").covers_path(node.path) if node is not None else is_province_admin(principal, session)
    )
    if not allowed:
        raise ApiError("not_found", f"静默 {silence_id} 不存在", status=404)
    if silence.expired_at is None:
        silence.expired_at = now
        audit.record(
            principal, "alert_silence.expire", resource_type="alert_silence", resource_id=silence.id,
            node_id=silence.node_id, session=session,
        )  # fmt: skip
        session.commit()
    code = session.scalar(sa.select(Indicator.code).where(Indicator.id == silence.indicator_id))
    return silence_view(silence, node.name if node else None, code)


def list_silences(
    principal: Principal, session: orm.Session | None = None, now: datetime | None = None
) -> dict[str, Any]:
    """The active silences the caller may see: those on nodes in their scope, and the province-wide ones."""
    session, now = session or db.session(), now or utcnow()
    _require_admin(principal)
    rows = session.execute(
        sa.select(AlertSilence, OrgNode.name, Indicator.code)
        .outerjoin(OrgNode, OrgNode.id == AlertSilence.node_id)
        .outerjoin(Indicator, Indicator.id == AlertSilence.indicator_id)
        .where(
            AlertSilence.expired_at.is_(None),
            AlertSilence.ends_at > now,
            sa.or_(AlertSilence.node_id.is_(None), principal.scope("admin").subtree(OrgNode.path)),
        )
        .order_by(AlertSilence.ends_at, AlertSilence.id)
    ).all()
    return {"items": [silence_view(*row) for row in rows]}


# the alert list

ALERT_LIST_LIMIT = 1000


def list_alerts(principal: Principal, query: Mapping[str, Any], session: orm.Session | None = None) -> dict[str, Any]:
    """Alerts at nodes in the caller's scope, newest first; filter by state, period and a node's subtree."""
    session = session or db.session()
    if not principal.has_role("admin", "supervisor", "institution_admin"):
        raise ApiError("forbidden", "没有查看告警的权限", status=403)
    scope = principal.scope("admin", "supervisor", "institution_admin")
    select = (
        sa.select(Alert, AlertRule, Indicator, OrgNode.name, OrgNode.path)
        .join(AlertRule, AlertRule.id == Alert.rule_id)
        .join(Indicator, Indicator.id == AlertRule.indicator_id)
        .join(OrgNode, OrgNode.id == Alert.node_id)
        .where(scope.subtree(OrgNode.path))
    )
    if query.get("state") is not None:
        select = select.where(Alert.state == query["state"])
    if query.get("period") is not None:
        try:
            select = select.where(Alert.period == parse(query["period"]).code)
        except PeriodError as exc:
            raise _invalid("period", str(exc)) from None
    if query.get("node_id") is not None:
        node = scope.require_node(session.get(OrgNode, query["node_id"]))
        select = select.where(OrgNode.path.startswith(node.path, autoescape=True))
    limit = query.get("limit") or 200
    rows = session.execute(select.order_by(Alert.evaluated_at.desc(), Alert.id.desc()).limit(limit)).all()
    return {
        "items": [
            {
                "id": alert.id,
                "rule_id": rule.id,
                "rule_name": rule.name,
                "kind": rule.kind,
                "severity": rule.severity,
                "indicator": indicator.code,
                "indicator_name": indicator.name,
                "unit": indicator.unit,
                "node_id": alert.node_id,
                "node_name": node_name,
                "period": alert.period,
                "state": alert.state,
                "value": alert.value,
                "reference": alert.reference,
                "started_at": alert.started_at,
                "evaluated_at": alert.evaluated_at,
                "resolved_at": alert.resolved_at,
                "notified_at": alert.notified_at,
                "resolved_notified_at": alert.resolved_notified_at,
                "inhibited_by_id": alert.inhibited_by_id,
                "silenced_by_id": alert.silenced_by_id,
            }
            for alert, rule, indicator, node_name, _path in rows
        ]
    }

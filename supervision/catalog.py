"""The indicator catalog (指标库) and targets: rules as plain functions (a principal, data, a session; no request).

- Everyone signed in reads the catalog and the targets.
- Only a province administrator (an `admin` role on a `province_commission` node, or the operator credential)
  creates and edits indicators. Every edit bumps `version` and keeps the definition it replaced in
  `IndicatorVersion`, with who and why, so a figure can be read with the definition it was computed under.
- Targets are set per (indicator, region node, year) by an administrator whose subtree holds the region: the
  province for everyone, a city stricter for its counties, a county for itself. A node without its own target
  takes the nearest ancestor's (`effective_targets`).

Validation errors are 422 naming the field: the API schemas check formats, `check_definition` checks the rules
that join fields (a rate needs a denominator …) on the whole definition, so a PATCH of one field is checked
against the stored rest.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.exc import IntegrityError

from org_sync.models import OrgNode, path_ids
from supervision import rollup
from supervision.models import (
    COLLECTIONS,
    DIMENSIONS,
    DIRECTIONS,
    KINDS,
    PERIODS,
    REPORTING_LEVELS,
    Indicator,
    IndicatorTarget,
    IndicatorValue,
    IndicatorVersion,
)
from workbench import audit, db
from workbench.auth.principal import ADMINISTRATIVE_LEVELS, Principal
from workbench.db import utcnow
from workbench.errors import ApiError

CODE = re.compile(r"^[A-Z][A-Z0-9-]{1,31}$")
AUTOMATIC_SOURCE = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")
SCALES = (1, 100, 1000, 10000)
# Units whose scale is fixed by the unit itself (a "%" shown from a ×1000 figure would be wrong by ten).
UNIT_SCALES = {"%": 100, "‰": 1000}
TARGET_LEVELS = ADMINISTRATIVE_LEVELS  # province_commission, city_commission, county_bureau
YEARS = (2000, 2100)

# Every field of a definition but `code` (which never changes: values, rules and feeds refer to it).
FIELDS = (
    "national_no",
    "name",
    "dimension",
    "kind",
    "numerator_definition",
    "denominator_definition",
    "unit",
    "scale",
    "direction",
    "period",
    "collection",
    "source",
    "reporting_level",
    "bounded",
    "additive",
    "automatic_source",
    "note",
    "active",
)
REQUIRED = ("name", "dimension", "kind", "numerator_definition", "unit", "direction", "period", "collection", "source")
DEFAULTS: dict[str, Any] = {
    "national_no": None,
    "denominator_definition": None,
    "scale": 1,
    "reporting_level": "institution",
    "bounded": True,
    "additive": True,
    "automatic_source": None,
    "note": None,
    "active": True,
}
LENGTHS = {"name": 200, "unit": 16, "source": 120, "automatic_source": 48}
ENUMS = {
    "dimension": DIMENSIONS,
    "kind": KINDS,
    "direction": DIRECTIONS,
    "period": PERIODS,
    "collection": COLLECTIONS,
    "reporting_level": REPORTING_LEVELS,
}


def _invalid(field: str, message: str) -> ApiError:
    return ApiError("validation_error", message, status=422, field=field)


# -- who may do what --------------------------------------------------------------------------------------------


def is_province_admin(principal: Principal, session: orm.Session) -> bool:
    """The operator, or an `admin` role on a live province commission node."""
    if principal.operator:
        return True
    node_ids = {role.node_id for role in principal.roles if role.code == "admin"}
    if not node_ids:
        return False
    found = session.scalar(
        sa.select(sa.func.count())
        .select_from(OrgNode)
        .where(OrgNode.id.in_(node_ids), OrgNode.level == "province_commission", OrgNode.deleted_at.is_(None))
    )
    return bool(found)


def _require_province_admin(principal: Principal, session: orm.Session) -> None:
    if not is_province_admin(principal, session):
        raise ApiError("forbidden", "只有省级卫生健康委管理员可以维护指标库", status=403)


# -- definitions ------------------------------------------------------------------------------------------------


def _clean(value: Any) -> Any:
    """Strip text; an empty optional text is no text."""
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value


def check_definition(definition: Mapping[str, Any]) -> None:
    """Every rule of a whole definition (all of FIELDS); raises a 422 naming the first offending field."""
    for field in REQUIRED:
        if not definition.get(field):
            raise _invalid(field, "不能为空")
    for field, allowed in ENUMS.items():
        if definition[field] not in allowed:
            raise _invalid(field, f"取值须为 {'、'.join(allowed)} 之一")
    for field, limit in LENGTHS.items():
        if definition.get(field) and len(definition[field]) > limit:
            raise _invalid(field, f"不能超过 {limit} 个字符")
    for field in ("bounded", "additive", "active"):
        if not isinstance(definition[field], bool):
            raise _invalid(field, "须为 true 或 false")
    number = definition["national_no"]
    if number is not None and (isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= 99):
        raise _invalid("national_no", "国家监测指标序号须为 1–99 的整数")
    scale = definition["scale"]
    if isinstance(scale, bool) or scale not in SCALES:
        raise _invalid("scale", "倍数须为 1、100、1000 或 10000")
    unit, kind = definition["unit"], definition["kind"]
    if unit in UNIT_SCALES and scale != UNIT_SCALES[unit]:
        raise _invalid("scale", f"单位为“{unit}”时倍数须为 {UNIT_SCALES[unit]}")
    if scale == 100 and unit != "%":
        raise _invalid("unit", "倍数为 100 时单位须为“%”")
    if kind == "rate" and not definition["denominator_definition"]:
        raise _invalid("denominator_definition", "比率指标须有分母定义")
    if kind == "count":
        if definition["denominator_definition"]:
            raise _invalid("denominator_definition", "数量指标只有分子，不能有分母定义")
        if definition["bounded"]:
            raise _invalid("bounded", "数量指标没有分母，不能设为“分子不超过分母”")
        if scale != 1:
            raise _invalid("scale", "数量指标的倍数须为 1")
    if kind == "qualitative":
        if definition["collection"] == "automatic":
            raise _invalid("collection", "定性指标由评估人给出结论，不能自动采集")
        if not definition["bounded"]:
            raise _invalid("bounded", "定性指标的结论为 0 或 1（分母 1），须设为“分子不超过分母”")
    source = definition["automatic_source"]
    if source is not None:
        if definition["collection"] not in ("automatic", "mixed"):
            raise _invalid("automatic_source", "只有自动采集或自动+手工的指标可以指定平台计算来源")
        if not AUTOMATIC_SOURCE.match(source):
            raise _invalid("automatic_source", "平台计算来源格式须为 模块.计算名，例如 family_doctor.coverage")
        known = _known_automatic_sources()
        if known is not None and source not in known:
            raise _invalid("automatic_source", f"平台没有名为 {source} 的自动计算")


def _known_automatic_sources() -> set[str] | None:
    """The platform computations intake knows, once supervision/intake.py exists; None until then (the format
    check alone applies), so the catalog does not depend on intake being built first."""
    try:
        from supervision import intake  # type: ignore[attr-defined]
    except ImportError:
        return None
    known = getattr(intake, "AUTOMATIC", None)
    return set(known) if known is not None else None


def definition_of(indicator: Indicator) -> dict[str, Any]:
    """The stored definition as plain JSON (what `IndicatorVersion.definition` keeps)."""
    data = {field: getattr(indicator, field) for field in FIELDS}
    data |= {
        "code": indicator.code,
        "version": indicator.version,
        "updated_at": indicator.updated_at.isoformat() if indicator.updated_at else None,
        "updated_by": indicator.updated_by,
    }
    return data


def indicator_view(indicator: Indicator) -> dict[str, Any]:
    return {
        "id": indicator.id,
        "code": indicator.code,
        **{field: getattr(indicator, field) for field in FIELDS},
        "dimension_name": DIMENSIONS.get(indicator.dimension),
        "kind_name": KINDS.get(indicator.kind),
        "direction_name": DIRECTIONS.get(indicator.direction),
        "period_name": PERIODS.get(indicator.period),
        "collection_name": COLLECTIONS.get(indicator.collection),
        "reporting_level_name": REPORTING_LEVELS.get(indicator.reporting_level),
        "version": indicator.version,
        "updated_at": indicator.updated_at,
        "updated_by": indicator.updated_by,
    }


def _national_no_taken(session: orm.Session, number: int | None, own_id: int | None) -> None:
    if number is None:
        return
    stmt = sa.select(Indicator.code).where(Indicator.national_no == number)
    if own_id is not None:
        stmt = stmt.where(Indicator.id != own_id)
    other = session.scalar(stmt)
    if other is not None:
        raise ApiError("conflict", f"国家监测指标序号 {number} 已由 {other} 使用", status=409, field="national_no")


# -- reading ----------------------------------------------------------------------------------------------------


def list_indicators(
    principal: Principal, filters: Mapping[str, Any], session: orm.Session | None = None
) -> dict[str, Any]:
    """The catalog, national ones first (by number), then by code. Filters: dimension, collection, kind, active,
    q (a part of the name or code)."""
    session = session or db.session()
    stmt = sa.select(Indicator)
    for field in ("dimension", "collection", "kind", "active"):
        if filters.get(field) is not None:
            stmt = stmt.where(getattr(Indicator, field) == filters[field])
    q = (filters.get("q") or "").strip()
    if q:
        # Codes are upper case by rule, so "fd-" finds FD-COVERAGE; names are Chinese (no case to fold).
        stmt = stmt.where(
            sa.or_(Indicator.name.contains(q, autoescape=True), Indicator.code.contains(q.upper(), autoescape=True))
        )
    stmt = stmt.order_by(Indicator.national_no.is_(None), Indicator.national_no, Indicator.code)
    items = [indicator_view(row) for row in session.scalars(stmt)]
    return {"items": items, "total": len(items), "can_edit": is_province_admin(principal, session)}


def _indicator(session: orm.Session, code: str) -> Indicator:
    indicator = session.scalar(sa.select(Indicator).where(Indicator.code == code))
    if indicator is None:
        raise ApiError("not_found", f"指标 {code} 不存在", status=404)
    return indicator


def get_indicator(principal: Principal, code: str, session: orm.Session | None = None) -> dict[str, Any]:
    session = session or db.session()
    return indicator_view(_indicator(session, code))


def list_versions(principal: Principal, code: str, session: orm.Session | None = None) -> dict[str, Any]:
    """The definitions an indicator had before, oldest first, and the current one."""
    session = session or db.session()
    indicator = _indicator(session, code)
    rows = session.scalars(
        sa.select(IndicatorVersion)
        .where(IndicatorVersion.indicator_id == indicator.id)
        .order_by(IndicatorVersion.version)
    )
    items = [
        {
            "version": row.version,
            "definition": row.definition,
            "valid_until": row.valid_until,
            "changed_by": row.changed_by,
            "reason": row.reason,
        }
        for row in rows
    ]
    return {"current": indicator_view(indicator), "items": items}


# -- writing ----------------------------------------------------------------------------------------------------


def create_indicator(principal: Principal, data: Mapping[str, Any], session: orm.Session | None = None) -> dict:
    """A provincial indicator. `code` is permanent; the rest can be edited later (versioned)."""
    session = session or db.session()
    _require_province_admin(principal, session)
    code = str(data.get("code") or "").strip()
    if not CODE.match(code):
        raise _invalid("code", "指标代码须为 2–32 位大写字母、数字或连字符，以字母开头，例如 ZJ-FD-01")
    # A count has no denominator to stay under, so it is not bounded unless said otherwise (and then refused).
    defaults = DEFAULTS | {"bounded": data.get("kind") != "count"}
    definition = {field: _clean(data.get(field)) for field in FIELDS}
    for field, default in defaults.items():
        if definition[field] is None and default is not None:
            definition[field] = default
    check_definition(definition)
    if session.scalar(sa.select(Indicator.id).where(Indicator.code == code)) is not None:
        raise ApiError("conflict", f"指标代码 {code} 已存在", status=409, field="code")
    _national_no_taken(session, definition["national_no"], None)
    indicator = Indicator(code=code, **definition, version=1, updated_at=utcnow(), updated_by=principal.actor)
    session.add(indicator)
    session.flush()
    audit.record(
        principal,
        "supervision.indicator.create",
        resource_type="indicator",
        resource_id=code,
        detail={"version": 1},
        session=session,
    )
    try:
        session.commit()
    except IntegrityError as exc:  # a concurrent create of the same code
        session.rollback()
        raise ApiError("conflict", f"指标代码 {code} 已存在", status=409, field="code") from exc
    return indicator_view(indicator)


def edit_indicator(
    principal: Principal, code: str, data: Mapping[str, Any], session: orm.Session | None = None
) -> dict[str, Any]:
    """Change any fields but `code` (deactivating and reactivating are edits of `active`), with a `reason`.
    The replaced definition is kept as a version; an edit that changes nothing leaves the version alone."""
    session = session or db.session()
    _require_province_admin(principal, session)
    reason = data.get("reason")
    reason = reason.strip() if isinstance(reason, str) else ""
    if not reason:
        raise _invalid("reason", "请填写修改原因")
    if len(reason) > 500:
        raise _invalid("reason", "修改原因不能超过 500 个字符")
    if "code" in data and data["code"] != code:
        raise _invalid("code", "指标代码不能修改")
    indicator = _indicator(session, code)
    before = definition_of(indicator)
    changes = {field: _clean(data[field]) for field in FIELDS if field in data}
    for field in ("scale", "reporting_level", "bounded", "additive", "active"):
        if field in changes and changes[field] is None:
            raise _invalid(field, "不能为空")
    merged = {field: before[field] for field in FIELDS} | changes
    check_definition(merged)
    changed = sorted(field for field in changes if changes[field] != before[field])
    if not changed:
        return indicator_view(indicator)
    _national_no_taken(session, merged["national_no"], indicator.id)
    session.add(
        IndicatorVersion(
            indicator_id=indicator.id,
            version=indicator.version,
            definition=before,
            valid_until=utcnow(),
            changed_by=principal.actor,
            reason=reason,
        )
    )
    for field in changed:
        setattr(indicator, field, merged[field])
    indicator.version += 1
    indicator.updated_at = utcnow()
    indicator.updated_by = principal.actor
    audit.record(
        principal,
        "supervision.indicator.edit",
        resource_type="indicator",
        resource_id=code,
        detail={"version": indicator.version, "fields": changed},
        session=session,
    )
    try:
        session.commit()
    except IntegrityError as exc:  # a concurrent edit took the same version number
        session.rollback()
        raise ApiError("conflict", "指标刚被他人修改，请刷新后重试", status=409) from exc
    if set(changed) & RECOMPUTED_BY:
        _recompute_periods_of(session, indicator)
    return indicator_view(indicator)


# What a roll-up is computed from (targets are read live by the figures, names are only shown).
RECOMPUTED_BY = {"kind", "scale", "reporting_level", "period", "additive", "active"}


def _recompute_periods_of(session: orm.Session, indicator: Indicator) -> None:
    """Every period the indicator has values for is rolled up again under the new definition."""
    periods = session.scalars(
        sa.select(IndicatorValue.period).where(IndicatorValue.indicator_id == indicator.id).distinct()
    ).all()
    if periods:
        rollup.schedule_recompute(list(periods))


# -- targets ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EffectiveTarget:
    value: Decimal  # in the indicator's display unit
    node_id_set_on: int  # the node whose own target this is (the node itself or its nearest ancestor with one)


_NODE_CHUNK = 10_000


def effective_targets(
    session: orm.Session, indicator_ids: Iterable[int], node_ids: Iterable[int], year: int
) -> dict[tuple[int, int], EffectiveTarget]:
    """Each node's target for the year: its own, else the nearest ancestor's (an institution inherits its
    county's, a county its city's or the province's). Pairs without any target are absent.

    Two queries whatever the number of indicators and nodes (one more per further 10,000 nodes, which keeps
    each IN list under SQLite's and PostgreSQL's bind-parameter limits): every target of the indicators for the
    year (targets sit only on province, city and county nodes, so at most a few hundred rows per indicator), then
    the nodes' materialised paths; the walk up each path is in memory."""
    indicator_ids, node_ids = set(indicator_ids), sorted(set(node_ids))
    if not indicator_ids or not node_ids:
        return {}
    own: dict[tuple[int, int], Decimal] = {
        (row.indicator_id, row.node_id): row.value
        for row in session.execute(
            sa.select(IndicatorTarget.indicator_id, IndicatorTarget.node_id, IndicatorTarget.value).where(
                IndicatorTarget.indicator_id.in_(indicator_ids), IndicatorTarget.year == year
            )
        )
    }
    if not own:
        return {}
    paths: dict[int, str] = {}
    for start in range(0, len(node_ids), _NODE_CHUNK):
        chunk = node_ids[start : start + _NODE_CHUNK]
        paths.update(
            (row.id, row.path)
            for row in session.execute(sa.select(OrgNode.id, OrgNode.path).where(OrgNode.id.in_(chunk)))
        )
    result: dict[tuple[int, int], EffectiveTarget] = {}
    for node_id, path in paths.items():
        chain = list(reversed(path_ids(path)))  # the node first, then up to the root
        for indicator_id in indicator_ids:
            for ancestor in chain:
                value = own.get((indicator_id, ancestor))
                if value is not None:
                    result[(indicator_id, node_id)] = EffectiveTarget(value, ancestor)
                    break
    return result


def _target_view(target: IndicatorTarget, indicator: Indicator, node: OrgNode) -> dict[str, Any]:
    return {
        "indicator_code": indicator.code,
        "node_id": node.id,
        "node_name": node.name,
        "node_level": node.level,
        "year": target.year,
        "value": target.value,
        "unit": indicator.unit,
        "set_by": target.set_by,
        "set_at": target.set_at,
    }


def _check_year(year: Any) -> int:
    if isinstance(year, bool) or not isinstance(year, int) or not YEARS[0] <= year <= YEARS[1]:
        raise _invalid("year", f"年度须为 {YEARS[0]}–{YEARS[1]} 的整数")
    return year


def _target_node(principal: Principal, session: orm.Session, node_id: Any) -> OrgNode:
    """A live region node (province, city or county) inside the caller's administrative subtree."""
    if isinstance(node_id, bool) or not isinstance(node_id, int):
        raise _invalid("node_id", "须为组织节点编号（整数）")
    node = session.get(OrgNode, node_id)
    if node is None or node.deleted_at is not None:
        raise ApiError("not_found", f"组织节点 {node_id} 不存在", status=404, field="node_id")
    if node.level not in TARGET_LEVELS:
        raise _invalid("node_id", "目标只能设在省、市、县（区）卫生健康行政部门节点上，机构继承所在县的目标")
    if not principal.scope("admin").covers_path(node.path):
        raise ApiError("forbidden", "只能为本级或下级区域设定目标", status=403, field="node_id", node_name=node.name)
    return node


def _check_value(indicator: Indicator, value: Any) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise _invalid("value", "目标值须为数字")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise _invalid("value", "目标值须为数字") from None
    if not amount.is_finite():
        raise _invalid("value", "目标值须为数字")
    if amount < 0:
        raise _invalid("value", "目标值不能为负数")
    if indicator.unit == "%" and amount > 100:
        raise _invalid("value", "百分比指标的目标值不能超过 100")
    if amount >= Decimal("1e16"):
        raise _invalid("value", "目标值过大")
    return amount.quantize(Decimal("0.0001"))


def list_targets(
    principal: Principal, code: str, query: Mapping[str, Any], session: orm.Session | None = None
) -> dict[str, Any]:
    """The targets set on an indicator (optionally one year's), and with `node_id` and `year` the target that
    applies to that node."""
    session = session or db.session()
    indicator = _indicator(session, code)
    stmt = (
        sa.select(IndicatorTarget, OrgNode)
        .join(OrgNode, OrgNode.id == IndicatorTarget.node_id)
        .where(IndicatorTarget.indicator_id == indicator.id)
        .order_by(IndicatorTarget.year.desc(), OrgNode.depth, OrgNode.path)
    )
    year = query.get("year")
    if year is not None:
        stmt = stmt.where(IndicatorTarget.year == _check_year(year))
    items = [_target_view(target, indicator, node) for target, node in session.execute(stmt)]
    answer: dict[str, Any] = {"items": items, "effective": None}
    node_id = query.get("node_id")
    if node_id is not None:
        if year is None:
            raise _invalid("year", "查询节点适用的目标时须指定年度")
        node = session.get(OrgNode, node_id)
        if node is None:
            raise ApiError("not_found", f"组织节点 {node_id} 不存在", status=404, field="node_id")
        found = effective_targets(session, [indicator.id], [node.id], year).get((indicator.id, node.id))
        if found is not None:
            source = session.get(OrgNode, found.node_id_set_on)
            answer["effective"] = {
                "node_id": node.id,
                "value": found.value,
                "set_on_node_id": found.node_id_set_on,
                "set_on_node_name": source.name if source else None,
                "inherited": found.node_id_set_on != node.id,
            }
    return answer


def set_target(
    principal: Principal, code: str, data: Mapping[str, Any], session: orm.Session | None = None
) -> dict[str, Any]:
    """Set or replace the target of (indicator, node, year)."""
    session = session or db.session()
    indicator = _indicator(session, code)
    node = _target_node(principal, session, data.get("node_id"))
    year = _check_year(data.get("year"))
    value = _check_value(indicator, data.get("value"))
    target = session.scalar(
        sa.select(IndicatorTarget).where(
            IndicatorTarget.indicator_id == indicator.id,
            IndicatorTarget.node_id == node.id,
            IndicatorTarget.year == year,
        )
    )
    previous = None if target is None else target.value
    if target is None:
        target = IndicatorTarget(indicator_id=indicator.id, node_id=node.id, year=year, value=value)
        session.add(target)
    target.value = value
    target.set_by = principal.actor
    target.set_at = utcnow()
    audit.record(
        principal,
        "supervision.target.set",
        resource_type="indicator_target",
        resource_id=f"{code}:{node.id}:{year}",
        node_id=node.id,
        detail={"value": str(value), "previous": None if previous is None else str(previous)},
        session=session,
    )
    try:
        session.commit()
    except IntegrityError as exc:  # two administrators creating the same target at once
        session.rollback()
        raise ApiError("conflict", "该目标刚被他人设定，请刷新后重试", status=409) from exc
    return _target_view(target, indicator, node)


def delete_target(principal: Principal, code: str, data: Mapping[str, Any], session: orm.Session | None = None) -> None:
    """Remove a node's own target for a year (the node then inherits its ancestor's again)."""
    session = session or db.session()
    indicator = _indicator(session, code)
    node = _target_node(principal, session, data.get("node_id"))
    year = _check_year(data.get("year"))
    target = session.scalar(
        sa.select(IndicatorTarget).where(
            IndicatorTarget.indicator_id == indicator.id,
            IndicatorTarget.node_id == node.id,
            IndicatorTarget.year == year,
        )
    )
    if target is None:
        raise ApiError("not_found", f"{node.name} 没有 {year} 年度的该指标目标", status=404)
    audit.record(
        principal,
        "supervision.target.delete",
        resource_type="indicator_target",
        resource_id=f"{code}:{node.id}:{year}",
        node_id=node.id,
        detail={"value": str(target.value)},
        session=session,
    )
    session.delete(target)
    session.commit()

"""The service-item list (服务项目清单), the 当量 tables (标化工作当量表) with their county adjustments, institution
tiers, and the resolution of the effective 当量 per institution and month (reference/domain.md §2.3 formula 1).

Who may do what:

- service items: written by a province administrator (`admin` on a `province_commission` node) or the operator —
  the list is the province's; read by any signed-in `admin`, `finance_officer` or `institution_admin`;
- a province table (region = a `province_commission` node, no base): created, filled, published and withdrawn by an
  administrator whose scope covers that node;
- a county adjustment (region = a `county_bureau` node, base = a published province table of the province above
  it): by an administrator whose scope covers the county (its bureau's administrators; a province administrator
  covers it too); it holds only the values it changes, each within the base table's bounds;
- reading tables: a table is visible to readers whose scope holds its region or lies beneath it (a county sees its
  province's tables, not another county's adjustments) — anything else is the same 404 as a missing table;
- institution tiers: set by an administrator whose scope covers the institution.

Rules that keep settled money exact: values are Decimals with at most 4 places (never rounded on the way in: a
value with more places is refused), a published table never changes (409), published tables of one region never
overlap in validity, and a county adjustment lies inside its base table's validity. Withdrawing a table is allowed
while no settlement exists (settlement will refuse it once a settlement has read the table); a province table with
published county adjustments cannot be withdrawn before them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from mini_apps.compensation.models import (
    PACKAGES,
    TABLE_STATES,
    TIERS,
    EquivalentTable,
    EquivalentValue,
    InstitutionTier,
    ServiceItem,
)
from org_sync.models import OrgNode, path_ids
from workbench import audit, db
from workbench.auth.principal import INSTITUTION_LEVELS, Principal
from workbench.db import utcnow
from workbench.errors import ApiError

ITEM_CODE = re.compile(r"^[A-Z][A-Z0-9_-]{1,31}$")
FIELD_CODE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
MAX_RULE_FIELDS = 30
MAX_VALUES = 5000  # a table row per item and tier: 200 items × 3 tiers fits many times over
VALUE_MAX = Decimal("1000")
Q4 = Decimal("0.0001")  # 当量 precision (EquivalentValue.value is Numeric(12, 4))
Q2 = Decimal("0.01")  # percent precision (adjust_*_pct are Numeric(6, 2))
PCT_MIN, PCT_MAX = Decimal("-100"), Decimal("1000")
READER_ROLES = ("admin", "finance_officer", "institution_admin")
PROVINCE, COUNTY = "province_commission", "county_bureau"


def _invalid(field: str | None, message: str, **extra: Any) -> ApiError:
    return ApiError("validation_error", message, status=422, field=field, **extra)


def _conflict(field: str | None, message: str) -> ApiError:
    return ApiError("conflict", message, status=409, field=field)


def _require_reader(principal: Principal) -> None:
    if not principal.has_role(*READER_ROLES):
        raise ApiError("forbidden", "没有权限查看补偿机制数据", status=403, required_roles=list(READER_ROLES))


# -- service items ----------------------------------------------------------------------------------------------


def _is_province_admin(session: orm.Session, principal: Principal) -> bool:
    if principal.operator:
        return True
    node_ids = [role.node_id for role in principal.roles if role.code == "admin"]
    if not node_ids:
        return False
    found = session.scalar(
        sa.select(sa.func.count())
        .select_from(OrgNode)
        .where(OrgNode.id.in_(node_ids), OrgNode.level == PROVINCE, OrgNode.deleted_at.is_(None))
    )
    return bool(found)


def _require_item_writer(session: orm.Session, principal: Principal) -> None:
    if not _is_province_admin(session, principal):
        raise ApiError("forbidden", "只有省卫健委管理员可以维护服务项目清单", status=403)


def validate_quality_rule(rule: Any) -> dict[str, Any]:
    """`{}` or `{"required_fields": [field codes, unique, at most 30]}`; a 422 naming the bad part otherwise."""
    if rule is None or rule == {}:
        return {}
    if not isinstance(rule, Mapping) or set(rule) != {"required_fields"}:
        raise _invalid("quality_rule", '质量规则须为 {} 或 {"required_fields": [字段代码…]}')
    codes = rule["required_fields"]
    if not isinstance(codes, list) or not codes:
        raise _invalid("quality_rule.required_fields", "必填字段须为非空列表")
    if len(codes) > MAX_RULE_FIELDS:
        raise _invalid("quality_rule.required_fields", f"必填字段最多 {MAX_RULE_FIELDS} 个")
    seen: set[str] = set()
    for i, code in enumerate(codes):
        if not isinstance(code, str) or not FIELD_CODE.match(code):
            raise _invalid(
                f"quality_rule.required_fields.{i}",
                "字段代码须以小写字母开头，仅含小写字母、数字和下划线，最多40个字符",
            )
        if code in seen:
            raise _invalid(f"quality_rule.required_fields.{i}", f"字段代码“{code}”重复")
        seen.add(code)
    return {"required_fields": list(codes)}


def _clean_text(value: Any, field: str, max_len: int, label: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _invalid(field, f"{label}不能为空")
    value = value.strip()
    if len(value) > max_len:
        raise _invalid(field, f"{label}最多{max_len}个字")
    return value


def item_view(item: ServiceItem) -> dict[str, Any]:
    return {
        "id": item.id,
        "code": item.code,
        "name": item.name,
        "package": item.package,
        "package_label": PACKAGES.get(item.package, item.package),
        "unit": item.unit,
        "quality_rule": item.quality_rule or {},
        "active": item.active,
        "note": item.note,
        "created_by": item.created_by,
        "created_at": item.created_at,
        "updated_at": item.updated_at,
    }


def _item_by_code(session: orm.Session, code: str) -> ServiceItem:
    item = session.scalar(sa.select(ServiceItem).where(ServiceItem.code == code))
    if item is None:
        raise ApiError("not_found", f"服务项目 {code} 不存在", status=404)
    return item


def list_items(session: orm.Session, principal: Principal, filters: Mapping[str, Any]) -> dict[str, Any]:
    """The items, by code; filters `package`, `active`, `q` (in the code or the name)."""
    _require_reader(principal)
    stmt = sa.select(ServiceItem)
    if filters.get("package"):
        stmt = stmt.where(ServiceItem.package == filters["package"])
    if filters.get("active") is not None:
        stmt = stmt.where(ServiceItem.active.is_(filters["active"]))
    if filters.get("q"):
        needle = filters["q"].strip()
        stmt = stmt.where(
            sa.or_(
                ServiceItem.code.contains(needle.upper(), autoescape=True),
                ServiceItem.name.contains(needle, autoescape=True),
            )
        )
    page, per_page = filters.get("page", 1), filters.get("per_page", 200)
    rows, total = db.paginate(stmt.order_by(ServiceItem.code), page, per_page, db_session=session)
    return {"items": [item_view(item) for item in rows], "total": total, "page": page, "per_page": per_page}


def get_item(session: orm.Session, principal: Principal, code: str) -> dict[str, Any]:
    _require_reader(principal)
    return item_view(_item_by_code(session, code))


def create_item(session: orm.Session, principal: Principal, data: Mapping[str, Any]) -> dict[str, Any]:
    _require_item_writer(session, principal)
    code = data.get("code")
    if not isinstance(code, str) or not ITEM_CODE.match(code):
        raise _invalid("code", "项目编码须以大写字母开头，仅含大写字母、数字、下划线和连字符，2到32个字符")
    if data.get("package") not in PACKAGES:
        raise _invalid("package", f"服务包须为：{'、'.join(PACKAGES)}")
    item = ServiceItem(
        code=code,
        name=_clean_text(data.get("name"), "name", 100, "项目名称"),
        package=data["package"],
        unit=_clean_text(data.get("unit"), "unit", 20, "单位"),
        quality_rule=validate_quality_rule(data.get("quality_rule")),
        active=True,
        note=(data.get("note") or "").strip() or None,
        created_by=principal.actor,
    )
    if session.scalar(sa.select(ServiceItem.id).where(ServiceItem.code == code)) is not None:
        raise _conflict("code", f"项目编码 {code} 已存在")
    session.add(item)
    session.flush()
    audit.record(
        principal,
        "comp.item.create",
        resource_type="comp_item",
        resource_id=item.code,
        detail={"package": item.package},
        session=session,
    )
    session.commit()
    return item_view(item)


def _in_published_table(session: orm.Session, item_id: int) -> bool:
    return (
        session.scalar(
            sa.select(EquivalentValue.id)
            .join(EquivalentTable, EquivalentTable.id == EquivalentValue.table_id)
            .where(EquivalentValue.item_id == item_id, EquivalentTable.state != "draft")
            .limit(1)
        )
        is not None
    )


def update_item(session: orm.Session, principal: Principal, code: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """Edit name, unit, quality rule, note, active; the package only while no published table prices the item
    (the package decides which pool its 当量 are paid from)."""
    _require_item_writer(session, principal)
    item = _item_by_code(session, code)
    changed = []
    if "name" in data:
        item.name = _clean_text(data["name"], "name", 100, "项目名称")
        changed.append("name")
    if "unit" in data:
        item.unit = _clean_text(data["unit"], "unit", 20, "单位")
        changed.append("unit")
    if "quality_rule" in data:
        item.quality_rule = validate_quality_rule(data["quality_rule"])
        changed.append("quality_rule")
    if "note" in data:
        item.note = (data["note"] or "").strip() or None
        changed.append("note")
    if "active" in data:
        if not isinstance(data["active"], bool):
            raise _invalid("active", "是否启用须为 true 或 false")
        item.active = data["active"]
        changed.append("active")
    if "package" in data and data["package"] != item.package:
        if data["package"] not in PACKAGES:
            raise _invalid("package", f"服务包须为：{'、'.join(PACKAGES)}")
        if _in_published_table(session, item.id):
            raise _conflict("package", "该项目已在已发布的当量表中，不能更改服务包")
        item.package = data["package"]
        changed.append("package")
    audit.record(
        principal,
        "comp.item.update",
        resource_type="comp_item",
        resource_id=item.code,
        detail={"fields": sorted(changed), "active": item.active},
        session=session,
    )
    session.commit()
    return item_view(item)


def deactivate_item(session: orm.Session, principal: Principal, code: str) -> dict[str, Any]:
    """No new table may list the item; tables already published keep it (what was published stays paid)."""
    return update_item(session, principal, code, {"active": False})


# -- 当量 tables: scope ---------------------------------------------------------------------------------------------


def _visible_clause(principal: Principal) -> sa.ColumnElement[bool]:
    """Tables whose region is inside the caller's reader scope, or above it (the province's, seen by a county)."""
    scope = principal.scope(*READER_ROLES)
    if scope.everything:
        return sa.true()
    ancestors = {i for path in scope.paths for i in path_ids(path)}
    inside = scope.nodes(EquivalentTable.region_node_id)
    return sa.or_(inside, EquivalentTable.region_node_id.in_(ancestors)) if ancestors else inside


def _not_found(table_id: Any) -> ApiError:
    return ApiError("not_found", f"当量表 {table_id} 不存在", status=404)


def visible_table(session: orm.Session, principal: Principal, table_id: int) -> EquivalentTable:
    _require_reader(principal)
    table = session.scalar(sa.select(EquivalentTable).where(EquivalentTable.id == table_id, _visible_clause(principal)))
    if table is None:
        raise _not_found(table_id)
    return table


def managed_table(session: orm.Session, principal: Principal, table_id: int) -> tuple[EquivalentTable, OrgNode]:
    """The table and its region if the caller administers the region: 404 if it may not even read it, 403 if it
    only reads it (a county's administrator and the province's table)."""
    table = visible_table(session, principal, table_id)
    region = session.get(OrgNode, table.region_node_id)
    if region is None or not principal.scope("admin").covers_path(region.path):
        raise ApiError("forbidden", "只有该当量表所属单位的管理员可以修改", status=403)
    return table, region


def _require_draft(table: EquivalentTable) -> None:
    if table.state != "draft":
        raise _conflict("state", f"当量表已{TABLE_STATES[table.state]}，不能再修改")


# -- 当量 tables: views ---------------------------------------------------------------------------------------------


def table_view(table: EquivalentTable, region_name: str | None = None) -> dict[str, Any]:
    return {
        "id": table.id,
        "kind": "county" if table.base_table_id else "province",
        "region_node_id": table.region_node_id,
        "region_name": region_name,
        "base_table_id": table.base_table_id,
        "version": table.version,
        "name": table.name,
        "valid_from": table.valid_from,
        "valid_to": table.valid_to,
        "state": table.state,
        "state_label": TABLE_STATES[table.state],
        "adjust_min_pct": table.adjust_min_pct,
        "adjust_max_pct": table.adjust_max_pct,
        "note": table.note,
        "created_by": table.created_by,
        "created_at": table.created_at,
        "published_by": table.published_by,
        "published_at": table.published_at,
    }


def _q4(value: Decimal) -> Decimal:
    # SQLite hands Numeric back through a float: quantising restores the stored 4 places exactly.
    return Decimal(value).quantize(Q4)


def _values_of(session: orm.Session, table_ids: Sequence[int]) -> dict[int, dict[tuple[int, int], Decimal]]:
    """{table id: {(item id, tier): value}} in one query."""
    out: dict[int, dict[tuple[int, int], Decimal]] = {table_id: {} for table_id in table_ids}
    if not table_ids:
        return out
    rows = session.execute(
        sa.select(EquivalentValue.table_id, EquivalentValue.item_id, EquivalentValue.tier, EquivalentValue.value).where(
            EquivalentValue.table_id.in_(list(table_ids))
        )
    )
    for table_id, item_id, tier, value in rows:
        out[table_id][(item_id, tier)] = _q4(value)
    return out


def _with_fallback(values: Mapping[tuple[int, int], Decimal], item_id: int, tier: int) -> Decimal | None:
    """A table's value for the tier, or its tier-1 value when the tier has none."""
    found = values.get((item_id, tier))
    return found if found is not None else values.get((item_id, 1))


def percent_change(value: Decimal, base: Decimal) -> Decimal:
    """(value ÷ base − 1) × 100, rounded half-up to 0.01 — for display only, never used to compute money."""
    return ((value / base - 1) * 100).quantize(Q2, rounding=ROUND_HALF_UP)


def table_rows(session: orm.Session, table: EquivalentTable) -> list[dict[str, Any]]:
    """One row per item, by code: the table's values per tier, and for a county table the base values (tier
    fallback applied) and the change in percent. A county table lists every item of its base; tiers it does not
    adjust are None."""
    ids = [table.id] + ([table.base_table_id] if table.base_table_id else [])
    values = _values_of(session, ids)
    own = values[table.id]
    base = values.get(table.base_table_id, {}) if table.base_table_id else {}
    item_ids = {item_id for item_id, _ in own} | {item_id for item_id, _ in base}
    items = (
        session.scalars(sa.select(ServiceItem).where(ServiceItem.id.in_(item_ids)).order_by(ServiceItem.code)).all()
        if item_ids
        else []
    )
    rows = []
    for item in items:
        row: dict[str, Any] = {
            "item_id": item.id,
            "item_code": item.code,
            "item_name": item.name,
            "package": item.package,
            "unit": item.unit,
            "values": {str(tier): own.get((item.id, tier)) for tier in TIERS},
        }
        if table.base_table_id:
            base_values = {tier: _with_fallback(base, item.id, tier) for tier in TIERS}
            row["base_values"] = {str(tier): value for tier, value in base_values.items()}
            row["change_pct"] = {
                str(tier): (
                    percent_change(own[(item.id, tier)], base_values[tier])
                    if (item.id, tier) in own and base_values[tier]
                    else None
                )
                for tier in TIERS
            }
        rows.append(row)
    return rows


# -- 当量 tables: validation ----------------------------------------------------------------------------------------


def _percent(value: Any, field: str) -> Decimal:
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise _invalid(field, "调整幅度须为数值（百分比）") from exc
    if isinstance(value, bool) or not number.is_finite() or number != number.quantize(Q2):
        raise _invalid(field, "调整幅度须为最多两位小数的数值（百分比）")
    return number.quantize(Q2)


def _check_bounds(min_pct: Decimal, max_pct: Decimal) -> None:
    if not PCT_MIN < min_pct <= 0:
        raise _invalid("adjust_min_pct", "下调幅度须大于 -100 且不大于 0（百分比）")
    if not 0 <= max_pct <= PCT_MAX:
        raise _invalid("adjust_max_pct", "上调幅度须在 0 到 1000 之间（百分比）")


def _check_dates(valid_from: date, valid_to: date | None) -> None:
    if valid_to is not None and valid_to < valid_from:
        raise _invalid("valid_to", "有效期截止日不能早于起始日")


def _check_inside_base(base: EquivalentTable, valid_from: date, valid_to: date | None) -> None:
    if valid_from < base.valid_from:
        raise _invalid("valid_from", f"县级调整表的有效期须在省表 {base.version} 的有效期内（自 {base.valid_from} 起）")
    if base.valid_to is not None and (valid_to is None or valid_to > base.valid_to):
        raise _invalid("valid_to", f"县级调整表的有效期须在省表 {base.version} 的有效期内（至 {base.valid_to} 止）")


def _province_of(session: orm.Session, node: OrgNode) -> OrgNode | None:
    return session.scalar(
        sa.select(OrgNode)
        .where(OrgNode.id.in_(path_ids(node.path)), OrgNode.level == PROVINCE)
        .order_by(OrgNode.depth.desc())
        .limit(1)
    )


def _version_free(session: orm.Session, region_id: int, version: str, table_id: int | None = None) -> None:
    stmt = sa.select(EquivalentTable.id).where(
        EquivalentTable.region_node_id == region_id, EquivalentTable.version == version
    )
    if table_id is not None:
        stmt = stmt.where(EquivalentTable.id != table_id)
    if session.scalar(stmt) is not None:
        raise _conflict("version", f"该地区已有版本号为 {version} 的当量表")


# -- 当量 tables: operations ----------------------------------------------------------------------------------------


def create_table(session: orm.Session, principal: Principal, data: Mapping[str, Any]) -> dict[str, Any]:
    """A draft table: a province table for a province commission node (with its adjustment bounds), or a county
    adjustment for a county bureau node (with `base_table_id`, a published table of the county's province)."""
    region = session.get(OrgNode, data["region_node_id"])
    if region is None or region.deleted_at is not None or not principal.scope("admin").covers_path(region.path):
        raise ApiError("not_found", "组织节点不存在或不在您的管理范围内", status=404, field="region_node_id")
    valid_from, valid_to = data["valid_from"], data.get("valid_to")
    _check_dates(valid_from, valid_to)
    base_id = data.get("base_table_id")
    min_pct = max_pct = None
    if region.level == PROVINCE:
        if base_id is not None:
            raise _invalid("base_table_id", "省级当量表没有基准表")
        for key in ("adjust_min_pct", "adjust_max_pct"):
            if data.get(key) is None:
                raise _invalid(key, "省级当量表须给出县级可调整的幅度（百分比）")
        min_pct = _percent(data["adjust_min_pct"], "adjust_min_pct")
        max_pct = _percent(data["adjust_max_pct"], "adjust_max_pct")
        _check_bounds(min_pct, max_pct)
    elif region.level == COUNTY:
        for key in ("adjust_min_pct", "adjust_max_pct"):
            if data.get(key) is not None:
                raise _invalid(key, "调整幅度由省级当量表规定，县级调整表不能设置")
        if base_id is None:
            raise _invalid("base_table_id", "县级调整表须指定所依据的省级当量表")
        base = session.get(EquivalentTable, base_id)
        province = _province_of(session, region)
        if base is None or province is None or base.region_node_id != province.id:
            raise _invalid("base_table_id", "基准表须为本省的省级当量表")
        if base.state != "published":
            raise _invalid("base_table_id", f"基准表 {base.version} 尚未发布或已撤回")
        _check_inside_base(base, valid_from, valid_to)
    else:
        raise _invalid("region_node_id", "当量表须由省卫健委（省级表）或县卫健局（县级调整表）制定")
    version = _clean_text(data.get("version"), "version", 20, "版本号")
    _version_free(session, region.id, version)
    table = EquivalentTable(
        region_node_id=region.id,
        base_table_id=base_id,
        version=version,
        name=_clean_text(data.get("name"), "name", 100, "名称"),
        valid_from=valid_from,
        valid_to=valid_to,
        state="draft",
        adjust_min_pct=min_pct,
        adjust_max_pct=max_pct,
        note=(data.get("note") or "").strip() or None,
        created_by=principal.actor,
    )
    session.add(table)
    session.flush()
    audit.record(
        principal,
        "comp.table.create",
        resource_type="comp_table",
        resource_id=table.id,
        node_id=region.id,
        detail={"version": version, "base_table_id": base_id},
        session=session,
    )
    session.commit()
    return table_view(table, region.name)


def list_tables(session: orm.Session, principal: Principal, filters: Mapping[str, Any]) -> dict[str, Any]:
    """Tables the caller may read, newest validity first; filters `region_node_id`, `state`, `kind`."""
    _require_reader(principal)
    stmt = (
        sa.select(EquivalentTable, OrgNode.name)
        .join(OrgNode, OrgNode.id == EquivalentTable.region_node_id)
        .where(_visible_clause(principal))
    )
    if filters.get("region_node_id") is not None:
        stmt = stmt.where(EquivalentTable.region_node_id == filters["region_node_id"])
    if filters.get("state"):
        stmt = stmt.where(EquivalentTable.state == filters["state"])
    if filters.get("kind") == "province":
        stmt = stmt.where(EquivalentTable.base_table_id.is_(None))
    elif filters.get("kind") == "county":
        stmt = stmt.where(EquivalentTable.base_table_id.is_not(None))
    page, per_page = filters.get("page", 1), filters.get("per_page", 50)
    rows, total = db.paginate(
        stmt.order_by(EquivalentTable.valid_from.desc(), EquivalentTable.id.desc()),
        page,
        per_page,
        rows=True,
        db_session=session,
    )
    return {
        "items": [table_view(table, name) for table, name in rows],
        "total": total,
        "page": page,
        "per_page": per_page,
    }


def get_table(session: orm.Session, principal: Principal, table_id: int) -> dict[str, Any]:
    """The table with its rows (see `table_rows`)."""
    table = visible_table(session, principal, table_id)
    region = session.get(OrgNode, table.region_node_id)
    return {**table_view(table, region.name if region else None), "rows": table_rows(session, table)}


def update_table(session: orm.Session, principal: Principal, table_id: int, data: Mapping[str, Any]) -> dict[str, Any]:
    """Edit a draft (anything); a published or withdrawn table only keeps its name and note editable — its
    version, dates and bounds are what settlements were computed with (409)."""
    table, region = managed_table(session, principal, table_id)
    locked = sorted(set(data) - {"name", "note"})
    if table.state != "draft" and locked:
        raise _conflict(locked[0], f"当量表已{TABLE_STATES[table.state]}，版本号、有效期和调整幅度不能再修改")
    if "name" in data:
        table.name = _clean_text(data["name"], "name", 100, "名称")
    if "note" in data:
        table.note = (data["note"] or "").strip() or None
    if "version" in data:
        version = _clean_text(data["version"], "version", 20, "版本号")
        _version_free(session, table.region_node_id, version, table.id)
        table.version = version
    valid_from = data.get("valid_from", table.valid_from)
    valid_to = data.get("valid_to", table.valid_to)
    if valid_from is None:
        raise _invalid("valid_from", "有效期起始日不能为空")
    _check_dates(valid_from, valid_to)
    if table.base_table_id:
        for key in ("adjust_min_pct", "adjust_max_pct"):
            if data.get(key) is not None:
                raise _invalid(key, "调整幅度由省级当量表规定，县级调整表不能设置")
        _check_inside_base(session.get(EquivalentTable, table.base_table_id), valid_from, valid_to)
    else:
        min_pct = _percent(data["adjust_min_pct"], "adjust_min_pct") if "adjust_min_pct" in data else None
        max_pct = _percent(data["adjust_max_pct"], "adjust_max_pct") if "adjust_max_pct" in data else None
        min_pct = table.adjust_min_pct if min_pct is None else min_pct
        max_pct = table.adjust_max_pct if max_pct is None else max_pct
        _check_bounds(Decimal(min_pct), Decimal(max_pct))
        table.adjust_min_pct, table.adjust_max_pct = min_pct, max_pct
    table.valid_from, table.valid_to = valid_from, valid_to
    audit.record(
        principal,
        "comp.table.update",
        resource_type="comp_table",
        resource_id=table.id,
        node_id=table.region_node_id,
        detail={"fields": sorted(data)},
        session=session,
    )
    session.commit()
    return table_view(table, region.name)


@dataclass(frozen=True)
class ValueProblem:
    """One bad entry of a values list: its index, the field inside the entry, and the message."""

    index: int
    field: str | None  # item_code | tier | value | None (the entry as a whole)
    message: str

    @property
    def path(self) -> str:
        return f"values.{self.index}" + (f".{self.field}" if self.field else "")


def _parse_value(raw: Any) -> Decimal | str:
    """The value as an exact Decimal, or the reason it is not one."""
    if isinstance(raw, bool) or raw is None or (isinstance(raw, str) and not raw.strip()):
        return "当量值须为数值"
    try:
        value = Decimal(str(raw).strip()) if isinstance(raw, str | int | float | Decimal) else None
    except InvalidOperation:
        value = None
    if value is None or not value.is_finite():
        return "当量值须为数值"
    if value != value.quantize(Q4):
        return "当量值最多4位小数"
    if not 0 < value <= VALUE_MAX:
        return f"当量值须大于0且不超过{VALUE_MAX}"
    return value.quantize(Q4)


def _fmt(value: Decimal) -> str:
    """A bound for a message: exact, without trailing zeros."""
    text = format(value.normalize(), "f")
    return text


def check_values(
    session: orm.Session, table: EquivalentTable, entries: Sequence[Any]
) -> tuple[list[tuple[int, int, Decimal]], list[ValueProblem]]:
    """Every entry checked (not only the first bad one, so a file import can report each bad row): the rows
    to store as (item id, tier, value), and the errors. Items must exist and be active; (item, tier) unique; a
    county adjustment's value lies within base × (1 + min%/100) … base × (1 + max%/100), exactly (no rounding)."""
    errors: list[ValueProblem] = []
    if len(entries) > MAX_VALUES:
        return [], [ValueProblem(MAX_VALUES, None, f"当量值最多 {MAX_VALUES} 条")]
    codes = {e.get("item_code") for e in entries if isinstance(e, Mapping) and isinstance(e.get("item_code"), str)}
    items = (
        {item.code: item for item in session.scalars(sa.select(ServiceItem).where(ServiceItem.code.in_(codes)))}
        if codes
        else {}
    )
    base: EquivalentTable | None = None
    base_values: dict[tuple[int, int], Decimal] = {}
    if table.base_table_id:
        base = session.get(EquivalentTable, table.base_table_id)
        base_values = _values_of(session, [base.id])[base.id]
        low_factor = 1 + Decimal(base.adjust_min_pct or 0) / 100
        high_factor = 1 + Decimal(base.adjust_max_pct or 0) / 100
    seen: dict[tuple[int, int], int] = {}
    out: list[tuple[int, int, Decimal]] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            errors.append(ValueProblem(i, None, "每条当量值须为 {item_code, tier, value}"))
            continue
        unknown = sorted(set(entry) - {"item_code", "tier", "value"})
        if unknown:
            errors.append(ValueProblem(i, unknown[0], "未知字段"))
            continue
        code = entry.get("item_code")
        item = items.get(code) if isinstance(code, str) else None
        if item is None:
            errors.append(ValueProblem(i, "item_code", f"服务项目 {code} 不存在"))
            continue
        if not item.active:
            errors.append(ValueProblem(i, "item_code", f"服务项目 {code} 已停用"))
            continue
        tier = entry.get("tier", 1)
        if tier is None:
            tier = 1
        if isinstance(tier, bool) or not isinstance(tier, int) or tier not in TIERS:
            errors.append(ValueProblem(i, "tier", "地区类别须为 1、2 或 3"))
            continue
        value = _parse_value(entry.get("value"))
        if isinstance(value, str):
            errors.append(ValueProblem(i, "value", value))
            continue
        key = (item.id, tier)
        if key in seen:
            errors.append(ValueProblem(i, None, f"服务项目 {code} 的{TIERS[tier]}当量重复（与第 {seen[key]} 条）"))
            continue
        seen[key] = i
        if base is not None:
            reference = _with_fallback(base_values, item.id, tier)
            if reference is None:
                errors.append(ValueProblem(i, "item_code", f"省表 {base.version} 没有服务项目 {code}，不能调整"))
                continue
            low, high = reference * low_factor, reference * high_factor
            if not low <= value <= high:
                errors.append(
                    ValueProblem(
                        i,
                        "value",
                        f"{code} {TIERS[tier]}的当量须在 {_fmt(low)} 至 {_fmt(high)} 之间"
                        f"（省表 {_fmt(reference)}，可调 {_fmt(Decimal(base.adjust_min_pct or 0))}% 至 "
                        f"{_fmt(Decimal(base.adjust_max_pct or 0))}%）",
                    )
                )
                continue
        out.append((item.id, tier, value))
    return out, errors


def replace_values(
    session: orm.Session,
    principal: Principal,
    table: EquivalentTable,
    rows: Sequence[tuple[int, int, Decimal]],
    action: str,
    detail: Mapping[str, Any] | None = None,
) -> None:
    """Replace a draft's values with `rows` (already checked), audited, committed: one DELETE and one INSERT."""
    session.execute(sa.delete(EquivalentValue).where(EquivalentValue.table_id == table.id))
    if rows:
        session.execute(
            sa.insert(EquivalentValue),
            [{"table_id": table.id, "item_id": item_id, "tier": tier, "value": value} for item_id, tier, value in rows],
        )
    audit.record(
        principal,
        action,
        resource_type="comp_table",
        resource_id=table.id,
        node_id=table.region_node_id,
        detail={"values": len(rows), **(detail or {})},
        session=session,
    )
    session.commit()


def set_values(session: orm.Session, principal: Principal, table_id: int, entries: Sequence[Any]) -> dict[str, Any]:
    """PUT semantics: the draft's values become exactly `entries`; the first bad one is a 422 naming
    `values.N[.field]` (all of them in `errors`), and nothing is stored."""
    table, region = managed_table(session, principal, table_id)
    _require_draft(table)
    rows, errors = check_values(session, table, entries)
    if errors:
        first = errors[0]
        raise _invalid(
            first.path,
            first.message,
            errors=[{"field": e.path, "message": e.message} for e in errors],
        )
    replace_values(session, principal, table, rows, "comp.table.values")
    return {**table_view(table, region.name), "rows": table_rows(session, table)}


def _overlapping(session: orm.Session, table: EquivalentTable) -> EquivalentTable | None:
    """A published table of the same region whose validity meets this one's (open ends run forever)."""
    stmt = sa.select(EquivalentTable).where(
        EquivalentTable.region_node_id == table.region_node_id,
        EquivalentTable.state == "published",
        EquivalentTable.id != table.id,
        sa.or_(EquivalentTable.valid_to.is_(None), EquivalentTable.valid_to >= table.valid_from),
    )
    if table.valid_to is not None:
        stmt = stmt.where(EquivalentTable.valid_from <= table.valid_to)
    return session.scalar(stmt.order_by(EquivalentTable.valid_from).limit(1))


def publish_table(session: orm.Session, principal: Principal, table_id: int) -> dict[str, Any]:
    """Draft → published. A province table must price every active item at tier 1 (other tiers fall back to it);
    a county adjustment must adjust something and its base must still be published; no overlap with another
    published table of the region."""
    table, region = managed_table(session, principal, table_id)
    # Serialise publications per region (PostgreSQL row lock on the region node) so two overlapping drafts
    # published at once cannot both pass the overlap check.
    session.execute(sa.select(OrgNode.id).where(OrgNode.id == region.id).with_for_update())
    session.refresh(table)
    _require_draft(table)
    values = _values_of(session, [table.id])[table.id]
    if table.base_table_id:
        base = session.get(EquivalentTable, table.base_table_id)
        if base.state != "published":
            raise _conflict("base_table_id", f"基准表 {base.version} 已撤回，不能发布依据它的调整表")
        if not values:
            raise _invalid("values", "调整表没有任何调整值")
    else:
        priced = {item_id for item_id, tier in values if tier == 1}
        missing = session.scalars(
            sa.select(ServiceItem.code)
            .where(ServiceItem.active.is_(True), ServiceItem.id.not_in(priced) if priced else sa.true())
            .order_by(ServiceItem.code)
        ).all()
        if missing:
            shown = "、".join(missing[:10]) + ("等" if len(missing) > 10 else "")
            raise _invalid(
                "values", f"省级当量表须包含每个启用项目的一类地区当量，缺少：{shown}", missing=list(missing)
            )
    clash = _overlapping(session, table)
    if clash is not None:
        until = clash.valid_to or "长期"
        raise _invalid(
            "valid_from",
            f"有效期与已发布的版本 {clash.version}（{clash.valid_from} 至 {until}）重叠",
            overlapping_table_id=clash.id,
        )
    table.state = "published"
    table.published_by = principal.actor
    table.published_at = utcnow()
    audit.record(
        principal,
        "comp.table.publish",
        resource_type="comp_table",
        resource_id=table.id,
        node_id=table.region_node_id,
        detail={"version": table.version, "values": len(values)},
        session=session,
    )
    session.commit()
    return table_view(table, region.name)


def withdraw_table(session: orm.Session, principal: Principal, table_id: int) -> dict[str, Any]:
    """Published → withdrawn (kept, never deleted). A province table whose county adjustments are still published
    is a 409 naming them: they would lose their base."""
    table, region = managed_table(session, principal, table_id)
    if table.state != "published":
        raise _conflict("state", "只有已发布的当量表可以撤回")
    dependants = session.scalars(
        sa.select(EquivalentTable.version).where(
            EquivalentTable.base_table_id == table.id, EquivalentTable.state == "published"
        )
    ).all()
    if dependants:
        raise _conflict("state", f"请先撤回依据该表的县级调整表：{'、'.join(dependants)}")
    table.state = "withdrawn"
    audit.record(
        principal,
        "comp.table.withdraw",
        resource_type="comp_table",
        resource_id=table.id,
        node_id=table.region_node_id,
        detail={"version": table.version},
        session=session,
    )
    session.commit()
    return table_view(table, region.name)


# -- resolution -----------------------------------------------------------------------------------------------------


def period_start(period: str) -> date:
    """The first day of a "YYYY-MM" period; a 422 naming `period` otherwise."""
    match = PERIOD.match(period) if isinstance(period, str) else None
    if match is None:
        raise _invalid("period", "期间须为 YYYY-MM")
    return date(int(match.group(1)), int(match.group(2)), 1)


def _valid_on(day: date) -> sa.ColumnElement[bool]:
    return sa.and_(
        EquivalentTable.state == "published",
        EquivalentTable.valid_from <= day,
        sa.or_(EquivalentTable.valid_to.is_(None), EquivalentTable.valid_to >= day),
    )


def table_for(session: orm.Session, region_node_id: int, day: date) -> EquivalentTable | None:
    """The region's published table valid on `day` (at most one: publication refuses overlaps)."""
    return session.scalar(
        sa.select(EquivalentTable)
        .where(EquivalentTable.region_node_id == region_node_id, _valid_on(day))
        .order_by(EquivalentTable.valid_from.desc())
        .limit(1)
    )


def values_for(session: orm.Session, institution_ids: Iterable[int], period: str) -> dict[int, dict[int, Decimal]]:
    """The effective 当量 per item id for each institution on the period's first day.

    Per institution: its county (the `county_bureau` at or above it by path) and province (the
    `province_commission` at or above it); its tier (`InstitutionTier`, default 1). The province's published
    table valid that day, overridden item by item and tier by tier by the county's published adjustment valid
    that day (only when the adjustment is of that very province table), then read at the institution's tier,
    falling back to tier 1 where the merged table has no value for the tier. An institution without a province
    table that day gets `{}`. At most five queries whatever the number of institutions.
    """
    day = period_start(period)
    ids = list(dict.fromkeys(int(i) for i in institution_ids))
    result: dict[int, dict[int, Decimal]] = {i: {} for i in ids}
    if not ids:
        return result
    paths = dict(session.execute(sa.select(OrgNode.id, OrgNode.path).where(OrgNode.id.in_(ids))).all())
    chains = {i: path_ids(path) for i, path in paths.items()}
    ancestors = {a for chain in chains.values() for a in chain}
    levels = dict(
        session.execute(
            sa.select(OrgNode.id, OrgNode.level).where(OrgNode.id.in_(ancestors), OrgNode.level.in_((PROVINCE, COUNTY)))
        ).all()
    )
    tiers = dict(
        session.execute(
            sa.select(InstitutionTier.institution_id, InstitutionTier.tier).where(
                InstitutionTier.institution_id.in_(ids)
            )
        ).all()
    )
    placed: dict[int, tuple[int | None, int | None]] = {}  # institution → (province, county)
    for i, chain in chains.items():
        # The nearest node of each level above (the chain runs root first).
        province = next((a for a in reversed(chain) if levels.get(a) == PROVINCE), None)
        county = next((a for a in reversed(chain) if levels.get(a) == COUNTY), None)
        placed[i] = (province, county)
    regions = {r for pair in placed.values() for r in pair if r is not None}
    if not regions:
        return result
    tables = session.execute(
        sa.select(EquivalentTable.id, EquivalentTable.region_node_id, EquivalentTable.base_table_id).where(
            EquivalentTable.region_node_id.in_(regions), _valid_on(day)
        )
    ).all()
    by_region = {region: (table_id, base_id) for table_id, region, base_id in tables}
    if not by_region:
        return result
    values = _values_of(session, [table_id for table_id, _ in by_region.values()])
    merged_cache: dict[tuple[int, int | None], dict[tuple[int, int], Decimal]] = {}
    resolved_cache: dict[tuple[tuple[int, int | None], int], dict[int, Decimal]] = {}
    for i, (province, county) in placed.items():
        if province not in by_region:
            continue
        province_table = by_region[province][0]
        county_table = None
        if county in by_region and by_region[county][1] == province_table:
            county_table = by_region[county][0]
        key = (province_table, county_table)
        merged = merged_cache.get(key)
        if merged is None:
            merged = dict(values[province_table])
            if county_table is not None:
                merged.update(values[county_table])
            merged_cache[key] = merged
        tier = tiers.get(i, 1)
        resolved = resolved_cache.get((key, tier))
        if resolved is None:
            resolved = {}
            for item_id in sorted({item_id for item_id, _ in merged}):
                # An item priced only at other tiers (no tier-1 fallback) is simply not priced for this tier.
                value = _with_fallback(merged, item_id, tier)
                if value is not None:
                    resolved[item_id] = value
            resolved_cache[(key, tier)] = resolved
        result[i] = dict(resolved)  # a copy each: callers may change theirs
    return result


# -- institution tiers ----------------------------------------------------------------------------------------------


def set_tier(session: orm.Session, principal: Principal, institution_id: int, tier: Any) -> dict[str, Any]:
    """An institution's remoteness tier, set by an administrator whose scope covers it (its county's)."""
    node = session.get(OrgNode, institution_id)
    if (
        node is None
        or node.deleted_at is not None
        or node.level not in INSTITUTION_LEVELS
        or not principal.scope("admin").covers_path(node.path)
    ):
        raise ApiError("not_found", "机构不存在或不在您的管理范围内", status=404)
    if isinstance(tier, bool) or not isinstance(tier, int) or tier not in TIERS:
        raise _invalid("tier", "地区类别须为 1、2 或 3")
    row = session.get(InstitutionTier, institution_id)
    previous = row.tier if row else None
    if row is None:
        row = InstitutionTier(institution_id=institution_id, tier=tier, set_by=principal.actor)
        session.add(row)
    else:
        row.tier, row.set_by = tier, principal.actor
    session.flush()
    audit.record(
        principal,
        "comp.tier.set",
        resource_type="org_node",
        resource_id=institution_id,
        node_id=institution_id,
        detail={"tier": tier, "previous": previous},
        session=session,
    )
    session.commit()
    return _tier_view(node, row.tier, True, row.set_by, row.set_at)


def _tier_view(node: OrgNode, tier: int, explicit: bool, set_by: str | None, set_at: Any) -> dict[str, Any]:
    return {
        "institution_id": node.id,
        "institution_name": node.name,
        "tier": tier,
        "tier_label": TIERS[tier],
        "explicit": explicit,
        "set_by": set_by,
        "set_at": set_at,
    }


def list_tiers(session: orm.Session, principal: Principal, filters: Mapping[str, Any]) -> dict[str, Any]:
    """Every live institution in the caller's reader scope (or under `node_id`, which must be in it) with its tier
    (1 unless set)."""
    _require_reader(principal)
    scope = principal.scope(*READER_ROLES)
    stmt = sa.select(OrgNode, InstitutionTier).outerjoin(InstitutionTier, InstitutionTier.institution_id == OrgNode.id)
    stmt = stmt.where(OrgNode.level.in_(INSTITUTION_LEVELS), OrgNode.deleted_at.is_(None), scope.subtree(OrgNode.path))
    if filters.get("node_id") is not None:
        under = scope.require_node(session.get(OrgNode, filters["node_id"]))
        stmt = stmt.where(OrgNode.path.startswith(under.path, autoescape=True))
    page, per_page = filters.get("page", 1), filters.get("per_page", 200)
    rows, total = db.paginate(stmt.order_by(OrgNode.path), page, per_page, rows=True, db_session=session)
    items = [
        _tier_view(
            node, row.tier if row else 1, row is not None, row.set_by if row else None, row.set_at if row else None
        )
        for node, row in rows
    ]
    return {"items": items, "total": total, "page": page, "per_page": per_page}

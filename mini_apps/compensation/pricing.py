"""What a county pays per 当量 and how performance moves it (reference/domain.md §2.3 formulas 2–4): unit prices
(当量单价) per package and year, the coefficient banding (绩效考核系数分档) turning an assessment score into the
performance coefficient, institutions' assessment scores, line-item subsidies (专项补助), monthly fee income
(医疗服务收入, for the gap-subsidy variant) and the county's settlement scheme (预拨比例, 差额补助).

Who may do what:

- writes: a county's finance or health administrators — `admin` or `finance_officer` whose scope covers the county
  (its bureau's administrators; the province's cover it too), for institution rows too (the county of the
  institution: a role granted on the institution itself does not let it set its own score, subsidies or income);
  anyone else with one of those roles gets the same 404 as a missing county or institution, anyone without them 403;
- reads of county terms (prices, bandings, schemes, the assessment list): those writers, and an `institution_admin`
  of an institution inside the county (the terms their institution is paid by); the assessment list then shows only
  the institutions in the reader's scope;
- reads of institution rows (line items, fee income): readers whose scope covers the institution (its own
  institution administrators included).

Money and coefficients are Decimals, never floats, and never rounded on the way in: a value with more places than
its column holds is refused (422 naming the field), so what is stored is exactly what was sent. Every write is
audited in the same transaction. The only rounding here is the linear coefficient band's: to 4 places, half up.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from itertools import pairwise
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.dialects import postgresql, sqlite

from mini_apps.compensation.catalog import PERIOD, period_start
from mini_apps.compensation.models import (
    LINE_ITEM_CATEGORIES,
    PACKAGES,
    PRICE_METHODS,
    Assessment,
    CoefficientBanding,
    CountyScheme,
    FeeIncome,
    LineItemSubsidy,
    UnitPrice,
)
from mini_apps.compensation.workload import county_of
from org_sync.models import OrgNode
from workbench import audit
from workbench.auth.principal import INSTITUTION_LEVELS, Principal
from workbench.errors import ApiError

WRITER_ROLES = ("admin", "finance_officer")
READER_ROLES = ("admin", "finance_officer", "institution_admin")
COUNTY = "county_bureau"
YEAR_MIN, YEAR_MAX = 2000, 2100
Q2, Q4 = Decimal("0.01"), Decimal("0.0001")
MONEY_MAX = Decimal("1e18")  # Numeric(20, 2): below 10^18 yuan
PRICE_MAX = Decimal("1e8")  # Numeric(12, 4)
SCORE_MIN, SCORE_MAX = Decimal(0), Decimal(100)
COEFFICIENT_MIN, COEFFICIENT_MAX = Decimal(0), Decimal(2)
MAX_BANDS = 50
DEFAULT_ADVANCE_SHARE = Decimal("0.8000")
DEFAULT_GAP_SUBSIDY = False
NOTE_MAX = 200


def _invalid(field: str | None, message: str) -> ApiError:
    return ApiError("validation_error", message, status=422, field=field)


def _fmt(value: Decimal) -> str:
    """A bound for a message: exact, without trailing zeros."""
    return format(value.normalize(), "f")


def _q(value: Any, places: Decimal) -> Decimal | None:
    # SQLite hands Numeric back through a float: quantising restores the stored places exactly.
    return None if value is None else Decimal(str(value)).quantize(places)


def parse_decimal(
    raw: Any,
    field: str,
    label: str,
    *,
    places: Decimal,
    low: Decimal,
    high: Decimal,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> Decimal:
    """`raw` (a JSON number or a numeric string) as an exact Decimal with at most `places`, inside low…high;
    otherwise a 422 naming `field`. Never rounds: "1.005" for a 2-place amount is refused, not made 1.01."""
    value: Decimal | None = None
    if not isinstance(raw, bool) and isinstance(raw, str | int | float | Decimal):
        try:
            value = Decimal(str(raw).strip())
        except InvalidOperation:
            value = None
    if value is None or not value.is_finite():
        raise _invalid(field, f"{label}须为数值")
    # The range first: quantising a huge value ("1e40") would overflow the decimal context.
    above = value >= low if low_inclusive else value > low
    below = value <= high if high_inclusive else value < high
    if not (above and below):
        lower = f"不小于{_fmt(low)}" if low_inclusive else f"大于{_fmt(low)}"
        upper = f"不大于{_fmt(high)}" if high_inclusive else f"小于{_fmt(high)}"
        raise _invalid(field, f"{label}须{lower}且{upper}")
    if value != value.quantize(places):
        raise _invalid(field, f"{label}最多{-places.as_tuple().exponent}位小数")
    return value.quantize(places)


def _check_year(year: int) -> int:
    if isinstance(year, bool) or not isinstance(year, int) or not YEAR_MIN <= year <= YEAR_MAX:
        raise _invalid("year", f"年度须在 {YEAR_MIN} 到 {YEAR_MAX} 之间")
    return year


def _unknown_fields(data: Mapping[str, Any], allowed: set[str], prefix: str = "") -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise _invalid(f"{prefix}{unknown[0]}", "未知字段")


# -- scope -----------------------------------------------------------------------------------------------------


def _require_role(principal: Principal, roles: Sequence[str]) -> None:
    if not principal.has_role(*roles):
        raise ApiError("forbidden", "没有权限操作补偿机制数据", status=403, required_roles=list(roles))


def _county_missing(county_id: int) -> ApiError:
    return ApiError("not_found", f"县（区）{county_id} 不存在或不在您的管理范围内", status=404)


def _institution_missing(institution_id: int) -> ApiError:
    return ApiError("not_found", f"机构 {institution_id} 不存在或不在您的管理范围内", status=404)


def _live_county(session: orm.Session, county_id: int) -> OrgNode | None:
    node = session.get(OrgNode, county_id)
    if node is None or node.deleted_at is not None or node.level != COUNTY:
        return None
    return node


def managed_county(session: orm.Session, principal: Principal, county_id: int) -> OrgNode:
    """The county bureau node if the caller administers it (admin or finance officer covering it)."""
    _require_role(principal, WRITER_ROLES)
    county = _live_county(session, county_id)
    if county is None or not principal.scope(*WRITER_ROLES).covers_path(county.path):
        raise _county_missing(county_id)
    return county


def readable_county(session: orm.Session, principal: Principal, county_id: int) -> OrgNode:
    """The county bureau node if the caller administers it or reads an institution inside it."""
    _require_role(principal, READER_ROLES)
    county = _live_county(session, county_id)
    scope = principal.scope(*READER_ROLES)
    if county is None or not (
        scope.covers_path(county.path) or any(path.startswith(county.path) for path in scope.paths)
    ):
        raise _county_missing(county_id)
    return county


def _institution(session: orm.Session, institution_id: int) -> tuple[OrgNode, OrgNode] | None:
    node = session.get(OrgNode, institution_id)
    if node is None or node.deleted_at is not None or node.level not in INSTITUTION_LEVELS:
        return None
    county = county_of(session, node)
    return (node, county) if county is not None else None


def managed_institution(session: orm.Session, principal: Principal, institution_id: int) -> tuple[OrgNode, OrgNode]:
    """(institution, its county) if the caller administers the institution's county (admin or finance officer
    covering the county, not merely the institution): an institution does not set its own score, subsidies or
    income; its administrators read them."""
    _require_role(principal, WRITER_ROLES)
    found = _institution(session, institution_id)
    if found is None or not principal.scope(*WRITER_ROLES).covers_path(found[1].path):
        raise _institution_missing(institution_id)
    return found


def readable_institution(session: orm.Session, principal: Principal, institution_id: int) -> tuple[OrgNode, OrgNode]:
    _require_role(principal, READER_ROLES)
    found = _institution(session, institution_id)
    if found is None or not principal.scope(*READER_ROLES).covers_path(found[0].path):
        raise _institution_missing(institution_id)
    return found


def _upsert(
    session: orm.Session, model: type, keys: Mapping[str, Any], values: Mapping[str, Any]
) -> tuple[Any, dict[str, Any] | None]:
    """The row of `model` with `keys` (its unique key) set to `values`: (row, the previous values or None when it
    is new). INSERT … ON CONFLICT DO NOTHING then a locked read, so two first writes at once never collide: the
    second waits for the first and updates its row."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    inserted = session.execute(
        insert(model).values(**keys, **values).on_conflict_do_nothing(index_elements=list(keys)).returning(model.id)
    ).scalar_one_or_none()
    row = session.scalar(sa.select(model).filter_by(**keys).with_for_update().execution_options(populate_existing=True))
    if inserted is not None:
        return row, None
    previous = {name: getattr(row, name) for name in values}
    for name, value in values.items():
        setattr(row, name, value)
    session.flush()
    return row, previous


def _plain(values: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Audit detail: Decimals as exact strings (JSON has no decimal type)."""
    if values is None:
        return None
    return {key: (format(value, "f") if isinstance(value, Decimal) else value) for key, value in values.items()}


# -- unit prices ---------------------------------------------------------------------------------------------------


def price_view(row: UnitPrice) -> dict[str, Any]:
    return {
        "county_id": row.county_id,
        "year": row.year,
        "package": row.package,
        "package_label": PACKAGES[row.package],
        "method": row.method,
        "method_label": PRICE_METHODS[row.method],
        "budget": _q(row.budget, Q2),
        "price": _q(row.price, Q4),
        "set_by": row.set_by,
        "set_at": row.set_at,
    }


def check_price(package: str, data: Mapping[str, Any]) -> tuple[str, Decimal | None, Decimal | None]:
    """(method, budget, price): budget-driven needs a budget > 0 (2 places) and no price; fixed needs a price > 0
    (4 places) and no budget."""
    if package not in PACKAGES:
        raise _invalid("package", f"服务包须为：{'、'.join(PACKAGES)}")
    _unknown_fields(data, {"method", "budget", "price"})
    method = data.get("method")
    if method not in PRICE_METHODS:
        raise _invalid("method", "定价方式须为 budget（预算驱动）或 fixed（固定单价）")
    if method == "budget":
        if data.get("price") is not None:
            raise _invalid("price", "预算驱动时不填单价（单价 = 购买预算 ÷ 县域总当量，结算时计算）")
        if data.get("budget") is None:
            raise _invalid("budget", "预算驱动须填写购买预算")
        budget = parse_decimal(
            data["budget"],
            "budget",
            "购买预算",
            places=Q2,
            low=Decimal(0),
            high=MONEY_MAX,
            low_inclusive=False,
            high_inclusive=False,
        )
        return method, budget, None
    if data.get("budget") is not None:
        raise _invalid("budget", "固定单价时不填购买预算")
    if data.get("price") is None:
        raise _invalid("price", "固定单价须填写单价")
    price = parse_decimal(
        data["price"],
        "price",
        "当量单价",
        places=Q4,
        low=Decimal(0),
        high=PRICE_MAX,
        low_inclusive=False,
        high_inclusive=False,
    )
    return method, None, price


def set_price(
    session: orm.Session, principal: Principal, county_id: int, year: int, package: str, data: Mapping[str, Any]
) -> dict[str, Any]:
    county = managed_county(session, principal, county_id)
    _check_year(year)
    method, budget, price = check_price(package, data)
    row, previous = _upsert(
        session,
        UnitPrice,
        {"county_id": county.id, "year": year, "package": package},
        {"method": method, "budget": budget, "price": price, "set_by": principal.actor},
    )
    audit.record(
        principal,
        "comp.price.set",
        resource_type="comp_unit_price",
        resource_id=row.id,
        node_id=county.id,
        detail={
            "year": year,
            "package": package,
            **_plain({"method": method, "budget": budget, "price": price}),
            "previous": _plain(previous and {k: v for k, v in previous.items() if k != "set_by"}),
        },
        session=session,
    )
    session.commit()
    return price_view(row)


def prices_for(session: orm.Session, county_id: int, year: int) -> dict[str, UnitPrice]:
    """{package: the county's price row for the year} (packages without one are absent)."""
    rows = session.scalars(sa.select(UnitPrice).where(UnitPrice.county_id == county_id, UnitPrice.year == year))
    return {row.package: row for row in rows}


def list_prices(session: orm.Session, principal: Principal, county_id: int, year: int) -> dict[str, Any]:
    county = readable_county(session, principal, county_id)
    _check_year(year)
    found = prices_for(session, county.id, year)
    return {
        "county_id": county.id,
        "year": year,
        "items": [price_view(found[package]) for package in PACKAGES if package in found],
        "unset_packages": [package for package in PACKAGES if package not in found],
    }


# -- coefficient bandings ----------------------------------------------------------------------------------------------


def _band_range(band: Mapping[str, Any]) -> str:
    return f"{band['min']}–{band['max']}"


def check_bands(raw: Any) -> list[dict[str, str]]:
    """The bands normalised and sorted by `min`, as stored: {"min", "max", "coefficient"} or {"min", "max", "from",
    "to"}, scores with 2 places, coefficients with 4, all as exact strings. They must tile 0–100: the first starts at
    0, each next starts where the one before ends, the last ends at 100. Errors name the band by its index in the
    request (`bands.N.field`); a gap or an overlap names the neighbour in the message."""
    if not isinstance(raw, list) or not raw:
        raise _invalid("bands", "分档须为非空列表")
    if len(raw) > MAX_BANDS:
        raise _invalid("bands", f"分档最多 {MAX_BANDS} 段")
    parsed: list[tuple[int, dict[str, Decimal]]] = []
    for i, band in enumerate(raw):
        prefix = f"bands.{i}"
        if not isinstance(band, Mapping):
            raise _invalid(prefix, "每段须为 {min, max, coefficient} 或 {min, max, from, to}")
        _unknown_fields(band, {"min", "max", "coefficient", "from", "to"}, f"{prefix}.")
        score = {"places": Q2, "low": SCORE_MIN, "high": SCORE_MAX}
        coefficient = {"places": Q4, "low": COEFFICIENT_MIN, "high": COEFFICIENT_MAX}
        if band.get("min") is None:
            raise _invalid(f"{prefix}.min", "须填写分段下限")
        if band.get("max") is None:
            raise _invalid(f"{prefix}.max", "须填写分段上限")
        out = {
            "min": parse_decimal(band["min"], f"{prefix}.min", "分段下限", **score),
            "max": parse_decimal(band["max"], f"{prefix}.max", "分段上限", **score),
        }
        if out["max"] <= out["min"]:
            raise _invalid(f"{prefix}.max", "分段上限须大于下限")
        linear = "from" in band or "to" in band
        if linear and "coefficient" in band:
            raise _invalid(f"{prefix}.coefficient", "固定系数与线性系数（from、to）只能二选一")
        if linear:
            for key, label in (("from", "起始系数"), ("to", "终止系数")):
                if band.get(key) is None:
                    raise _invalid(f"{prefix}.{key}", f"线性分段须填写{label}")
                out[key] = parse_decimal(band[key], f"{prefix}.{key}", label, **coefficient)
        else:
            if band.get("coefficient") is None:
                raise _invalid(f"{prefix}.coefficient", "须填写系数（或线性分段的 from、to）")
            out["coefficient"] = parse_decimal(band["coefficient"], f"{prefix}.coefficient", "系数", **coefficient)
        parsed.append((i, out))
    parsed.sort(key=lambda entry: (entry[1]["min"], entry[1]["max"]))
    first_index, first = parsed[0]
    if first["min"] != SCORE_MIN:
        raise _invalid(f"bands.{first_index}.min", "分档须从 0 分开始")
    for (prev_index, prev), (index, band) in pairwise(parsed):
        if band["min"] > prev["max"]:
            raise _invalid(
                f"bands.{index}.min",
                f"与第 {prev_index} 段（{_band_range(prev)}）之间有空缺：下限须等于 {prev['max']}",
            )
        if band["min"] < prev["max"]:
            raise _invalid(
                f"bands.{index}.min",
                f"与第 {prev_index} 段（{_band_range(prev)}）重叠：下限须等于 {prev['max']}",
            )
    last_index, last = parsed[-1]
    if last["max"] != SCORE_MAX:
        raise _invalid(f"bands.{last_index}.max", "分档须到 100 分为止")
    return [{key: format(value, "f") for key, value in band.items()} for _, band in parsed]


def coefficient_from_bands(bands: list[dict], score: Decimal) -> Decimal:
    """The performance coefficient for `score` under `bands` (as `check_bands` returns them: sorted, tiling
    0–100). A boundary score belongs to the upper band (min ≤ score < max); 100 belongs to the last. A fixed band
    gives its coefficient; a linear one from + (to − from) × (score − min) ÷ (max − min). Quantised to 4 places,
    ROUND_HALF_UP (the column is Numeric(6, 4)). ValueError when no band holds the score."""
    score = Decimal(str(score))
    for band in bands:
        low, high = Decimal(str(band["min"])), Decimal(str(band["max"]))
        if low <= score < high or (score == high == SCORE_MAX):
            if band.get("coefficient") is not None:
                return Decimal(str(band["coefficient"])).quantize(Q4, rounding=ROUND_HALF_UP)
            start, end = Decimal(str(band["from"])), Decimal(str(band["to"]))
            value = start + (end - start) * (score - low) / (high - low)
            return value.quantize(Q4, rounding=ROUND_HALF_UP)
    raise ValueError(f"no band holds the score {score}")


def current_banding(session: orm.Session, county_id: int, year: int) -> CoefficientBanding | None:
    """The county's current banding for the year, or None."""
    return session.scalar(
        sa.select(CoefficientBanding)
        .where(
            CoefficientBanding.county_id == county_id,
            CoefficientBanding.year == year,
            CoefficientBanding.is_current.is_(True),
        )
        .order_by(CoefficientBanding.version.desc())
        .limit(1)
    )


def banding_view(row: CoefficientBanding) -> dict[str, Any]:
    return {
        "id": row.id,
        "county_id": row.county_id,
        "year": row.year,
        "version": row.version,
        "is_current": row.is_current,
        "bands": row.bands,
        "set_by": row.set_by,
        "set_at": row.set_at,
    }


def _lock_county(session: orm.Session, county_id: int) -> None:
    """PostgreSQL: one banding writer per county at a time, so two PUTs cannot both take the same next version or
    both stay current (SQLite serialises writers by itself)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    session.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('comp-banding:' || :id))"), {"id": county_id})


def set_banding(
    session: orm.Session, principal: Principal, county_id: int, year: int, data: Mapping[str, Any]
) -> dict[str, Any]:
    """A new version of the county's banding for the year, made current; earlier versions are kept (settlements
    already made froze the one they read)."""
    county = managed_county(session, principal, county_id)
    _check_year(year)
    _unknown_fields(data, {"bands"})
    bands = check_bands(data.get("bands"))
    _lock_county(session, county.id)
    latest = session.scalar(
        sa.select(sa.func.max(CoefficientBanding.version)).where(
            CoefficientBanding.county_id == county.id, CoefficientBanding.year == year
        )
    )
    session.execute(
        sa.update(CoefficientBanding)
        .where(
            CoefficientBanding.county_id == county.id,
            CoefficientBanding.year == year,
            CoefficientBanding.is_current.is_(True),
        )
        .values(is_current=False)
    )
    row = CoefficientBanding(
        county_id=county.id, year=year, version=(latest or 0) + 1, bands=bands, is_current=True, set_by=principal.actor
    )
    session.add(row)
    session.flush()
    audit.record(
        principal,
        "comp.banding.set",
        resource_type="comp_banding",
        resource_id=row.id,
        node_id=county.id,
        detail={"year": year, "version": row.version, "bands": bands},
        session=session,
    )
    session.commit()
    return banding_view(row)


def get_bandings(session: orm.Session, principal: Principal, county_id: int, year: int) -> dict[str, Any]:
    """The current banding and every version, newest first."""
    county = readable_county(session, principal, county_id)
    _check_year(year)
    rows = session.scalars(
        sa.select(CoefficientBanding)
        .where(CoefficientBanding.county_id == county.id, CoefficientBanding.year == year)
        .order_by(CoefficientBanding.version.desc())
    ).all()
    current = next((row for row in rows if row.is_current), None)
    return {
        "county_id": county.id,
        "year": year,
        "current": banding_view(current) if current else None,
        "versions": [banding_view(row) for row in rows],
    }


# -- assessments -------------------------------------------------------------------------------------------------


def set_assessment(
    session: orm.Session, principal: Principal, institution_id: int, year: int, data: Mapping[str, Any]
) -> dict[str, Any]:
    institution, county = managed_institution(session, principal, institution_id)
    _check_year(year)
    _unknown_fields(data, {"score"})
    if data.get("score") is None:
        raise _invalid("score", "须填写考核得分")
    score = parse_decimal(data["score"], "score", "考核得分", places=Q2, low=SCORE_MIN, high=SCORE_MAX)
    row, previous = _upsert(
        session,
        Assessment,
        {"institution_id": institution.id, "year": year},
        {"score": score, "set_by": principal.actor},
    )
    audit.record(
        principal,
        "comp.assessment.set",
        resource_type="comp_assessment",
        resource_id=row.id,
        node_id=institution.id,
        detail={
            "year": year,
            "score": format(score, "f"),
            "previous": _plain(previous and {"score": previous["score"]}),
        },
        session=session,
    )
    session.commit()
    banding = current_banding(session, county.id, year)
    return _assessment_view(institution, row.score, row.set_by, row.set_at, banding, year)


def _assessment_view(
    institution: OrgNode,
    score: Any,
    set_by: str | None,
    set_at: Any,
    banding: CoefficientBanding | None,
    year: int,
) -> dict[str, Any]:
    score = _q(score, Q2)
    coefficient = None
    if score is not None and banding is not None:
        coefficient = coefficient_from_bands(banding.bands, score)
    return {
        "institution_id": institution.id,
        "institution_name": institution.name,
        "year": year,
        "score": score,
        "coefficient": coefficient,
        "banding_version": banding.version if banding is not None else None,
        "set_by": set_by,
        "set_at": set_at,
    }


def list_assessments(session: orm.Session, principal: Principal, county_id: int, year: int) -> dict[str, Any]:
    """Every live institution of the county inside the caller's scope, by path, with its score for the year (None
    when unassessed) and the coefficient the county's current banding gives it (None without a score or banding)."""
    county = readable_county(session, principal, county_id)
    _check_year(year)
    scope = principal.scope(*READER_ROLES)
    rows = session.execute(
        sa.select(OrgNode, Assessment.score, Assessment.set_by, Assessment.set_at)
        .outerjoin(Assessment, sa.and_(Assessment.institution_id == OrgNode.id, Assessment.year == year))
        .where(
            OrgNode.path.startswith(county.path, autoescape=True),
            OrgNode.level.in_(INSTITUTION_LEVELS),
            OrgNode.deleted_at.is_(None),
            scope.subtree(OrgNode.path),
        )
        .order_by(OrgNode.path)
    ).all()
    banding = current_banding(session, county.id, year)
    # An institution under a nested county bureau belongs to that county, not this one.
    nested = session.scalars(
        sa.select(OrgNode.path).where(
            OrgNode.path.startswith(county.path, autoescape=True),
            OrgNode.id != county.id,
            OrgNode.level == COUNTY,
            OrgNode.deleted_at.is_(None),
        )
    ).all()
    items = [
        _assessment_view(node, score, set_by, set_at, banding, year)
        for node, score, set_by, set_at in rows
        if not any(node.path.startswith(path) for path in nested)
    ]
    return {
        "county_id": county.id,
        "year": year,
        "banding_version": banding.version if banding is not None else None,
        "items": items,
    }


# -- line-item subsidies -------------------------------------------------------------------------------------------


def line_item_view(row: LineItemSubsidy) -> dict[str, Any]:
    return {
        "id": row.id,
        "institution_id": row.institution_id,
        "period": row.period,
        "category": row.category,
        "category_label": LINE_ITEM_CATEGORIES[row.category],
        "amount": _q(row.amount, Q2),
        "note": row.note,
        "created_by": row.created_by,
        "created_at": row.created_at,
    }


def add_line_item(
    session: orm.Session, principal: Principal, institution_id: int, data: Mapping[str, Any]
) -> dict[str, Any]:
    institution, _ = managed_institution(session, principal, institution_id)
    _unknown_fields(data, {"period", "category", "amount", "note"})
    period = data.get("period")
    period_start(period)  # 422 `period` unless YYYY-MM
    if data.get("category") not in LINE_ITEM_CATEGORIES:
        raise _invalid("category", f"补助类别须为：{'、'.join(LINE_ITEM_CATEGORIES)}")
    if data.get("amount") is None:
        raise _invalid("amount", "须填写金额")
    amount = parse_decimal(
        data["amount"],
        "amount",
        "金额",
        places=Q2,
        low=Decimal(0),
        high=MONEY_MAX,
        low_inclusive=False,
        high_inclusive=False,
    )
    note = data.get("note")
    if note is not None and not isinstance(note, str):
        raise _invalid("note", "备注须为文字")
    note = (note or "").strip() or None
    if note is not None and len(note) > NOTE_MAX:
        raise _invalid("note", f"备注最多{NOTE_MAX}个字")
    row = LineItemSubsidy(
        institution_id=institution.id,
        period=period,
        category=data["category"],
        amount=amount,
        note=note,
        created_by=principal.actor,
    )
    session.add(row)
    session.flush()
    audit.record(
        principal,
        "comp.line_item.create",
        resource_type="comp_line_item",
        resource_id=row.id,
        node_id=institution.id,
        detail={"period": period, "category": row.category, "amount": format(amount, "f")},
        session=session,
    )
    session.commit()
    return line_item_view(row)


def delete_line_item(session: orm.Session, principal: Principal, line_item_id: int) -> None:
    """Remove a line item (a mistaken entry). Settlements already made keep the amounts they froze; the audit
    record keeps what was removed."""
    _require_role(principal, WRITER_ROLES)
    row = session.get(LineItemSubsidy, line_item_id)
    missing = ApiError("not_found", f"专项补助 {line_item_id} 不存在", status=404)
    if row is None:
        raise missing
    try:
        managed_institution(session, principal, row.institution_id)
    except ApiError as error:
        raise missing from error
    detail = {
        "institution_id": row.institution_id,
        "period": row.period,
        "category": row.category,
        "amount": format(_q(row.amount, Q2), "f"),
        "note": row.note,
    }
    session.delete(row)
    audit.record(
        principal,
        "comp.line_item.delete",
        resource_type="comp_line_item",
        resource_id=line_item_id,
        node_id=detail["institution_id"],
        detail=detail,
        session=session,
    )
    session.commit()


def _period_range(filters: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """`from` … `to` (YYYY-MM, both inclusive, either open); 422 naming the bad one."""
    start, end = filters.get("from"), filters.get("to")
    for key, value in (("from", start), ("to", end)):
        if value is not None and (not isinstance(value, str) or not PERIOD.match(value)):
            raise _invalid(key, "期间须为 YYYY-MM")
    if start is not None and end is not None and start > end:
        raise _invalid("to", "截止期间不能早于起始期间")
    return start, end


def list_line_items(
    session: orm.Session, principal: Principal, institution_id: int, filters: Mapping[str, Any]
) -> dict[str, Any]:
    """The institution's line items in the period range, by period then id, with their total."""
    institution, _ = readable_institution(session, principal, institution_id)
    start, end = _period_range(filters)
    stmt = sa.select(LineItemSubsidy).where(LineItemSubsidy.institution_id == institution.id)
    if start is not None:
        stmt = stmt.where(LineItemSubsidy.period >= start)
    if end is not None:
        stmt = stmt.where(LineItemSubsidy.period <= end)
    rows = session.scalars(stmt.order_by(LineItemSubsidy.period, LineItemSubsidy.id)).all()
    items = [line_item_view(row) for row in rows]
    return {
        "institution_id": institution.id,
        "from": start,
        "to": end,
        "items": items,
        "total": sum((item["amount"] for item in items), Decimal("0.00")),
    }


# -- fee income ------------------------------------------------------------------------------------------------


def fee_income_view(row: FeeIncome) -> dict[str, Any]:
    return {
        "institution_id": row.institution_id,
        "period": row.period,
        "amount": _q(row.amount, Q2),
        "set_by": row.set_by,
        "set_at": row.set_at,
    }


def set_fee_income(
    session: orm.Session, principal: Principal, institution_id: int, period: str, data: Mapping[str, Any]
) -> dict[str, Any]:
    institution, _ = managed_institution(session, principal, institution_id)
    period_start(period)
    _unknown_fields(data, {"amount"})
    if data.get("amount") is None:
        raise _invalid("amount", "须填写医疗服务收入")
    amount = parse_decimal(
        data["amount"], "amount", "医疗服务收入", places=Q2, low=Decimal(0), high=MONEY_MAX, high_inclusive=False
    )
    row, previous = _upsert(
        session,
        FeeIncome,
        {"institution_id": institution.id, "period": period},
        {"amount": amount, "set_by": principal.actor},
    )
    audit.record(
        principal,
        "comp.fee_income.set",
        resource_type="comp_fee_income",
        resource_id=row.id,
        node_id=institution.id,
        detail={
            "period": period,
            "amount": format(amount, "f"),
            "previous": _plain(previous and {"amount": previous["amount"]}),
        },
        session=session,
    )
    session.commit()
    return fee_income_view(row)


def list_fee_income(
    session: orm.Session, principal: Principal, institution_id: int, filters: Mapping[str, Any]
) -> dict[str, Any]:
    institution, _ = readable_institution(session, principal, institution_id)
    start, end = _period_range(filters)
    stmt = sa.select(FeeIncome).where(FeeIncome.institution_id == institution.id)
    if start is not None:
        stmt = stmt.where(FeeIncome.period >= start)
    if end is not None:
        stmt = stmt.where(FeeIncome.period <= end)
    rows = session.scalars(stmt.order_by(FeeIncome.period)).all()
    return {"institution_id": institution.id, "from": start, "to": end, "items": [fee_income_view(r) for r in rows]}


# -- county schemes ------------------------------------------------------------------------------------------------


def scheme_for(session: orm.Session, county_id: int, year: int) -> dict[str, Any]:
    """The county's scheme for the year, or the defaults (advance share 0.8, no gap subsidy) when none is set:
    {"advance_share", "gap_subsidy", "is_default", "set_by", "set_at"}."""
    row = session.scalar(sa.select(CountyScheme).where(CountyScheme.county_id == county_id, CountyScheme.year == year))
    if row is None:
        return {
            "advance_share": DEFAULT_ADVANCE_SHARE,
            "gap_subsidy": DEFAULT_GAP_SUBSIDY,
            "is_default": True,
            "set_by": None,
            "set_at": None,
        }
    return {
        "advance_share": _q(row.advance_share, Q4),
        "gap_subsidy": row.gap_subsidy,
        "is_default": False,
        "set_by": row.set_by,
        "set_at": row.set_at,
    }


def _scheme_view(county_id: int, year: int, scheme: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "county_id": county_id,
        "year": year,
        **scheme,
        "note": "尚未设置，按默认方案：月度预拨 80%，不实行差额补助" if scheme["is_default"] else None,
    }


def set_scheme(
    session: orm.Session, principal: Principal, county_id: int, year: int, data: Mapping[str, Any]
) -> dict[str, Any]:
    county = managed_county(session, principal, county_id)
    _check_year(year)
    _unknown_fields(data, {"advance_share", "gap_subsidy"})
    if data.get("advance_share") is None:
        raise _invalid("advance_share", "须填写预拨比例")
    share = parse_decimal(
        data["advance_share"],
        "advance_share",
        "预拨比例",
        places=Q4,
        low=Decimal(0),
        high=Decimal(1),
        low_inclusive=False,
    )
    gap = data.get("gap_subsidy")
    if not isinstance(gap, bool):
        raise _invalid("gap_subsidy", "是否实行差额补助须为 true 或 false")
    row, previous = _upsert(
        session,
        CountyScheme,
        {"county_id": county.id, "year": year},
        {"advance_share": share, "gap_subsidy": gap, "set_by": principal.actor},
    )
    audit.record(
        principal,
        "comp.scheme.set",
        resource_type="comp_county_scheme",
        resource_id=row.id,
        node_id=county.id,
        detail={
            "year": year,
            "advance_share": format(share, "f"),
            "gap_subsidy": gap,
            "previous": _plain(previous and {k: v for k, v in previous.items() if k != "set_by"}),
        },
        session=session,
    )
    session.commit()
    return _scheme_view(county.id, year, scheme_for(session, county.id, year))


def get_scheme(session: orm.Session, principal: Principal, county_id: int, year: int) -> dict[str, Any]:
    county = readable_county(session, principal, county_id)
    _check_year(year)
    return _scheme_view(county.id, year, scheme_for(session, county.id, year))

"""Settlement (结算): the monthly advance (月度预拨) and the annual true-up (年度清算) of each grassroots institution
of a county, frozen with every input it read and approved by the county (reference/domain.md §2.3 formulas 2–5).

Figures of one institution (`compute`, no writes):

- TE per package = Σ_items Q × E: Q the current verified quantity (`WorkloadQuantity.qty_verified`) of the
  institution, month and item, E the effective 当量 of that month (`catalog.values_for`: province table, county
  adjustment, the institution's tier). The annual TE is the sum of the twelve monthly TEs, each month with its own
  table. Institution rows and per-doctor rows: a quantity without a doctor is the institution's figure for that
  month and item; where only per-doctor rows were sent, their sum is (doctor rows are the breakdown for internal
  distribution, 二次分配, and are never added on top of the institution's row).
- P per package (当量单价, `UnitPrice` of the county and year): fixed, or budget-driven = the budget ÷ the county's
  total TE of the package over the settled period — advance: (budget ÷ 12) ÷ the month's county TE, annual:
  budget ÷ the year's county TE. A county TE of zero gives P = 0 (nothing of that package to buy).
- K (绩效考核系数): the institution's assessment score of the year (`Assessment`) through the county's current
  banding of the year (`pricing.current_banding`, `pricing.coefficient_from_bands`). Advance only: K = 1 while the
  institution has no assessment yet (the true-up applies the real K to the whole year); the annual true-up
  refuses (409) without an assessment.
- purchase = Σ_pkg TE × P × K; line items (专项补助, `LineItemSubsidy`) of the month (advance) or the year (annual).
- Gap variant (`CountyScheme.gap_subsidy`): gap = max(0, purchase − fee income of the period); the treasury then
  pays the gap instead of the purchase (the institution keeps its fee income: paying purchase + gap would count
  the fee-covered part twice). The "base" below is the gap in that variant, the purchase otherwise.
- advance payable = base × advance_share + line items; annual payable = base + line items − the approved
  advances of the year (which already contained that year's advanced line items, so the year pays base + line
  items once in total).

Rounding (ROUND_HALF_UP throughout, Decimal only, never float):

- 当量: each quantity row's Q × E is quantised to 4 places (Q has 2, E 4: the product is taken to the 4 places of
  `SettlementLine.equivalents`); sums of those are exact;
- prices: budget-driven P = budget ÷ (12 ×) county TE quantised once to 4 places (`PRICE` is NUMERIC(12, 4));
  fixed prices are stored with 4 places;
- money: purchase = Σ TE × P (exact) × K (4 places), quantised to 2 places once, at the end of the institution's
  figure; gap and annual payable are then exact sums of 2-place figures; the advance's base × share is quantised
  to 2 places.

`settle` writes draft `Settlement` rows (revision 1, or the next after a refused one, which becomes `superseded`)
with their lines and a JSON snapshot of every input read (decimals as strings); nothing later reads the tables
again for a stored settlement. `submit` asks the county bureau's administrators and finance officers to approve
a county's drafts of a period on one card; `decided` (the card's callback) makes them all approved (final) or
refused with the reason.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from bot.approvals import SUMMARY_BYTES, ApprovalOutcome, request_approval
from mini_apps.compensation import catalog, pricing
from mini_apps.compensation.models import (
    PACKAGES,
    SETTLEMENT_KINDS,
    SETTLEMENT_STATES,
    Assessment,
    CountyScheme,
    FeeIncome,
    InstitutionTier,
    LineItemSubsidy,
    ServiceItem,
    Settlement,
    SettlementLine,
    UnitPrice,
    WorkloadExclusion,
    WorkloadQuantity,
)
from org_sync.models import OrgMember, OrgNode, path_ids
from supervision.reports import approvers_of
from workbench import audit
from workbench.auth.models import RoleGrant
from workbench.auth.principal import INSTITUTION_LEVELS, Principal, actor_names
from workbench.db import paginate, utcnow
from workbench.db import session as current_session
from workbench.errors import ApiError

PERIOD_OR_YEAR = re.compile(r"^\d{4}(-(0[1-9]|1[0-2]))?$")  # a month's advance or a year's true-up
Q2 = Decimal("0.01")  # money
Q4 = Decimal("0.0001")  # 当量, prices, coefficients
ZERO = Decimal(0)
ONE = Decimal(1)
WRITER_ROLES = ("admin", "finance_officer")
READER_ROLES = ("admin", "finance_officer", "institution_admin")
CALLBACK = "mini_apps.compensation.settlement:decided"
OPEN_STATES = ("draft", "submitted")
MAX_CARD_LINES = 140  # an approval card takes at most 150 form lines
CARD_BYTES = SUMMARY_BYTES  # the form goes to the card as one parameter; the totals must stay in what fits


def q2(value: Decimal) -> Decimal:
    return value.quantize(Q2, rounding=ROUND_HALF_UP)


def q4(value: Decimal) -> Decimal:
    return value.quantize(Q4, rounding=ROUND_HALF_UP)


def _s(value: Decimal | None) -> str | None:
    """A decimal as an exact JSON string (a float would round it)."""
    return None if value is None else format(value, "f")


def _invalid(field_name: str, message: str) -> ApiError:
    return ApiError("validation_error", message, status=422, field=field_name)


def _conflict(message: str, field_name: str | None = None, **extra: Any) -> ApiError:
    return ApiError("conflict", message, status=409, field=field_name, **extra)


# -- the performance coefficient ------------------------------------------------------------------------------------


def coefficient_for(bands: Sequence[Mapping[str, Any]], score: Decimal) -> Decimal:
    """K from the score through the bands (`pricing.coefficient_from_bands`: min ≤ score < max, 100 in the last
    band, fixed or linear, 4 places ROUND_HALF_UP); 409 when no band holds the score."""
    try:
        return pricing.coefficient_from_bands(list(bands), score)
    except ValueError:
        raise _conflict(f"考核得分 {score} 不在系数分档范围内", "banding") from None


# -- inputs ---------------------------------------------------------------------------------------------------------


def _kind_and_months(kind: Any, period: Any) -> tuple[str, str, int, list[str]]:
    if kind not in SETTLEMENT_KINDS:
        raise _invalid("kind", "结算类型应为 advance（月度预拨）或 annual（年度清算）")
    if not isinstance(period, str):
        raise _invalid("period", "期间必填")
    period = period.strip()
    if kind == "advance":
        catalog.period_start(period)  # 422 naming `period`
        return kind, period, int(period[:4]), [period]
    if len(period) != 4 or not period.isdigit() or not 2000 <= int(period) <= 2999:
        raise _invalid("period", "年度清算的期间应为 YYYY（如 2026）")
    year = int(period)
    return kind, period, year, [f"{year}-{month:02d}" for month in range(1, 13)]


def _county(session: orm.Session, county_id: int) -> OrgNode:
    county = session.get(OrgNode, county_id)
    if county is None or county.deleted_at is not None or county.level != catalog.COUNTY:
        raise ApiError("not_found", "区县不存在", status=404)
    return county


def _institutions(session: orm.Session, county: OrgNode) -> dict[int, OrgNode]:
    return {
        node.id: node
        for node in session.scalars(
            sa.select(OrgNode)
            .where(
                OrgNode.path.startswith(county.path, autoescape=True),
                OrgNode.level.in_(INSTITUTION_LEVELS),
                OrgNode.deleted_at.is_(None),
            )
            .order_by(OrgNode.id)
        )
    }


@dataclass
class Line:
    """One item of one institution over the settled months."""

    item_id: int
    item_code: str
    package: str
    quantity: Decimal = ZERO
    excluded: Decimal = ZERO
    equivalents: Decimal = ZERO
    values: set[Decimal] = field(default_factory=set)
    quantity_ids: list[int] = field(default_factory=list)

    @property
    def equivalent(self) -> Decimal:
        """The 当量 per unit applied: the table value, or (when the annual months used different tables) the
        average weighted by quantity; the snapshot keeps every month's value."""
        if len(self.values) == 1:
            return next(iter(self.values))
        return q4(self.equivalents / self.quantity) if self.quantity else ZERO


@dataclass
class Figures:
    institution_id: int
    institution_name: str
    tier: int
    lines: dict[int, Line] = field(default_factory=dict)
    equivalents: dict[str, Decimal] = field(default_factory=dict)
    prices: dict[str, Decimal] = field(default_factory=dict)
    coefficient: Decimal = ONE
    coefficient_rule: str = ""
    purchase_amount: Decimal = ZERO
    line_item_amount: Decimal = ZERO
    fee_income: Decimal | None = None
    gap_subsidy: Decimal | None = None
    advances_paid: Decimal = ZERO
    payable: Decimal = ZERO
    snapshot: dict[str, Any] = field(default_factory=dict)


def _quantity_rows(session: orm.Session, institution_ids: Sequence[int], months: Sequence[str]) -> list[Any]:
    """The quantities settlement reads, with their excluded units, in one set-based query: the current rows of the
    institutions and months, per (institution, month, item) the institution's own row where one exists, else its
    doctors' rows (doctor rows are the breakdown for internal distribution, never added on top).

    The doctor rows an own row covers are left out on the server (a window count of own rows per key over the rows
    read anyway): at province scale they are most of the rows. The excluded units are summed per row kept (an index
    probe each), not grouped over the whole exclusions table for every call."""
    quantity = WorkloadQuantity
    read = (
        sa.select(
            quantity.id,
            quantity.institution_id,
            quantity.member_id,
            quantity.period,
            quantity.item_id,
            quantity.qty_verified,
            sa.func.sum(sa.case((quantity.member_id.is_(None), 1), else_=0))
            .over(partition_by=(quantity.institution_id, quantity.period, quantity.item_id))
            .label("own_rows"),
        )
        .where(
            quantity.is_current.is_(True),
            quantity.institution_id.in_(institution_ids),
            quantity.period.in_(months),
        )
        .subquery()
    )
    excluded = (
        sa.select(sa.func.coalesce(sa.func.sum(WorkloadExclusion.units), 0))
        .where(WorkloadExclusion.quantity_id == read.c.id)
        .scalar_subquery()
    )
    # On the session's connection (same transaction), as Core: the ORM's row loading adds nothing to plain columns
    # and cost a fifth of this query's client time.
    return (
        session.connection()
        .execute(
            sa.select(
                read.c.id,
                read.c.institution_id,
                read.c.member_id,
                read.c.period,
                read.c.item_id,
                read.c.qty_verified,
                excluded,
            )
            .where(sa.or_(read.c.member_id.is_(None), read.c.own_rows == 0))
            .order_by(read.c.institution_id, read.c.period, read.c.item_id, read.c.id)
        )
        .all()
    )


def _tables_of(session: orm.Session, county: OrgNode, months: Sequence[str]) -> dict[str, dict[str, int | None]]:
    """The published tables each month read (the same resolution as `catalog.values_for`), for the snapshot."""
    chain = path_ids(county.path)
    province_id = session.scalar(
        sa.select(OrgNode.id)
        .where(OrgNode.id.in_(chain), OrgNode.level == catalog.PROVINCE)
        .order_by(sa.func.length(OrgNode.path).desc())
        .limit(1)
    )
    tables: dict[str, dict[str, int | None]] = {}
    for month in months:
        day = catalog.period_start(month)
        province = catalog.table_for(session, province_id, day) if province_id else None
        adjustment = catalog.table_for(session, county.id, day)
        if adjustment is not None and (province is None or adjustment.base_table_id != province.id):
            adjustment = None
        tables[month] = {
            "province_table_id": province.id if province else None,
            "county_table_id": adjustment.id if adjustment else None,
        }
    return tables


def compute(
    session: orm.Session, county_id: int, kind: str, period: str, institution_ids: Iterable[int] | None = None
) -> list[Figures]:
    """The figures of each institution of the county with workload in the period (or of `institution_ids`
    among them), with the snapshot of every input read. Reads only. Budget-driven prices always use the whole
    county's TE, whichever institutions are asked for."""
    kind, period, year, months = _kind_and_months(kind, period)
    county = _county(session, county_id)
    institutions = _institutions(session, county)
    rows = _quantity_rows(session, list(institutions), months) if institutions else []
    with_workload = sorted({row[1] for row in rows})
    if not with_workload:
        return []
    # Plain tuples: an ORM attribute read per quantity row was a measurable share of the annual true-up.
    items = {
        item_id: (code, package)
        for item_id, code, package in session.execute(
            sa.select(ServiceItem.id, ServiceItem.code, ServiceItem.package).where(
                ServiceItem.id.in_({row[4] for row in rows})
            )
        )
    }
    values = {month: catalog.values_for(session, with_workload, month) for month in months}
    tiers = dict(
        session.execute(
            sa.select(InstitutionTier.institution_id, InstitutionTier.tier).where(
                InstitutionTier.institution_id.in_(with_workload)
            )
        ).all()
    )
    tables = _tables_of(session, county, months)

    figures = {
        i: Figures(institution_id=i, institution_name=institutions[i].name, tier=tiers.get(i, 1)) for i in with_workload
    }
    frozen_rows: dict[int, list[dict[str, Any]]] = defaultdict(list)
    county_te: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for quantity_id, institution_id, member_id, month, item_id, qty, excluded in rows:
        code, package = items[item_id]
        value = values[month][institution_id].get(item_id)
        if value is None:
            raise _conflict(
                f"{institutions[institution_id].name} {month} 的项目 {code} 在当期当量表中没有当量值，无法结算",
                "period",
                institution_id=institution_id,
                item=code,
            )
        qty, excluded, value = Decimal(qty), Decimal(excluded), Decimal(value)
        te = (qty * value).quantize(Q4, rounding=ROUND_HALF_UP)  # q4, inlined: once per quantity row
        fig = figures[institution_id]
        line = fig.lines.get(item_id)
        if line is None:
            line = fig.lines[item_id] = Line(item_id, code, package)
        line.quantity += qty
        line.excluded += excluded
        line.equivalents += te
        line.values.add(value)
        line.quantity_ids.append(quantity_id)
        fig.equivalents[package] = fig.equivalents.get(package, ZERO) + te
        county_te[package] += te
        frozen_rows[institution_id].append(
            {
                "id": quantity_id,
                "period": month,
                "item_id": item_id,
                "item_code": code,
                "member_id": member_id,
                "qty_verified": format(qty, "f"),  # _s, inlined
                "excluded": format(excluded, "f"),
                "equivalent": format(value, "f"),
                "equivalents": format(te, "f"),
            }
        )

    # Prices per package: the county's, set for the year.
    packages = sorted(county_te)
    price_rows = {
        row.package: row
        for row in session.scalars(
            sa.select(UnitPrice).where(
                UnitPrice.county_id == county.id, UnitPrice.year == year, UnitPrice.package.in_(packages)
            )
        )
    }
    prices: dict[str, Decimal] = {}
    price_inputs: dict[str, dict[str, Any]] = {}
    for package in packages:
        row = price_rows.get(package)
        if row is None:
            raise _conflict(f"{county.name} {year} 年尚未设置{PACKAGES.get(package, package)}的当量单价", "package")
        if row.method == "fixed":
            price = q4(Decimal(row.price))
            how = "固定单价"
        else:
            budget = Decimal(row.budget)
            share = budget / 12 if kind == "advance" else budget
            divisor = (12 if kind == "advance" else 1) * county_te[package]
            price = q4(budget / divisor) if divisor else ZERO  # nothing of the package to buy: P = 0
            source = "年度预算 ÷ 12" if kind == "advance" else "年度预算"
            how = f"{source} ÷ 区县总当量 = {_s(q2(share))} ÷ {_s(county_te[package])}"
        prices[package] = price
        price_inputs[package] = {
            "unit_price_id": row.id,
            "method": row.method,
            "budget": _s(row.budget),
            "fixed_price": _s(row.price),
            "county_equivalents": _s(county_te[package]),
            "price": _s(price),
            "how": how,
        }

    banding = pricing.current_banding(session, county.id, year)
    assessments = {
        row.institution_id: row
        for row in session.scalars(
            sa.select(Assessment).where(Assessment.institution_id.in_(with_workload), Assessment.year == year)
        )
    }
    scheme = session.scalar(
        sa.select(CountyScheme).where(CountyScheme.county_id == county.id, CountyScheme.year == year)
    )
    if scheme is None:
        raise _conflict(f"{county.name} {year} 年尚未设置结算方案（预拨比例、是否差额补助）", "scheme")
    line_items: dict[int, list[LineItemSubsidy]] = defaultdict(list)
    for row in session.scalars(
        sa.select(LineItemSubsidy)
        .where(LineItemSubsidy.institution_id.in_(with_workload), LineItemSubsidy.period.in_(months))
        .order_by(LineItemSubsidy.id)
    ):
        line_items[row.institution_id].append(row)
    fees: dict[int, list[FeeIncome]] = defaultdict(list)
    if scheme.gap_subsidy:
        for row in session.scalars(
            sa.select(FeeIncome)
            .where(FeeIncome.institution_id.in_(with_workload), FeeIncome.period.in_(months))
            .order_by(FeeIncome.period)
        ):
            fees[row.institution_id].append(row)
    advances: dict[int, list[Any]] = defaultdict(list)
    if kind == "annual":
        # Only the columns read: whole rows would bring every advance's snapshot along.
        for row in session.execute(
            sa.select(
                Settlement.id, Settlement.institution_id, Settlement.period, Settlement.revision, Settlement.payable
            )
            .where(
                Settlement.institution_id.in_(with_workload),
                Settlement.kind == "advance",
                Settlement.state == "approved",
                Settlement.period.in_(months),
            )
            .order_by(Settlement.period)
        ):
            advances[row.institution_id].append(row)

    wanted = set(with_workload) if institution_ids is None else {int(i) for i in institution_ids}
    result = []
    for i in with_workload:
        if i not in wanted:
            continue
        fig = figures[i]
        assessment = assessments.get(i)
        if assessment is None:
            if kind == "annual":
                raise _conflict(f"{fig.institution_name} {year} 年尚无绩效考核得分，无法年度清算", "assessment")
            fig.coefficient, fig.coefficient_rule = ONE, "尚无当年考核得分，预拨按系数 1 计算（年度清算按实际系数）"
        else:
            if banding is None:
                raise _conflict(f"{county.name} {year} 年尚未设置考核系数分档", "banding")
            fig.coefficient = coefficient_for(banding.bands, Decimal(assessment.score))
            fig.coefficient_rule = f"考核得分 {_s(Decimal(assessment.score))} 按分档第 {banding.version} 版"
        fig.prices = {package: prices[package] for package in fig.equivalents}
        gross = sum((fig.equivalents[p] * fig.prices[p] for p in fig.equivalents), ZERO)
        fig.purchase_amount = q2(gross * fig.coefficient)
        fig.line_item_amount = sum((Decimal(row.amount) for row in line_items[i]), ZERO)
        base = fig.purchase_amount
        if scheme.gap_subsidy:
            fig.fee_income = sum((Decimal(row.amount) for row in fees[i]), ZERO)
            fig.gap_subsidy = max(ZERO, fig.purchase_amount - fig.fee_income)
            base = fig.gap_subsidy
        if kind == "advance":
            fig.payable = q2(base * Decimal(scheme.advance_share)) + fig.line_item_amount
        else:
            fig.advances_paid = sum((Decimal(row.payable) for row in advances[i]), ZERO)
            fig.payable = base + fig.line_item_amount - fig.advances_paid
        fee_months = {row.period for row in fees[i]}
        fig.snapshot = {
            "kind": kind,
            "period": period,
            "county_id": county.id,
            "months": months,
            "tier": fig.tier,
            "tables": tables,
            "quantities": frozen_rows[i],
            "packages": {
                p: {
                    **price_inputs[p],
                    "equivalents": _s(fig.equivalents[p]),
                    "amount_before_coefficient": _s(fig.equivalents[p] * fig.prices[p]),
                }
                for p in sorted(fig.equivalents)
            },
            "assessment": None
            if assessment is None
            else {"id": assessment.id, "score": _s(Decimal(assessment.score)), "set_by": assessment.set_by},
            "banding": None
            if banding is None
            else {"id": banding.id, "version": banding.version, "bands": banding.bands},
            "coefficient": _s(fig.coefficient),
            "coefficient_rule": fig.coefficient_rule,
            "line_items": [
                {"id": row.id, "period": row.period, "category": row.category, "amount": _s(Decimal(row.amount))}
                for row in line_items[i]
            ],
            "scheme": {
                "id": scheme.id,
                "advance_share": _s(Decimal(scheme.advance_share)),
                "gap_subsidy": scheme.gap_subsidy,
            },
            "fee_incomes": [{"id": row.id, "period": row.period, "amount": _s(Decimal(row.amount))} for row in fees[i]],
            "fee_income_missing": [m for m in months if m not in fee_months] if scheme.gap_subsidy else [],
            "advances": [
                {"id": row.id, "period": row.period, "revision": row.revision, "payable": _s(Decimal(row.payable))}
                for row in advances[i]
            ],
            "figures": {
                "purchase_amount": _s(fig.purchase_amount),
                "line_item_amount": _s(fig.line_item_amount),
                "fee_income": _s(fig.fee_income),
                "gap_subsidy": _s(fig.gap_subsidy),
                "advances_paid": _s(fig.advances_paid),
                "payable": _s(fig.payable),
            },
        }
        result.append(fig)
    return result


# -- settling -------------------------------------------------------------------------------------------------------


def _require_writer(principal: Principal, county: OrgNode) -> None:
    if not principal.scope().covers_path(county.path):
        raise ApiError("not_found", "区县不存在", status=404)
    if not principal.scope(*WRITER_ROLES).covers_path(county.path):
        raise ApiError("forbidden", "只有区县卫健局的管理员或财务人员可以结算", status=403)


def _out_of_order(session: orm.Session, institution_ids: Sequence[int], kind: str, period: str) -> str | None:
    """Why a year cannot be settled this way now, if it cannot: the true-up subtracts the approved advances, so it
    waits until no advance of its year is open (draft, submitted, or refused and not yet corrected), and once it
    exists no advance of its year is settled (it would be paid on top of the year's whole base)."""
    year = period[:4]
    other = "advance" if kind == "annual" else "annual"
    rows = session.execute(
        sa.select(Settlement.institution_id, Settlement.period, Settlement.revision, Settlement.state).where(
            Settlement.institution_id.in_(institution_ids),
            Settlement.kind == other,
            Settlement.period.startswith(year),
        )
    ).all()
    newest: dict[tuple[int, str], tuple[int, str]] = {}
    for institution_id, month, revision, state in rows:
        if (institution_id, month) not in newest or revision > newest[(institution_id, month)][0]:
            newest[(institution_id, month)] = (revision, state)
    if kind == "annual":
        still_open = sorted({month for (_, month), (_, state) in newest.items() if state in (*OPEN_STATES, "refused")})
        if still_open:
            return f"{year} 年还有月度预拨未办结（{'、'.join(still_open)}），请先审定或更正后再做年度清算"
        return None
    if any(state in (*OPEN_STATES, "approved") for _, state in newest.values()):
        return f"{year} 年已做年度清算，不能再结算该年的月度预拨"
    return None


def settle(session: orm.Session, principal: Principal, county_id: int, kind: Any, period: Any) -> dict[str, Any]:
    """Draft settlements of every institution of the county with workload in the period (committed): revision
    1, or the next after a refused one (which becomes superseded). 409 while one is approved or still open."""
    kind, period, _, _ = _kind_and_months(kind, period)
    county = _county(session, county_id)
    _require_writer(principal, county)
    # Serialise settling of one county (two clicks at once would both see no open settlement).
    session.execute(sa.select(OrgNode.id).where(OrgNode.id == county.id).with_for_update())
    figures = compute(session, county.id, kind, period)
    if not figures:
        raise _conflict(f"{county.name} {period} 没有任何机构的工作量，无需结算", "period")
    out_of_order = _out_of_order(session, [f.institution_id for f in figures], kind, period)
    if out_of_order:
        raise _conflict(out_of_order, "period")
    existing: dict[int, list[Settlement]] = defaultdict(list)
    for row in session.scalars(
        sa.select(Settlement)
        .where(
            Settlement.institution_id.in_([f.institution_id for f in figures]),
            Settlement.kind == kind,
            Settlement.period == period,
        )
        .order_by(Settlement.revision)
    ):
        existing[row.institution_id].append(row)
    for fig in figures:
        states = {row.state for row in existing[fig.institution_id]}
        if "approved" in states:
            raise _conflict(f"{fig.institution_name} {period} 已有审定的结算，不能重新结算", "period")
        if states & set(OPEN_STATES):
            raise _conflict(f"{fig.institution_name} {period} 已有未完成的结算（草稿或审批中）", "period")
    now = utcnow()
    created = []
    for fig in figures:
        previous = existing[fig.institution_id]
        for row in previous:
            if row.state == "refused":
                row.state = "superseded"
        settlement = Settlement(
            institution_id=fig.institution_id,
            county_id=county.id,
            kind=kind,
            period=period,
            revision=(previous[-1].revision + 1) if previous else 1,
            state="draft",
            equivalents={p: _s(v) for p, v in sorted(fig.equivalents.items())},
            prices={p: _s(v) for p, v in sorted(fig.prices.items())},
            coefficient=fig.coefficient,
            purchase_amount=fig.purchase_amount,
            line_item_amount=fig.line_item_amount,
            fee_income=fig.fee_income,
            gap_subsidy=fig.gap_subsidy,
            advances_paid=fig.advances_paid,
            payable=fig.payable,
            snapshot=fig.snapshot,
            created_by=principal.actor,
            created_at=now,
        )
        session.add(settlement)
        created.append((settlement, fig))
    session.flush()
    # The lines (about 200 per institution) as plain rows, not ORM objects (whose unit of work cost more than
    # computing them). PostgreSQL: COPY on the session's own connection (same transaction), several times faster
    # than executemany, whose time goes to per-row parameter handling (docs/BENCHMARKS.md, Compensation).
    columns = (
        "settlement_id",
        "item_id",
        "item_code",
        "package",
        "quantity",
        "excluded",
        "equivalent",
        "equivalents",
        "quantity_ids",
    )
    line_rows = [
        (
            settlement.id,
            line.item_id,
            line.item_code,
            line.package,
            line.quantity,
            line.excluded,
            line.equivalent,
            line.equivalents,
            line.quantity_ids,
        )
        for settlement, fig in created
        for line in sorted(fig.lines.values(), key=lambda line: line.item_code)
    ]
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        copy_sql = f"COPY {SettlementLine.__tablename__} ({', '.join(columns)}) FROM STDIN"
        with connection.connection.driver_connection.cursor() as cursor, cursor.copy(copy_sql) as stream:
            for row in line_rows:
                # quantity_ids is JSONB: its text form, which the server parses like a bound JSON value.
                stream.write_row((*row[:-1], json.dumps(row[-1])))
    elif line_rows:
        session.execute(sa.insert(SettlementLine), [dict(zip(columns, row, strict=True)) for row in line_rows])
    audit.record(
        principal,
        "compensation.settlement.create",
        resource_type="comp_settlement",
        resource_id=",".join(str(s.id) for s, _ in created)[:200],
        node_id=county.id,
        detail={
            "kind": kind,
            "period": period,
            "settlements": len(created),
            "payable": _s(sum((s.payable for s, _ in created), ZERO)),
        },
        session=session,
    )
    # The answer from the rows as written, before the commit expires them (after it, each would be read back,
    # snapshot included).
    answer = {"items": [_view(s, fig.institution_name, {principal.actor: principal.name}) for s, fig in created]}
    session.commit()
    return answer


# -- approval -------------------------------------------------------------------------------------------------------


def county_approvers(session: orm.Session, county: OrgNode) -> list[str]:
    """The county bureau's administrators (its own members) and the finance officers granted on the bureau."""
    finance = session.scalars(
        sa.select(OrgMember.userid)
        .join(RoleGrant, RoleGrant.member_id == OrgMember.id)
        .where(
            RoleGrant.node_id == county.id,
            RoleGrant.role == "finance_officer",
            RoleGrant.revoked_at.is_(None),
            OrgMember.deleted_at.is_(None),
            OrgMember.active.is_(True),
        )
        .order_by(RoleGrant.id)
    ).all()
    return list(dict.fromkeys([*approvers_of(session, county), *finance]))


def submit(session: orm.Session, principal: Principal, county_id: int, kind: Any, period: Any) -> dict[str, Any]:
    """The county's drafts of the period go to the county's administrators and finance officers on one approval
    card (committed); 409 when there is no draft."""
    kind, period, _, _ = _kind_and_months(kind, period)
    county = _county(session, county_id)
    _require_writer(principal, county)
    drafts = session.scalars(
        sa.select(Settlement)
        .where(
            Settlement.county_id == county.id,
            Settlement.kind == kind,
            Settlement.period == period,
            Settlement.state == "draft",
        )
        .order_by(Settlement.institution_id)
        .with_for_update()
    ).all()
    if not drafts:
        raise _conflict(f"{county.name} {period} 没有待提交的结算草稿", "period")
    if len(drafts) > MAX_CARD_LINES:
        raise _conflict(f"一次最多提交 {MAX_CARD_LINES} 家机构的结算", "period")
    if not principal.userid:
        raise ApiError("forbidden", "只有区县的管理员或财务人员本人可以提交结算审批", status=403)
    everyone = county_approvers(session, county)
    approvers = [userid for userid in everyone if userid != principal.userid] or everyone
    if not approvers:
        raise _conflict(f"{county.name}尚无可审批的管理员或财务人员", "county_id")
    names = dict(
        session.execute(
            sa.select(OrgNode.id, OrgNode.name).where(OrgNode.id.in_([s.institution_id for s in drafts]))
        ).all()
    )
    total = sum((Decimal(s.payable) for s in drafts), ZERO)
    lines = [
        (
            names[s.institution_id][:100],
            f"{_s(Decimal(s.payable))} 元" + (f"（第{s.revision}版）" if s.revision > 1 else ""),
        )
        for s in drafts
    ]
    form = fit_form(
        [("区县", county.name), ("类型", SETTLEMENT_KINDS[kind]), ("期间", period), ("机构数", str(len(drafts)))],
        lines,
        [("应拨付合计", f"{_s(total)} 元"), ("提交人", principal.name)],
    )
    approval = request_approval(
        key=f"comp-settlement:{county.id}:{kind}:{period}:{drafts[0].id}",
        title=f"{county.name} {period} {SETTLEMENT_KINDS[kind]}"[:200],
        originator_userid=principal.userid,
        approvers=approvers,
        mode="any",
        form=form,
        callback=CALLBACK,
        context={"settlement_ids": [s.id for s in drafts]},
        cards_only=True,  # one form line per institution: no OA template's fixed labels fit
    )
    now = utcnow()
    for s in drafts:
        s.state, s.submitted_at, s.approval_id = "submitted", now, approval.id
    audit.record(
        principal,
        "compensation.settlement.submit",
        resource_type="comp_settlement",
        resource_id=",".join(str(s.id) for s in drafts)[:200],
        node_id=county.id,
        detail={"kind": kind, "period": period, "approval_id": approval.id, "payable": _s(total)},
        session=session,
    )
    people = _names(session, drafts)
    session.commit()
    return {
        "approval_id": approval.id,
        "approvers": approvers,
        "items": [_view(s, names[s.institution_id], people) for s in drafts],
    }


def fit_form(
    head: list[tuple[str, str]], lines: list[tuple[str, str]], tail: list[tuple[str, str]], limit: int = CARD_BYTES
) -> list[tuple[str, str]]:
    """The card's form: every institution's line while the card's summary ("name：value" lines) fits the card
    parameter limit, else as many as fit and one line for the rest (count and sum), which the settlement list
    shows in full. The head (county, kind, period, count) and the tail (total, submitter) are always there."""

    def size(pairs: list[tuple[str, str]]) -> int:
        return len("\n".join(f"{name}：{value}" for name, value in pairs).encode())

    if size(head + lines + tail) <= limit:
        return head + lines + tail
    kept = list(lines)
    while kept:
        rest = lines[len(kept) :]
        summary = ("其余机构", f"{len(rest)} 家，明细见结算列表")
        if size(head + kept + [summary] + tail) <= limit:
            return [*head, *kept, summary, *tail]
        kept.pop()
    return [*head, ("机构明细", "见结算列表"), *tail]


def _refusal_reason(outcome: ApprovalOutcome) -> str:
    if outcome.result == "refuse":
        refusal = next((d for d in outcome.decisions if d.get("result") == "refuse"), {})
        remark = str(refusal.get("remark") or refusal.get("comment") or "").strip()
        who = refusal.get("userid") or "审批人"
        return (f"{who} 拒绝" + (f"：{remark}" if remark else ""))[:500]
    if outcome.result == "terminated":
        return "审批已撤销"
    return f"审批未能完成：{outcome.error or '发起失败'}"[:500]


def decided(outcome: ApprovalOutcome) -> None:
    """The approval's callback (in the bot's transaction; the bot commits): every settlement of the card becomes
    approved (final) or refused with the reason."""
    session = current_session()
    ids = [int(i) for i in outcome.context.get("settlement_ids", [])]
    rows = session.scalars(
        sa.select(Settlement).where(Settlement.id.in_(ids)).order_by(Settlement.id).with_for_update()
    ).all()
    rows = [row for row in rows if row.state == "submitted" and row.approval_id == outcome.approval_id]
    if not rows:
        return  # decided already (the bot calls back once; this guards a hand-run callback)
    now = utcnow()
    deciders = [d.get("userid") for d in outcome.decisions if d.get("result") == outcome.result]
    who = ",".join(str(u) for u in deciders if u)[:140] or None
    agreed = outcome.result == "agree"
    reason = None if agreed else _refusal_reason(outcome)
    for row in rows:
        row.state = "approved" if agreed else "refused"
        row.decided_by, row.decided_at, row.reason = who, now, reason
    audit.record(
        None,
        "compensation.settlement.approved" if agreed else "compensation.settlement.refused",
        resource_type="comp_settlement",
        resource_id=",".join(str(row.id) for row in rows)[:200],
        node_id=rows[0].county_id,
        detail={"approval_id": outcome.approval_id, "result": outcome.result, "decided_by": deciders, "reason": reason},
        session=session,
    )


# -- reads ----------------------------------------------------------------------------------------------------------


def _names(session: orm.Session, rows: Iterable[Settlement]) -> dict[str, str]:
    """Who made and who decided the settlements, by name: creators are audit actors ("<corp>:<userid>"),
    deciders userids (comma-separated when several agreed)."""
    rows = list(rows)
    names = actor_names(session, {s.created_by for s in rows})
    deciders = {u for s in rows for u in (s.decided_by or "").split(",") if u}
    if deciders:
        names.update(
            session.execute(
                sa.select(OrgMember.userid, OrgMember.name).where(
                    OrgMember.userid.in_(deciders), OrgMember.deleted_at.is_(None)
                )
            ).all()
        )
    return names


def _view(s: Settlement, institution_name: str | None, names: Mapping[str, str] | None = None) -> dict[str, Any]:
    names = names or {}
    deciders = [names.get(u, u) for u in (s.decided_by or "").split(",") if u]
    return {
        "id": s.id,
        "institution_id": s.institution_id,
        "institution_name": institution_name,
        "county_id": s.county_id,
        "kind": s.kind,
        "period": s.period,
        "revision": s.revision,
        "state": s.state,
        "state_label": SETTLEMENT_STATES.get(s.state, s.state),
        "equivalents": dict(s.equivalents or {}),
        "prices": dict(s.prices or {}),
        "coefficient": Decimal(s.coefficient).quantize(Q4),
        "purchase_amount": Decimal(s.purchase_amount).quantize(Q2),
        "line_item_amount": Decimal(s.line_item_amount).quantize(Q2),
        "fee_income": None if s.fee_income is None else Decimal(s.fee_income).quantize(Q2),
        "gap_subsidy": None if s.gap_subsidy is None else Decimal(s.gap_subsidy).quantize(Q2),
        "advances_paid": Decimal(s.advances_paid).quantize(Q2),
        "payable": Decimal(s.payable).quantize(Q2),
        "approval_id": s.approval_id,
        "created_by": s.created_by,
        "created_by_name": names.get(s.created_by),
        "created_at": s.created_at,
        "submitted_at": s.submitted_at,
        "decided_by": s.decided_by,
        "decided_by_name": "、".join(deciders) or None,
        "decided_at": s.decided_at,
        "reason": s.reason,
    }


def _readable_county(session: orm.Session, principal: Principal, county_id: int) -> OrgNode:
    """The county, to readers whose scope covers it or one of its institutions; the same 404 as a missing one."""
    county = session.get(OrgNode, county_id)
    if county is None or county.deleted_at is not None or county.level != catalog.COUNTY:
        raise ApiError("not_found", "区县不存在", status=404)
    scope = principal.scope(*READER_ROLES)
    if not (scope.covers_path(county.path) or any(p.startswith(county.path) for p in scope.paths)):
        raise ApiError("not_found", "区县不存在", status=404)
    return county


def list_settlements(
    session: orm.Session, principal: Principal, county_id: int, *, kind: str | None = None, period: str | None = None
) -> dict[str, Any]:
    """Every revision of the county's settlements the caller may read (county administrators and finance
    officers: all; an institution administrator: their own), with state, who and when, and the reason."""
    county = _readable_county(session, principal, county_id)
    query = (
        sa.select(Settlement, OrgNode.name)
        .join(OrgNode, OrgNode.id == Settlement.institution_id)
        .where(Settlement.county_id == county.id, principal.scope(*READER_ROLES).subtree(OrgNode.path))
    )
    if kind:
        if kind not in SETTLEMENT_KINDS:
            raise _invalid("kind", "结算类型应为 advance 或 annual")
        query = query.where(Settlement.kind == kind)
    if period:
        period = period.strip()
        if kind:  # the same words as settling it would say
            _kind_and_months(kind, period)
        elif not PERIOD_OR_YEAR.match(period):
            raise _invalid("period", "期间应为 YYYY-MM 或 YYYY")
        query = query.where(Settlement.period == period)
    rows = session.execute(
        query.order_by(Settlement.kind, Settlement.period, Settlement.institution_id, Settlement.revision)
    ).all()
    names = _names(session, (s for s, _ in rows))
    return {"items": [_view(s, name, names) for s, name in rows]}


def _readable(session: orm.Session, principal: Principal, settlement_id: int) -> tuple[Settlement, OrgNode]:
    s = session.get(Settlement, settlement_id)
    node = session.get(OrgNode, s.institution_id) if s else None
    if s is None or node is None or not principal.scope(*READER_ROLES).covers_path(node.path):
        raise ApiError("not_found", "结算不存在", status=404)
    return s, node


def get_settlement(session: orm.Session, principal: Principal, settlement_id: int) -> dict[str, Any]:
    """One settlement with its lines and how each figure was computed, all from its frozen snapshot."""
    s, node = _readable(session, principal, settlement_id)
    lines = session.scalars(
        sa.select(SettlementLine).where(SettlementLine.settlement_id == s.id).order_by(SettlementLine.item_code)
    ).all()
    snap = s.snapshot or {}
    k = _s(Decimal(s.coefficient).quantize(Q4))
    packages = snap.get("packages", {})
    purchase_terms = " + ".join(f"{p['equivalents']} × {p['price']}" for p in packages.values()) or "0"
    base = "差额补助" if s.gap_subsidy is not None else "购买金额"
    computation = {
        "equivalents": {name: f"Σ 核定数量 × 当量 = {p['equivalents']}" for name, p in packages.items()},
        "prices": {name: f"{p['how']} = {p['price']}" for name, p in packages.items()},
        "coefficient": f"{snap.get('coefficient_rule', '')} → {k}",
        "purchase_amount": f"({purchase_terms}) × {k} = {_s(Decimal(s.purchase_amount).quantize(Q2))}",
        "gap_subsidy": None
        if s.gap_subsidy is None
        else f"max(0, {_s(Decimal(s.purchase_amount).quantize(Q2))} − 医疗服务收入 "
        f"{_s(Decimal(s.fee_income or 0).quantize(Q2))}) = {_s(Decimal(s.gap_subsidy).quantize(Q2))}",
        "payable": (
            f"{base} × 预拨比例 {snap.get('scheme', {}).get('advance_share')} + 专项补助 "
            f"{_s(Decimal(s.line_item_amount).quantize(Q2))} = {_s(Decimal(s.payable).quantize(Q2))}"
            if s.kind == "advance"
            else f"{base} + 专项补助 {_s(Decimal(s.line_item_amount).quantize(Q2))} − 已拨预拨 "
            f"{_s(Decimal(s.advances_paid).quantize(Q2))} = {_s(Decimal(s.payable).quantize(Q2))}"
        ),
    }
    view = _view(s, node.name, _names(session, [s]))
    view["lines"] = [
        {
            "item_id": line.item_id,
            "item_code": line.item_code,
            "package": line.package,
            "quantity": Decimal(line.quantity).quantize(Q2),
            "excluded": Decimal(line.excluded).quantize(Q2),
            "equivalent": Decimal(line.equivalent).quantize(Q4),
            "equivalents": Decimal(line.equivalents).quantize(Q4),
            "quantity_ids": list(line.quantity_ids or []),
        }
        for line in lines
    ]
    view["computation"] = computation
    view["snapshot"] = snap
    return view


def line_exclusions(
    session: orm.Session,
    principal: Principal,
    settlement_id: int,
    item_code: str,
    *,
    page: int = 1,
    page_size: int = 100,
) -> dict[str, Any]:
    """The units the quality gate kept out of the quantities a settlement line read (its `quantity_ids`)."""
    s, _ = _readable(session, principal, settlement_id)
    line = session.scalar(
        sa.select(SettlementLine).where(SettlementLine.settlement_id == s.id, SettlementLine.item_code == item_code)
    )
    if line is None:
        raise ApiError("not_found", f"结算中没有项目 {item_code}", status=404)
    ids = [int(i) for i in line.quantity_ids or []]
    query = (
        sa.select(WorkloadExclusion, WorkloadQuantity.period)
        .join(WorkloadQuantity, WorkloadQuantity.id == WorkloadExclusion.quantity_id)
        .where(WorkloadExclusion.quantity_id.in_(ids))
        .order_by(WorkloadQuantity.period, WorkloadExclusion.id)
    )
    rows, total = paginate(query, page, page_size, rows=True, db_session=session)
    return {
        "settlement_id": s.id,
        "item_code": item_code,
        "excluded": Decimal(line.excluded).quantize(Q2),
        "items": [
            {
                "id": row.id,
                "quantity_id": row.quantity_id,
                "period": month,
                "record_ref": row.record_ref,
                "units": Decimal(row.units).quantize(Q2),
                "rule": row.rule,
                "reason": row.reason,
            }
            for row, month in rows
        ],
        "total": total,
        "page": page,
        "page_size": page_size,
    }

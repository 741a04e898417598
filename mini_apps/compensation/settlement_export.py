"""Settlements to Excel (openpyxl) in the layout county finance staff file them in: one county's settlements of a
kind and period, or one settlement, as a workbook of values (no formulas) with the computation beside them.

Which settlements: per institution the current revision of the kind and period — the highest revision that is
not `superseded`. Revisions are strictly ordered (`settle` refuses a new one while one is approved or open, and a
refused one is superseded when its correction is made), so that revision is the approved one if any, else the
open one (draft or submitted), else the refused one still awaiting its correction (shown as 已退回 so the
summary accounts for every institution settled); it is the row `list_settlements` shows as the institution's
latest. Readers see what `list_settlements` / `get_settlement` let them see: the county's administrators and
finance officers every institution, an institution's administrator their own.

Sheets (headers bold and frozen, as in `excel.py`):

- `结算汇总表`: a title row (county, 月度预拨/年度清算, period, the count per state), a header row, one row per
  institution — 序号, 机构名称, 状态, 版本, the 当量 (TE) per package that occurs, the 当量单价 (P) per package,
  考核系数 (K), 购买服务金额, 专项补助, 医疗服务收入 and 差额补助 (gap variant only), 已预拨 (annual only),
  本期应拨 — and a 合计 row;
- `计算过程`: per institution, each figure of its row written out with its numbers from the frozen snapshot
  (TE × P × K per package, the price rule, the coefficient rule, line items by category, fee income and the gap,
  the advances subtracted, the payable), with the figure beside the words;
- `项目明细`: per institution and item: 项目编码, 名称, 服务包, 核定数量, 剔除数量, 当量, 当量合计;
- `说明`: what the sheets are, the rounding, when and by whom the workbook was exported, the exact totals.

Exactness: the cells are numbers, written from the settlement's quantised Decimals (money 2 places, 当量, prices
and coefficients 4 places); openpyxl writes a Decimal as its digits ("%.16g" on the Decimal itself, no float on
the way), so every figure up to 15 significant digits (10^13 yuan at 2 places) is in the file exactly; a larger
one would be written as text rather than silently rounded by Excel's double. The 合计 row is the Decimal sum of the
stored figures, computed here, never an Excel SUM or a sum of floats, and the 说明 sheet repeats the totals as text.
Nothing is recomputed: every number comes from the settlement row, its lines and its snapshot.

An empty selection (no settlement of the county, kind and period that the caller may read) is a 404 naming
`period`, not an empty workbook: a file with only headers looks like a settlement at zero and could be filed or
forwarded as one; the message says the period has not been settled yet, which is what the user must act on.

Queries: the county, the current settlements with their institutions' names (one query, the latest revision
picked in SQL), their lines with the items' names (one query): a bounded number whatever the county's size.
"""

from __future__ import annotations

import io
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet
from sqlalchemy import orm

from mini_apps.compensation import settlement as settling
from mini_apps.compensation.excel import HEADER_FILL, HEADER_FONT
from mini_apps.compensation.models import (
    LINE_ITEM_CATEGORIES,
    PACKAGES,
    SETTLEMENT_KINDS,
    SETTLEMENT_STATES,
    ServiceItem,
    Settlement,
    SettlementLine,
)
from org_sync.models import OrgNode
from workbench import audit
from workbench.auth.principal import Principal
from workbench.db import utcnow
from workbench.errors import ApiError

Q2 = settling.Q2
Q4 = settling.Q4
ZERO = Decimal(0)
CHINA = ZoneInfo("Asia/Shanghai")  # finance staff read the export time as Beijing time
MONEY_FORMAT = "#,##0.00"
FOUR_FORMAT = "0.0000"
EXACT_FORMAT = "#,##0.00########"  # an unrounded product: every digit it has
QTY_FORMAT = "#,##0.00"
MAX_EXACT_DIGITS = 15  # what an Excel double holds exactly; a longer figure is written as text

SUMMARY = "结算汇总表"
COMPUTATION = "计算过程"
DETAIL = "项目明细"
ABOUT = "说明"
# Column labels per package: the short names finance sheets use (the full name is in PACKAGES).
PACKAGE_SHORT = {"basic_medical": "基本医疗", "public_health": "基本公卫", "contract": "签约"}

TITLE_FONT = Font(bold=True, size=14)
TOTAL_FONT = Font(bold=True)
TOTAL_FILL = PatternFill("solid", fgColor="FFF7E6")
BLOCK_FILL = PatternFill("solid", fgColor="F5F5F5")


@dataclass
class Row:
    """One settlement to export, with what the sheets need beside it."""

    settlement: Settlement
    institution_name: str
    lines: list[tuple[SettlementLine, str | None]]  # the line and its item's name


# -- helpers --------------------------------------------------------------------------------------------------------


def _d(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _m(value: Any) -> Decimal | None:
    """Money, 2 places (the stored figures have them already: this only fixes the exponent)."""
    d = _d(value)
    return None if d is None else d.quantize(Q2)


def _f(value: Any) -> Decimal | None:
    """当量, prices, coefficients: 4 places."""
    d = _d(value)
    return None if d is None else d.quantize(Q4)


def _s(value: Decimal | None) -> str:
    return "" if value is None else format(value, "f")


def _money(value: Any) -> Decimal:
    """A stored money figure, 2 places; none (a column not set) as 0.00."""
    return _m(value) if value is not None else ZERO.quantize(Q2)


def _four(value: Any) -> Decimal:
    return _f(value) if value is not None else ZERO.quantize(Q4)


def _exact(value: Decimal) -> Decimal:
    """An unrounded product (4 + 4 + 4 places) without its trailing zeros, never fewer than 2 places."""
    return value.quantize(Q2) if value == value.quantize(Q2) else value.normalize()


def _cell(value: Any) -> Any:
    """A Decimal as a number cell when Excel's double holds it exactly, else as its text (never rounded)."""
    if isinstance(value, Decimal) and len(value.as_tuple().digits) > MAX_EXACT_DIGITS:
        return format(value, "f")
    return value


def _label(package: str) -> str:
    return PACKAGE_SHORT.get(package, PACKAGES.get(package, package))


def _ordered_packages(packages: Iterable[str]) -> list[str]:
    order = list(PACKAGES)
    return sorted(set(packages), key=lambda p: (order.index(p) if p in order else len(order), p))


def _style_header(sheet: Worksheet, row: int) -> None:
    for cell in sheet[row]:
        cell.font = HEADER_FONT
        cell.fill = HEADER_FILL
        cell.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)
    sheet.freeze_panes = f"A{row + 1}"


def _widths(sheet: Worksheet, widths: Sequence[int]) -> None:
    for column, width in enumerate(widths, start=1):
        sheet.column_dimensions[get_column_letter(column)].width = width


def _put(sheet: Worksheet, values: Sequence[Any], formats: Sequence[str | None]) -> int:
    """Append a row of values with a number format per column; the row number."""
    sheet.append([_cell(v) for v in values])
    number = sheet.max_row
    for column, fmt in enumerate(formats, start=1):
        if fmt and values[column - 1] is not None:
            sheet.cell(number, column).number_format = fmt
    return number


# -- reading --------------------------------------------------------------------------------------------------------


def _current(session: orm.Session, principal: Principal, where: Sequence[sa.ColumnElement[bool]]) -> list[Row]:
    """The current revision (highest not superseded) of each institution's settlements matching `where` that the
    caller may read, with their lines: two queries."""
    scope = principal.scope(*settling.READER_ROLES)
    latest = (
        sa.select(Settlement.institution_id, Settlement.kind, Settlement.period, sa.func.max(Settlement.revision))
        .where(*where, Settlement.state != "superseded")
        .group_by(Settlement.institution_id, Settlement.kind, Settlement.period)
        .subquery()
    )
    c = list(latest.c)
    found = session.execute(
        sa.select(Settlement, OrgNode.name)
        .join(
            latest,
            sa.and_(
                Settlement.institution_id == c[0],
                Settlement.kind == c[1],
                Settlement.period == c[2],
                Settlement.revision == c[3],
            ),
        )
        .join(OrgNode, OrgNode.id == Settlement.institution_id)
        .where(scope.subtree(OrgNode.path))
        .order_by(Settlement.institution_id)
    ).all()
    if not found:
        return []
    lines: dict[int, list[tuple[SettlementLine, str | None]]] = defaultdict(list)
    for line, name in session.execute(
        sa.select(SettlementLine, ServiceItem.name)
        .outerjoin(ServiceItem, ServiceItem.id == SettlementLine.item_id)
        .where(SettlementLine.settlement_id.in_([s.id for s, _ in found]))
        .order_by(SettlementLine.settlement_id, SettlementLine.item_code)
    ):
        lines[line.settlement_id].append((line, name))
    return [Row(s, name, lines[s.id]) for s, name in found]


# -- the sheets -----------------------------------------------------------------------------------------------------


@dataclass
class Column:
    title: str
    fmt: str | None
    value: Any  # Row -> value
    total: bool = False  # summed in the 合计 row


def _columns(rows: Sequence[Row], kind: str) -> list[Column]:
    packages = _ordered_packages(p for r in rows for p in (r.settlement.equivalents or {}))
    gap = any(r.settlement.gap_subsidy is not None for r in rows)
    columns = [
        Column("序号", None, None),
        Column("机构名称", None, lambda r: r.institution_name),
        Column("状态", None, lambda r: SETTLEMENT_STATES.get(r.settlement.state, r.settlement.state)),
        Column("版本", None, lambda r: r.settlement.revision),
    ]
    columns += [
        Column(f"{_label(p)}当量", FOUR_FORMAT, lambda r, p=p: _f((r.settlement.equivalents or {}).get(p)), True)
        for p in packages
    ]
    columns += [
        Column(f"{_label(p)}单价（元/当量）", FOUR_FORMAT, lambda r, p=p: _f((r.settlement.prices or {}).get(p)))
        for p in packages
    ]
    columns += [
        Column("考核系数", FOUR_FORMAT, lambda r: _f(r.settlement.coefficient)),
        Column("购买服务金额", MONEY_FORMAT, lambda r: _m(r.settlement.purchase_amount), True),
        Column("专项补助", MONEY_FORMAT, lambda r: _m(r.settlement.line_item_amount), True),
    ]
    if gap:
        columns += [
            Column("医疗服务收入", MONEY_FORMAT, lambda r: _m(r.settlement.fee_income), True),
            Column("差额补助", MONEY_FORMAT, lambda r: _m(r.settlement.gap_subsidy), True),
        ]
    if kind == "annual":
        columns.append(Column("已预拨", MONEY_FORMAT, lambda r: _m(r.settlement.advances_paid), True))
    columns.append(Column("本期应拨", MONEY_FORMAT, lambda r: _m(r.settlement.payable), True))
    return columns


def _state_summary(rows: Sequence[Row]) -> str:
    counts = Counter(r.settlement.state for r in rows)
    return " / ".join(f"{label} {counts[state]}" for state, label in SETTLEMENT_STATES.items() if counts[state])


def _totals(rows: Sequence[Row], columns: Sequence[Column]) -> dict[str, Decimal]:
    """The Decimal sum of each summed column over the rows (blank cells add nothing)."""
    return {col.title: sum((v for r in rows if (v := col.value(r)) is not None), ZERO) for col in columns if col.total}


def _summary(book: Workbook, county: OrgNode, kind: str, period: str, rows: Sequence[Row]) -> dict[str, Decimal]:
    sheet = book.active
    sheet.title = SUMMARY
    columns = _columns(rows, kind)
    sheet.append(
        [
            f"{county.name} {SETTLEMENT_KINDS[kind]} {period} 结算汇总表"
            f"（{_state_summary(rows)}；共 {len(rows)} 家机构；金额单位：元）"
        ]
    )
    sheet.merge_cells(start_row=1, start_column=1, end_row=1, end_column=len(columns))
    sheet["A1"].font = TITLE_FONT
    sheet["A1"].alignment = Alignment(horizontal="left", vertical="center")
    sheet.row_dimensions[1].height = 24
    sheet.append([col.title for col in columns])
    _style_header(sheet, 2)
    sheet.row_dimensions[2].height = 32
    formats = [col.fmt for col in columns]
    for number, r in enumerate(rows, start=1):
        _put(sheet, [number if col.value is None else col.value(r) for col in columns], formats)
    totals = _totals(rows, columns)
    total_row = _put(
        sheet,
        ["合计", f"{len(rows)} 家机构"] + [totals.get(col.title) for col in columns[2:]],
        formats,
    )
    for cell in sheet[total_row]:
        cell.font = TOTAL_FONT
        cell.fill = TOTAL_FILL
    _widths(sheet, [6, 28, 10, 6] + [16] * (len(columns) - 4))
    return totals


def _computation(row: Row) -> list[tuple[str, str, str, Decimal | None, str | None]]:
    """(项目, 服务包/类别, 计算过程, 结果, format) of one settlement, from its stored figures and snapshot."""
    s = row.settlement
    snap = s.snapshot or {}
    k = _four(s.coefficient)
    purchase = _money(s.purchase_amount)
    out: list[tuple[str, str, str, Decimal | None, str | None]] = []
    packages = snap.get("packages", {})
    counts = Counter(line.package for line, _ in row.lines)
    products: list[tuple[Decimal, Decimal]] = []
    for p in _ordered_packages(packages):
        info = packages[p]
        te = _four(info.get("equivalents"))
        price = _four(info.get("price"))
        products.append((te, price))
        name = PACKAGES.get(p, p)
        out.append(
            ("当量 TE", name, f"Σ 核定数量 × 当量（{counts[p]} 个项目，见“{DETAIL}”）= {_s(te)}", te, FOUR_FORMAT)
        )
        how = "固定单价" if info.get("method") == "fixed" else f"预算驱动：{info.get('how', '')}"
        out.append(("单价 P", name, f"{how} = {_s(price)}", price, FOUR_FORMAT))
        amount = _exact(te * price * k)
        out.append(
            (
                "金额 TE × P × K",
                name,
                f"{_s(te)} × {_s(price)} × {_s(k)} = {_s(amount)}（未舍入，购买服务金额合计后舍入到分）",
                amount,
                EXACT_FORMAT,
            )
        )
    out.append(("考核系数 K", "", f"{snap.get('coefficient_rule', '')} → {_s(k)}", k, FOUR_FORMAT))
    exact = _exact(sum((te * price for te, price in products), ZERO) * k)
    terms = " + ".join(f"{_s(te)} × {_s(price)}" for te, price in products) or "0"
    out.append(
        (
            "购买服务金额",
            "",
            f"Σ TE × P × K = ({terms}) × {_s(k)} = {_s(exact)}，四舍五入到分 = {_s(purchase)}",
            purchase,
            MONEY_FORMAT,
        )
    )
    items = _money(s.line_item_amount)
    by_category: dict[str, list[tuple[str, Decimal]]] = defaultdict(list)
    for entry in snap.get("line_items", []):
        by_category[entry.get("category", "")].append((entry.get("period", ""), _money(entry.get("amount"))))
    for category, entries in by_category.items():
        subtotal = sum((a for _, a in entries), ZERO)
        text = " + ".join(f"{month} {_s(a)}" for month, a in entries)
        label = LINE_ITEM_CATEGORIES.get(category, category)
        out.append(("专项补助", label, f"{text} = {_s(subtotal)}", subtotal, MONEY_FORMAT))
    out.append(
        (
            "专项补助合计",
            "",
            " + ".join(
                f"{LINE_ITEM_CATEGORIES.get(c, c)} {_s(sum((a for _, a in e), ZERO))}" for c, e in by_category.items()
            )
            + f" = {_s(items)}"
            if by_category
            else f"本期无专项补助 = {_s(items)}",
            items,
            MONEY_FORMAT,
        )
    )
    base_label, base = "购买服务金额", purchase
    if s.gap_subsidy is not None:
        fee = _money(s.fee_income)
        gap = _money(s.gap_subsidy)
        months = [f"{e.get('period')} {_s(_m(e.get('amount')))}" for e in snap.get("fee_incomes", [])]
        missing = snap.get("fee_income_missing") or []
        text = (" + ".join(months) or "无") + f" = {_s(fee)}"
        if missing:
            text += f"（未报月份按 0 计：{'、'.join(missing)}）"
        out.append(("医疗服务收入", "", text, fee, MONEY_FORMAT))
        out.append(
            (
                "差额补助",
                "",
                f"max(0, 购买服务金额 {_s(purchase)} − 医疗服务收入 {_s(fee)}) = {_s(gap)}（财政拨付差额，收入归机构）",
                gap,
                MONEY_FORMAT,
            )
        )
        base_label, base = "差额补助", gap
    payable = _money(s.payable)
    if s.kind == "annual":
        paid = _money(s.advances_paid)
        advances = [
            f"{a.get('period')}（第{a.get('revision')}版）{_s(_m(a.get('payable')))}" for a in snap.get("advances", [])
        ]
        out.append(
            (
                "已预拨",
                "",
                ("已审定的月度预拨：" + " + ".join(advances) if advances else "无已审定的月度预拨") + f" = {_s(paid)}",
                paid,
                MONEY_FORMAT,
            )
        )
        text = f"{base_label} {_s(base)} + 专项补助 {_s(items)} − 已预拨 {_s(paid)} = {_s(payable)}"
    else:
        share = _d((snap.get("scheme") or {}).get("advance_share")) or ZERO
        advanced = settling.q2(base * share)
        text = (
            f"{base_label} {_s(base)} × 预拨比例 {_s(share)} = {_s(advanced)}（四舍五入到分），"
            f"+ 专项补助 {_s(items)} = {_s(payable)}"
        )
    out.append(("本期应拨", "", text, payable, MONEY_FORMAT))
    return out


def _computation_sheet(book: Workbook, rows: Sequence[Row]) -> None:
    sheet = book.create_sheet(COMPUTATION)
    sheet.append(["机构名称", "项目", "服务包/类别", "计算过程", "结果"])
    _style_header(sheet, 1)
    for number, r in enumerate(rows, start=1):
        s = r.settlement
        heading = _put(
            sheet,
            [
                f"{number}. {r.institution_name}",
                f"{SETTLEMENT_STATES.get(s.state, s.state)}，第 {s.revision} 版",
                f"{SETTLEMENT_KINDS.get(s.kind, s.kind)} {s.period}",
                f"结算单号 {s.id}；当量、单价、系数保留 4 位小数，金额保留 2 位（四舍五入）",
                None,
            ],
            [None] * 5,
        )
        for cell in sheet[heading]:
            cell.font = TOTAL_FONT
            cell.fill = BLOCK_FILL
        for item, group, text, result, fmt in _computation(r):
            number_row = _put(sheet, [r.institution_name, item, group, text, result], [None] * 4 + [fmt])
            sheet.cell(number_row, 4).alignment = Alignment(wrap_text=True, vertical="top")
    _widths(sheet, [26, 16, 20, 90, 18])


def _detail_sheet(book: Workbook, rows: Sequence[Row]) -> None:
    sheet = book.create_sheet(DETAIL)
    sheet.append(["机构名称", "项目编码", "名称", "服务包", "核定数量", "剔除数量", "当量", "当量合计"])
    _style_header(sheet, 1)
    formats = [None, None, None, None, QTY_FORMAT, QTY_FORMAT, FOUR_FORMAT, FOUR_FORMAT]
    for r in rows:
        for line, name in r.lines:
            _put(
                sheet,
                [
                    r.institution_name,
                    line.item_code,
                    name or line.item_code,
                    PACKAGES.get(line.package, line.package),
                    _m(line.quantity),
                    _m(line.excluded),
                    _f(line.equivalent),
                    _f(line.equivalents),
                ],
                formats,
            )
    _widths(sheet, [26, 16, 30, 22, 14, 12, 12, 16])


def _about_sheet(
    book: Workbook,
    principal: Principal,
    county: OrgNode,
    kind: str,
    period: str,
    rows: Sequence[Row],
    totals: dict[str, Decimal],
) -> None:
    sheet = book.create_sheet(ABOUT)
    sheet.append(["项目", "内容"])
    _style_header(sheet, 1)
    now = utcnow().astimezone(CHINA)
    entries = [
        ("区县", county.name),
        ("结算类型", SETTLEMENT_KINDS[kind]),
        ("期间", period),
        ("机构数", f"{len(rows)}（{_state_summary(rows)}）"),
        (
            "所列结算",
            "每家机构本类型、本期间的当前版本：已审定的版本；尚无审定的，列审批中或草稿版本；"
            "被退回且尚未重新结算的，列已退回版本（状态列注明）。已作废的历史版本不列出。",
        ),
        (SUMMARY, "每家机构一行：各服务包当量、当量单价、考核系数、购买服务金额、专项补助等，末行为合计"),
        (COMPUTATION, "每家机构每个数字的计算过程（当量 × 单价 × 系数、单价规则、系数规则、专项补助、差额补助、预拨）"),
        (DETAIL, "每家机构每个服务项目的核定数量、剔除数量（质控未通过）、当量及当量合计"),
        (
            "舍入规则",
            "当量、当量单价、考核系数保留 4 位小数；金额保留 2 位小数；一律四舍五入。"
            "每条工作量的“数量 × 当量”取 4 位后求和；购买服务金额 = Σ(当量 × 单价) × 系数，最后一次取到分；"
            "预拨按“基数 × 预拨比例”取到分后加专项补助。",
        ),
        (
            "数值说明",
            "表中数字为结算时冻结的数值（非公式），合计行为各机构数值的精确十进制合计；"
            "表格软件对列自行求和的结果应与合计行一致，以合计行为准。",
        ),
    ]
    entries += [(f"合计·{title}（精确值）", _s(value)) for title, value in totals.items()]
    entries += [
        ("导出时间", f"{now:%Y-%m-%d %H:%M:%S}（北京时间）"),
        ("导出人", principal.name),
    ]
    for name, value in entries:
        sheet.append([name, value])
        sheet.cell(sheet.max_row, 2).alignment = Alignment(wrap_text=True, vertical="top")
    _widths(sheet, [28, 100])


def _workbook(
    principal: Principal, county: OrgNode, kind: str, period: str, rows: Sequence[Row]
) -> tuple[bytes, dict[str, Decimal]]:
    book = Workbook()
    totals = _summary(book, county, kind, period, rows)
    _computation_sheet(book, rows)
    _detail_sheet(book, rows)
    _about_sheet(book, principal, county, kind, period, rows, totals)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue(), totals


def _audit(
    principal: Principal, county: OrgNode, kind: str, period: str, rows: Sequence[Row], totals: dict[str, Decimal]
) -> None:
    # Without a session: written at once in its own transaction, so the bulk read is on record.
    audit.record(
        principal,
        "compensation.settlement.export",
        resource_type="comp_settlement",
        resource_id=",".join(str(r.settlement.id) for r in rows)[:200],
        node_id=county.id,
        detail={
            "kind": kind,
            "period": period,
            "settlements": len(rows),
            "payable": _s(totals.get("本期应拨")),
        },
    )


# -- entry points ---------------------------------------------------------------------------------------------------


def export_county(
    session: orm.Session, principal: Principal, county_id: int, kind: Any, period: Any
) -> tuple[bytes, str]:
    """The county's current settlements (see the module docstring) of the kind and period that the caller may
    read, as a workbook, and its file name; audited. 422 naming `kind` / `period` for a bad one, 404 when the
    county is not the caller's or nothing of that period has been settled that they may read."""
    kind, period, _, _ = settling._kind_and_months(kind, period)
    county = settling._readable_county(session, principal, county_id)
    rows = _current(
        session,
        principal,
        [Settlement.county_id == county.id, Settlement.kind == kind, Settlement.period == period],
    )
    if not rows:
        raise ApiError(
            "not_found",
            f"{county.name} {period} 尚无可导出的{SETTLEMENT_KINDS[kind]}结算（请先结算）",
            status=404,
            field="period",
        )
    body, totals = _workbook(principal, county, kind, period, rows)
    _audit(principal, county, kind, period, rows, totals)
    return body, f"结算汇总_{county.name}_{SETTLEMENT_KINDS[kind]}_{period}.xlsx"


def export_settlement(session: orm.Session, principal: Principal, settlement_id: int) -> tuple[bytes, str]:
    """One settlement (whatever its state or revision, as `get_settlement` shows it) as the same workbook for
    its institution alone, and its file name; audited. 404 as `get_settlement`."""
    s, node = settling._readable(session, principal, settlement_id)
    county = session.get(OrgNode, s.county_id)
    if county is None:  # a settlement always has its county; guards a hand-edited row
        raise ApiError("not_found", "结算不存在", status=404)
    lines = session.execute(
        sa.select(SettlementLine, ServiceItem.name)
        .outerjoin(ServiceItem, ServiceItem.id == SettlementLine.item_id)
        .where(SettlementLine.settlement_id == s.id)
        .order_by(SettlementLine.item_code)
    ).all()
    rows = [Row(s, node.name, [(line, name) for line, name in lines])]
    body, totals = _workbook(principal, county, s.kind, s.period, rows)
    _audit(principal, county, s.kind, s.period, rows, totals)
    return body, (
        f"结算_{county.name}_{node.name}_{SETTLEMENT_KINDS.get(s.kind, s.kind)}_{s.period}_第{s.revision}版.xlsx"
    )

"""A 当量 table to and from Excel (openpyxl), in the layout finance staff keep it in.

Sheet `当量表`, header row bold and frozen:

    项目编码 | 项目名称 | 服务包 | 单位 | 一类 | 二类 | 三类                         (a province table)
    … the same, then 省表一类 | 省表二类 | 省表三类 | 调整%一类 | 调整%二类 | 调整%三类     (a county adjustment)

A province table lists its items (a draft also lists the active items it does not price yet, blank, so the file is
the template to fill); a blank tier cell means "tier 1's value applies". A county adjustment lists every item of its
base table; its own 一类/二类/三类 cells hold only what it adjusts (blank: the province's value applies), the base
values (tier fallback applied) and the change in percent (display only, rounded half-up to 0.01) beside them.
A second sheet `说明` describes the table.

Import reads the same layout into a draft: only 项目编码 and the tier columns are read (names, packages and units
come from the catalogue, the base and percent columns are ignored); a row with every tier cell blank is skipped.
Every bad row is reported with its row number, column and reason, and nothing is stored when any row is bad.
"""

from __future__ import annotations

import hashlib
import io
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa
from openpyxl import Workbook, load_workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from sqlalchemy import orm

from mini_apps.compensation import catalog
from mini_apps.compensation.models import PACKAGES, TIERS, ServiceItem
from org_sync.models import OrgNode
from workbench import audit, uploads
from workbench.auth.principal import Principal
from workbench.errors import ApiError

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
SHEET = "当量表"
MAX_UPLOAD = 5 * 1024 * 1024
MAX_ROWS = catalog.MAX_VALUES
ZIP_MAGIC = b"PK\x03\x04"  # an .xlsx is a zip package

BASE_COLUMNS = ["项目编码", "项目名称", "服务包", "单位"]
TIER_COLUMNS = {1: "一类", 2: "二类", 3: "三类"}
BASE_VALUE_COLUMNS = {tier: f"省表{label}" for tier, label in TIER_COLUMNS.items()}
PCT_COLUMNS = {tier: f"调整%{label}" for tier, label in TIER_COLUMNS.items()}
FIELD_KEYS = {"项目编码": "item_code", **{label: f"tier_{tier}" for tier, label in TIER_COLUMNS.items()}}

HEADER_FONT = Font(bold=True)
HEADER_FILL = PatternFill("solid", fgColor="F0F6FF")
VALUE_FORMAT = "0.0000"
PCT_FORMAT = "0.00"


# -- export -----------------------------------------------------------------------------------------------------


def _header(sheet: Any, names: list[str]) -> None:
    sheet.append(names)
    for cell in sheet[1]:
        cell.font = HEADER_FONT
        cell.fill = HEADER_FILL
        cell.alignment = Alignment(horizontal="center", vertical="center")
    sheet.freeze_panes = "A2"


def _template_rows(session: orm.Session, table_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A draft province table's rows plus a blank row for every active item it does not price yet."""
    listed = {row["item_id"] for row in table_rows}
    extra = session.scalars(sa.select(ServiceItem).where(ServiceItem.active.is_(True)).order_by(ServiceItem.code)).all()
    blank = {str(tier): None for tier in TIERS}
    rows = table_rows + [
        {
            "item_id": item.id,
            "item_code": item.code,
            "item_name": item.name,
            "package": item.package,
            "unit": item.unit,
            "values": dict(blank),
        }
        for item in extra
        if item.id not in listed
    ]
    return sorted(rows, key=lambda row: row["item_code"])


def export_table(session: orm.Session, principal: Principal, table_id: int) -> tuple[bytes, str]:
    """The table as an .xlsx workbook and a file name for it; audited (a bulk read)."""
    table = catalog.visible_table(session, principal, table_id)
    region = session.get(OrgNode, table.region_node_id)
    county = table.base_table_id is not None
    rows = catalog.table_rows(session, table)
    if not county and table.state == "draft":
        rows = _template_rows(session, rows)

    book = Workbook()
    sheet = book.active
    sheet.title = SHEET
    names = BASE_COLUMNS + list(TIER_COLUMNS.values())
    if county:
        names += list(BASE_VALUE_COLUMNS.values()) + list(PCT_COLUMNS.values())
    _header(sheet, names)
    for row in rows:
        line: list[Any] = [
            row["item_code"],
            row["item_name"],
            PACKAGES.get(row["package"], row["package"]),
            row["unit"],
        ]
        line += [row["values"][str(tier)] for tier in TIERS]
        if county:
            line += [row["base_values"][str(tier)] for tier in TIERS]
            line += [row["change_pct"][str(tier)] for tier in TIERS]
        sheet.append(line)
    value_columns = range(5, 5 + len(TIERS) * (2 if county else 1))
    pct_columns = range(5 + 2 * len(TIERS), 5 + 3 * len(TIERS)) if county else range(0)
    for number in range(2, sheet.max_row + 1):
        for column in value_columns:
            sheet.cell(number, column).number_format = VALUE_FORMAT
        for column in pct_columns:
            sheet.cell(number, column).number_format = PCT_FORMAT
    for column, width in enumerate([16, 30, 22, 10] + [12] * (len(names) - 4), start=1):
        sheet.column_dimensions[get_column_letter(column)].width = width

    about = book.create_sheet("说明")
    _header(about, ["项目", "内容"])
    about.append(["地区", region.name if region else table.region_node_id])
    about.append(["版本号", table.version])
    about.append(["名称", table.name])
    about.append(["类型", "县级调整表" if county else "省级当量表"])
    about.append(["状态", catalog.TABLE_STATES[table.state]])
    about.append(["有效期", f"{table.valid_from} 至 {table.valid_to or '长期'}"])
    if county:
        about.append(["说明", "一类/二类/三类只列出本县调整的当量，空白表示沿用省表；调整%仅供参考"])
    else:
        about.append(["县级可调整幅度", f"{table.adjust_min_pct}% 至 {table.adjust_max_pct}%"])
        about.append(["说明", "二类、三类空白表示按一类当量计"])
    about.column_dimensions["A"].width = 16
    about.column_dimensions["B"].width = 60

    buffer = io.BytesIO()
    book.save(buffer)
    audit.record(
        principal,
        "comp.table.export",
        resource_type="comp_table",
        resource_id=table.id,
        node_id=table.region_node_id,
        detail={"rows": len(rows)},
    )
    return buffer.getvalue(), f"当量表_{region.name if region else table.region_node_id}_{table.version}.xlsx"


# -- import -----------------------------------------------------------------------------------------------------


def _bad_file(message: str) -> ApiError:
    return ApiError("validation_error", message, status=422, field="file")


def _text(cell: Any) -> str:
    if cell is None:
        return ""
    if isinstance(cell, float) and cell.is_integer():
        cell = int(cell)
    return str(cell).strip()


def _number(cell: Any) -> Any:
    """The cell as the values API takes it: numbers through their shortest text (a float cell written from
    Decimal("1.7") reads back 1.7, never 1.69999…), text as it is."""
    if isinstance(cell, bool):
        return cell
    if isinstance(cell, int | float):
        try:
            return Decimal(repr(cell)) if isinstance(cell, float) else Decimal(cell)
        except InvalidOperation:
            return str(cell)
    return _text(cell)


def _open(filename: str, content: bytes) -> Any:
    if not filename.lower().endswith(".xlsx"):
        raise _bad_file("只支持 .xlsx 文件")
    if len(content) > MAX_UPLOAD:
        raise ApiError("payload_too_large", "文件不能超过 5 MB", status=413, field="file")
    # Recognised from the bytes, not the name: an executable or a document of another kind is refused before
    # openpyxl parses anything.
    if uploads.is_executable(content) or uploads.sniff(content) is not None or not content.startswith(ZIP_MAGIC):
        raise _bad_file("文件内容不是 Excel 工作簿（.xlsx）")
    try:
        book = load_workbook(io.BytesIO(content), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises zipfile, KeyError, … on a zip that is not a workbook
        raise _bad_file("无法读取 Excel 文件（须为 .xlsx）") from exc
    return book


def import_table(
    session: orm.Session, principal: Principal, table_id: int, filename: str, content: bytes
) -> dict[str, Any]:
    """Replace a draft's values with the workbook's; a 422 with `rows: [{row, field, column, message}]` listing
    every bad row (and nothing stored) when any is bad."""
    table, region = catalog.managed_table(session, principal, table_id)
    catalog._require_draft(table)
    book = _open(filename, content)
    try:
        sheet = book[SHEET] if SHEET in book.sheetnames else book.worksheets[0]
        lines = sheet.iter_rows(values_only=True)
        header = next(lines, None)
        if header is None:
            raise _bad_file("文件为空")
        names = [_text(cell) for cell in header]
        positions = {name: names.index(name) for name in FIELD_KEYS if name in names}
        missing = [name for name in ("项目编码", TIER_COLUMNS[1]) if name not in positions]
        if missing:
            raise _bad_file(f"缺少必需的列：{'、'.join(missing)}")
        problems: list[dict[str, Any]] = []
        entries: list[dict[str, Any]] = []
        origin: list[tuple[int, str]] = []  # per entry: (row number, column name)
        rows_seen = 0
        for number, line in enumerate(lines, start=2):
            cells = {name: (line[index] if index < len(line) else None) for name, index in positions.items()}
            if all(_text(value) == "" for value in cells.values()):
                continue
            rows_seen += 1
            if rows_seen > MAX_ROWS:
                raise _bad_file(f"最多 {MAX_ROWS} 行")
            code = _text(cells["项目编码"])
            tier_cells = {
                tier: cells.get(label) for tier, label in TIER_COLUMNS.items() if _text(cells.get(label)) != ""
            }
            if not code:
                problems.append(
                    {"row": number, "field": "item_code", "column": "项目编码", "message": "项目编码不能为空"}
                )
                continue
            for tier, cell in tier_cells.items():
                entries.append({"item_code": code, "tier": tier, "value": _number(cell)})
                origin.append((number, TIER_COLUMNS[tier]))
    finally:
        book.close()
    checked, errors = catalog.check_values(session, table, entries)
    for error in errors:
        number, column = origin[error.index] if error.index < len(origin) else (None, None)
        if error.field == "item_code":
            column = "项目编码"
        problems.append(
            {"row": number, "field": FIELD_KEYS.get(column, column), "column": column, "message": error.message}
        )
    if problems:
        problems.sort(key=lambda p: (p["row"] or 0, p["column"] or ""))
        raise ApiError(
            "validation_error",
            f"有 {len({p['row'] for p in problems})} 行数据有误，未导入任何数据",
            status=422,
            field="file",
            rows=problems,
        )
    catalog.replace_values(
        session,
        principal,
        table,
        checked,
        "comp.table.import",
        {"rows": rows_seen, "sha256": hashlib.sha256(content).hexdigest()},
    )
    return {
        **catalog.table_view(table, region.name),
        "rows": catalog.table_rows(session, table),
        "imported": len(checked),
    }
